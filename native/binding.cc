// JS entry points of the fusetrace addon. This file only converts JS values;
// the logic lives in the small C++ classes beside it (pump.h, attach.h, mount_util.h, supervisor.h).
// Every function here runs on the JS thread.
#include <napi.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sched.h>

#include <memory>
#include <unordered_map>

#include "mount_util.h"
#include "attach.h"
#include "batcher.h"
#include "pump.h"
#include "replay_socket.h"
#include "supervisor.h"

namespace {

using fusetrace::Pump;
using fusetrace::PumpOptions;

// Throws an Error carrying `code` (e.g. "EBUSY") and `errno`, like node's fs errors.
void ThrowErrno(Napi::Env env, const char* what, int err) {
  const char* name = strerrorname_np(err);
  std::string msg = std::string(what) + ": " + (name ? name : "E?") + " (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
}

bool CheckArgs(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  if (info.Length() < n) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Value MountFuse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 5, "mountFuse(source, target, fstype, flags, data)")) return env.Undefined();
  int r = fusetrace::MountFuse(info[0].As<Napi::String>(), info[1].As<Napi::String>(),
                               info[2].As<Napi::String>(),
                               (unsigned long)info[3].As<Napi::Number>().Int64Value(),
                               info[4].As<Napi::String>());
  if (r < 0) ThrowErrno(env, "mount", -r);
  return env.Undefined();
}

Napi::Value Unmount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "umount(target, flags)")) return env.Undefined();
  int r = fusetrace::Unmount(info[0].As<Napi::String>(), info[1].As<Napi::Number>().Int32Value());
  if (r < 0) ThrowErrno(env, "umount", -r);
  return env.Undefined();
}

Napi::Value SeqpacketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1, "seqpacketPair(sndbuf)")) return env.Undefined();
  int fds[2];
  int got = 0;
  bool forced = false;
  int r = fusetrace::SeqpacketPair(info[0].As<Napi::Number>().Int32Value(), fds, &got, &forced);
  if (r < 0) {
    ThrowErrno(env, "socketpair", -r);
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t(0), Napi::Number::New(env, fds[0]));
  a.Set(uint32_t(1), Napi::Number::New(env, fds[1]));
  o.Set("fds", a);
  o.Set("sndbuf", Napi::Number::New(env, got));
  o.Set("forced", Napi::Boolean::New(env, forced));
  return o;
}

Napi::Value RecvFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1, "recvFd(sock)")) return env.Undefined();
  int r = fusetrace::RecvFd(info[0].As<Napi::Number>().Int32Value());
  if (r < 0) {
    ThrowErrno(env, "recvmsg", -r);
    return env.Undefined();
  }
  return Napi::Number::New(env, r);
}

Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "setCloexec(fd, on)")) return env.Undefined();
  int r = fusetrace::SetCloexec(info[0].As<Napi::Number>().Int32Value(), info[1].ToBoolean());
  if (r < 0) ThrowErrno(env, "fcntl", -r);
  return env.Undefined();
}

// sendNoWait(fd, buffer): bytes sent, or -errno (-EAGAIN: the socket's send buffer is full).
// JS thread; never blocks, so the replay may send on it without the thread pool.
Napi::Value SendNoWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 2, "sendNoWait(fd, buffer)")) return env.Undefined();
  Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
  long r = fusetrace::SendNoWait(info[0].As<Napi::Number>().Int32Value(), b.Data(), b.Length());
  return Napi::Number::New(env, static_cast<double>(r));
}

// Puts every thread of this process under SCHED_BATCH (sched(7)): a thread it wakes (the replayed
// server, whose children and threads inherit the policy) no longer preempts it at once, so a burst
// of requests goes out before the server runs. Returns the threads changed, or -errno.
Napi::Value BatchScheduling(const Napi::CallbackInfo& info) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return Napi::Number::New(info.Env(), -errno);
  struct sched_param p = {};
  int n = 0, err = 0;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (sched_setscheduler(atoi(e->d_name), SCHED_BATCH, &p) == 0) n++;
    else if (errno != ESRCH) err = errno;
  }
  closedir(d);
  return Napi::Number::New(info.Env(), n > 0 ? n : -err);
}

Napi::Value MonotonicNs(const Napi::CallbackInfo& info) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec)));
}

// A drained region handed to JS as a Buffer. The Buffer's finalizer frees the region unless
// recycle() gave it back to the queue first. The queue may hand the same address out again
// while the first Buffer still waits for the garbage collector, so a region's current lease
// is looked up by address only in recycle(), and each finalizer acts on its own lease.
struct Lease;
// Region address -> its current lease, shared with the finalizers, which may run after the
// Pump wrapper is gone. JS thread only: Node runs finalizers on it.
using Leases = std::unordered_map<uint8_t*, Lease*>;

struct Lease {
  std::shared_ptr<Leases> leases;
  fusetrace::Region region;  // as the queue handed it out (its capacity and faulted-in bytes)
  bool recycled;
};

void FreeRegion(Napi::Env, uint8_t* p, Lease* lease) {
  if (!lease->recycled) {
    auto it = lease->leases->find(p);
    if (it != lease->leases->end() && it->second == lease) lease->leases->erase(it);
    free(p);
  }
  delete lease;
}

// The part of a drain's JS object both drain() and drainBatches() have.
void SetDrainCommon(Napi::Env env, Napi::Object o, const std::vector<std::pair<uint32_t, std::string>>& procs,
                    const fusetrace::QueueCounters& c, const std::vector<uint64_t>& lost) {
  Napi::Array pa = Napi::Array::New(env, procs.size());
  for (size_t i = 0; i < procs.size(); i++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(uint32_t(0), Napi::Number::New(env, procs[i].first));
    pair.Set(uint32_t(1), Napi::String::New(env, procs[i].second));
    pa.Set(uint32_t(i), pair);
  }
  o.Set("procs", pa);
  o.Set("recorded", Napi::Number::New(env, double(c.frames)));
  o.Set("bytes", Napi::Number::New(env, double(c.bytes)));
  o.Set("dropped", Napi::Number::New(env, double(c.dropped)));
  o.Set("droppedBytes", Napi::Number::New(env, double(c.dropped_bytes)));
  Napi::Array la = Napi::Array::New(env, lost.size());
  for (size_t i = 0; i < lost.size(); i++) la.Set(uint32_t(i), Napi::BigInt::New(env, lost[i]));
  o.Set("lost", la);
  o.Set("lostUnnamed", Napi::Number::New(env, double(c.lost_unnamed)));
  o.Set("queueRegions", Napi::Number::New(env, double(c.regions)));
  o.Set("queueFaulted", Napi::Number::New(env, double(c.faulted)));
}

// JS thread: drain() of a Pump or a Tracer (both hand out FrameQueue regions) as a JS object.
template <class Source>
Napi::Value DrainObject(Napi::Env env, Source& src, const std::shared_ptr<Leases>& leases) {
  fusetrace::Region region;
  size_t frames_size = 0;
  size_t count = 0;
  std::vector<std::pair<uint32_t, std::string>> procs;
  fusetrace::QueueCounters c;
  uint64_t watermark = 0;
  std::vector<uint64_t> lost;
  src.Drain(&region, &frames_size, &count, &watermark, &procs, &c, &lost);
  Napi::Object o = Napi::Object::New(env);
  if (region.p == nullptr) {
    o.Set("frames", Napi::Buffer<uint8_t>::New(env, 0));
  } else {
    Lease* lease = new Lease{leases, region, false};
    (*leases)[region.p] = lease;
    o.Set("frames", Napi::Buffer<uint8_t>::New(env, region.p, frames_size, FreeRegion, lease));
  }
  o.Set("count", Napi::Number::New(env, double(count)));
  o.Set("watermark", Napi::Number::New(env, double(watermark)));
  SetDrainCommon(env, o, procs, c, lost);
  return o;
}


// JS thread: drainBatches(final) of a Pump: the drain cut into the trace's batches in seq order
// (native/batcher.h). { frames: Buffer, recyclable, batches: [{ off, size, firstSeq, lastSeq, count,
// firstNs, lastNs, bytes, heads }], patches: [[seq, fwdNs, writeErrno]], count, held, ...SetDrainCommon }.
// A recyclable `frames` goes back with recycle() as drain()'s does: the region itself or, on the
// relay, the sorted copy made in a recycled region (a fresh buffer per drain left for the garbage
// collector faulted in new pages for every copy and held them until a collection).
template <class Source>
Napi::Value DrainBatchesObject(Napi::Env env, Source& src, const std::shared_ptr<Leases>& leases, fusetrace::Batcher& batcher,
                               bool final) {
  fusetrace::Region region;
  size_t size = 0, count = 0;
  std::vector<std::pair<uint32_t, std::string>> procs;
  fusetrace::QueueCounters c;
  uint64_t watermark = 0;
  std::vector<uint64_t> lost;
  src.Drain(&region, &size, &count, &watermark, &procs, &c, &lost);
  std::vector<fusetrace::BatchCut> cuts;
  std::vector<fusetrace::PatchOut> patches;
  bool copied = false;
  size_t out_size = 0, out_cap = 0;
  // The sorted copy's region (a queue region, or malloc()ed when larger than one).
  fusetrace::Region copy;
  auto alloc = [&src, &copy](size_t need, size_t* got) -> uint8_t* {
    copy = src.TakeSpare(need);
    if (copy.p == nullptr) {
      copy.p = static_cast<uint8_t*>(std::malloc(need));
      copy.cap = copy.touched = need;
      if (copy.p != nullptr) ft_populate_write(copy.p, need);
    }
    *got = copy.cap;
    return copy.p;
  };
  uint8_t* out = batcher.Take(region.p, size, count, watermark, final, alloc, &copied, &out_size, &out_cap, &cuts, &patches);
  Napi::Object o = Napi::Object::New(env);
  if (copied) src.Recycle(region);
  if (out == nullptr) {
    if (!copied) src.Recycle(region);
    o.Set("frames", Napi::Buffer<uint8_t>::New(env, 0));
    o.Set("recyclable", Napi::Boolean::New(env, false));
  } else {
    // Out of memory, the batcher may have put the copy elsewhere (batcher.cc): then a plain buffer.
    fusetrace::Region leased = !copied ? region : out == copy.p ? copy : fusetrace::Region{out, out_cap, out_cap};
    Lease* lease = new Lease{leases, leased, false};
    (*leases)[out] = lease;
    o.Set("frames", Napi::Buffer<uint8_t>::New(env, out, out_size, FreeRegion, lease));
    o.Set("recyclable", Napi::Boolean::New(env, true));
  }
  Napi::Array ba = Napi::Array::New(env, cuts.size());
  size_t frames = 0;
  for (size_t i = 0; i < cuts.size(); i++) {
    const fusetrace::BatchCut& k = cuts[i];
    Napi::Object b = Napi::Object::New(env);
    b.Set("off", Napi::Number::New(env, double(k.off)));
    b.Set("size", Napi::Number::New(env, double(k.size)));
    b.Set("firstSeq", Napi::Number::New(env, double(k.first_seq)));
    b.Set("lastSeq", Napi::Number::New(env, double(k.last_seq)));
    b.Set("count", Napi::Number::New(env, double(k.count)));
    b.Set("firstNs", Napi::BigInt::New(env, k.first_ns));
    b.Set("lastNs", Napi::BigInt::New(env, k.last_ns));
    b.Set("bytes", Napi::Number::New(env, double(k.bytes)));
    b.Set("heads", k.heads.empty() ? env.Null() : Napi::Buffer<uint8_t>::Copy(env, k.heads.data(), k.heads.size()));
    ba.Set(uint32_t(i), b);
    frames += k.count;
  }
  o.Set("batches", ba);
  Napi::Array pa = Napi::Array::New(env, patches.size());
  for (size_t i = 0; i < patches.size(); i++) {
    Napi::Array t = Napi::Array::New(env, 3);
    t.Set(uint32_t(0), Napi::Number::New(env, double(patches[i].seq)));
    t.Set(uint32_t(1), Napi::BigInt::New(env, patches[i].fwd_ns));
    t.Set(uint32_t(2), Napi::Number::New(env, patches[i].write_errno));
    pa.Set(uint32_t(i), t);
  }
  o.Set("patches", pa);
  o.Set("count", Napi::Number::New(env, double(frames)));
  o.Set("held", Napi::Number::New(env, double(batcher.held())));
  SetDrainCommon(env, o, procs, c, lost);
  return o;
}

// JS thread: recycle(frames) of a Pump or a Tracer.
template <class Source>
Napi::Value RecycleRegion(const Napi::CallbackInfo& info, Source& src, const std::shared_ptr<Leases>& leases) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) return env.Undefined();
  uint8_t* p = info[0].As<Napi::Buffer<uint8_t>>().Data();
  auto it = leases->find(p);
  if (it == leases->end()) return env.Undefined();
  Lease* lease = it->second;
  lease->recycled = true;  // the Buffer's finalizer must leave the region to the queue
  leases->erase(it);
  src.Recycle(lease->region);
  return env.Undefined();
}

// new Attach(options, onWake): see src/attach/native.ts for the option names.
class AttachWrap : public Napi::ObjectWrap<AttachWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Attach",
                       {InstanceMethod("start", &AttachWrap::Start), InstanceMethod("stop", &AttachWrap::Stop),
                        InstanceMethod("drain", &AttachWrap::Drain), InstanceMethod("recycle", &AttachWrap::Recycle),
                        InstanceMethod("status", &AttachWrap::Status)});
  }

  explicit AttachWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AttachWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "new Attach(options, onWake)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    auto num = [&](const char* k, double dflt) {
      Napi::Value v = o.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
    };
    fusetrace::AttachOptions opts;
    opts.pid = pid_t(num("pid", 0));
    opts.conn = uint32_t(num("conn", 0));
    opts.snaplen = uint32_t(num("snaplen", 0));
    opts.queue_bytes = size_t(num("queueBytes", double(opts.queue_bytes)));
    opts.queue_frames = size_t(num("queueFrames", double(opts.queue_frames)));
    if (opts.pid <= 0) {
      Napi::RangeError::New(env, "Attach: pid must be a process id").ThrowAsJavaScriptException();
      return;
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "fusetrace-attach", 0, 1);
    Napi::ThreadSafeFunction tsfn = tsfn_;
    tracer_ = std::make_unique<fusetrace::Tracer>(opts, [tsfn]() mutable { tsfn.NonBlockingCall(); });
  }

  ~AttachWrap() override {
    if (tracer_) tracer_->Stop();
  }

 private:
  // start(): seizes every thread of the server; throws an Error with code/errno on failure.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int err = tracer_->Start();
    if (err != 0 && !stopped_) {
      // Nothing is attached: let go of the callback, which would otherwise keep Node's loop alive.
      stopped_ = true;
      tsfn_.Release();
    }
    if (err != 0) {
      Napi::Error e = Napi::Error::New(env, std::string("ptrace(PTRACE_SEIZE): ") + strerror(err));
      e.Set("errno", Napi::Number::New(env, err));
      e.Set("code", Napi::String::New(env, err == EPERM ? "EPERM" : err == ESRCH ? "ESRCH" : "EOTHER"));
      e.ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (tracer_ && !stopped_) {
      stopped_ = true;
      tracer_->Stop();
      tsfn_.Release();
    }
    return info.Env().Undefined();
  }

  Napi::Value Drain(const Napi::CallbackInfo& info) { return DrainObject(info.Env(), *tracer_, leases_); }
  Napi::Value Recycle(const Napi::CallbackInfo& info) { return RecycleRegion(info, *tracer_, leases_); }

  // { end, threads, stops, spliced }
  Napi::Value Status(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    fusetrace::AttachStatus s = tracer_->Status();
    Napi::Object o = Napi::Object::New(env);
    o.Set("end", Napi::String::New(env, s.end));
    o.Set("threads", Napi::Number::New(env, double(s.threads)));
    o.Set("stops", Napi::Number::New(env, double(s.stops)));
    o.Set("spliced", Napi::Number::New(env, double(s.spliced)));
    return o;
  }

  std::unique_ptr<fusetrace::Tracer> tracer_;
  std::shared_ptr<Leases> leases_ = std::make_shared<Leases>();
  Napi::ThreadSafeFunction tsfn_;
  bool stopped_ = false;
};

// new Pump(options, onWake): see src/proxy/native.ts for the option names.
class PumpWrap : public Napi::ObjectWrap<PumpWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Pump",
                       {InstanceMethod("start", &PumpWrap::Start), InstanceMethod("stop", &PumpWrap::Stop),
                        InstanceMethod("drain", &PumpWrap::Drain), InstanceMethod("recycle", &PumpWrap::Recycle),
                        InstanceMethod("drainBatches", &PumpWrap::DrainBatches), InstanceMethod("status", &PumpWrap::Status)});
  }

  explicit PumpWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PumpWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "new Pump(options, onWake)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    PumpOptions opts;
    auto num = [&](const char* k, double dflt) {
      Napi::Value v = o.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
    };
    opts.dev_fd = int(num("devFd", -1));
    opts.sock_fd = int(num("sockFd", -1));
    opts.max_frame = size_t(num("maxFrame", double(opts.max_frame)));
    opts.snaplen = uint32_t(num("snaplen", 0));
    opts.queue_bytes = size_t(num("queueBytes", double(opts.queue_bytes)));
    opts.queue_frames = size_t(num("queueFrames", double(opts.queue_frames)));
    opts.max_write_limit = uint32_t(num("maxWriteLimit", 0));
    opts.max_pages_limit = uint32_t(num("maxPagesLimit", 0));
    Napi::Value gate = o.Get("gate");
    opts.gate = gate.IsBoolean() ? gate.As<Napi::Boolean>().Value() : true;
    Napi::Value inprocess = o.Get("inProcess");
    opts.inprocess = inprocess.IsBoolean() && inprocess.As<Napi::Boolean>().Value();
    opts.ring_bytes = size_t(num("ringBytes", double(opts.ring_bytes)));
    Napi::Value lossy = o.Get("lossy");
    opts.lossy = lossy.IsBoolean() && lossy.As<Napi::Boolean>().Value();
    Napi::Value mask = o.Get("initMask");
    if (mask.IsBigInt()) {
      bool lossless;
      opts.init_mask = mask.As<Napi::BigInt>().Uint64Value(&lossless);
    }
    if (opts.dev_fd < 0 || opts.sock_fd < 0 || opts.max_frame < 8192) {
      Napi::RangeError::New(env, "Pump: devFd and sockFd must be open fds and maxFrame >= 8192")
          .ThrowAsJavaScriptException();
      return;
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "fusetrace-pump", 0, 1);
    Napi::ThreadSafeFunction tsfn = tsfn_;
    pump_ = std::make_unique<Pump>(opts, [tsfn]() mutable { tsfn.NonBlockingCall(); });
  }

  ~PumpWrap() override {
    if (!pump_) return;
    pump_->Stop();
    // A notify thread still blocked in the kernel keeps using the Pump: leak it rather than
    // free memory that thread will touch when the write returns.
    if (pump_->Leaked()) (void)pump_.release();
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    pump_->Start();
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (pump_ && !stopped_) {
      stopped_ = true;
      pump_->Stop();
      tsfn_.Release();
    }
    return info.Env().Undefined();
  }

  // Returns { frames: Buffer, count, watermark, procs: [[pid, comm], ...], recorded, bytes, dropped, droppedBytes,
  // lost: [unique (BigInt) of each frame dropped since the last drain], lostUnnamed }.
  // The Buffer owns the packed frames without a copy, until JS hands it to recycle().
  Napi::Value Drain(const Napi::CallbackInfo& info) { return DrainObject(info.Env(), *pump_, leases_); }

  // drainBatches(final?: boolean): drain() cut into the trace's batches (native/batcher.h).
  Napi::Value DrainBatches(const Napi::CallbackInfo& info) {
    bool final = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    return DrainBatchesObject(info.Env(), *pump_, leases_, batcher_, final);
  }

  // recycle(frames): `frames` of an earlier drain() goes back to the queue to be filled again;
  // JS must not read it (or any slice of it) afterwards, nor pass it again (its address may
  // belong to a later drain's Buffer by then). A Buffer that is no drained region is ignored.
  Napi::Value Recycle(const Napi::CallbackInfo& info) { return RecycleRegion(info, *pump_, leases_); }

  Napi::Value Status(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    fusetrace::PumpStatus s = pump_->Status();
    Napi::Object o = Napi::Object::New(env);
    o.Set("readerEnd", Napi::String::New(env, s.reader_end));
    o.Set("writerEnd", Napi::String::New(env, s.writer_end));
    o.Set("partial", Napi::Number::New(env, double(s.partial)));
    o.Set("emsgsize", Napi::Number::New(env, double(s.emsgsize)));
    o.Set("gateWaits", Napi::Number::New(env, double(s.gate_waits)));
    o.Set("transport", Napi::String::New(env, s.transport));
    o.Set("ringLost", Napi::Number::New(env, double(s.ring_lost)));
    o.Set("backpressureWaits", Napi::Number::New(env, double(s.backpressure_waits)));
    o.Set("backpressureNs", Napi::Number::New(env, double(s.backpressure_ns)));
    o.Set("notifyBlockedNs", Napi::BigInt::New(env, static_cast<uint64_t>(s.notify_blocked_ns)));
    const fusetrace::InitInfo& ii = s.init;
    Napi::Object init = Napi::Object::New(env);
    init.Set("requestSeen", Napi::Boolean::New(env, ii.request_seen));
    init.Set("replySeen", Napi::Boolean::New(env, ii.reply_seen));
    init.Set("unique", Napi::BigInt::New(env, static_cast<uint64_t>(ii.unique)));
    init.Set("kernelMajor", Napi::Number::New(env, ii.kernel_major));
    init.Set("kernelMinor", Napi::Number::New(env, ii.kernel_minor));
    init.Set("kernelFlags", Napi::BigInt::New(env, static_cast<uint64_t>(ii.kernel_flags)));
    init.Set("kernelFlagsForwarded", Napi::BigInt::New(env, static_cast<uint64_t>(ii.kernel_flags_fwd)));
    init.Set("replyError", Napi::Number::New(env, ii.reply_error));
    init.Set("serverMajor", Napi::Number::New(env, ii.server_major));
    init.Set("serverMinor", Napi::Number::New(env, ii.server_minor));
    init.Set("serverFlags", Napi::BigInt::New(env, static_cast<uint64_t>(ii.server_flags)));
    init.Set("maxWrite", Napi::Number::New(env, ii.max_write));
    init.Set("maxWriteForwarded", Napi::Number::New(env, ii.max_write_fwd));
    init.Set("hasMaxPages", Napi::Boolean::New(env, ii.has_max_pages));
    init.Set("maxPages", Napi::Number::New(env, ii.max_pages));
    init.Set("maxPagesForwarded", Napi::Number::New(env, ii.max_pages_fwd));
    o.Set("init", init);
    return o;
  }

  std::unique_ptr<Pump> pump_;
  fusetrace::Batcher batcher_;
  std::shared_ptr<Leases> leases_ = std::make_shared<Leases>();
  Napi::ThreadSafeFunction tsfn_;
  bool stopped_ = false;
};

// new Supervisor(listenerFd, onRequest, onEnd): see src/proxy/native.ts. onRequest gets one
// object per intercepted call; onEnd is called once when no process is under the filter any more.
class SupervisorWrap : public Napi::ObjectWrap<SupervisorWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Supervisor",
                       {InstanceMethod("start", &SupervisorWrap::Start), InstanceMethod("stop", &SupervisorWrap::Stop),
                        InstanceMethod("reply", &SupervisorWrap::Reply), InstanceMethod("addFd", &SupervisorWrap::AddFd)});
  }

  explicit SupervisorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SupervisorWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsFunction() || !info[2].IsFunction()) {
      Napi::TypeError::New(env, "new Supervisor(listenerFd, onRequest, onEnd)").ThrowAsJavaScriptException();
      return;
    }
    request_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "fusetrace-supervisor", 0, 1);
    end_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "fusetrace-supervisor-end", 0, 1);
    Napi::ThreadSafeFunction req = request_, end = end_;
    sup_ = std::make_unique<fusetrace::Supervisor>(
        info[0].As<Napi::Number>().Int32Value(),
        [req](fusetrace::MountRequest r) mutable {
          auto* copy = new fusetrace::MountRequest(std::move(r));
          napi_status s = req.BlockingCall(copy, [](Napi::Env env, Napi::Function fn, fusetrace::MountRequest* m) {
            std::unique_ptr<fusetrace::MountRequest> own(m);
            fn.Call({ToObject(env, *m)});
          });
          if (s != napi_ok) delete copy;
        },
        [end]() mutable { end.BlockingCall(); });
  }

  ~SupervisorWrap() override {
    if (sup_) sup_->Stop();
  }

 private:
  static Napi::Object ToObject(Napi::Env env, const fusetrace::MountRequest& m) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", Napi::BigInt::New(env, static_cast<uint64_t>(m.id)));
    o.Set("pid", Napi::Number::New(env, m.pid));
    o.Set("syscall", Napi::String::New(env, m.syscall));
    auto opt = [&](const char* k, bool has, const std::string& v) {
      o.Set(k, has ? Napi::Value(Napi::String::New(env, v)) : env.Null());
    };
    opt("source", m.has_source, m.source);
    o.Set("target", Napi::String::New(env, m.target));
    opt("fstype", m.has_fstype, m.fstype);
    opt("data", m.has_data, m.data);
    o.Set("flags", Napi::Number::New(env, double(m.flags)));
    o.Set("cwd", Napi::String::New(env, m.cwd));
    o.Set("root", Napi::String::New(env, m.root));
    o.Set("error", m.error.empty() ? env.Null() : Napi::Value(Napi::String::New(env, m.error)));
    return o;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    sup_->Start();
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (sup_ && !stopped_) {
      stopped_ = true;
      sup_->Stop();
      request_.Release();
      end_.Release();
    }
    return info.Env().Undefined();
  }

  // reply(id, error, continue): see Supervisor::Reply.
  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckArgs(info, 3, "reply(id, errno, continue)")) return env.Undefined();
    bool lossless;
    uint64_t id = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    int r = sup_->Reply(id, info[1].As<Napi::Number>().Int32Value(), info[2].ToBoolean());
    if (r < 0) ThrowErrno(env, "SECCOMP_IOCTL_NOTIF_SEND", -r);
    return env.Undefined();
  }

  // addFd(id, pid, srcFd, targetFd): see Supervisor::AddFd.
  Napi::Value AddFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckArgs(info, 4, "addFd(id, pid, srcFd, targetFd)")) return env.Undefined();
    bool lossless;
    uint64_t id = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    int r = sup_->AddFd(id, info[1].As<Napi::Number>().Uint32Value(), info[2].As<Napi::Number>().Int32Value(),
                        info[3].As<Napi::Number>().Int32Value());
    if (r < 0) ThrowErrno(env, "SECCOMP_IOCTL_NOTIF_ADDFD", -r);
    return env.Undefined();
  }

  std::unique_ptr<fusetrace::Supervisor> sup_;
  Napi::ThreadSafeFunction request_, end_;
  bool stopped_ = false;
};

Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), 1); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version));
  exports.Set("mountFuse", Napi::Function::New(env, MountFuse));
  exports.Set("umount", Napi::Function::New(env, Unmount));
  exports.Set("seqpacketPair", Napi::Function::New(env, SeqpacketPair));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd));
  exports.Set("setCloexec", Napi::Function::New(env, SetCloexec));
  exports.Set("monotonicNs", Napi::Function::New(env, MonotonicNs));
  exports.Set("batchScheduling", Napi::Function::New(env, BatchScheduling));
  exports.Set("sendNoWait", Napi::Function::New(env, SendNoWait));
  exports.Set("Pump", PumpWrap::Define(env));
  exports.Set("Attach", AttachWrap::Define(env));
  exports.Set("Supervisor", SupervisorWrap::Define(env));
  exports.Set("ReplaySocket", fusetrace::DefineReplaySocket(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(fusetrace, Init)
