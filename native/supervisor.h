// The mount supervisor: receives the seccomp user notifications of a FUSE server's mount-family
// system calls (native/exec_helper.c installs the filter and passes its listener fd) and hands
// each one to JavaScript, which decides what happens (src/proxy/intercept.ts): perform the mount
// itself and put an fd of fusetrace's at the server's number, answer with an errno, or let the
// call run as the server made it.
//
// Why user notification (seccomp_unotify(2)) and not ptrace: only the mount family stops, once
// per mount; every other system call runs at full speed with no tracer attached, and Go servers,
// static binaries and the fusermount3 helper are covered alike, at the system-call level.
//
// Threads: one thread (ft-supervisor) waits in poll() on the listener and a wake-up pipe and
// reads each notification with its arguments from the server's memory; the answer (Reply,
// AddFd) comes from the JS thread. A notification whose process died in between fails
// SECCOMP_IOCTL_NOTIF_ID_VALID / _SEND with ENOENT, which is not an error here.
#pragma once

#include <linux/seccomp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace fusetrace {

// One intercepted call, with its pointer arguments read from the caller's memory.
struct MountRequest {
  uint64_t id = 0;        // seccomp_notif.id: the cookie every answer must carry
  uint32_t pid = 0;       // the calling thread (a tid in the supervisor's pid namespace)
  std::string syscall;    // "mount" or "umount2" ("umount" on architectures that have it)
  std::string source;     // mount: source (fsname for FUSE); empty when NULL
  std::string target;     // as the caller passed it (may be relative)
  std::string fstype;     // mount: "fuse", "fuse.NAME", "fuseblk", ...
  std::string data;       // mount: the option string (fd=N,rootmode=...)
  bool has_source = false, has_fstype = false, has_data = false;
  uint64_t flags = 0;     // mount: mountflags; umount2: flags
  std::string cwd;        // readlink /proc/PID/cwd, to resolve a relative target
  std::string root;       // readlink /proc/PID/root ("/" unless the caller is chrooted)
  std::string error;      // non-empty when the arguments could not be read (then answer EFAULT)
};

class Supervisor {
 public:
  // Takes ownership of `listener`. Both callbacks run on the ft-supervisor thread.
  Supervisor(int listener, std::function<void(MountRequest)> on_request, std::function<void()> on_end);
  ~Supervisor();

  // JS thread: starts ft-supervisor.
  void Start();
  // JS thread: ends ft-supervisor (wake-up pipe) and closes the listener: pending and future
  // notifications then fail with ENOSYS in the server, as when fusetrace is gone.
  void Stop();
  // JS thread: answers notification `id`: `error` > 0 fails the call with that errno; 0
  // succeeds with return value 0; `cont` lets the kernel run the call as made
  // (SECCOMP_USER_NOTIF_FLAG_CONTINUE). Returns 0 or -errno (-ENOENT: the caller is gone).
  int Reply(uint64_t id, int error, bool cont);
  // JS thread: installs our `srcfd` in process `pid` at number `target_fd` (ADDFD with SETFD,
  // which replaces whatever the caller had there), close-on-exec when the caller's fd at that
  // number had it. Returns 0 or -errno.
  int AddFd(uint64_t id, uint32_t pid, int srcfd, int target_fd);

 private:
  // ft-supervisor: the poll loop.
  void Run();
  // ft-supervisor: receives and decodes one notification; false when nothing to hand over.
  bool Receive(MountRequest* out);

  int listener_;
  int wake_[2] = {-1, -1};
  std::function<void(MountRequest)> on_request_;
  std::function<void()> on_end_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  struct seccomp_notif_sizes sizes_ {};
};

}  // namespace fusetrace
