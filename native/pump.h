// The FUSE pump: moves frames between a mounted /dev/fuse fd and the proxy end
// of an AF_UNIX SOCK_SEQPACKET socketpair whose other end the FUSE server holds
// as /dev/fd/N, and records every frame into a FrameQueue for JavaScript.
//
// Files: pump.h/.cc (this facade: owns the parts, starts and stops them in
// order), frame_sink.h (what both transports feed: the FrameQueue, the status,
// the INIT exchange), relay.h (the relay transport's threads and the takeover
// answer), ring_consumer.h (the in-process transport's consumer), wire.h (the
// header fields read on the hot path).
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
// - Stop() ends all loops without signals (Relay::RequestStop). /dev/fuse is O_NONBLOCK and the reader
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

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "frame_sink.h"
#include "relay.h"
#include "ring_consumer.h"

namespace fusetrace {

class Pump {
 public:
  // JS thread. `wake` is called from pump threads (coalesced) when JS should drain.
  Pump(const PumpOptions& opts, std::function<void()> wake);
  // JS thread. Joins the threads if Stop() was not called.
  ~Pump();

  // JS thread. Starts the relay's reader, writer and notify threads.
  void Start();
  // JS thread. Ends all threads, closes the socket and /dev/fuse fds (closing
  // the last /dev/fuse fd aborts a still-mounted connection: fuse_dev_release).
  void Stop();
  // JS thread.
  void Drain(Region* region, size_t* size, size_t* count, uint64_t* watermark,
             std::vector<std::pair<uint32_t, std::string>>* procs, QueueCounters* counters,
             std::vector<uint64_t>* lost) {
    if (ring_.Ready()) ring_.ConsumeNow();
    sink_.queue().Drain(region, size, count, watermark, procs, counters, lost);
  }
  // JS thread: hands back a region Drain() gave out (see FrameQueue::Recycle).
  void Recycle(Region r) { sink_.queue().Recycle(r); }
  // JS thread: a region for a sorted copy of a drain (see FrameQueue::TakeSpare).
  Region TakeSpare(size_t need) { return sink_.queue().TakeSpare(need); }
  // JS thread.
  PumpStatus Status() {
    PumpStatus s = sink_.Status();
    if (ring_.Ready()) ring_.AddBackpressure(&s);
    return s;
  }
  // JS thread: true when Stop() had to leave a notify thread blocked in write();
  // that thread still uses this object, so its owner must never delete it.
  bool Leaked() const { return leaked_; }

 private:
  PumpOptions opts_;
  // Declared in this order: the relay (threads) goes first at destruction, the sink last.
  FrameSink sink_;
  RingConsumer ring_;
  Relay relay_;
  bool started_ = false, stopped_ = false, leaked_ = false;
};

}  // namespace fusetrace
