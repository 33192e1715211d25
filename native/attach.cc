// The ptrace recorder of `fusetrace attach`; see attach.h for the design.
#include "attach.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <linux/ptrace.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

// <sys/ptrace.h> and <linux/ptrace.h> clash in glibc; the raw syscall needs only the constants.
static long Ptrace(long req, pid_t tid, unsigned long addr, unsigned long data) {
  return syscall(SYS_ptrace, req, tid, addr, data);
}

namespace fusetrace {

namespace {

constexpr unsigned long kSeizeOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE;
constexpr size_t kInHeader = 40;   // sizeof(struct fuse_in_header)
constexpr size_t kOutHeader = 16;  // sizeof(struct fuse_out_header)
constexpr size_t kMaxFrame = 16u << 20;  // larger than any FUSE frame (max_pages 256 * 4 KiB + headers)

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// The signal that wakes the tracer thread out of waitpid() when JS asks it to detach. A real-time
// signal nothing else in Node uses; its handler does nothing (installed without SA_RESTART, so
// the wait returns EINTR).
int KickSignal() { return SIGRTMIN + 5; }
void OnKick(int) {}

std::vector<pid_t> ListTasks(pid_t pid) {
  std::vector<pid_t> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') out.push_back(pid_t(atoi(e->d_name)));
  }
  closedir(d);
  return out;
}

std::string ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? std::string(buf, size_t(n)) : "";
}

bool IsRead(long nr) { return nr == SYS_read || nr == SYS_readv; }
bool IsWrite(long nr) { return nr == SYS_write || nr == SYS_writev; }

}  // namespace

Tracer::Tracer(AttachOptions opts, std::function<void()> wake)
    : opts_(opts), wake_(std::move(wake)), queue_(opts.queue_bytes, opts.queue_frames, opts.snaplen) {}

Tracer::~Tracer() { Stop(); }

// JS thread.
int Tracer::Start() {
  struct sigaction sa {};
  sa.sa_handler = OnKick;  // no SA_RESTART: waitpid() returns EINTR
  sigemptyset(&sa.sa_mask);
  sigaction(KickSignal(), &sa, nullptr);
  thread_ = std::thread([this] { Run(); });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return start_result_ >= 0; });
  int r = start_result_;
  lock.unlock();
  if (r != 0) {
    thread_.join();
    done_ = true;
  }
  return r;
}

// JS thread.
void Tracer::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  // Kick until the tracer thread has left its wait: a kick that lands just before waitpid() is
  // entered would otherwise be lost.
  while (!done_) {
    pthread_kill(thread_.native_handle(), KickSignal());
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  thread_.join();
}

// JS thread.
AttachStatus Tracer::Status() {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void Tracer::SetEnd(const std::string& end) {
  std::lock_guard<std::mutex> lock(mu_);
  if (status_.end.empty()) status_.end = end;
}

// Tracer thread.
void Tracer::Run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  int r = SeizeAll();
  {
    std::lock_guard<std::mutex> lock(mu_);
    start_result_ = r;
    status_.threads = threads_.size();
  }
  cv_.notify_all();
  if (r != 0) return;
  Loop();
  DetachAll();
  done_ = true;
  if (wake_) wake_();
}

// Tracer thread. Seizes every thread, again while new ones appear (a thread created before its
// creator was seized is not followed by PTRACE_O_TRACECLONE), then interrupts each: the
// interrupt stop is where PTRACE_SYSCALL tracing starts. On failure, detaches what it seized.
int Tracer::SeizeAll() {
  for (int pass = 0; pass < 100; pass++) {
    bool added = false;
    std::vector<pid_t> tasks = ListTasks(opts_.pid);
    if (tasks.empty()) return ESRCH;
    for (pid_t tid : tasks) {
      if (threads_.count(tid)) continue;
      if (Ptrace(PTRACE_SEIZE, tid, 0, kSeizeOptions) != 0) {
        if (errno == ESRCH) continue;  // the thread ended meanwhile
        int err = errno;
        stop_ = true;
        for (auto& t : threads_) Ptrace(PTRACE_INTERRUPT, t.first, 0, 0);
        DetachAll();
        return err;
      }
      threads_[tid];
      added = true;
    }
    if (!added) break;
  }
  for (auto& t : threads_) Ptrace(PTRACE_INTERRUPT, t.first, 0, 0);
  return 0;
}

// Tracer thread: waits for stops until asked to detach or the server is gone.
void Tracer::Loop() {
  while (!stop_) {
    int status = 0;
    pid_t tid = waitpid(-1, &status, __WALL | __WNOTHREAD);
    if (tid < 0) {
      if (errno == EINTR) continue;
      SetEnd(errno == ECHILD ? "exited" : std::string("error: waitpid: ") + strerror(errno));
      return;
    }
    OnStop(tid, status);
    if (threads_.empty()) {
      SetEnd("exited");
      return;
    }
  }
}

// Tracer thread: one stop of one thread; every path resumes it.
void Tracer::OnStop(pid_t tid, int status) {
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    auto it = threads_.find(tid);
    // A thread killed inside its write still releases the seq it took (the write's outcome unknown).
    if (it != threads_.end() && it->second.active && IsWrite(it->second.nr)) PushHeld(it->second, it->second.ts_ns);
    threads_.erase(tid);
    std::lock_guard<std::mutex> lock(mu_);
    status_.threads = threads_.size();
    return;
  }
  if (!WIFSTOPPED(status)) return;
  threads_[tid];  // a new thread may report before its creator's PTRACE_EVENT_CLONE
  int sig = WSTOPSIG(status);
  int event = status >> 16;
  if (sig == (SIGTRAP | 0x80)) {
    OnSyscall(tid);
    Ptrace(PTRACE_SYSCALL, tid, 0, 0);
  } else if (event == PTRACE_EVENT_STOP) {
    // A group-stop (the user's SIGSTOP) stays a stop: PTRACE_LISTEN keeps it stopped without
    // hiding it from a later SIGCONT; any other event stop is our interrupt or a new thread.
    bool group = sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
    Ptrace(group ? PTRACE_LISTEN : PTRACE_SYSCALL, tid, 0, 0);
  } else if (event != 0) {
    if (event == PTRACE_EVENT_CLONE) {
      unsigned long child = 0;
      if (Ptrace(PTRACE_GETEVENTMSG, tid, 0, reinterpret_cast<unsigned long>(&child)) == 0) threads_[pid_t(child)];
      std::lock_guard<std::mutex> lock(mu_);
      status_.threads = threads_.size();
    }
    Ptrace(PTRACE_SYSCALL, tid, 0, 0);
  } else {
    Ptrace(PTRACE_SYSCALL, tid, 0, sig);  // a signal for the server: delivered as if untraced
  }
}

// Tracer thread.
void Tracer::OnSyscall(pid_t tid) {
  struct ptrace_syscall_info info {};
  if (Ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof info, reinterpret_cast<unsigned long>(&info)) <= 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_.stops++;
  }
  TracedCall& c = threads_[tid];
  if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
    uint64_t args[6];
    for (int i = 0; i < 6; i++) args[i] = info.entry.args[i];
    OnEntry(tid, c, long(info.entry.nr), args);
  } else if (info.op == PTRACE_SYSCALL_INFO_EXIT && c.active) {
    OnExit(tid, c, info.exit.rval);
  }
}

// Tracer thread: the entry of a system call.
void Tracer::OnEntry(pid_t tid, TracedCall& c, long nr, const uint64_t* args) {
  // A write whose exit was never seen still releases its seq (the watermark would stall on it).
  if (c.active && IsWrite(c.nr)) PushHeld(c, c.ts_ns);
  c.active = false;
  int fd0 = int(args[0]);
  if (nr == SYS_close) device_fds_.erase(fd0);
#ifdef SYS_dup2
  if (nr == SYS_dup2) device_fds_.erase(int(args[1]));
#endif
  if (nr == SYS_dup3) device_fds_.erase(int(args[1]));
  if (nr == SYS_splice && (IsDevice(int(args[0])) || IsDevice(int(args[2])))) {
    std::lock_guard<std::mutex> lock(mu_);
    status_.spliced++;
    return;
  }
  if (!IsRead(nr) && !IsWrite(nr)) return;
  if (!IsDevice(fd0)) return;
  c.active = true;
  c.nr = nr;
  c.fd = fd0;
  c.addr = args[1];
  c.count = args[2];
  c.ts_ns = NowNs();
  if (!IsWrite(nr)) return;
  // A reply: copied before the kernel sees it; len is its header's (the bytes written).
  c.seq = queue_.TakeSeq();
  uint64_t total = c.count;
  // With a snaplen only its first bytes are kept: copy no more (the header's len says the size).
  uint64_t want = opts_.snaplen ? std::max<uint64_t>(opts_.snaplen, kOutHeader) : ~0ull;
  if (!CopyIn(tid, c, nr == SYS_writev ? want : std::min(want, total), &c.data)) c.data.clear();
}

// Tracer thread: the exit of a device read or write.
void Tracer::OnExit(pid_t tid, TracedCall& c, int64_t rval) {
  c.active = false;
  uint64_t now = NowNs();
  if (IsWrite(c.nr)) {
    PushHeld(c, now, rval < 0 ? int32_t(-rval) : 0);
    return;
  }
  if (rval <= 0) return;  // EINTR, EAGAIN, ENODEV (unmounted): no frame
  std::vector<uint8_t> data;
  uint64_t want = opts_.snaplen ? std::min<uint64_t>(uint64_t(rval), std::max<uint64_t>(opts_.snaplen, kInHeader)) : uint64_t(rval);
  if (!CopyIn(tid, c, want, &data)) return;
  uint64_t seq = queue_.TakeSeq();
  if (data.size() >= kInHeader) NoteProc(*reinterpret_cast<const uint32_t*>(data.data() + 32));
  PushFrame(0, seq, now, now, 0, data, uint32_t(rval));
}

// Tracer thread: whether `fd` of the server is one of the connection's /dev/fuse fds. Cached per
// fd number until the server closes or dup2()s over it.
bool Tracer::IsDevice(int fd) {
  if (fd < 0) return false;
  auto it = device_fds_.find(fd);
  if (it != device_fds_.end()) return it->second;
  std::string base = "/proc/" + std::to_string(opts_.pid);
  char link[64];
  ssize_t n = readlink((base + "/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1);
  bool dev = n == 9 && std::memcmp(link, "/dev/fuse", 9) == 0;
  if (dev && opts_.conn != 0) {
    std::string info = ReadSmallFile(base + "/fdinfo/" + std::to_string(fd));
    size_t at = info.find("fuse_connection:");
    // Kernels before 6.16 do not say: every /dev/fuse fd of the server is taken then.
    if (at != std::string::npos) dev = uint32_t(strtoul(info.c_str() + at + 16, nullptr, 10)) == opts_.conn;
  }
  device_fds_[fd] = dev;
  return dev;
}

// Tracer thread: copies up to `n` bytes of the call's buffer (or its iovecs) from the stopped
// thread with process_vm_readv.
bool Tracer::CopyIn(pid_t tid, const TracedCall& c, uint64_t n, std::vector<uint8_t>* out) {
  std::vector<struct iovec> remote;
  if (c.nr == SYS_readv || c.nr == SYS_writev) {
    size_t cnt = std::min<uint64_t>(c.count, 1024);
    std::vector<struct iovec> iov(cnt);
    struct iovec l = {iov.data(), cnt * sizeof(struct iovec)};
    struct iovec r = {reinterpret_cast<void*>(c.addr), cnt * sizeof(struct iovec)};
    if (process_vm_readv(tid, &l, 1, &r, 1, 0) != ssize_t(l.iov_len)) return false;
    uint64_t left = n;
    for (auto& v : iov) {
      if (left == 0) break;
      size_t take = std::min<uint64_t>(v.iov_len, left);
      remote.push_back({v.iov_base, take});
      left -= take;
    }
  } else {
    remote.push_back({reinterpret_cast<void*>(c.addr), size_t(std::min<uint64_t>(n, c.count))});
  }
  size_t total = 0;
  for (auto& v : remote) total += v.iov_len;
  total = std::min(total, kMaxFrame);
  out->resize(total);
  struct iovec l = {out->data(), total};
  ssize_t got = process_vm_readv(tid, &l, 1, remote.data(), remote.size(), 0);
  if (got < 0) return false;
  out->resize(size_t(got));
  return true;
}

// Tracer thread.
void Tracer::PushFrame(uint8_t dir, uint64_t seq, uint64_t ts, uint64_t fwd, int32_t write_errno,
                       const std::vector<uint8_t>& data, uint32_t len) {
  FrameHeader h{};
  h.seq = seq;
  h.ts_ns = ts;
  h.fwd_ns = fwd;
  h.dir = dir;
  h.write_errno = write_errno;
  h.len = std::max<uint32_t>(len, uint32_t(data.size()));
  if (dir == 0 && data.size() >= kInHeader) {
    std::memcpy(&h.code, data.data() + 4, 4);    // fuse_in_header.opcode
    std::memcpy(&h.unique, data.data() + 8, 8);  // fuse_in_header.unique
  } else if (dir == 1 && data.size() >= kOutHeader) {
    std::memcpy(&h.code, data.data() + 4, 4);    // fuse_out_header.error
    std::memcpy(&h.unique, data.data() + 8, 8);  // fuse_out_header.unique
  }
  // The queue copies min(len, snaplen) bytes: never more than we have (a short copy: zeros).
  size_t need = opts_.snaplen ? std::min<size_t>(h.len, opts_.snaplen) : h.len;
  if (need > data.size()) {
    scratch_.assign(data.begin(), data.end());
    scratch_.resize(need, 0);
    if (queue_.Push(h, scratch_.data()) && wake_) wake_();
    return;
  }
  if (queue_.Push(h, data.data()) && wake_) wake_();
}

// Tracer thread: pushes the reply `c` copied at its write's entry.
void Tracer::PushHeld(TracedCall& c, uint64_t fwd, int32_t write_errno) {
  uint32_t len = c.data.size() >= 4 ? *reinterpret_cast<const uint32_t*>(c.data.data()) : uint32_t(c.data.size());
  PushFrame(1, c.seq, c.ts_ns, fwd, write_errno, c.data, len);
  c.data.clear();
  c.active = false;
}

// Tracer thread: the requesting process's name, once per pid.
void Tracer::NoteProc(uint32_t pid) {
  if (pid == 0 || !procs_seen_.insert(pid).second) return;
  std::string comm = ReadSmallFile("/proc/" + std::to_string(pid) + "/comm");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  queue_.PushProc(pid, comm);
}

// Tracer thread: interrupts every thread and detaches each at its next stop. A write stopped
// between entry and exit is pushed as forwarded (it completes once detached); a pending signal
// is handed back with the detach so that it is delivered.
void Tracer::DetachAll() {
  for (auto& t : threads_) Ptrace(PTRACE_INTERRUPT, t.first, 0, 0);
  while (!threads_.empty()) {
    int status = 0;
    pid_t tid = waitpid(-1, &status, __WALL | __WNOTHREAD);
    if (tid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: none left
    }
    auto it = threads_.find(tid);
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      if (it != threads_.end()) threads_.erase(it);
      continue;
    }
    if (!WIFSTOPPED(status)) continue;
    int sig = WSTOPSIG(status);
    // A system call stop on the way: a read that just returned a request is recorded like any other.
    if (sig == (SIGTRAP | 0x80)) OnSyscall(tid);
    if (it != threads_.end() && it->second.active && IsWrite(it->second.nr)) PushHeld(it->second, it->second.ts_ns);
    bool signal_stop = (status >> 16) == 0 && sig != (SIGTRAP | 0x80);
    Ptrace(PTRACE_DETACH, tid, 0, signal_stop ? sig : 0);
    if (it != threads_.end()) threads_.erase(it);
  }
  SetEnd("detached");
  std::lock_guard<std::mutex> lock(mu_);
  status_.threads = 0;
}

}  // namespace fusetrace
