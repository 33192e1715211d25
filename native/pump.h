// The FUSE pump: moves frames between a mounted /dev/fuse fd and the proxy end
// of an AF_UNIX SOCK_SEQPACKET socketpair whose other end the FUSE server holds
// as /dev/fd/N, and records every frame into a FrameQueue for JavaScript.
//
// Two transports. The relay (below) works with any server. In-process (ring.h,
// preload.c): a server that reads N through libc asks to take /dev/fuse over on
// its first read; the reader thread stops, the server gets the mounted fd and a
// shared ring, and records its own frames; the ring thread (ft-ring) moves them
// into the same FrameQueue. The relay costs two cross-CPU wake-ups per request
// (find+stat over 20,000 names: a bare C relay without any recording is 1.95x
// direct on this 2-vCPU VM); in-process costs a memcpy and two clock reads.
//
// Design of the relay (why it looks like this):
// - Three threads. The reader thread does read(/dev/fuse) -> send(socket); the
//   writer thread does recv(socket) -> write(/dev/fuse) for replies; the notify
//   thread writes unique==0 frames (notifications). A NOTIFY_INVAL_* write can
//   block in the kernel until a request queued behind it is answered (inode
//   locks, page writeback), so notifies never share a thread with replies, and
//   a blocked write never stalls the kernel->server direction.
// - Timestamps are CLOCK_MONOTONIC taken right after each read/recv and right
//   after each forwarding write/send. Every write to /dev/fuse keeps its errno:
//   ENOENT means the kernel no longer waits for that unique (fs/fuse/dev.c
//   fuse_dev_do_write: request_find() failed), it is normal and never fatal.
// - Sequence numbers are taken before forwarding, so a reply always has a
//   larger seq than its request; the threads push after forwarding, so the
//   queue reports a watermark below which every seq is in, and JS orders by it.
//   Notifications are pushed when received and their write result follows as a
//   patch, so a notify write blocked in the kernel never holds the order back.
// - Frames are checked: a message whose header length disagrees with the bytes
//   received (a splice split above ~61 KiB, see exec_helper.c) is never
//   forwarded; it is recorded with FRAME_FLAG_PARTIAL and the kernel gets an
//   EIO reply for that unique so the requester does not hang.
// - Killability: a request read from /dev/fuse is "sent" for the kernel
//   (FR_SENT), after which a SIGKILLed requester waits for the reply. Natively
//   it waits only for requests a server thread actually took. So the reader
//   does not read the next request while the previous one still sits unread in
//   the socket (SIOCOUTQ on AF_UNIX = bytes not yet consumed by the peer): at
//   most one request is "sent but unread" at any time. Measured (test/record-e2e
//   "killability", passthrough_ll SIGSTOPped, 4 lookups SIGKILLed): 3 of 4 die
//   at once with the gate, 0 of 4 without it (natively 4 of 4); the gate waited
//   7-25 times per 12,000 frames of find+stat, no measurable cost.
//   FUSETRACE_GATE=0 turns it off.
// - Stop() ends all loops without signals. /dev/fuse is O_NONBLOCK and the reader
//   waits in a poll() that also watches an eventfd (it must poll anyway: the gate
//   may only wait once a request is pending). The socket stays blocking: the
//   writer sleeps in recv() itself, one syscall per reply instead of a failed
//   recv, a poll and a recv, and Stop() wakes it with shutdown(SHUT_RD).
//   Measured (find+stat over 20,000 names, 12,000 requests, strace -c -f):
//   before, 5 syscalls per request in the reader and 4 per reply in the writer;
//   now 4 and 2. Wall time hardly moves: a proxied request costs ~55 us more than
//   a direct one on this 2-vCPU VM, and the syscalls were ~3 us of it. The rest
//   is the two extra thread wake-ups (reader, writer) per request; busy-waiting
//   for 30 us before sleeping gained 7% wall time for 25% more CPU, 100 us lost
//   time (2 CPUs cannot hold the server and two spinning threads), so the pump
//   does not spin.
// - Threads are named ft-reader, ft-writer and ft-notify (top -H, /proc/PID/task).
// - The pump never waits for JavaScript: the FrameQueue is bounded and counts
//   what it could not keep.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "frame_queue.h"
#include "ring.h"

namespace fusetrace {

struct PumpOptions {
  int dev_fd = -1;              // mounted /dev/fuse fd; the pump owns it from Start()
  int sock_fd = -1;             // proxy end of the socketpair; the pump owns it from Start()
  size_t max_frame = 1 << 20;   // largest frame the socket can carry (and the read buffer size)
  uint32_t snaplen = 0;         // bytes kept per frame, 0 = all
  size_t queue_bytes = 256u << 20;
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
  uint64_t backpressure_waits = 0;   // times the server (in-process) or the reader (relay) waited for the recorder
  uint64_t backpressure_ns = 0;      // total time spent so
  InitInfo init;
};

class Pump {
 public:
  // JS thread. `wake` is called from pump threads (coalesced) when JS should drain.
  Pump(const PumpOptions& opts, std::function<void()> wake);
  // JS thread. Joins the threads if Stop() was not called.
  ~Pump();

  // JS thread. Starts the reader, writer and notify threads.
  void Start();
  // JS thread. Ends all threads, closes the socket and /dev/fuse fds (closing
  // the last /dev/fuse fd aborts a still-mounted connection: fuse_dev_release).
  void Stop();
  // JS thread.
  void Drain(uint8_t** frames, size_t* frames_size, size_t* frames_cap, size_t* count, uint64_t* watermark,
             std::vector<std::pair<uint32_t, std::string>>* procs, QueueCounters* counters,
             std::vector<uint64_t>* lost) {
    if (ring_ready_.load(std::memory_order_acquire)) ConsumeRing();
    queue_.Drain(frames, frames_size, frames_cap, count, watermark, procs, counters, lost);
  }
  // JS thread: hands back a region Drain() gave out (see FrameQueue::Recycle).
  void Recycle(uint8_t* p, size_t cap) { queue_.Recycle(p, cap); }
  // JS thread.
  PumpStatus Status();
  // JS thread: true when Stop() had to leave a notify thread blocked in write();
  // that thread still uses this object, so its owner must never delete it.
  bool Leaked() const { return leaked_; }

 private:
  void ReaderLoop();   // reader thread
  void WriterLoop();   // writer thread
  void NotifyLoop();   // notify thread
  void RingLoop();     // ring thread (in-process recording)

  // writer thread: answers a server's takeover request (ring.h); starts the ring thread.
  void Takeover();
  // writer thread: the ring memfd, mapped; -1 on failure.
  int CreateRing();
  // ring thread or JS thread: moves published ring records into the queue, while it has room
  // (all of them when `force`: the session is over). *full: stopped for want of room.
  size_t ConsumeRing(bool force = false, bool* full = nullptr);

  // reader thread: clears init_mask in a FUSE_INIT request in place.
  void MaskInitRequest(uint8_t* buf, size_t n);
  // writer thread: clamps max_write/max_pages in the INIT reply in place; ring thread: only
  // notes the reply (clamp false: the server wrote it to /dev/fuse itself).
  void ClampInitReply(uint8_t* buf, size_t n, bool clamp = true);
  // reader thread: records the comm of a pid seen for the first time.
  void NotePid(uint32_t pid);
  // reader or writer thread: answers `unique` with -EIO on /dev/fuse because
  // its frame could not be forwarded; records the synthesized reply.
  void ReplyError(uint64_t unique, int err);
  // any pump thread
  void Record(FrameHeader hdr, const uint8_t* data);
  // any pump thread: wait for `events` on fd or for Stop(); false when stopping.
  bool WaitFor(int fd, short events, bool pausable = false);
  // reader thread: blocks while the server has not taken the previous request.
  bool GateOnSocket();
  void EndReader(const std::string& why);
  void EndWriter(const std::string& why);

  PumpOptions opts_;
  std::function<void()> wake_;
  FrameQueue queue_;
  int stop_fd_ = -1;  // eventfd: readable once Stop() was called
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> init_unique_{~0ull};
  std::thread reader_, writer_, notify_, ring_thread_;
  int pause_fd_ = -1;  // eventfd: readable once the reader must stop reading /dev/fuse (takeover)
  std::atomic<bool> pause_{false};
  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  bool reader_done_ = false;  // under pause_mu_
  std::mutex ring_mu_;        // one consumer at a time: the ring thread or Drain()
  struct ft_ring_hdr* ring_ = nullptr;
  uint8_t* ring_data_ = nullptr;
  size_t ring_map_bytes_ = 0;
  uint64_t ring_dropped_seen_ = 0, ring_dropped_bytes_seen_ = 0;
  uint64_t ring_lost_seen_ = 0;  // lost-list slots moved to the queue (ring.h)
  // ring thread / Drain(), under ring_mu_: moves the ring's lost list (--lossy) into the queue.
  void ConsumeLost();
  std::atomic<uint64_t> relay_waits_{0}, relay_wait_ns_{0};  // reader thread: backpressure on the relay
  std::unordered_map<uint64_t, uint64_t> ring_patches_;  // ring position of a notification -> its seq
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
  std::unordered_set<uint64_t> recent_reqs_;  // uniques of the latest requests recorded
  std::deque<uint64_t> recent_order_;
  // ring thread / Drain(), under ring_mu_: records hdr (its seq taken now) and what waited for it.
  void EmitRingFrame(FrameHeader hdr, const uint8_t* data);
  bool started_ = false, stopped_ = false, leaked_ = false;

  std::mutex status_mu_;
  PumpStatus status_;

  std::unordered_set<uint32_t> pids_;  // reader thread only

  struct PendingNotify {
    uint64_t seq;
    std::vector<uint8_t> data;
  };
  std::mutex notify_mu_;
  std::condition_variable notify_cv_;
  std::deque<PendingNotify> notify_q_;
  std::atomic<bool> notify_in_write_{false};
  std::atomic<bool> ring_ready_{false};
};

}  // namespace fusetrace
