#include "pump.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
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
constexpr uint32_t kOpInterrupt = 36;      // FUSE_INTERRUPT: fuse_interrupt_in.unique names its target
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
  pause_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Pump::~Pump() {
  Stop();
  if (stop_fd_ >= 0 && !leaked_) close(stop_fd_);
  if (pause_fd_ >= 0 && !leaked_) close(pause_fd_);
  if (ring_ && !leaked_) munmap(ring_, ring_map_bytes_);
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
  if (ring_ != nullptr) syscall(SYS_futex, &ring_->sleeping, FUTEX_WAKE, 1, nullptr, nullptr, 0);
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
  if (ring_thread_.joinable()) ring_thread_.join();
  if (ring_ != nullptr) {
    ConsumeRing(true);
    // Reserved and never published: a server thread died in the middle of a record.
    uint64_t left = __atomic_load_n(&ring_->head, __ATOMIC_ACQUIRE) - ring_->tail;
    if (left > 0) {
      std::lock_guard<std::mutex> lock(status_mu_);
      status_.ring_lost = left;
    }
  }
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
  PumpStatus s = status_;
  s.backpressure_waits = relay_waits_.load();
  s.backpressure_ns = relay_wait_ns_.load();
  if (ring_ready_.load(std::memory_order_acquire)) {
    s.backpressure_waits += __atomic_load_n(&ring_->waits, __ATOMIC_RELAXED);
    s.backpressure_ns += __atomic_load_n(&ring_->wait_ns, __ATOMIC_RELAXED);
  }
  return s;
}

void Pump::Record(FrameHeader hdr, const uint8_t* data) {
  if (queue_.Push(hdr, data) && wake_) wake_();
}

bool Pump::WaitFor(int fd, short events, bool pausable) {
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
    std::lock_guard<std::mutex> lock(pause_mu_);
    reader_done_ = true;
    pause_cv_.notify_all();
  }
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

void Pump::ClampInitReply(uint8_t* buf, size_t n, bool clamp) {
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
  if (clamp && opts_.max_write_limit && ii.max_write > opts_.max_write_limit) {
    ii.max_write_fwd = opts_.max_write_limit;
    Put32(out + 20, ii.max_write_fwd);
  }
  if (n >= kOutHeader + 30 && (flags & kMaxPages)) {
    ii.has_max_pages = true;
    ii.max_pages = ii.max_pages_fwd = Get16(out + 28);
    if (clamp && opts_.max_pages_limit && ii.max_pages > opts_.max_pages_limit) {
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
    if (!WaitFor(opts_.dev_fd, POLLIN, true)) return EndReader("stopped");
    if (pause_) {
      // The server took /dev/fuse over (Takeover()): everything read so far is in the socket.
      std::lock_guard<std::mutex> lock(pause_mu_);
      reader_done_ = true;
      pause_cv_.notify_all();
      return;
    }
    if (!opts_.lossy && queue_.HalfFull()) {
      // Backpressure instead of loss: JS (the trace writer) is behind; leave the next request in
      // the kernel until it catches up, as an in-process server waits for room in the ring. The
      // replies of requests already forwarded still fit in the other half.
      uint64_t t0 = NowNs();
      while (queue_.HalfFull() && !stopping_) {
        if (queue_.MarkChanged() && wake_) wake_();
        usleep(1000);
      }
      relay_waits_++;
      relay_wait_ns_ += NowNs() - t0;
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
    if (got == 16 && h.code == FT_TAKEOVER_CODE && h.unique == FT_MAGIC) {
      Takeover();
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

int Pump::CreateRing() {
  size_t size = opts_.ring_bytes;
  // A power of two that holds the largest frame twice (a record may have to skip to the start).
  size_t want = 2 * (opts_.max_frame + sizeof(ft_ring_rec) + 4096);
  if (size < want) size = want;
  size_t p2 = 1;
  while (p2 < size) p2 <<= 1;
  size = p2;
  int fd = memfd_create("fusetrace-ring", MFD_CLOEXEC);
  if (fd < 0) return -1;
  // --lossy: room for the uniques of dropped frames after the data area (sparse: a memfd's
  // pages exist only once written).
  size_t lost_cap = opts_.lossy ? kMaxLostUniques : 0;
  size_t total = FT_RING_HDR_BYTES + size + lost_cap * sizeof(uint64_t);
  void* map = MAP_FAILED;
  if (ftruncate(fd, off_t(total)) == 0) map = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    close(fd);
    return -1;
  }
  auto* h = static_cast<ft_ring_hdr*>(map);
  h->magic = FT_RING_MAGIC;
  h->version = FT_RING_VERSION;
  h->size = size;
  h->snaplen = opts_.snaplen;
  h->flags = opts_.lossy ? FT_RING_LOSSY : 0;
  h->lost_cap = lost_cap;
  uint64_t key = uint64_t(NowNs()) * 0x9e3779b97f4a7c15ull;
  if (getrandom(&key, sizeof key, GRND_NONBLOCK) != sizeof key) key ^= uint64_t(getpid()) << 32;
  h->key = key;
  ring_ = h;
  ring_data_ = static_cast<uint8_t*>(map) + FT_RING_HDR_BYTES;
  ring_map_bytes_ = total;
  return fd;
}

void Pump::Takeover() {
  // The takeover request comes from the server's first read of the socket. The pump must have
  // read FUSE_INIT first (queued at mount time), so that INIT keeps its masking and is recorded
  // as forwarded; give the reader a moment for that, else stay a relay.
  bool ok = opts_.inprocess && ring_ == nullptr;
  for (int i = 0; ok; i++) {
    { std::lock_guard<std::mutex> lock(status_mu_); if (status_.init.request_seen) break; }
    if (i >= 2000 || stopping_) ok = false;
    else usleep(1000);
  }
  int ring_fd = ok ? CreateRing() : -1;
  ok = ok && ring_fd >= 0;
  if (ok) {
    // Stop the reader at the top of its loop: whatever it read is then queued in the socket,
    // ahead of the answer below, and the server reads it from there first.
    pause_ = true;
    uint64_t one = 1;
    (void)!write(pause_fd_, &one, sizeof one);
    std::unique_lock<std::mutex> lock(pause_mu_);
    pause_cv_.wait(lock, [&] { return reader_done_; });
    std::lock_guard<std::mutex> slock(status_mu_);
    ok = status_.reader_end.empty();  // the reader ended for another reason (unmount): no takeover
  }
  if (ok) {
    // The server reads this fd from now on: it must block like the fd it would have been given.
    fcntl(opts_.dev_fd, F_SETFL, fcntl(opts_.dev_fd, F_GETFL) & ~O_NONBLOCK);
  }
  uint8_t ack[FT_ACK_LEN] = {};
  Put32(ack, FT_ACK_LEN);
  Put32(ack + 4, FT_ACK_OPCODE);
  uint64_t magic = FT_MAGIC;
  memcpy(ack + 8, &magic, 8);
  Put32(ack + 40, ok ? FT_ACK_ACCEPTED : 1u);
  struct iovec iov = {ack, sizeof ack};
  struct msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * 2)];
  } ctl;
  if (ok) {
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
  if (ring_fd >= 0) close(ring_fd);
  if (!ok || s < 0) return;
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    status_.transport = "in-process";
  }
  ring_ready_.store(true, std::memory_order_release);
  ring_thread_ = std::thread(&Pump::RingLoop, this);
  if (queue_.MarkChanged() && wake_) wake_();
}

size_t Pump::ConsumeRing(bool force, bool* full) {
  std::lock_guard<std::mutex> lock(ring_mu_);
  ft_ring_hdr* h = ring_;
  uint64_t mask = h->size - 1;
  uint64_t tail = h->tail;
  uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
  size_t n = 0;
  bool stalled = false;  // records left in the ring for want of room in the queue
  for (uint64_t at = tail; at < head;) {
    auto* r = reinterpret_cast<ft_ring_rec*>(ring_data_ + (at & mask));
    uint64_t stamp = __atomic_load_n(&r->stamp, __ATOMIC_ACQUIRE);
    if ((stamp & ~uint64_t(7)) != (FT_STAMP(at, h->key, 0) & ~uint64_t(7))) break;  // not yet published
    uint32_t st = uint32_t(stamp & 7);
    if (st == FT_REC_PENDING) {
      if (!force) break;  // its write is under way
      st = FT_REC_FRAME;  // the server died in the write: recorded as not known to be forwarded
    }
    uint32_t len = r->rec_len;
    if (len < 8 || (len & 7) != 0 || len > h->size || (st != FT_REC_SKIP && len < sizeof(ft_ring_rec))) break;
    if (stalled) {
      // Only look ahead for the end of the connection: JS must know of an unmount before it
      // sees the server exit, even while the frames before it wait for room.
      if (st == FT_REC_EVENT && r->code == FT_EV_ENODEV) EndReader("unmount");
      at += len;
      continue;
    }
    if (st == FT_REC_FRAME && !force && !queue_.Fits(r->len)) {
      if (full) *full = true;
      stalled = true;
      at += len;
      continue;
    }
    if (st == FT_REC_FRAME) {
      FrameHeader fh{};
      fh.ts_ns = r->ts_ns;
      fh.fwd_ns = r->fwd_ns;
      fh.unique = r->unique;
      fh.len = r->len;
      fh.code = r->code;
      fh.write_errno = r->write_errno;
      fh.dir = r->dir;
      const uint8_t* data = reinterpret_cast<const uint8_t*>(r + 1);
      if (r->dir == 1 && r->unique == init_unique_.load() && r->cap_len >= kOutHeader) {
        uint8_t copy[kOutHeader + 64] = {};
        size_t c = r->cap_len < sizeof copy ? r->cap_len : sizeof copy;
        memcpy(copy, data, c);
        ClampInitReply(copy, c, false);
      }
      fh.cap_len = r->cap_len;
      uint64_t target = 0;
      if (r->dir == 0 && uint32_t(r->code) == kOpInterrupt && r->cap_len >= kInHeader + 8) {
        target = Get64(data + kInHeader);  // fuse_interrupt_in.unique
      }
      if (target != 0 && !recent_reqs_.count(target) && !force) {
        held_.push_back(HeldFrame{target, NowNs() + 1000000000ull, fh, std::vector<uint8_t>(data, data + r->cap_len)});
      } else if (r->flags & FT_RECF_PATCH_FOLLOWS) {
        fh.seq = queue_.TakeSeq();
        Record(fh, data);
        ring_patches_[at] = fh.seq;
      } else {
        EmitRingFrame(fh, data);
      }
      if (r->dir == 0) NotePid(r->pid);
      n++;
    } else if (st == FT_REC_PROC) {
      if (r->pid != 0 && pids_.insert(r->pid).second)
        queue_.PushProc(r->pid, std::string(reinterpret_cast<const char*>(r + 1), r->cap_len));
    } else if (st == FT_REC_PATCH) {
      auto it = ring_patches_.find(r->unique);
      if (it != ring_patches_.end()) {
        queue_.PushPatch(it->second, r->fwd_ns, r->write_errno);
        ring_patches_.erase(it);
      }
    } else if (st == FT_REC_EVENT) {
      if (r->code == FT_EV_ENODEV) EndReader("unmount");
    }
    at += len;
    tail = at;
    __atomic_store_n(&h->tail, tail, __ATOMIC_RELEASE);
  }
  if (!held_.empty()) {
    // Targets that never came (or a session ending): record the INTERRUPTs as they are.
    uint64_t now = NowNs();
    std::vector<HeldFrame> keep;
    for (HeldFrame& hf : held_) {
      if (force || now >= hf.deadline_ns) {
        hf.hdr.seq = queue_.TakeSeq();
        Record(hf.hdr, hf.data.data());
      } else {
        keep.push_back(std::move(hf));
      }
    }
    held_.swap(keep);
  }
  ConsumeLost();
  uint64_t d = __atomic_load_n(&h->dropped, __ATOMIC_RELAXED);
  uint64_t db = __atomic_load_n(&h->dropped_bytes, __ATOMIC_RELAXED);
  if (d != ring_dropped_seen_) {
    queue_.AddDropped(d - ring_dropped_seen_, db - ring_dropped_bytes_seen_);
    ring_dropped_seen_ = d;
    ring_dropped_bytes_seen_ = db;
  }
  return n;
}

void Pump::ConsumeLost() {
  ft_ring_hdr* h = ring_;
  uint64_t head = __atomic_load_n(&h->lost_head, __ATOMIC_ACQUIRE);
  uint64_t cap = h->lost_cap;
  const uint64_t* lost = reinterpret_cast<const uint64_t*>(ring_data_ + h->size);
  uint64_t end = head < cap ? head : cap;
  // A slot is reserved before it is written: stop at the first unwritten one and come back.
  while (ring_lost_seen_ < end) {
    uint64_t v = __atomic_load_n(&lost[ring_lost_seen_], __ATOMIC_ACQUIRE);
    if (v == 0) return;
    queue_.AddLost(v - 1);
    ring_lost_seen_++;
  }
  if (head > cap && ring_lost_seen_ >= cap && head > ring_lost_seen_) {
    // The list is full: the rest are only counted (ring_lost_seen_ then counts slots past cap).
    queue_.AddLostUnnamed(head - (ring_lost_seen_ > cap ? ring_lost_seen_ : cap));
    ring_lost_seen_ = head;
  }
}

void Pump::EmitRingFrame(FrameHeader hdr, const uint8_t* data) {
  hdr.seq = queue_.TakeSeq();
  Record(hdr, data);
  if (hdr.dir != 0) return;
  recent_reqs_.insert(hdr.unique);
  recent_order_.push_back(hdr.unique);
  if (recent_order_.size() > 65536) {
    recent_reqs_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
  for (size_t i = 0; i < held_.size();) {
    if (held_[i].target == hdr.unique) {
      HeldFrame hf = std::move(held_[i]);
      held_.erase(held_.begin() + long(i));
      hf.hdr.seq = queue_.TakeSeq();
      Record(hf.hdr, hf.data.data());
    } else {
      i++;
    }
  }
}

void Pump::RingLoop() {
  pthread_setname_np(pthread_self(), "ft-ring");
  // The ring is drained on a short timer, not per frame (a wake-up per frame is what the
  // takeover saves); producers wake this thread early once an eighth of the ring is in use.
  // While the queue to JS is full, records stay in the ring: the server then waits for room
  // (preload.c ring_wait) instead of losing frames, up to a bound.
  int idle = 0;
  for (;;) {
    bool stop = stopping_;
    bool full = false;
    size_t n = ConsumeRing(false, &full);
    if (stop) return;  // Stop() consumes once more after the join
    if (full) {
      if (queue_.MarkChanged() && wake_) wake_();  // JS drains on a 100 ms timer otherwise
      usleep(1000);
      continue;
    }
    idle = n > 0 ? 0 : idle + 1;
    long ms = idle < 10 ? 2 : 20;  // 2 ms while frames come, 20 ms once idle for a while
    __atomic_store_n(&ring_->sleeping, 1u, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&ring_->head, __ATOMIC_SEQ_CST) - ring_->tail < ring_->size / 8 && !stopping_) {
      struct timespec ts = {0, ms * 1000000L};
      syscall(SYS_futex, &ring_->sleeping, FUTEX_WAIT, 1, &ts, nullptr, 0);
    }
    __atomic_store_n(&ring_->sleeping, 0u, __ATOMIC_RELAXED);
  }
}

}  // namespace fusetrace
