#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vector>

namespace fusetrace {

namespace {

constexpr size_t kPage = 4096;
// The kernel copies at most one page of mount data (fs/namespace.c copy_mount_options) and
// PATH_MAX of a path (getname): longer strings are not what the call passed.
constexpr size_t kMaxData = kPage;
constexpr size_t kMaxPath = PATH_MAX;

// Reads up to `len` bytes at `addr` of process `pid`, never across a page boundary in one
// call (a string may end just before an unmapped page). process_vm_readv needs the same
// ptrace access as /proc/PID/mem; the latter is the fallback when the former is missing.
ssize_t ReadChunk(pid_t pid, uint64_t addr, void* buf, size_t len) {
  struct iovec local = {buf, len};
  struct iovec remote = {reinterpret_cast<void*>(addr), len};
  ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n >= 0 || errno != ENOSYS) return n;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  n = pread(fd, buf, len, static_cast<off_t>(addr));
  close(fd);
  return n;
}

// A NUL-terminated string of at most `max` bytes at `addr`; false with errno on failure.
bool ReadString(pid_t pid, uint64_t addr, size_t max, std::string* out) {
  out->clear();
  char buf[kPage];
  while (out->size() < max) {
    size_t room = kPage - (addr % kPage);
    ssize_t n = ReadChunk(pid, addr, buf, room);
    if (n <= 0) {
      if (n == 0) errno = EFAULT;
      return false;
    }
    void* nul = memchr(buf, '\0', size_t(n));
    if (nul) {
      out->append(buf, static_cast<char*>(nul) - buf);
      return true;
    }
    out->append(buf, size_t(n));
    addr += uint64_t(n);
  }
  errno = ENAMETOOLONG;
  return false;
}

std::string ReadLink(pid_t pid, const char* what) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, what);
  std::vector<char> buf(kMaxPath + 1);
  ssize_t n = readlink(path, buf.data(), kMaxPath);
  return n < 0 ? std::string() : std::string(buf.data(), size_t(n));
}

// The close-on-exec flag of fd `fd` in process `pid`, from /proc/PID/fdinfo/FD's "flags:" line,
// which carries O_CLOEXEC for close-on-exec fds (fs/proc/fd.c seq_show).
bool RemoteCloexec(pid_t pid, int fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", pid, fd);
  FILE* f = fopen(path, "re");
  if (!f) return false;
  char line[128];
  bool cloexec = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long flags;
    if (sscanf(line, "flags: %lo", &flags) == 1) {
      cloexec = (flags & O_CLOEXEC) != 0;
      break;
    }
  }
  fclose(f);
  return cloexec;
}

const char* SyscallName(int nr) {
  if (nr == __NR_mount) return "mount";
  if (nr == __NR_umount2) return "umount2";
#ifdef __NR_umount
  if (nr == __NR_umount) return "umount";
#endif
  return nullptr;
}

}  // namespace

Supervisor::Supervisor(int listener, std::function<void(MountRequest)> on_request, std::function<void()> on_end)
    : listener_(listener), on_request_(std::move(on_request)), on_end_(std::move(on_end)) {
  if (syscall(__NR_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes_) != 0) {
    sizes_.seccomp_notif = sizeof(struct seccomp_notif);
    sizes_.seccomp_notif_resp = sizeof(struct seccomp_notif_resp);
  }
}

Supervisor::~Supervisor() { Stop(); }

void Supervisor::Start() {
  if (started_) return;
  started_ = true;
  if (pipe2(wake_, O_CLOEXEC) != 0) wake_[0] = wake_[1] = -1;
  // Signals stay with node's own threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { Run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void Supervisor::Stop() {
  if (stopping_.exchange(true)) return;
  if (wake_[1] >= 0) {
    char b = 1;
    ssize_t r = write(wake_[1], &b, 1);
    (void)r;
  }
  if (thread_.joinable()) thread_.join();
  for (int& fd : wake_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  if (listener_ >= 0) close(listener_);
  listener_ = -1;
}

void Supervisor::Run() {
  pthread_setname_np(pthread_self(), "ft-supervisor");
  for (;;) {
    struct pollfd p[2] = {{listener_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    int n = poll(p, wake_[0] >= 0 ? 2 : 1, -1);
    if (stopping_.load()) return;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents & POLLIN) {
      MountRequest req;
      if (Receive(&req)) on_request_(std::move(req));
      continue;
    }
    // POLLHUP: every process under the filter has exited (kernel/seccomp.c seccomp_notify_poll).
    if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)) break;
  }
  on_end_();
}

bool Supervisor::Receive(MountRequest* out) {
  std::vector<uint8_t> buf(sizes_.seccomp_notif > sizeof(struct seccomp_notif) ? sizes_.seccomp_notif
                                                                                : sizeof(struct seccomp_notif));
  auto* n = reinterpret_cast<struct seccomp_notif*>(buf.data());
  // The buffer must be zeroed (seccomp_unotify(2): EINVAL otherwise).
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_RECV, n) != 0) return false;  // ENOENT: the caller died
  const char* name = SyscallName(n->data.nr);
  out->id = n->id;
  out->pid = n->pid;
  if (!name) {
    // The filter notifies nothing else; answer in case a newer filter does.
    Reply(n->id, ENOSYS, false);
    return false;
  }
  out->syscall = name;
  pid_t pid = pid_t(n->pid);
  const __u64* a = n->data.args;
  bool ok = true;
  if (out->syscall == "mount") {
    out->flags = a[3];
    if (a[0]) ok = ok && (out->has_source = ReadString(pid, a[0], kMaxPath, &out->source));
    ok = ok && ReadString(pid, a[1], kMaxPath, &out->target);
    if (a[2]) ok = ok && (out->has_fstype = ReadString(pid, a[2], kMaxPath, &out->fstype));
    if (a[4] && ok) {
      // Data need not be a string for other file systems; for FUSE it is.
      out->has_data = ReadString(pid, a[4], kMaxData, &out->data);
      if (!out->has_data && errno != ENAMETOOLONG) ok = false;
    }
  } else {
    ok = ReadString(pid, a[0], kMaxPath, &out->target);
    out->flags = out->syscall == "umount2" ? a[1] : 0;
  }
  if (!ok) out->error = strerror(errno);
  out->cwd = ReadLink(pid, "cwd");
  out->root = ReadLink(pid, "root");
  // The TOCTOU check of seccomp_unotify(2): the pid may have been reused between RECV and the
  // reads; only if the notification is still valid were the reads of the caller's memory.
  uint64_t id = n->id;
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) != 0) return false;
  return true;
}

int Supervisor::Reply(uint64_t id, int error, bool cont) {
  if (listener_ < 0) return -EBADF;
  std::vector<uint8_t> buf(sizes_.seccomp_notif_resp > sizeof(struct seccomp_notif_resp)
                               ? sizes_.seccomp_notif_resp
                               : sizeof(struct seccomp_notif_resp));
  auto* r = reinterpret_cast<struct seccomp_notif_resp*>(buf.data());
  r->id = id;
  r->val = 0;
  r->error = cont ? 0 : -error;
  r->flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
  if (ioctl(listener_, SECCOMP_IOCTL_NOTIF_SEND, r) != 0) return -errno;
  return 0;
}

int Supervisor::AddFd(uint64_t id, uint32_t pid, int srcfd, int target_fd) {
  if (listener_ < 0) return -EBADF;
  struct seccomp_notif_addfd a;
  memset(&a, 0, sizeof a);
  a.id = id;
  a.flags = SECCOMP_ADDFD_FLAG_SETFD;
  a.srcfd = uint32_t(srcfd);
  a.newfd = uint32_t(target_fd);
  a.newfd_flags = RemoteCloexec(pid_t(pid), target_fd) ? O_CLOEXEC : 0;
  int r = ioctl(listener_, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
  return r < 0 ? -errno : 0;
}

}  // namespace fusetrace
