#include "frame_sink.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "wire.h"

namespace fusetrace {

using namespace wire;

FrameSink::FrameSink(const PumpOptions& opts, std::function<void()> wake)
    : opts_(opts), wake_(std::move(wake)), queue_(opts.queue_bytes, opts.queue_frames, opts.snaplen) {}

void FrameSink::EndReader(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (status_.reader_end.empty()) status_.reader_end = why;
  }
  WakeForStatus();
}

void FrameSink::EndWriter(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (status_.writer_end.empty()) status_.writer_end = why;
  }
  WakeForStatus();
}

PumpStatus FrameSink::Status() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

bool FrameSink::InitRequestSeen() {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_.init.request_seen;
}

void FrameSink::MaskInitRequest(uint8_t* buf, size_t n) {
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

void FrameSink::ClampInitReply(uint8_t* buf, size_t n, bool clamp) {
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

void FrameSink::NotePid(uint32_t pid, const std::string* given) {
  if (pid == 0 || !pids_.insert(pid).second) return;
  if (given != nullptr) {
    queue_.PushProc(pid, *given);
    return;
  }
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

}  // namespace fusetrace
