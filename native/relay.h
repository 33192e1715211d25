// The relay transport: three threads move frames between the mounted /dev/fuse fd and the proxy
// end of the SOCK_SEQPACKET socketpair whose other end the server holds as /dev/fd/N, recording
// each into the FrameSink. Works with any server. It also answers a server's takeover request
// (ring.h) by handing it /dev/fuse and a ring, after which the RingConsumer records and the
// relay's reader stops. Design and measurements: pump.h.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "frame_sink.h"
#include "ring_consumer.h"

namespace fusetrace {

class Relay {
 public:
  // JS thread. `ring` is the consumer a takeover starts (opts.inprocess), or null.
  Relay(const PumpOptions& opts, FrameSink& sink, RingConsumer* ring);
  // JS thread, after JoinNotify(): closes the eventfds unless a notify thread was left behind.
  ~Relay();

  // JS thread. Starts the reader, writer and notify threads.
  void Start();
  // JS thread: ends every loop without signals (eventfd, shutdown(SHUT_RD), condition variable).
  void RequestStop();
  // JS thread: joins the reader and writer (after them no takeover can start the ring).
  void JoinLoops();
  // JS thread: joins the notify thread; false when a notify write stayed blocked in the kernel
  // and the thread was left behind (it still uses this object and /dev/fuse).
  bool JoinNotify();

 private:
  void ReaderLoop();   // reader thread
  void WriterLoop();   // writer thread
  void NotifyLoop();   // notify thread
  // Reader thread: forwards one request to the server; false when the reader must end.
  bool ForwardRequest(uint8_t* buf, size_t n, uint64_t ts);
  // Writer thread: a message that is not a whole reply (split, truncated, or a split's
  // continuation): recorded as partial, never forwarded.
  void RecordPartial(FrameHeader h, const uint8_t* buf, size_t got, size_t n, uint32_t hlen);
  // Writer thread: answers a server's takeover request (ring.h); starts the ring consumer.
  void Takeover();
  // Writer thread: the takeover answer, with /dev/fuse and the ring's memfd when `ring_fd` >= 0.
  ssize_t SendTakeoverAnswer(int ring_fd);
  // Writer thread: stops the reader at the top of its loop; false if it ended for another reason.
  bool PauseReader();
  // Reader or writer thread: answers `unique` with -err on /dev/fuse because its frame could not
  // be forwarded; records the synthesized reply.
  void ReplyError(uint64_t unique, int err);
  // Any relay thread: wait for `events` on fd or for RequestStop(); false when stopping.
  bool WaitFor(int fd, short events, bool pausable = false);
  // Reader thread: blocks while the server has not taken the previous request.
  bool GateOnSocket();
  // Reader thread: publishes why it ended, and releases a takeover waiting for it.
  void EndReader(const std::string& why);

  PumpOptions opts_;
  FrameSink& sink_;
  RingConsumer* ring_;
  int stop_fd_ = -1;  // eventfd: readable once RequestStop() was called
  std::atomic<bool> stopping_{false};
  std::thread reader_, writer_, notify_;
  int pause_fd_ = -1;  // eventfd: readable once the reader must stop reading /dev/fuse (takeover)
  std::atomic<bool> pause_{false};
  std::mutex pause_mu_;
  std::condition_variable pause_cv_;
  bool reader_done_ = false;  // under pause_mu_
  bool started_ = false, leaked_ = false;
  // Writer thread: bytes still owed by a reply whose first piece arrived short: the next messages
  // are its continuation pieces (their first bytes are data, not a header), not frames of their own.
  size_t split_remaining_ = 0;

  struct PendingNotify {
    uint64_t seq;
    std::vector<uint8_t> data;
  };
  std::mutex notify_mu_;
  std::condition_variable notify_cv_;
  std::deque<PendingNotify> notify_q_;
  std::atomic<bool> notify_in_write_{false};
};

}  // namespace fusetrace
