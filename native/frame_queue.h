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
  uint64_t bytes = 0;          // full frame bytes seen (before snaplen)
  uint64_t dropped = 0;        // frames forwarded but not recorded (queue full)
  uint64_t dropped_bytes = 0;
  uint64_t lost_unnamed = 0;   // dropped frames of a request whose unique could not be kept in the lost list
};

// Uniques of dropped frames kept for JS at most (8 MiB); beyond, drops are only counted
// (lost_unnamed) and the store labels the session's incomplete requests conservatively.
constexpr size_t kMaxLostUniques = 1u << 20;

// A growable byte buffer that, unlike std::vector, does not zero what it grows into: the
// pump copies up to 1 MiB frames into it and zeroing first would double the memory traffic.
class ByteBuf {
 public:
  ByteBuf() = default;
  ByteBuf(const ByteBuf&) = delete;
  ByteBuf& operator=(const ByteBuf&) = delete;
  ~ByteBuf() { std::free(data_); }
  uint8_t* data() { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Appends `n` uninitialised bytes and returns where they start, or nullptr when out of memory.
  uint8_t* Grow(size_t n) {
    if (size_ + n > cap_) {
      size_t cap = cap_ ? cap_ : (1u << 20);
      while (cap < size_ + n) cap *= 2;
      void* p = std::realloc(data_, cap);
      if (!p) return nullptr;
      Populate(static_cast<uint8_t*>(p) + cap_, cap - cap_);
      data_ = static_cast<uint8_t*>(p);
      cap_ = cap;
    }
    uint8_t* at = data_ + size_;
    size_ += n;
    return at;
  }
  size_t capacity() const { return cap_; }
  // Faults the pages of [p, p + n) in with one call (populate.h) instead of one page fault per
  // 4 KiB as the pump copies frames in.
  static void Populate(uint8_t* p, size_t n) { ft_populate_write(p, n); }
  // Hands the memory (malloc()ed, `*cap` bytes) to the caller and leaves this buffer empty.
  uint8_t* Release(size_t* size, size_t* cap) {
    uint8_t* p = data_;
    *size = size_;
    *cap = cap_;
    data_ = nullptr;
    size_ = cap_ = 0;
    return p;
  }
  // Takes an empty malloc()ed region of `cap` bytes as storage; only when this buffer has none.
  void Adopt(uint8_t* p, size_t cap) {
    data_ = p;
    size_ = 0;
    cap_ = cap;
  }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

class FrameQueue {
 public:
  FrameQueue(size_t max_bytes, size_t max_frames, uint32_t snaplen)
      : max_bytes_(max_bytes), max_frames_(max_frames), snaplen_(snaplen),
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
    uint8_t* at = buf_.Grow(sizeof h);
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
    if (buf_.size() + need > max_bytes_ || count_ >= max_frames_ || !(at = buf_.Grow(need))) {
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

  // JS thread. Takes everything queued so far: *frames (malloc()ed, *frames_cap
  // bytes; the caller free()s it or hands it back with Recycle(); nullptr when
  // empty) holds *frames_size bytes.
  // *watermark: every seq below it has been pushed or dropped, so JS can hand
  // frames to the store in seq order (the reader and writer threads push
  // concurrently, after forwarding, so push order is not seq order).
  void Drain(uint8_t** frames, size_t* frames_size, size_t* frames_cap, size_t* count, uint64_t* watermark,
             std::vector<std::pair<uint32_t, std::string>>* procs, QueueCounters* counters,
             std::vector<uint64_t>* lost) {
    std::lock_guard<std::mutex> lock(mu_);
    lost->swap(lost_);
    lost_.clear();
    *watermark = inflight_.empty() ? next_seq_ : inflight_.front();
    *frames = buf_.Release(frames_size, frames_cap);
    if (!spare_.empty()) {
      // The largest: a region the queue outgrows is regrown, with fresh pages for the rest.
      size_t best = 0;
      for (size_t i = 1; i < spare_.size(); i++) {
        if (spare_[i].second > spare_[best].second) best = i;
      }
      buf_.Adopt(spare_[best].first, spare_[best].second);
      spare_.erase(spare_.begin() + best);
    }
    *count = count_;
    count_ = 0;
    procs->swap(procs_);
    procs_.clear();
    *counters = counters_;
    wake_pending_ = false;
  }

  // JS thread: a drained region (from Drain, `cap` bytes) JS no longer reads. The pumps
  // fill it again instead of a fresh malloc(): every fresh region of a full capture is
  // new pages, one minor fault (and a kernel zeroing) per 4 KiB the pumps copy into, which
  // was most of the writer thread's time on a 1 GiB read. Regions are as large as the
  // queue grew while JS was busy (up to max_bytes_), so the spares are bounded by count
  // (kSpareRegions) and together by max_bytes_: the memory kept is at most what the
  // queue may hold anyway; the rest is freed.
  void Recycle(uint8_t* p, size_t cap) {
    std::lock_guard<std::mutex> lock(mu_);
    if (buf_.capacity() == 0) {
      buf_.Adopt(p, cap);
      return;
    }
    // Keep the largest regions that fit the bounds; free the others.
    spare_.emplace_back(p, cap);
    std::sort(spare_.begin(), spare_.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    size_t kept = 0;
    size_t n = 0;
    for (; n < spare_.size() && n < kSpareRegions && kept + spare_[n].second <= max_bytes_; n++) kept += spare_[n].second;
    for (size_t i = n; i < spare_.size(); i++) std::free(spare_[i].first);
    spare_.resize(n);
  }

  // JS thread: a recycled empty region of at least `need` bytes (the smallest that fits; its
  // capacity in *cap), taken out of the spares; nullptr when none fits. The relay's drains come
  // out of seq order and are sorted into a copy (batcher.h): into memory the pumps already
  // touched, rather than fresh pages, which cost a page fault per 4 KiB at first touch (about
  // 10 us each on the 2-vCPU test VM: 2.6 ms of the JS thread's time per 1 MiB frame).
  uint8_t* TakeSpare(size_t need, size_t* cap) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = spare_.size();
    for (size_t i = 0; i < spare_.size(); i++) {
      if (spare_[i].second >= need && (best == spare_.size() || spare_[i].second < spare_[best].second)) best = i;
    }
    if (best == spare_.size()) return nullptr;
    uint8_t* p = spare_[best].first;
    *cap = spare_[best].second;
    spare_.erase(spare_.begin() + best);
    return p;
  }

  ~FrameQueue() {
    for (auto& s : spare_) std::free(s.first);
  }

 private:
  static constexpr size_t kSpareRegions = 2;

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
  std::mutex mu_;
  const size_t wake_bytes_;
  const size_t wake_frames_;
  ByteBuf buf_;
  std::vector<std::pair<uint8_t*, size_t>> spare_;  // recycled empty regions and their capacity
  size_t count_ = 0;
  uint64_t next_seq_ = 0;
  std::vector<uint64_t> inflight_;  // sorted
  std::vector<std::pair<uint32_t, std::string>> procs_;
  std::vector<uint64_t> lost_;  // uniques of dropped frames since the last Drain()
  QueueCounters counters_;
  bool wake_pending_ = false;
};

}  // namespace fusetrace
