// What both transports of the pump feed (relay.h: frames that cross the socket; ring_consumer.h:
// frames a server recorded itself in the shared ring): the FrameQueue that JavaScript drains, the
// status it polls, the INIT exchange as the pump saw and changed it, and the process names.
// Thread-safe: any pump thread may call any method unless its comment names one.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_set>

#include "frame_queue.h"

namespace fusetrace {

struct PumpOptions {
  int dev_fd = -1;              // mounted /dev/fuse fd; the pump owns it from Start()
  int sock_fd = -1;             // proxy end of the socketpair; the pump owns it from Start()
  size_t max_frame = 1 << 20;   // largest frame the socket can carry (and the read buffer size)
  uint32_t snaplen = 0;         // bytes kept per frame, 0 = all
  // Frames the pump holds for JS. A full capture of 1 MiB reads that JS cannot keep up with fills
  // it: with 256 MiB the recorder peaked at 705 MiB of RSS, with 64 MiB (behind the 64 MiB ring) at
  // 320. What the larger queue buys is a head start of 192 MiB before the server waits: a 5-6 s
  // fio run read 369 against 323 MB/s in `bench record` (medians of 5 rounds), 310 against 308 in
  // 6-second runs by hand; the recorder's CPU per frame was lower with 64 MiB (1404 against 1549
  // us a frame), and a sustained rate is the writer's either way.
  size_t queue_bytes = 64u << 20;
  size_t queue_frames = 1u << 20;
  uint64_t init_mask = 0;       // INIT flags (flags | flags2 << 32) cleared in the kernel's INIT request
  uint32_t max_write_limit = 0; // clamp for fuse_init_out.max_write, 0 = none
  uint32_t max_pages_limit = 0; // clamp for fuse_init_out.max_pages, 0 = none
  bool gate = true;             // at most one request unread in the socket (killability)
  bool inprocess = false;       // accept a server's takeover request (native/ring.h)
  size_t ring_bytes = 64u << 20;  // data area of the in-process ring, a power of two
  bool lossy = false;           // record --lossy: drop (and name) frames instead of making the server wait
};

// What the pump saw and changed in the INIT exchange.
struct InitInfo {
  bool request_seen = false;
  bool reply_seen = false;
  uint64_t unique = 0;
  uint32_t kernel_major = 0, kernel_minor = 0;
  uint64_t kernel_flags = 0;      // as offered by the kernel
  uint64_t kernel_flags_fwd = 0;  // as forwarded to the server
  int32_t reply_error = 0;
  uint32_t server_major = 0, server_minor = 0;
  uint64_t server_flags = 0;      // flags | flags2 << 32 of the reply
  uint32_t max_write = 0, max_write_fwd = 0;
  uint32_t max_pages = 0, max_pages_fwd = 0;
  bool has_max_pages = false;
};

struct PumpStatus {
  std::string reader_end;   // "" while running; "unmount" (ENODEV), "server-gone", "stopped", "error: ..."
  std::string writer_end;   // "" while running; "eof" (server closed its end), "stopped", "error: ..."
  uint64_t partial = 0;     // frames not forwarded because their length disagreed with their header
  uint64_t emsgsize = 0;    // requests the socket refused (EMSGSIZE), answered with EIO
  uint64_t gate_waits = 0;  // times the reader waited for the server to take the previous request
  uint64_t notify_blocked_ns = 0;  // total time notify writes spent in write()
  std::string transport = "relay";  // "in-process" once the server took the device over (ring.h)
  uint64_t ring_lost = 0;  // ring bytes a producer reserved and never published (it died mid-record)
  uint64_t backpressure_waits = 0;  // times the server (in-process) or the relay's reader waited for the recorder
  uint64_t backpressure_ns = 0;     // total time spent so
  InitInfo init;
};

class FrameSink {
 public:
  // JS thread. `wake` is called from pump threads (coalesced) when JS should drain.
  FrameSink(const PumpOptions& opts, std::function<void()> wake);

  FrameQueue& queue() { return queue_; }
  // Any pump thread: queues a frame, waking JS when the queue was empty.
  void Record(FrameHeader hdr, const uint8_t* data) {
    if (queue_.Push(hdr, data) && wake_) wake_();
  }
  // The ring consumer: takes the next seq and queues the frame under one lock; returns the seq.
  uint64_t RecordNext(FrameHeader hdr, const uint8_t* data) {
    bool wake = false;
    uint64_t seq = queue_.PushNext(hdr, data, &wake);
    if (wake && wake_) wake_();
    return seq;
  }
  // Any pump thread: wakes JS to look at the status (the queue may be empty).
  void WakeForStatus() {
    if (queue_.MarkChanged() && wake_) wake_();
  }
  // Publishes why /dev/fuse is no longer read (the first reason wins) and wakes JS.
  void EndReader(const std::string& why);
  // Publishes why the server's side is no longer read (the first reason wins) and wakes JS.
  void EndWriter(const std::string& why);
  // Reader thread: clears init_mask in a FUSE_INIT request in place, notes what the kernel offered.
  void MaskInitRequest(uint8_t* buf, size_t n);
  // Writer thread: clamps max_write/max_pages in the INIT reply in place; ring thread: only notes
  // the reply (clamp false: the server wrote it to /dev/fuse itself).
  void ClampInitReply(uint8_t* buf, size_t n, bool clamp = true);
  // Reader thread, or the ring consumer after a takeover (never both: the reader stopped first):
  // records the comm of a pid seen for the first time, from /proc (`comm` null) or as given.
  void NotePid(uint32_t pid, const std::string* comm = nullptr);
  bool InitRequestSeen();
  // Runs `f` on the status under its lock.
  template <typename F>
  void WithStatus(F f) {
    std::lock_guard<std::mutex> lock(status_mu_);
    f(status_);
  }
  PumpStatus Status();

  // unique of the kernel's FUSE_INIT request (~0 until it is read), to find its reply.
  std::atomic<uint64_t> init_unique{~0ull};

 private:
  PumpOptions opts_;
  std::function<void()> wake_;
  FrameQueue queue_;
  std::mutex status_mu_;
  PumpStatus status_;
  std::unordered_set<uint32_t> pids_;  // one thread at a time, see NotePid
};

}  // namespace fusetrace
