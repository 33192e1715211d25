// Bounded queue of recorded frames between the pump threads and JavaScript.
//
// The pump threads append frames packed back to back into one byte vector
// (a FrameHeader, then cap_len bytes of the frame, padded to 8 bytes); JS takes
// the whole vector in one drain() and slices it without a copy per frame.
// The queue never blocks a pump thread: when it is full (bytes or frames), the
// frame still passes through the proxy but is counted as dropped here.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <utility>
#include <vector>

#include "populate.h"

namespace fusetrace {

// Layout shared with src/proxy/frames.ts (FRAME_HEADER_BYTES and the offsets there).
struct FrameHeader {
  uint64_t seq;       // order in which the pump saw the frame (taken before forwarding)
  uint64_t ts_ns;     // CLOCK_MONOTONIC right after the read()/recv() that got the frame
  uint64_t fwd_ns;    // CLOCK_MONOTONIC right after the forwarding write()/send(); 0 = not forwarded
  uint64_t unique;    // fuse_in_header.unique / fuse_out_header.unique
  uint32_t len;       // the frame's full length (bytes received)
  uint32_t cap_len;   // bytes kept (snaplen)
  int32_t code;       // opcode (dir 0) or fuse_out_header.error (dir 1)
  int32_t write_errno;  // errno of the forwarding write, 0 on success
  uint8_t dir;        // 0 kernel->server, 1 server->kernel
  uint8_t flags;      // FRAME_FLAG_* below
  uint8_t pad[6];
};
static_assert(sizeof(FrameHeader) == 56, "FrameHeader layout is shared with JS");

// The frame's header length disagreed with the bytes received (a split or
// truncated message); it was not forwarded.
constexpr uint8_t FRAME_FLAG_PARTIAL = 1;
// Not a frame: the forwarding result (fwd_ns, write_errno) of the earlier frame
// `seq`, a notification recorded before its write to /dev/fuse (which may block).
constexpr uint8_t FRAME_FLAG_PATCH = 2;

struct QueueCounters {
  uint64_t frames = 0;         // frames handed to JS
  uint64_t regions = 0;        // regions malloc()ed (see Region): a few per recording
  uint64_t faulted = 0;        // region bytes faulted in (fresh memory, the first time each is filled)
  uint64_t bytes = 0;          // full frame bytes seen (before snaplen)
  uint64_t dropped = 0;        // frames forwarded but not recorded (queue full)
  uint64_t dropped_bytes = 0;
  uint64_t lost_unnamed = 0;   // dropped frames of a request whose unique could not be kept in the lost list
};

// Uniques of dropped frames kept for JS at most (8 MiB); beyond, drops are only counted
// (lost_unnamed) and the store labels the session's incomplete requests conservatively.
constexpr size_t kMaxLostUniques = 1u << 20;

// A region of the queue: malloc()ed once at the queue's region size (FrameQueue::region_bytes_) and
// never moved, grown or shrunk while the queue lives; its first `touched` bytes have been faulted
// in. The pumps copy frames into regions and JS hands them back after the commit, so a recording
// refills the same few regions: touching fresh memory costs a page fault and a zeroed page per 4 KiB
// (about 10 us each on the 2-vCPU test VM), and the growable buffers regions used to be (1 MiB,
// doubled as frames came, freed when more than two waited) did that for most drains: 101 of 235
// drains of a 12 s fio 4k recording started from an empty buffer, and the ring thread spent 62% of
// its CPU zeroing pages (perf, 2026-12-07).
struct Region {
  uint8_t* p = nullptr;
  size_t cap = 0;
  size_t touched = 0;
};

// The region the pumps fill: bytes [0, size) hold frames. Unlike std::vector it does not zero what
// it grows into: the pump copies up to 1 MiB frames into it and zeroing first would double the
// memory traffic.
class RegionBuf {
 public:
  uint8_t* data() { return r_.p; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool has_region() const { return r_.p != nullptr; }
  // Appends `n` uninitialised bytes and returns where they start; nullptr when they do not fit.
  // Faults pages in ahead of the copy, kFaultStep at a time, where the region was never touched.
  uint8_t* Grow(size_t n, uint64_t* faulted) {
    if (r_.p == nullptr || size_ + n > r_.cap) return nullptr;
    if (size_ + n > r_.touched) {
      size_t to = std::min(r_.cap, (size_ + n + kFaultStep - 1) / kFaultStep * kFaultStep);
      ft_populate_write(r_.p + r_.touched, to - r_.touched);
      *faulted += to - r_.touched;
      r_.touched = to;
    }
    uint8_t* at = r_.p + size_;
    size_ += n;
    return at;
  }
  // Hands the region to the caller (its frames: the first *size bytes) and leaves this buffer without one.
  Region Release(size_t* size) {
    Region r = r_;
    *size = size_;
    r_ = Region{};
    size_ = 0;
    return r;
  }
  // Takes an empty region to fill; only when this buffer has none.
  void Adopt(Region r) {
    r_ = r;
    size_ = 0;
  }

 private:
  // Faulting in a page range takes one madvise() call (populate.h) instead of a fault per 4 KiB.
  static constexpr size_t kFaultStep = 1u << 20;
  Region r_;
  size_t size_ = 0;
};

class FrameQueue {
 public:
  FrameQueue(size_t max_bytes, size_t max_frames, uint32_t snaplen)
      : max_bytes_(max_bytes), max_frames_(max_frames), snaplen_(snaplen),
        region_bytes_(max_bytes + kPatchBytes),
        wake_bytes_(max_bytes / 8), wake_frames_(max_frames / 8) {}

  // Any pump thread. The next sequence number; it stays "in flight" (holding
  // back the watermark JS orders by) until Push() records or drops it.
  uint64_t TakeSeq() {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t seq = next_seq_++;
    inflight_.push_back(seq);  // seqs are taken in increasing order: stays sorted
    return seq;
  }

  // A thread that pushes in the order it takes seqs (the ring consumer): TakeSeq() and Push() under
  // one lock. Returns the frame's seq; *wake as Push() returns.
  uint64_t PushNext(FrameHeader hdr, const uint8_t* data, bool* wake) {
    std::lock_guard<std::mutex> lock(mu_);
    hdr.seq = next_seq_++;
    *wake = PushLocked(hdr, data);
    return hdr.seq;
  }

  // Notify thread: the forwarding result of notification `seq`, pushed earlier.
  void PushPatch(uint64_t seq, uint64_t fwd_ns, int32_t write_errno) {
    FrameHeader h{};
    h.seq = seq;
    h.fwd_ns = fwd_ns;
    h.write_errno = write_errno;
    h.dir = 1;
    h.flags = FRAME_FLAG_PATCH;
    std::lock_guard<std::mutex> lock(mu_);
    uint8_t* at = GrowLocked(sizeof h);
    if (at) std::memcpy(at, &h, sizeof h);  // out of memory: the frame keeps fwd NULL
    if (at) count_++;
  }

  // Any pump thread. Copies min(len, snaplen) bytes of data. Returns true when
  // the caller should wake JS. JS drains on its own timer (100 ms); an early
  // wake-up only happens once the queue is an eighth full, once per drain, so a
  // metadata workload does not pay a JS thread wake-up per frame.
  bool Push(FrameHeader hdr, const uint8_t* data) {
    std::lock_guard<std::mutex> lock(mu_);
    EraseInflight(hdr.seq);
    return PushLocked(hdr, data);
  }

  // Under mu_: Push() once its seq is no longer in flight.
  bool PushLocked(FrameHeader hdr, const uint8_t* data) {
    uint32_t cap = hdr.len;
    if (snaplen_ != 0 && cap > snaplen_) cap = snaplen_;
    hdr.cap_len = cap;
    size_t need = sizeof(FrameHeader) + ((cap + 7u) & ~size_t(7));
    counters_.bytes += hdr.len;
    uint8_t* at = nullptr;
    if (buf_.size() + need > max_bytes_ || count_ >= max_frames_ || !(at = GrowLocked(need))) {
      counters_.dropped++;
      counters_.dropped_bytes += hdr.len;
      NoteLostLocked(hdr.unique);
      return false;
    }
    std::memcpy(at, &hdr, sizeof hdr);
    if (cap) std::memcpy(at + sizeof hdr, data, cap);
    size_t pad = need - sizeof hdr - cap;
    if (pad) std::memset(at + sizeof hdr + cap, 0, pad);
    count_++;
    counters_.frames++;
    if (wake_pending_ || (buf_.size() < wake_bytes_ && count_ < wake_frames_)) return false;
    wake_pending_ = true;
    return true;
  }

  // Ring thread: whether a frame of `len` bytes would be kept now. While it would not, the ring
  // thread leaves frames in the ring, so that the server waits for room there (preload.c).
  bool Fits(uint32_t len) {
    uint32_t cap = snaplen_ != 0 && len > snaplen_ ? snaplen_ : len;
    size_t need = sizeof(FrameHeader) + ((cap + 7u) & ~size_t(7));
    std::lock_guard<std::mutex> lock(mu_);
    return buf_.size() + need <= max_bytes_ && count_ < max_frames_;
  }

  // Ring thread: frames the in-process ring could not hold (native/ring.h), counted like ours.
  void AddDropped(uint64_t frames, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.bytes += bytes;
    counters_.dropped += frames;
    counters_.dropped_bytes += bytes;
  }

  // Ring thread: the unique of a frame the ring dropped (its lost list, ring.h).
  void AddLost(uint64_t unique) {
    std::lock_guard<std::mutex> lock(mu_);
    NoteLostLocked(unique);
  }

  // Ring thread: dropped frames whose uniques the ring could not name (its lost list was full).
  void AddLostUnnamed(uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.lost_unnamed += n;
  }

  // Any pump thread: true once the queue is at least half full (the relay reader then stops
  // reading requests until JS catches up: backpressure instead of loss).
  bool HalfFull() {
    std::lock_guard<std::mutex> lock(mu_);
    return buf_.size() >= max_bytes_ / 2 || count_ >= max_frames_ / 2;
  }

  // Reader thread, once per new pid. JS picks it up with the next drain.
  void PushProc(uint32_t pid, std::string comm) {
    std::lock_guard<std::mutex> lock(mu_);
    procs_.emplace_back(pid, std::move(comm));
  }

  // Any pump thread: something other than a frame changed (a thread ended, INIT
  // seen). Returns true when JS should be woken.
  bool MarkChanged() {
    std::lock_guard<std::mutex> lock(mu_);
    bool wake = !wake_pending_;
    wake_pending_ = true;
    return wake;
  }

  // JS thread. Takes everything queued so far: *region (region->p nullptr when nothing was
  // queued) holds *size bytes of frames; the caller hands it back with Recycle() (or free()s
  // region->p).
  // *watermark: every seq below it has been pushed or dropped, so JS can hand
  // frames to the store in seq order (the reader and writer threads push
  // concurrently, after forwarding, so push order is not seq order).
  void Drain(Region* region, size_t* size, size_t* count, uint64_t* watermark,
             std::vector<std::pair<uint32_t, std::string>>* procs, QueueCounters* counters,
             std::vector<uint64_t>* lost) {
    std::lock_guard<std::mutex> lock(mu_);
    lost->swap(lost_);
    lost_.clear();
    *watermark = inflight_.empty() ? next_seq_ : inflight_.front();
    // An empty region stays here: handed out, a drain with nothing in it would cost a lease.
    if (!buf_.empty()) {
      *region = buf_.Release(size);
    } else {
      *region = Region{};
      *size = 0;
    }
    // The next frames go into the spare with the most memory already faulted in, or into a new
    // region when the first of them comes (GrowLocked).
    if (!buf_.has_region() && !spare_.empty()) buf_.Adopt(TakeSpareLocked());
    *count = count_;
    count_ = 0;
    procs->swap(procs_);
    procs_.clear();
    *counters = counters_;
    wake_pending_ = false;
  }

  // JS thread: a drained region (from Drain or TakeSpare) JS no longer reads. The pumps fill it
  // again. Up to kSpareRegions wait, and together they keep at most kSpareBound times max_bytes_
  // faulted in, the regions with the most first: past that a spare's memory is given back to the
  // system (MADV_DONTNEED) and faulted in again if it is ever filled that far. Anything else (a
  // sorted copy too large for a region) is freed.
  void Recycle(Region r) {
    if (r.p == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (r.cap != region_bytes_) {
      std::free(r.p);
      return;
    }
    if (!buf_.has_region()) {
      buf_.Adopt(r);
      return;
    }
    spare_.push_back(r);
    std::sort(spare_.begin(), spare_.end(), [](const Region& a, const Region& b) { return a.touched > b.touched; });
    while (spare_.size() > kSpareRegions) {
      std::free(spare_.back().p);
      spare_.pop_back();
    }
    size_t kept = 0;
    for (Region& s : spare_) {
      if (kept + s.touched > kSpareBound * max_bytes_) Trim(&s, kSpareBound * max_bytes_ - kept);
      kept += s.touched;
    }
  }

  // JS thread: an empty region with at least `need` bytes faulted in, for the relay's sorted
  // copy of a drain (batcher.h): a spare, else a new region. Region{} when `need` is more than a
  // region holds (the caller then mallocs). Goes back with Recycle().
  Region TakeSpare(size_t need) {
    std::lock_guard<std::mutex> lock(mu_);
    if (need > region_bytes_) return Region{};
    Region r = spare_.empty() ? NewRegionLocked() : TakeSpareLocked();
    if (r.p != nullptr && need > r.touched) {
      ft_populate_write(r.p + r.touched, need - r.touched);
      counters_.faulted += need - r.touched;
      r.touched = need;
    }
    return r;
  }

  ~FrameQueue() {
    for (auto& r : spare_) std::free(r.p);
    std::free(buf_.data());
  }

 private:
  // Regions that wait between drains: enough that a drain finds one while JS still holds the
  // last few it drained (until their commit).
  static constexpr size_t kSpareRegions = 4;
  // The spares' faulted-in memory, in queue bounds. A full capture keeps about three regions going
  // (the queue's, the one JS commits, a spare), each filled to the bound: with one bound for the
  // spares, a second full spare was trimmed and faulted in again at its next use, and a test
  // recording of 805 MB faulted in 424 MB (CI); with two, 196-201 MB (three regions, each once),
  // and a 6 s recording of 1 MiB reads peaked at 293-303 MiB of RSS against 290-291.
  static constexpr size_t kSpareBound = 2;
  // What a region holds beyond max_bytes_: patch records (PushPatch) are not bounded by it.
  static constexpr size_t kPatchBytes = 1u << 20;

  // Under mu_: `n` more bytes in the current region, which is taken (a spare or a new one) at the
  // first frame after a drain. nullptr when they do not fit or there is no memory.
  uint8_t* GrowLocked(size_t n) {
    if (!buf_.has_region()) {
      Region r = spare_.empty() ? NewRegionLocked() : TakeSpareLocked();
      if (r.p == nullptr) return nullptr;
      buf_.Adopt(r);
    }
    return buf_.Grow(n, &counters_.faulted);
  }

  // Gives the memory of `r` past its first `keep` bytes back to the system.
  static void Trim(Region* r, size_t keep) {
    uintptr_t from = (reinterpret_cast<uintptr_t>(r->p) + keep + 4095) & ~uintptr_t(4095);
    uintptr_t to = (reinterpret_cast<uintptr_t>(r->p) + r->touched) & ~uintptr_t(4095);
    if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
    r->touched = keep;
  }

  // Under mu_: a new region; its memory is faulted in as it is filled.
  Region NewRegionLocked() {
    Region r;
    r.p = static_cast<uint8_t*>(std::malloc(region_bytes_));
    if (r.p == nullptr) return Region{};
    r.cap = region_bytes_;
    counters_.regions++;
    return r;
  }

  // Under mu_: the spare with the most memory faulted in, taken out of the spares (there is one).
  Region TakeSpareLocked() {
    size_t best = 0;
    for (size_t i = 1; i < spare_.size(); i++) {
      if (spare_[i].touched > spare_[best].touched) best = i;
    }
    Region r = spare_[best];
    spare_.erase(spare_.begin() + best);
    return r;
  }

  // Under mu_. A notification (unique 0) belongs to no request: only counted.
  void NoteLostLocked(uint64_t unique) {
    if (unique == 0) return;
    if (lost_.size() < kMaxLostUniques) lost_.push_back(unique);
    else counters_.lost_unnamed++;
  }

  // Under mu_. At most one seq per pump thread is in flight (taken, forwarding, not yet
  // pushed), so a short sorted vector replaces the std::set that cost a malloc and a free
  // per frame.
  void EraseInflight(uint64_t seq) {
    for (size_t i = 0; i < inflight_.size(); i++) {
      if (inflight_[i] == seq) {
        inflight_.erase(inflight_.begin() + i);
        return;
      }
    }
  }

  const size_t max_bytes_;
  const size_t max_frames_;
  const uint32_t snaplen_;
  const size_t region_bytes_;  // every region's capacity: max_bytes_ of frames and kPatchBytes of patches
  std::mutex mu_;
  const size_t wake_bytes_;
  const size_t wake_frames_;
  RegionBuf buf_;
  std::vector<Region> spare_;  // recycled empty regions
  size_t count_ = 0;
  uint64_t next_seq_ = 0;
  std::vector<uint64_t> inflight_;  // sorted
  std::vector<std::pair<uint32_t, std::string>> procs_;
  std::vector<uint64_t> lost_;  // uniques of dropped frames since the last Drain()
  QueueCounters counters_;
  bool wake_pending_ = false;
};

}  // namespace fusetrace
