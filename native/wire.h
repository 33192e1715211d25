// The few fuse_kernel.h facts the native transports need to read and patch frames in place, and
// the clock every timestamp comes from. (src/protocol is the source of truth for everything
// else; the hot path reads only these fields.)
#pragma once

#include <string.h>
#include <time.h>

#include <cstdint>
#include <string>

namespace fusetrace {
namespace wire {

// fuse_kernel.h: struct fuse_in_header is 40 bytes, struct fuse_out_header 16.
constexpr size_t kInHeader = 40;
constexpr size_t kOutHeader = 16;
constexpr uint32_t kOpInit = 26;           // FUSE_INIT
constexpr uint32_t kOpForget = 2;          // FUSE_FORGET: no reply
constexpr uint32_t kOpBatchForget = 42;    // FUSE_BATCH_FORGET: no reply
constexpr uint32_t kOpInterrupt = 36;      // FUSE_INTERRUPT: fuse_interrupt_in.unique names its target
constexpr uint32_t kInitExt = 1u << 30;    // FUSE_INIT_EXT: flags2 is valid
constexpr uint32_t kMaxPages = 1u << 22;   // FUSE_MAX_PAGES: max_pages is valid

inline uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline uint32_t Get32(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return v; }
inline uint64_t Get64(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return v; }
inline uint16_t Get16(const uint8_t* p) { uint16_t v; memcpy(&v, p, 2); return v; }
inline void Put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
inline void Put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }

inline std::string ErrnoText(const char* what, int err) {
  return std::string("error: ") + what + ": " + strerror(err);
}

}  // namespace wire
}  // namespace fusetrace
