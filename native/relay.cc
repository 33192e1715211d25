#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"

namespace fusetrace {

using namespace wire;

Relay::Relay(const PumpOptions& opts, FrameSink& sink, RingConsumer* ring) : opts_(opts), sink_(sink), ring_(ring) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  pause_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Relay::~Relay() {
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
  if (notify_.joinable() && !leaked_) notify_.join();
  if (stop_fd_ >= 0 && !leaked_) close(stop_fd_);
  if (pause_fd_ >= 0 && !leaked_) close(pause_fd_);
}

void Relay::Start() {
  // Non-blocking fds: every wait goes through poll() with stop_fd_, so RequestStop() can end a
  // thread that would otherwise sleep in read() forever. O_NONBLOCK does not change how the
  // kernel treats writes to /dev/fuse.
  fcntl(opts_.dev_fd, F_SETFL, fcntl(opts_.dev_fd, F_GETFL) | O_NONBLOCK);
  // The socket stays blocking: the writer sleeps in recv() (RequestStop() wakes it with
  // shutdown), the reader's send() passes MSG_DONTWAIT and waits in poll() with stop_fd_.
  fcntl(opts_.sock_fd, F_SETFL, fcntl(opts_.sock_fd, F_GETFL) & ~O_NONBLOCK);
  started_ = true;
  reader_ = std::thread(&Relay::ReaderLoop, this);
  writer_ = std::thread(&Relay::WriterLoop, this);
  notify_ = std::thread(&Relay::NotifyLoop, this);
}

void Relay::RequestStop() {
  stopping_ = true;
  uint64_t one = 1;
  if (stop_fd_ >= 0) (void)!write(stop_fd_, &one, sizeof one);
  // Wakes the writer thread blocked in recv() (unix_shutdown wakes the socket's waiters; a
  // blocked recv then returns 0 because of RCV_SHUTDOWN).
  if (started_ && opts_.sock_fd >= 0) shutdown(opts_.sock_fd, SHUT_RD);
  { std::lock_guard<std::mutex> lock(notify_mu_); }
  notify_cv_.notify_all();
}

void Relay::JoinLoops() {
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
}

bool Relay::JoinNotify() {
  if (!notify_.joinable()) return true;
  // A notify write that the kernel keeps blocked cannot be interrupted; give it a moment, then
  // leave the thread (and its /dev/fuse fd) behind rather than hang the session end.
  for (int i = 0; i < 200 && notify_in_write_; i++) usleep(10000);
  if (notify_in_write_) {
    notify_.detach();
    leaked_ = true;
    return false;
  }
  notify_.join();
  return true;
}

bool Relay::WaitFor(int fd, short events, bool pausable) {
  struct pollfd fds[3] = {{fd, events, 0}, {stop_fd_, POLLIN, 0}, {pause_fd_, POLLIN, 0}};
  for (;;) {
    if (stopping_) return false;
    if (pausable && pause_) return true;
    int r = poll(fds, pausable ? 3 : 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (fds[1].revents) return false;
    return true;
  }
}

bool Relay::GateOnSocket() {
  // SIOCOUTQ on an AF_UNIX socket is sk_wmem_alloc: bytes sent and not yet
  // consumed by the peer. There is no wake-up for "peer consumed", so spin
  // briefly, then sleep in short steps.
  for (unsigned i = 0;; i++) {
    int outq = 0;
    if (ioctl(opts_.sock_fd, SIOCOUTQ, &outq) != 0 || outq <= 0) return true;
    if (stopping_) return false;
    if (i == 0) sink_.WithStatus([](PumpStatus& s) { s.gate_waits++; });
    if (i < 8) { sched_yield(); continue; }
    struct pollfd pfd = {stop_fd_, POLLIN, 0};
    struct timespec ts = {0, i < 1000 ? 20000 : 1000000};
    if (ppoll(&pfd, 1, &ts, nullptr) > 0) return false;
  }
}

void Relay::EndReader(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(pause_mu_);
    reader_done_ = true;
    pause_cv_.notify_all();
  }
  sink_.EndReader(why);
}

void Relay::ReplyError(uint64_t unique, int err) {
  uint8_t out[kOutHeader];
  Put32(out, kOutHeader);
  int32_t e = -err;
  memcpy(out + 4, &e, 4);
  memcpy(out + 8, &unique, 8);
  FrameHeader h{};
  h.seq = sink_.queue().TakeSeq();
  h.ts_ns = NowNs();
  h.dir = 1;
  h.unique = unique;
  h.len = kOutHeader;
  h.code = e;
  ssize_t w = write(opts_.dev_fd, out, sizeof out);
  h.write_errno = w < 0 ? errno : 0;
  h.fwd_ns = NowNs();
  sink_.Record(h, out);
}

void Relay::ReaderLoop() {
  pthread_setname_np(pthread_self(), "ft-reader");  // per-thread CPU in top -H, /proc/PID/task
  std::vector<uint8_t> buf(opts_.max_frame);
  for (;;) {
    // Wait for a pending request first (poll returns at once when one is queued), then open the
    // gate, then read: poll, ioctl, read, send per request. Trying the read first cost a failed
    // read() per request whenever the pump keeps up (find+stat: 5 syscalls per request, one of
    // them an EAGAIN), and the gate must only wait once a request is pending anyway, so an idle
    // pump sleeps in poll() instead of spinning on SIOCOUTQ.
    if (!WaitFor(opts_.dev_fd, POLLIN, true)) return EndReader("stopped");
    if (pause_) {
      // The server took /dev/fuse over (Takeover()): everything read so far is in the socket.
      std::lock_guard<std::mutex> lock(pause_mu_);
      reader_done_ = true;
      pause_cv_.notify_all();
      return;
    }
    if (!opts_.lossy && sink_.queue().HalfFull()) {
      // Backpressure instead of loss: JS (the trace writer) is behind; leave the next request in
      // the kernel until it catches up, as an in-process server waits for room in the ring. The
      // replies of requests already forwarded still fit in the other half.
      uint64_t t0 = NowNs();
      while (sink_.queue().HalfFull() && !stopping_) {
        sink_.WakeForStatus();
        usleep(1000);
      }
      uint64_t waited = NowNs() - t0;
      sink_.WithStatus([&](PumpStatus& st) {
        st.backpressure_waits++;
        st.backpressure_ns += waited;
      });
      if (stopping_) return EndReader("stopped");
    }
    if (opts_.gate) {
      int outq = 0;
      if (ioctl(opts_.sock_fd, SIOCOUTQ, &outq) == 0 && outq > 0 && !GateOnSocket()) return EndReader("stopped");
    }
    ssize_t n = read(opts_.dev_fd, buf.data(), buf.size());
    uint64_t ts = NowNs();
    if (n < 0) {
      int err = errno;
      // EAGAIN: the request poll() saw is gone: its requester was signalled while it was still
      // pending and the kernel dropped it (fs/fuse/dev.c request_wait_answer).
      if (err == EINTR || err == EAGAIN) continue;
      // fs/fuse/dev.c fuse_dev_do_read: -ENODEV once the connection is gone
      // (unmounted or aborted). Tell the server: it reads end-of-file.
      // The end is published before the server can see end-of-file, so JS never mistakes the
      // server's exit after an unmount for the server ending the session.
      EndReader(err == ENODEV ? std::string("unmount") : ErrnoText("read /dev/fuse", err));
      shutdown(opts_.sock_fd, SHUT_WR);
      return;
    }
    if (!ForwardRequest(buf.data(), size_t(n), ts)) return;
  }
}

bool Relay::ForwardRequest(uint8_t* buf, size_t n, uint64_t ts) {
  FrameHeader h{};
  h.ts_ns = ts;
  h.dir = 0;
  h.len = uint32_t(n);
  uint32_t opcode = 0, pid = 0;
  if (n >= kInHeader) {
    opcode = Get32(buf + 4);
    h.unique = Get64(buf + 8);
    pid = Get32(buf + 32);
    h.code = int32_t(opcode);
    if (opcode == kOpInit) {
      sink_.MaskInitRequest(buf, n);
      sink_.init_unique = h.unique;
    }
  }
  h.seq = sink_.queue().TakeSeq();
  // Forward. A full socket (max_dgram_qlen or sndbuf) makes send() EAGAIN: wait.
  ssize_t s;
  for (;;) {
    s = send(opts_.sock_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (s < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (errno == EAGAIN && !WaitFor(opts_.sock_fd, POLLOUT)) break;
      continue;
    }
    break;
  }
  int serr = s < 0 ? errno : 0;
  h.write_errno = serr;
  h.fwd_ns = s < 0 ? 0 : NowNs();
  sink_.Record(h, buf);
  if (s < 0) {
    if (stopping_) return EndReader("stopped"), false;
    if (serr == EMSGSIZE) {
      // The socket cannot carry this frame (INIT clamping should prevent it):
      // fail the request instead of leaving the requester waiting forever.
      sink_.WithStatus([](PumpStatus& st) { st.emsgsize++; });
      if (opcode != kOpForget && opcode != kOpBatchForget) ReplyError(h.unique, EIO);
      return true;
    }
    // EPIPE/ECONNRESET: the server closed its end (exited or crashed).
    EndReader(serr == EPIPE || serr == ECONNRESET || serr == ECONNREFUSED ? "server-gone" : ErrnoText("send", serr));
    return false;
  }
  sink_.NotePid(pid);
  return true;
}

void Relay::WriterLoop() {
  pthread_setname_np(pthread_self(), "ft-writer");
  std::vector<uint8_t> buf(opts_.max_frame);
  for (;;) {
    // MSG_TRUNC: a SEQPACKET recv returns the real message length even when it
    // did not fit, so an oversized message is detected rather than cut silently.
    // Blocking: with nothing queued the thread sleeps in recv() itself (one syscall per reply
    // instead of recv, poll, recv); RequestStop() wakes it with shutdown(SHUT_RD), after which a
    // unix recv returns 0 (net/core/datagram.c __skb_wait_for_more_packets: RCV_SHUTDOWN).
    ssize_t n = stopping_ ? 0 : recv(opts_.sock_fd, buf.data(), buf.size(), MSG_TRUNC);
    uint64_t ts = NowNs();
    if (n < 0) {
      int err = errno;
      if (err == EINTR || err == EAGAIN) continue;
      return sink_.EndWriter(err == ECONNRESET ? "eof" : ErrnoText("recv", err));
    }
    if (n == 0) return sink_.EndWriter(stopping_ ? "stopped" : "eof");
    size_t got = size_t(n) < buf.size() ? size_t(n) : buf.size();
    FrameHeader h{};
    h.ts_ns = ts;
    h.dir = 1;
    h.len = uint32_t(n);
    uint32_t hlen = got >= kOutHeader ? Get32(buf.data()) : 0;
    if (got >= kOutHeader) {
      h.code = int32_t(Get32(buf.data() + 4));
      h.unique = Get64(buf.data() + 8);
    }
    if (split_remaining_ > 0 || got < kOutHeader || size_t(n) != got || hlen != uint32_t(n)) {
      RecordPartial(h, buf.data(), got, size_t(n), hlen);
      continue;
    }
    if (got == 16 && h.code == FT_TAKEOVER_CODE && h.unique == FT_MAGIC) {
      Takeover();
      continue;
    }
    if (h.unique == 0) {
      // A notification (fuse_out_header.error is the notify code): its own
      // thread, because the kernel may block this write.
      h.seq = sink_.queue().TakeSeq();
      sink_.Record(h, buf.data());  // fwd_ns and write_errno follow as a patch
      PendingNotify pn{h.seq, std::vector<uint8_t>(buf.data(), buf.data() + got)};
      { std::lock_guard<std::mutex> lock(notify_mu_); notify_q_.push_back(std::move(pn)); }
      notify_cv_.notify_one();
      continue;
    }
    if (h.unique == sink_.init_unique.load()) sink_.ClampInitReply(buf.data(), got);
    h.seq = sink_.queue().TakeSeq();
    ssize_t w;
    do { w = write(opts_.dev_fd, buf.data(), got); } while (w < 0 && errno == EINTR);
    h.write_errno = w < 0 ? errno : 0;
    h.fwd_ns = NowNs();
    sink_.Record(h, buf.data());
  }
}

void Relay::RecordPartial(FrameHeader h, const uint8_t* buf, size_t got, size_t n, uint32_t hlen) {
  h.seq = sink_.queue().TakeSeq();
  h.flags = FRAME_FLAG_PARTIAL;
  h.len = uint32_t(got);
  h.write_errno = EBADMSG;
  sink_.WithStatus([](PumpStatus& st) { st.partial++; });
  if (split_remaining_ > 0) {
    // A continuation piece of a split reply.
    h.unique = 0;
    h.code = 0;
    split_remaining_ = got >= split_remaining_ ? 0 : split_remaining_ - got;
    sink_.Record(h, buf);
    return;
  }
  // A split or truncated message (fs/fuse/dev.c would answer EINVAL and the request would hang).
  // Record it, never forward it.
  sink_.Record(h, buf);
  // Only the first piece of a split reply carries a header whose length is larger than the
  // piece; answer that unique so its requester is released.
  if (got >= kOutHeader && hlen > got && n == got) {
    split_remaining_ = hlen - got;
    if (h.unique != 0) ReplyError(h.unique, EIO);
  }
}

void Relay::NotifyLoop() {
  pthread_setname_np(pthread_self(), "ft-notify");
  for (;;) {
    PendingNotify pn;
    {
      std::unique_lock<std::mutex> lock(notify_mu_);
      notify_cv_.wait(lock, [&] { return stopping_ || !notify_q_.empty(); });
      if (notify_q_.empty()) return;
      pn = std::move(notify_q_.front());
      notify_q_.pop_front();
      notify_in_write_ = true;
    }
    uint64_t t0 = NowNs();
    ssize_t w;
    do { w = write(opts_.dev_fd, pn.data.data(), pn.data.size()); } while (w < 0 && errno == EINTR);
    int32_t werr = w < 0 ? errno : 0;
    uint64_t fwd = NowNs();
    notify_in_write_ = false;
    sink_.WithStatus([&](PumpStatus& st) { st.notify_blocked_ns += fwd - t0; });
    sink_.queue().PushPatch(pn.seq, fwd, werr);
  }
}

bool Relay::PauseReader() {
  // Stop the reader at the top of its loop: whatever it read is then queued in the socket,
  // ahead of the answer, and the server reads it from there first.
  pause_ = true;
  uint64_t one = 1;
  (void)!write(pause_fd_, &one, sizeof one);
  std::unique_lock<std::mutex> lock(pause_mu_);
  pause_cv_.wait(lock, [&] { return reader_done_; });
  bool ok = false;
  sink_.WithStatus([&](PumpStatus& st) { ok = st.reader_end.empty(); });  // else it ended (unmount): no takeover
  return ok;
}

void Relay::Takeover() {
  // The takeover request comes from the server's first read of the socket. The pump must have
  // read FUSE_INIT first (queued at mount time), so that INIT keeps its masking and is recorded
  // as forwarded; give the reader a moment for that, else stay a relay.
  bool ok = opts_.inprocess && ring_ != nullptr && !ring_->Created();
  for (int i = 0; ok; i++) {
    if (sink_.InitRequestSeen()) break;
    if (i >= 2000 || stopping_) ok = false;
    else usleep(1000);
  }
  int ring_fd = ok ? ring_->Create() : -1;
  ok = ok && ring_fd >= 0 && PauseReader();
  // The server reads this fd from now on: it must block like the fd it would have been given.
  if (ok) fcntl(opts_.dev_fd, F_SETFL, fcntl(opts_.dev_fd, F_GETFL) & ~O_NONBLOCK);
  ssize_t s = SendTakeoverAnswer(ok ? ring_fd : -1);
  if (ring_fd >= 0) close(ring_fd);
  if (!ok || s < 0) return;
  sink_.WithStatus([](PumpStatus& st) { st.transport = "in-process"; });
  ring_->Start();
  sink_.WakeForStatus();
}

ssize_t Relay::SendTakeoverAnswer(int ring_fd) {
  uint8_t ack[FT_ACK_LEN] = {};
  Put32(ack, FT_ACK_LEN);
  Put32(ack + 4, FT_ACK_OPCODE);
  uint64_t magic = FT_MAGIC;
  memcpy(ack + 8, &magic, 8);
  Put32(ack + 40, ring_fd >= 0 ? FT_ACK_ACCEPTED : 1u);
  struct iovec iov = {ack, sizeof ack};
  struct msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * 2)];
  } ctl;
  if (ring_fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    m.msg_control = ctl.space;
    m.msg_controllen = sizeof ctl.space;
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * 2);
    int fds[2] = {opts_.dev_fd, ring_fd};
    memcpy(CMSG_DATA(c), fds, sizeof fds);
  }
  ssize_t s;
  do { s = sendmsg(opts_.sock_fd, &m, MSG_NOSIGNAL); } while (s < 0 && errno == EINTR);
  return s;
}

}  // namespace fusetrace
