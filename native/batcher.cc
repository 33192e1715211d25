#include "batcher.h"

#include <algorithm>
#include <cstring>

namespace fusetrace {

namespace {
inline const FrameHeader* Hdr(const uint8_t* p) { return reinterpret_cast<const FrameHeader*>(p); }
inline size_t Packed(const uint8_t* p) { return sizeof(FrameHeader) + ((size_t(Hdr(p)->cap_len) + 7u) & ~size_t(7)); }
}  // namespace

uint32_t Batcher::HeadKeep(const FrameHeader& h) {
  constexpr int32_t kOpRead = 15, kOpWrite = 16;  // fuse_opcode FUSE_READ, FUSE_WRITE
  if (h.flags != 0) return h.cap_len;            // a partial frame: kept as it was read
  if (h.dir == 0) {
    if (h.code == kOpRead && h.unique != 0) reads_[ReadSlot(h.unique)] = h.unique;
    if (h.code == kOpWrite && h.cap_len > kHeadsMinCut) return kHeadsWriteIn;
    return h.cap_len;
  }
  uint64_t& slot = reads_[ReadSlot(h.unique)];
  if (h.unique == 0 || slot != h.unique) return h.cap_len;
  slot = 0;
  return h.cap_len > kHeadsMinCut ? kHeadsReadOut : h.cap_len;
}

void Batcher::Cut(uint8_t* buf, size_t size, std::vector<BatchCut>* cuts) {
  BatchCut c;
  bool cutting = false;  // c.heads is being built (some frame of c was cut)
  for (size_t at = 0; at + sizeof(FrameHeader) <= size;) {
    const FrameHeader* h = Hdr(buf + at);
    size_t n = Packed(buf + at);
    if (c.count > 0 && (c.count >= kBatchFrames || c.size + n > kBatchBytes)) {
      cuts->push_back(std::move(c));
      c = BatchCut{};
      cutting = false;
    }
    if (c.count == 0) {
      c.off = at;
      c.first_seq = h->seq;
      c.first_ns = h->ts_ns;
    }
    uint32_t keep = HeadKeep(*h);
    if (keep < h->cap_len) {
      if (!cutting) {
        c.heads.reserve(at - c.off + 4096);
        c.heads.assign(buf + c.off, buf + at);
        cutting = true;
      }
      FrameHeader t = *h;
      t.cap_len = keep;
      size_t o = c.heads.size();
      c.heads.resize(o + sizeof t + ((keep + 7u) & ~size_t(7)), 0);
      std::memcpy(c.heads.data() + o, &t, sizeof t);
      std::memcpy(c.heads.data() + o + sizeof t, buf + at + sizeof t, keep);
    } else if (cutting) {
      c.heads.insert(c.heads.end(), buf + at, buf + at + n);
    }
    c.last_seq = h->seq;
    c.last_ns = h->ts_ns;
    c.bytes += h->len;
    c.size += n;
    c.count++;
    at += n;
  }
  if (c.count > 0) cuts->push_back(std::move(c));
}

bool Batcher::ApplyPatch(std::vector<Ent>& ents, const FrameHeader& p) {
  auto it = std::lower_bound(ents.begin(), ents.end(), p.seq, [](const Ent& e, uint64_t s) { return e.seq < s; });
  if (it == ents.end() || it->seq != p.seq) return false;
  auto* h = const_cast<FrameHeader*>(Hdr(it->at));
  h->fwd_ns = p.fwd_ns;
  h->write_errno = p.write_errno;
  return true;
}

uint8_t* Batcher::Take(uint8_t* region, size_t size, size_t count, uint64_t watermark, bool final, const Alloc& alloc,
                       bool* copied, size_t* out_size, size_t* out_cap, std::vector<BatchCut>* cuts,
                       std::vector<PatchOut>* patches) {
  *copied = false;
  *out_size = 0;
  *out_cap = 0;
  std::vector<Ent> ents;
  std::vector<FrameHeader> pending;  // patch records, applied once the frames are sorted
  ents.reserve(held_n_ + count);
  for (size_t at = 0; at + sizeof(FrameHeader) <= held_size_; at += Packed(held_ + at)) ents.push_back({Hdr(held_ + at)->seq, held_ + at, Packed(held_ + at)});
  bool ordered = held_n_ == 0;
  uint64_t prev = 0;
  bool any = false;
  for (size_t at = 0, i = 0; i < count && at + sizeof(FrameHeader) <= size; i++) {
    const FrameHeader* h = Hdr(region + at);
    size_t n = Packed(region + at);
    if (h->flags & FRAME_FLAG_PATCH) {
      pending.push_back(*h);
      ordered = false;  // a patch record must not stay in a batch
    } else {
      if (any && h->seq <= prev) ordered = false;
      if (!final && h->seq >= watermark) ordered = false;
      prev = h->seq;
      any = true;
      ents.push_back({h->seq, region + at, n});
    }
    at += n;
  }
  if (ordered) {
    // The common case (in-process): the region is already the batches' bytes.
    *out_size = size;
    Cut(region, size, cuts);
    return ents.empty() ? nullptr : region;
  }
  std::stable_sort(ents.begin(), ents.end(), [](const Ent& a, const Ent& b) { return a.seq < b.seq; });
  for (const FrameHeader& p : pending) {
    if (!ApplyPatch(ents, p)) patches->push_back({p.seq, p.fwd_ns, p.write_errno});
  }
  size_t ready = 0, ready_bytes = 0;
  while (ready < ents.size() && (final || ents[ready].seq < watermark)) ready_bytes += ents[ready++].size;
  size_t rest_bytes = 0;
  for (size_t i = ready; i < ents.size(); i++) rest_bytes += ents[i].size;
  size_t out_cap_got = 0;
  uint8_t* out = ready_bytes ? alloc(ready_bytes, &out_cap_got) : nullptr;
  uint8_t* rest = rest_bytes ? static_cast<uint8_t*>(std::malloc(rest_bytes)) : nullptr;
  if ((ready_bytes && !out) || (rest_bytes && !rest)) {
    // Out of memory: nothing can be ordered; hand over what there is unordered rather than lose it.
    std::free(out);
    std::free(rest);
    out = static_cast<uint8_t*>(std::malloc(ready_bytes + rest_bytes));
    if (!out) return nullptr;
    out_cap_got = ready_bytes + rest_bytes;
    ready = ents.size();
    ready_bytes += rest_bytes;
    rest_bytes = 0;
    rest = nullptr;
  }
  size_t o = 0;
  for (size_t i = 0; i < ready; i++) {
    std::memcpy(out + o, ents[i].at, ents[i].size);
    o += ents[i].size;
  }
  size_t r = 0;
  for (size_t i = ready; i < ents.size(); i++) {
    std::memcpy(rest + r, ents[i].at, ents[i].size);
    r += ents[i].size;
  }
  std::free(held_);
  held_ = rest;
  held_size_ = rest_bytes;
  held_n_ = ents.size() - ready;
  *copied = out != nullptr;
  *out_size = ready_bytes;
  *out_cap = out ? out_cap_got : 0;
  if (out) Cut(out, ready_bytes, cuts);
  return out;
}

}  // namespace fusetrace
