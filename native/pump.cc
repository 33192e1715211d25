#include "pump.h"

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
#include <time.h>
#include <unistd.h>

#include <chrono>

namespace fusetrace {

namespace {

// fuse_kernel.h: struct fuse_in_header is 40 bytes, struct fuse_out_header 16.
constexpr size_t kInHeader = 40;
constexpr size_t kOutHeader = 16;
constexpr uint32_t kOpInit = 26;           // FUSE_INIT
constexpr uint32_t kOpForget = 2;          // FUSE_FORGET: no reply
constexpr uint32_t kOpBatchForget = 42;    // FUSE_BATCH_FORGET: no reply
constexpr uint32_t kInitExt = 1u << 30;    // FUSE_INIT_EXT: flags2 is valid
constexpr uint32_t kMaxPages = 1u << 22;   // FUSE_MAX_PAGES: max_pages is valid

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

uint32_t Get32(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return v; }
uint64_t Get64(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return v; }
uint16_t Get16(const uint8_t* p) { uint16_t v; memcpy(&v, p, 2); return v; }
void Put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
void Put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }

std::string ErrnoText(const char* what, int err) {
  return std::string("error: ") + what + ": " + strerror(err);
}

}  // namespace

Pump::Pump(const PumpOptions& opts, std::function<void()> wake)
    : opts_(opts), wake_(std::move(wake)), queue_(opts.queue_bytes, opts.queue_frames, opts.snaplen) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Pump::~Pump() {
  Stop();
  if (stop_fd_ >= 0 && !leaked_) close(stop_fd_);
}

void Pump::Start() {
  // Non-blocking fds: every wait goes through poll() with stop_fd_, so Stop()
  // can end a thread that would otherwise sleep in read() forever. O_NONBLOCK
  // does not change how the kernel treats writes to /dev/fuse.
  fcntl(opts_.dev_fd, F_SETFL, fcntl(opts_.dev_fd, F_GETFL) | O_NONBLOCK);
  // The socket stays blocking: the writer sleeps in recv() (Stop() wakes it with shutdown), the
  // reader's send() passes MSG_DONTWAIT and waits in poll() with stop_fd_.
  fcntl(opts_.sock_fd, F_SETFL, fcntl(opts_.sock_fd, F_GETFL) & ~O_NONBLOCK);
  started_ = true;
  reader_ = std::thread(&Pump::ReaderLoop, this);
  writer_ = std::thread(&Pump::WriterLoop, this);
  notify_ = std::thread(&Pump::NotifyLoop, this);
}

void Pump::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  uint64_t one = 1;
  if (stop_fd_ >= 0) (void)!write(stop_fd_, &one, sizeof one);
  // Wakes the writer thread blocked in recv() (unix_shutdown wakes the socket's waiters; a
  // blocked recv then returns 0 because of RCV_SHUTDOWN).
  if (started_ && opts_.sock_fd >= 0) shutdown(opts_.sock_fd, SHUT_RD);
  { std::lock_guard<std::mutex> lock(notify_mu_); }
  notify_cv_.notify_all();
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
  bool leak_dev = false;
  if (notify_.joinable()) {
    // A notify write that the kernel keeps blocked cannot be interrupted; give
    // it a moment, then leave the thread (and its /dev/fuse fd) behind rather
    // than hang the session end.
    for (int i = 0; i < 200 && notify_in_write_; i++) usleep(10000);
    if (notify_in_write_) { notify_.detach(); leak_dev = true; leaked_ = true; }
    else notify_.join();
  }
  if (opts_.sock_fd >= 0) close(opts_.sock_fd);
  if (opts_.dev_fd >= 0 && !leak_dev) close(opts_.dev_fd);
  opts_.sock_fd = opts_.dev_fd = -1;
}

PumpStatus Pump::Status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

void Pump::Record(FrameHeader hdr, const uint8_t* data) {
  if (queue_.Push(hdr, data) && wake_) wake_();
}

bool Pump::WaitFor(int fd, short events) {
  struct pollfd fds[2] = {{fd, events, 0}, {stop_fd_, POLLIN, 0}};
  for (;;) {
    if (stopping_) return false;
    int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (fds[1].revents) return false;
    return true;
  }
}

bool Pump::GateOnSocket() {
  // SIOCOUTQ on an AF_UNIX socket is sk_wmem_alloc: bytes sent and not yet
  // consumed by the peer. There is no wake-up for "peer consumed", so spin
  // briefly, then sleep in short steps.
  for (unsigned i = 0;; i++) {
    int outq = 0;
    if (ioctl(opts_.sock_fd, SIOCOUTQ, &outq) != 0 || outq <= 0) return true;
    if (stopping_) return false;
    if (i == 0) { std::lock_guard<std::mutex> lock(status_mu_); status_.gate_waits++; }
    if (i < 8) { sched_yield(); continue; }
    struct pollfd pfd = {stop_fd_, POLLIN, 0};
    struct timespec ts = {0, i < 1000 ? 20000 : 1000000};
    if (ppoll(&pfd, 1, &ts, nullptr) > 0) return false;
  }
}

void Pump::EndReader(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (status_.reader_end.empty()) status_.reader_end = why;
  }
  if (queue_.MarkChanged() && wake_) wake_();
}

void Pump::EndWriter(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (status_.writer_end.empty()) status_.writer_end = why;
  }
  if (queue_.MarkChanged() && wake_) wake_();
}

void Pump::MaskInitRequest(uint8_t* buf, size_t n) {
  // struct fuse_init_in: major, minor, max_readahead, flags, flags2 (7.36, valid with FUSE_INIT_EXT).
  if (n < kInHeader + 16) return;
  uint8_t* in = buf + kInHeader;
  uint32_t flags = Get32(in + 12);
  bool ext = n >= kInHeader + 20 && (flags & kInitExt);
  uint32_t flags2 = ext ? Get32(in + 16) : 0;
  uint64_t all = uint64_t(flags) | (uint64_t(flags2) << 32);
  uint64_t fwd = all & ~opts_.init_mask;
  Put32(in + 12, uint32_t(fwd));
  if (ext) Put32(in + 16, uint32_t(fwd >> 32));
  std::lock_guard<std::mutex> lock(status_mu_);
  InitInfo& ii = status_.init;
  ii.request_seen = true;
  ii.unique = Get64(buf + 8);
  ii.kernel_major = Get32(in);
  ii.kernel_minor = Get32(in + 4);
  ii.kernel_flags = all;
  ii.kernel_flags_fwd = ext ? fwd : (fwd & 0xffffffffull);
}

void Pump::ClampInitReply(uint8_t* buf, size_t n) {
  // struct fuse_init_out: major 0, minor 4, max_readahead 8, flags 12,
  // max_background 16, congestion_threshold 18, max_write 20, time_gran 24,
  // max_pages 28 (valid with FUSE_MAX_PAGES), map_alignment 30, flags2 32.
  std::lock_guard<std::mutex> lock(status_mu_);
  InitInfo& ii = status_.init;
  ii.reply_seen = true;
  ii.reply_error = int32_t(Get32(buf + 4));
  if (ii.reply_error != 0 || n < kOutHeader + 8) return;
  uint8_t* out = buf + kOutHeader;
  ii.server_major = Get32(out);
  ii.server_minor = Get32(out + 4);
  if (n < kOutHeader + 24) return;
  uint32_t flags = Get32(out + 12);
  uint32_t flags2 = n >= kOutHeader + 36 && (flags & kInitExt) ? Get32(out + 32) : 0;
  ii.server_flags = uint64_t(flags) | (uint64_t(flags2) << 32);
  ii.max_write = ii.max_write_fwd = Get32(out + 20);
  if (opts_.max_write_limit && ii.max_write > opts_.max_write_limit) {
    ii.max_write_fwd = opts_.max_write_limit;
    Put32(out + 20, ii.max_write_fwd);
  }
  if (n >= kOutHeader + 30 && (flags & kMaxPages)) {
    ii.has_max_pages = true;
    ii.max_pages = ii.max_pages_fwd = Get16(out + 28);
    if (opts_.max_pages_limit && ii.max_pages > opts_.max_pages_limit) {
      ii.max_pages_fwd = opts_.max_pages_limit;
      Put16(out + 28, uint16_t(ii.max_pages_fwd));
    }
  }
}

void Pump::NotePid(uint32_t pid) {
  if (pid == 0 || !pids_.insert(pid).second) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/%u/comm", pid);
  std::string comm;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[64];
    ssize_t r = read(fd, buf, sizeof buf);
    close(fd);
    if (r > 0) comm.assign(buf, (r > 0 && buf[r - 1] == '\n') ? r - 1 : r);
  }
  queue_.PushProc(pid, std::move(comm));
}

void Pump::ReplyError(uint64_t unique, int err) {
  uint8_t out[kOutHeader];
  Put32(out, kOutHeader);
  int32_t e = -err;
  memcpy(out + 4, &e, 4);
  memcpy(out + 8, &unique, 8);
  FrameHeader h{};
  h.seq = queue_.TakeSeq();
  h.ts_ns = NowNs();
  h.dir = 1;
  h.unique = unique;
  h.len = kOutHeader;
  h.code = e;
  ssize_t w = write(opts_.dev_fd, out, sizeof out);
  h.write_errno = w < 0 ? errno : 0;
  h.fwd_ns = NowNs();
  Record(h, out);
}

void Pump::ReaderLoop() {
  pthread_setname_np(pthread_self(), "ft-reader");  // per-thread CPU in top -H, /proc/PID/task
  std::vector<uint8_t> buf(opts_.max_frame);
  for (;;) {
    // Wait for a pending request first (poll returns at once when one is queued), then open the
    // gate, then read: poll, ioctl, read, send per request. Trying the read first cost a failed
    // read() per request whenever the pump keeps up (find+stat: 5 syscalls per request, one of
    // them an EAGAIN), and the gate must only wait once a request is pending anyway, so an idle
    // pump sleeps in poll() instead of spinning on SIOCOUTQ.
    if (!WaitFor(opts_.dev_fd, POLLIN)) return EndReader("stopped");
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
    FrameHeader h{};
    h.ts_ns = ts;
    h.dir = 0;
    h.len = uint32_t(n);
    uint32_t opcode = 0, pid = 0;
    if (size_t(n) >= kInHeader) {
      opcode = Get32(buf.data() + 4);
      h.unique = Get64(buf.data() + 8);
      pid = Get32(buf.data() + 32);
      h.code = int32_t(opcode);
      if (opcode == kOpInit) {
        MaskInitRequest(buf.data(), size_t(n));
        init_unique_ = h.unique;
      }
    }
    h.seq = queue_.TakeSeq();
    // Forward. A full socket (max_dgram_qlen or sndbuf) makes send() EAGAIN: wait.
    ssize_t s;
    for (;;) {
      s = send(opts_.sock_fd, buf.data(), size_t(n), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (s < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (errno == EAGAIN && !WaitFor(opts_.sock_fd, POLLOUT)) break;
        continue;
      }
      break;
    }
    int serr = s < 0 ? errno : 0;
    h.write_errno = serr;
    h.fwd_ns = s < 0 ? 0 : NowNs();
    Record(h, buf.data());
    if (s < 0) {
      if (stopping_) return EndReader("stopped");
      if (serr == EMSGSIZE) {
        // The socket cannot carry this frame (INIT clamping should prevent it):
        // fail the request instead of leaving the requester waiting forever.
        { std::lock_guard<std::mutex> lock(status_mu_); status_.emsgsize++; }
        if (opcode != kOpForget && opcode != kOpBatchForget) ReplyError(h.unique, EIO);
        continue;
      }
      // EPIPE/ECONNRESET: the server closed its end (exited or crashed).
      return EndReader(serr == EPIPE || serr == ECONNRESET || serr == ECONNREFUSED ? "server-gone"
                                                                                  : ErrnoText("send", serr));
    }
    NotePid(pid);
  }
}

void Pump::WriterLoop() {
  pthread_setname_np(pthread_self(), "ft-writer");
  std::vector<uint8_t> buf(opts_.max_frame);
  // Bytes still owed by a reply whose first piece arrived short: the next messages are its
  // continuation pieces (their first bytes are data, not a header), not frames of their own.
  size_t split_remaining = 0;
  for (;;) {
    // MSG_TRUNC: a SEQPACKET recv returns the real message length even when it
    // did not fit, so an oversized message is detected rather than cut silently.
    // Blocking: with nothing queued the thread sleeps in recv() itself (one syscall per reply
    // instead of recv, poll, recv); Stop() wakes it with shutdown(SHUT_RD), after which a unix
    // recv returns 0 (net/core/datagram.c __skb_wait_for_more_packets: RCV_SHUTDOWN).
    ssize_t n = stopping_ ? 0 : recv(opts_.sock_fd, buf.data(), buf.size(), MSG_TRUNC);
    uint64_t ts = NowNs();
    if (n < 0) {
      int err = errno;
      if (err == EINTR || err == EAGAIN) continue;
      return EndWriter(err == ECONNRESET ? "eof" : ErrnoText("recv", err));
    }
    if (n == 0) return EndWriter(stopping_ ? "stopped" : "eof");
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
    if (split_remaining > 0) {
      h.seq = queue_.TakeSeq();
      h.flags = FRAME_FLAG_PARTIAL;
      h.len = uint32_t(got);
      h.write_errno = EBADMSG;
      h.unique = 0;
      h.code = 0;
      split_remaining = got >= split_remaining ? 0 : split_remaining - got;
      { std::lock_guard<std::mutex> lock(status_mu_); status_.partial++; }
      Record(h, buf.data());
      continue;
    }
    if (got < kOutHeader || size_t(n) != got || hlen != uint32_t(n)) {
      // A split or truncated message (fs/fuse/dev.c would answer EINVAL and
      // the request would hang). Record it, never forward it.
      h.seq = queue_.TakeSeq();
      h.flags = FRAME_FLAG_PARTIAL;
      h.len = uint32_t(got);
      h.write_errno = EBADMSG;
      { std::lock_guard<std::mutex> lock(status_mu_); status_.partial++; }
      Record(h, buf.data());
      // Only the first piece of a split reply carries a header whose length is
      // larger than the piece; answer that unique so its requester is released.
      if (got >= kOutHeader && hlen > got && size_t(n) == got) {
        split_remaining = hlen - got;
        if (h.unique != 0) ReplyError(h.unique, EIO);
      }
      continue;
    }
    if (h.unique == 0) {
      // A notification (fuse_out_header.error is the notify code): its own
      // thread, because the kernel may block this write.
      h.seq = queue_.TakeSeq();
      Record(h, buf.data());  // fwd_ns and write_errno follow as a patch
      PendingNotify pn{h.seq, std::vector<uint8_t>(buf.data(), buf.data() + got)};
      { std::lock_guard<std::mutex> lock(notify_mu_); notify_q_.push_back(std::move(pn)); }
      notify_cv_.notify_one();
      continue;
    }
    if (h.unique == init_unique_.load()) ClampInitReply(buf.data(), got);
    h.seq = queue_.TakeSeq();
    ssize_t w;
    do { w = write(opts_.dev_fd, buf.data(), got); } while (w < 0 && errno == EINTR);
    h.write_errno = w < 0 ? errno : 0;
    h.fwd_ns = NowNs();
    Record(h, buf.data());
  }
}

void Pump::NotifyLoop() {
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
    { std::lock_guard<std::mutex> lock(status_mu_); status_.notify_blocked_ns += fwd - t0; }
    queue_.PushPatch(pn.seq, fwd, werr);
  }
}

}  // namespace fusetrace
