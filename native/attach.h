// `fusetrace attach`: record the /dev/fuse traffic of a server that is already running, with
// ptrace(2), without restarting it.
//
// One tracer thread (ptrace requests must all come from the thread that attached) seizes every
// thread of the server (PTRACE_SEIZE, so nothing is stopped by the attach itself), follows new
// threads (PTRACE_O_TRACECLONE) and resumes each with PTRACE_SYSCALL. At each system call stop it
// asks PTRACE_GET_SYSCALL_INFO (Linux 5.3) what the call is; read/readv/write/writev on one of
// the connection's /dev/fuse fds are copied with process_vm_readv into the same FrameQueue the
// record pump fills, so JS stores them with the same code. Replies are copied at the entry of
// their write (before the kernel sees them, as record does), requests at the exit of their read.
// Every other call costs two stops and nothing else. Detaching interrupts every thread and
// PTRACE_DETACHes it at that stop: the server runs on exactly as before, untraced.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

#include "frame_queue.h"

namespace fusetrace {

struct AttachOptions {
  pid_t pid = 0;
  uint32_t conn = 0;  // fusectl connection of the device fds to record (fdinfo fuse_connection); 0 = any /dev/fuse fd
  uint32_t snaplen = 0;
  size_t queue_bytes = 256u << 20;
  size_t queue_frames = 1u << 20;
};

struct AttachStatus {
  std::string end;         // '' while tracing; 'exited' (every thread of the server is gone), 'detached', 'error: ...'
  uint64_t threads = 0;    // threads traced now
  uint64_t stops = 0;      // system call stops so far (two per call)
  uint64_t spliced = 0;    // splice(2) calls on the device: their bytes never cross the server's memory, not recorded
};

// Per traced thread: the device call between its entry and exit stop.
struct TracedCall {
  bool active = false;
  long nr = -1;
  int fd = -1;
  uint64_t addr = 0;  // buffer (read/write) or iovec array (readv/writev)
  uint64_t count = 0; // bytes (read/write) or iovec count (readv/writev)
  uint64_t seq = 0;   // writes: taken at entry, so the reply precedes what follows it
  uint64_t ts_ns = 0;
  std::vector<uint8_t> data;  // writes: the reply, copied at entry
};

class Tracer {
 public:
  Tracer(AttachOptions opts, std::function<void()> wake);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // JS thread. Starts the tracer thread and waits until every thread of the server is seized;
  // returns 0, or the errno of the first PTRACE_SEIZE that failed (EPERM: no permission or
  // already traced) with nothing left attached.
  int Start();
  // JS thread. Detaches from every thread and joins the tracer thread. Idempotent.
  void Stop();
  // JS thread: see FrameQueue::Drain.
  void Drain(Region* region, size_t* size, size_t* count, uint64_t* watermark,
             std::vector<std::pair<uint32_t, std::string>>* procs, QueueCounters* counters,
             std::vector<uint64_t>* lost) {
    queue_.Drain(region, size, count, watermark, procs, counters, lost);
  }
  void Recycle(Region r) { queue_.Recycle(r); }
  AttachStatus Status();

 private:
  // Tracer thread.
  void Run();
  int SeizeAll();
  void Loop();
  void OnStop(pid_t tid, int status);
  void OnSyscall(pid_t tid);
  void OnEntry(pid_t tid, TracedCall& c, long nr, const uint64_t* args);
  void OnExit(pid_t tid, TracedCall& c, int64_t rval);
  bool IsDevice(int fd);
  bool CopyIn(pid_t tid, const TracedCall& c, uint64_t n, std::vector<uint8_t>* out);
  void PushFrame(uint8_t dir, uint64_t seq, uint64_t ts, uint64_t fwd, int32_t write_errno, const std::vector<uint8_t>& data, uint32_t len);
  void PushHeld(TracedCall& c, uint64_t fwd, int32_t write_errno = 0);
  void NoteProc(uint32_t pid);
  void DetachAll();
  void SetEnd(const std::string& end);

  const AttachOptions opts_;
  std::function<void()> wake_;
  FrameQueue queue_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::mutex mu_;  // guards status_ and the start handshake
  AttachStatus status_;
  int start_result_ = -1;  // -1 until the tracer thread has seized everything (or failed)
  std::condition_variable cv_;

  // Tracer thread only.
  std::map<pid_t, TracedCall> threads_;
  std::map<int, bool> device_fds_;  // fd -> is one of the connection's /dev/fuse fds (the fd table is shared)
  std::set<uint32_t> procs_seen_;
  std::vector<uint8_t> scratch_;
};

}  // namespace fusetrace
