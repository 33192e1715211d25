// The in-process transport's consumer side (ring.h, preload.c). After a takeover the server
// reads and writes the mounted /dev/fuse fd itself and copies each frame into a shared ring next
// to the syscall; this class creates that ring and moves its records into the FrameSink, in the
// order JS needs: a FUSE_INTERRUPT after the request it names, a notification's write result as a
// patch. It runs on its own thread (ft-ring) on a timer (20 ms while frames come, 50 ms idle; producers wake it early), and on the JS thread in Drain().
// The relay (relay.h) starts it when it grants a server's takeover request.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "frame_sink.h"
#include "ring.h"

namespace fusetrace {

class RingConsumer {
 public:
  RingConsumer(const PumpOptions& opts, FrameSink& sink) : opts_(opts), sink_(sink) {}
  // JS thread, after Finish().
  ~RingConsumer();

  // Writer thread (a takeover): the ring's memfd, mapped and initialised; -1 on failure. The
  // caller passes it to the server and closes its copy.
  int Create();
  // Writer thread: starts the ring thread; Drain() consumes from now on too.
  void Start();
  // Writer thread: true once Create() succeeded (a server takes over at most once).
  bool Created() const { return ring_ != nullptr; }
  // JS thread: true once the ring is live.
  bool Ready() const { return ready_.load(std::memory_order_acquire); }
  // JS thread (Drain): moves what the server published into the queue.
  void ConsumeNow() { Consume(); }
  // JS thread: adds the server threads' waits for room (ring.h: waits, wait_ns) to `s`.
  void AddBackpressure(PumpStatus* s) const {
    s->backpressure_waits += __atomic_load_n(&ring_->waits, __ATOMIC_RELAXED);
    s->backpressure_ns += __atomic_load_n(&ring_->wait_ns, __ATOMIC_RELAXED);
  }
  // JS thread: ends the ring thread's sleep and loop.
  void RequestStop();
  // JS thread, after the relay's threads were joined (none can start the ring any more): joins
  // the ring thread, consumes what is left (records a dying server left pending too), and counts
  // the bytes reserved and never published.
  void Finish();

 private:
  // Ring thread or JS thread: moves published records into the queue while it has room (all of
  // them when `force`: the session is over). *full: stopped for want of room.
  size_t Consume(bool force = false, bool* full = nullptr);
  // Under mu_: one FT_REC_FRAME record at ring position `at`.
  void ConsumeFrame(const ft_ring_rec* r, uint64_t at, bool force);
  // Under mu_: moves the ring's lost list (--lossy, ring.h) into the queue.
  void ConsumeLost();
  // Under mu_: records held INTERRUPTs whose target never came within 1 s (all when `force`).
  void ReleaseHeld(bool force);
  // Under mu_: records hdr (its seq taken now) and the INTERRUPTs that waited for it.
  void Emit(FrameHeader hdr, const uint8_t* data);
  void Loop();  // ring thread

  PumpOptions opts_;
  FrameSink& sink_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> ready_{false};
  std::thread thread_;
  std::mutex mu_;  // one consumer at a time: the ring thread or Drain()
  struct ft_ring_hdr* ring_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t map_bytes_ = 0;
  uint64_t dropped_seen_ = 0, dropped_bytes_seen_ = 0;
  uint64_t lost_seen_ = 0;  // lost-list slots moved to the queue
  std::unordered_map<uint64_t, uint64_t> patches_;  // ring position of a notification -> its seq
  // In-process, each server thread records a request after its read() returned, so a thread
  // preempted right there can have the FUSE_INTERRUPT naming its request (read by another
  // thread) recorded first. Such an INTERRUPT is held until its target is recorded (or 1 s).
  struct HeldFrame {
    uint64_t target;
    uint64_t deadline_ns;
    FrameHeader hdr;
    std::vector<uint8_t> data;
  };
  std::vector<HeldFrame> held_;
  // Uniques of recently recorded requests, direct-mapped (a later unique overwrites an earlier one
  // in its slot): whether an INTERRUPT's target is already recorded. A miss only delays the
  // INTERRUPT (held until its deadline), as for a target older than the table. No allocation per
  // frame, unlike the node-based set it replaces (a malloc and a free per request on the hot path).
  static constexpr size_t kRecentSlots = 1u << 16;
  std::vector<uint64_t> recent_ = std::vector<uint64_t>(kRecentSlots, ~0ull);
  static size_t RecentSlot(uint64_t unique) { return size_t((unique >> 1) ^ (unique >> 17)) & (kRecentSlots - 1); }
  bool RecentlyRecorded(uint64_t unique) const { return recent_[RecentSlot(unique)] == unique; }
};

}  // namespace fusetrace
