// ReplaySocket: the replayer's end of the SOCK_SEQPACKET socket a replayed server runs on
// (src/replay/link.ts).
//
// Why: a replay is a ping-pong of small frames. Reading each reply with one libuv thread-pool read
// (fs.read) cost a thread hand-off, a request object and a copy per reply, and was the largest item
// in a profile of `fusetrace replay` (with the sends). Here the JS thread's own event loop watches
// the socket (uv_poll: epoll, level-triggered) and, when it is readable, drains every message
// already queued with non-blocking recv() into one buffer and hands them to JS in one call: one
// Buffer and one Uint32Array of end offsets per batch, however many replies the server wrote.
// Sending many frames at once uses sendmmsg(2). Nothing here blocks and nothing runs on another
// thread: every method and callback runs on the JS thread.
#include "replay_socket.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include <vector>

namespace fusetrace {
namespace {

// Messages handed to JS in one call at most; the rest wait for the next loop turn (uv_poll is
// level-triggered), so timers and other I/O are not starved.
constexpr size_t kMaxBatch = 1024;
// Frames sent with one sendmmsg() at most.
constexpr size_t kMaxSend = 256;

class ReplaySocket : public Napi::ObjectWrap<ReplaySocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ReplaySocket",
                       {InstanceMethod("start", &ReplaySocket::Start), InstanceMethod("close", &ReplaySocket::Close),
                        InstanceMethod("sendBatch", &ReplaySocket::SendBatch)});
  }

  // new ReplaySocket(fd, maxFrame, onFrames): onFrames(buffer, ends, status) gets each batch:
  // frame i is buffer[ends[i-1] .. ends[i]); status 0 while the socket is open, 1 after end-of-file,
  // -errno after a failed read (then no more calls).
  explicit ReplaySocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReplaySocket>(info), async_(info.Env(), "ReplaySocket") {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "new ReplaySocket(fd, maxFrame, onFrames)").ThrowAsJavaScriptException();
      return;
    }
    fd_ = info[0].As<Napi::Number>().Int32Value();
    max_ = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
    // A whole message of the largest size always fits where the next recv() starts (a SEQPACKET
    // message larger than the room left would be cut): room for a few of the largest frames.
    cap_ = max_ * 4;
    buf_ = static_cast<uint8_t*>(malloc(cap_));
    if (!buf_) {
      Napi::Error::New(env, "ReplaySocket: out of memory").ThrowAsJavaScriptException();
      return;
    }
    on_frames_ = Napi::Persistent(info[2].As<Napi::Function>());
    ends_.reserve(kMaxBatch);
  }

  // Never while polling: Start() holds a reference until StopPolling().
  ~ReplaySocket() override { free(buf_); }

 private:
  // start(): watch the socket for readability on this thread's event loop.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (poll_ || done_) return env.Undefined();
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
      Napi::Error::New(env, "ReplaySocket: no event loop").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    poll_ = new uv_poll_t;
    int r = uv_poll_init(loop, poll_, fd_);
    if (r == 0) r = uv_poll_start(poll_, UV_READABLE, &ReplaySocket::OnReadable);
    if (r != 0) {
      delete poll_;
      poll_ = nullptr;
      Napi::Error::New(env, std::string("ReplaySocket: ") + uv_strerror(r)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    poll_->data = this;
    // Kept alive while it watches: the handle points at this object.
    Ref();
    return env.Undefined();
  }

  // close(): stop watching (before the caller closes the fd: libuv must not poll a closed fd).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    done_ = true;
    StopPolling();
    return info.Env().Undefined();
  }

  // sendBatch(frames, from): sends frames[from..] as one message each with sendmmsg(MSG_DONTWAIT),
  // in order. Returns how many were sent (0 when the socket has no room), or -errno when the first
  // one failed otherwise.
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "sendBatch(frames, from)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array frames = info[0].As<Napi::Array>();
    uint32_t from = info[1].As<Napi::Number>().Uint32Value();
    uint32_t total = frames.Length();
    size_t n = total > from ? total - from : 0;
    if (n > kMaxSend) n = kMaxSend;
    if (n == 0) return Napi::Number::New(env, 0);
    iov_.resize(n);
    msgs_.resize(n);
    for (size_t i = 0; i < n; i++) {
      Napi::Value v = frames.Get(static_cast<uint32_t>(from + i));
      if (!v.IsBuffer()) {
        Napi::TypeError::New(env, "sendBatch: frames must be Buffers").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
      iov_[i].iov_base = b.Data();
      iov_[i].iov_len = b.Length();
      memset(&msgs_[i], 0, sizeof msgs_[i]);
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    int r;
    do {
      r = sendmmsg(fd_, msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return Napi::Number::New(env, errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno);
    return Napi::Number::New(env, r);
  }

  void StopPolling() {
    if (!poll_) return;
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
    Unref();
  }

  static void OnReadable(uv_poll_t* h, int status, int events) {
    auto* self = static_cast<ReplaySocket*>(h->data);
    if (self) self->Drain(status);
  }

  // Reads every message queued now (up to a batch) and hands them to JS.
  void Drain(int status) {
    size_t used = 0;
    int end = status < 0 ? status : 0;
    ends_.clear();
    while (end == 0 && ends_.size() < kMaxBatch && used + max_ <= cap_) {
      ssize_t n = recv(fd_, buf_ + used, cap_ - used, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) end = -errno;
        break;
      }
      if (n == 0) {
        end = 1;
        break;
      }
      used += static_cast<size_t>(n);
      ends_.push_back(static_cast<uint32_t>(used));
    }
    if (ends_.empty() && end == 0) return;
    if (end != 0) {
      done_ = true;
      StopPolling();
    }
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, buf_, used);
    Napi::Uint32Array ends = Napi::Uint32Array::New(env, ends_.size());
    if (!ends_.empty()) memcpy(ends.Data(), ends_.data(), ends_.size() * sizeof(uint32_t));
    // MakeCallback: promises the callback resolves run their continuations when it returns.
    on_frames_.MakeCallback(Value(), {data, ends, Napi::Number::New(env, end)}, async_);
    if (env.IsExceptionPending()) {
      // As for an exception thrown in any I/O callback: the process's uncaught-exception path.
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }

  int fd_ = -1;
  size_t max_ = 0;
  size_t cap_ = 0;
  uint8_t* buf_ = nullptr;
  bool done_ = false;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference on_frames_;
  Napi::AsyncContext async_;
  std::vector<uint32_t> ends_;
  std::vector<struct iovec> iov_;
  std::vector<struct mmsghdr> msgs_;
};

}  // namespace

Napi::Function DefineReplaySocket(Napi::Env env) { return ReplaySocket::Define(env); }

}  // namespace fusetrace
