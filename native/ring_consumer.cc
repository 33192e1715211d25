#include "ring_consumer.h"

#include <cstdlib>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "populate.h"
#include "wire.h"

namespace fusetrace {

using namespace wire;

RingConsumer::~RingConsumer() {
  if (thread_.joinable()) thread_.join();
  if (ring_) munmap(ring_, map_bytes_);
}

int RingConsumer::Create() {
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
  // Every page of the header and data area now, not one fault per 4 KiB in the server's request
  // path as records first reach it: the ring is in full use after its first lap anyway. The lost
  // list stays sparse.
  ft_populate_write(map, FT_RING_HDR_BYTES + size);
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
  // Test hook: records start N bytes before the end of the data area, so that the first one wraps
  // (N = 8: the shortest skip, which ring version 2 overran; test/record-ring.test.ts).
  if (const char* t = getenv("FUSETRACE_TEST_RING_TAIL")) {
    uint64_t n = strtoull(t, nullptr, 10);
    if (n >= 8 && n < size && n % 8 == 0) h->head = h->tail = size - n;
  }
  ring_ = h;
  data_ = static_cast<uint8_t*>(map) + FT_RING_HDR_BYTES;
  map_bytes_ = total;
  return fd;
}

void RingConsumer::Start() {
  ready_.store(true, std::memory_order_release);
  thread_ = std::thread(&RingConsumer::Loop, this);
}

void RingConsumer::RequestStop() {
  stopping_ = true;
  if (ring_ != nullptr) syscall(SYS_futex, &ring_->sleeping, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

void RingConsumer::Finish() {
  if (thread_.joinable()) thread_.join();
  if (ring_ == nullptr) return;
  Consume(true);
  // Reserved and never published: a server thread died in the middle of a record.
  uint64_t left = __atomic_load_n(&ring_->head, __ATOMIC_ACQUIRE) - ring_->tail;
  if (left > 0) sink_.WithStatus([&](PumpStatus& s) { s.ring_lost = left; });
}

void RingConsumer::ConsumeLost() {
  ft_ring_hdr* h = ring_;
  uint64_t head = __atomic_load_n(&h->lost_head, __ATOMIC_ACQUIRE);
  uint64_t cap = h->lost_cap;
  const uint64_t* lost = reinterpret_cast<const uint64_t*>(data_ + h->size);
  uint64_t end = head < cap ? head : cap;
  // A slot is reserved before it is written: stop at the first unwritten one and come back.
  while (lost_seen_ < end) {
    uint64_t v = __atomic_load_n(&lost[lost_seen_], __ATOMIC_ACQUIRE);
    if (v == 0) return;
    sink_.queue().AddLost(v - 1);
    lost_seen_++;
  }
  if (head > cap && lost_seen_ >= cap && head > lost_seen_) {
    // The list is full: the rest are only counted (lost_seen_ then counts slots past cap).
    sink_.queue().AddLostUnnamed(head - (lost_seen_ > cap ? lost_seen_ : cap));
    lost_seen_ = head;
  }
}

size_t RingConsumer::Consume(bool force, bool* full) {
  std::lock_guard<std::mutex> lock(mu_);
  ft_ring_hdr* h = ring_;
  uint64_t mask = h->size - 1;
  uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
  size_t n = 0;
  bool stalled = false;  // records left in the ring for want of room in the queue
  for (uint64_t at = h->tail; at < head;) {
    auto* r = reinterpret_cast<ft_ring_rec*>(data_ + (at & mask));
    uint64_t stamp = __atomic_load_n(&r->stamp, __ATOMIC_ACQUIRE);
    if ((stamp & ~uint64_t(7)) != (FT_STAMP(at, h->key, 0) & ~uint64_t(7))) break;  // not yet published
    uint32_t st = uint32_t(stamp & 7);
    if (st == FT_REC_PENDING) {
      if (!force) break;  // its write is under way
      st = FT_REC_FRAME;  // the server died in the write: recorded as not known to be forwarded
    }
    // A skip is its stamp alone and runs to the end of the data area (ring.h, FT_REC_SKIP).
    uint64_t len = st == FT_REC_SKIP ? h->size - (at & mask) : r->rec_len;
    if (len < 8 || (len & 7) != 0 || len > h->size || (st != FT_REC_SKIP && len < sizeof(ft_ring_rec))) break;
    if (!stalled && st == FT_REC_FRAME && !force && !sink_.queue().Fits(r->len)) {
      if (full) *full = true;
      stalled = true;
    }
    if (stalled) {
      // Only look ahead for the end of the connection: JS must know of an unmount before it
      // sees the server exit, even while the frames before it wait for room.
      if (st == FT_REC_EVENT && r->code == FT_EV_ENODEV) sink_.EndReader("unmount");
      at += len;
      continue;
    }
    if (st == FT_REC_FRAME) {
      ConsumeFrame(r, at, force);
      n++;
    } else if (st == FT_REC_PROC) {
      std::string comm(reinterpret_cast<const char*>(r + 1), r->cap_len);
      sink_.NotePid(r->pid, &comm);
    } else if (st == FT_REC_PATCH) {
      auto it = patches_.find(r->unique);
      if (it != patches_.end()) {
        sink_.queue().PushPatch(it->second, r->fwd_ns, r->write_errno);
        patches_.erase(it);
      }
    } else if (st == FT_REC_EVENT) {
      if (r->code == FT_EV_ENODEV) sink_.EndReader("unmount");
    }
    at += len;
    __atomic_store_n(&h->tail, at, __ATOMIC_RELEASE);
  }
  ReleaseHeld(force);
  ConsumeLost();
  uint64_t d = __atomic_load_n(&h->dropped, __ATOMIC_RELAXED);
  uint64_t db = __atomic_load_n(&h->dropped_bytes, __ATOMIC_RELAXED);
  if (d != dropped_seen_) {
    sink_.queue().AddDropped(d - dropped_seen_, db - dropped_bytes_seen_);
    dropped_seen_ = d;
    dropped_bytes_seen_ = db;
  }
  return n;
}

void RingConsumer::ConsumeFrame(const ft_ring_rec* r, uint64_t at, bool force) {
  FrameHeader fh{};
  fh.ts_ns = r->ts_ns;
  fh.fwd_ns = r->fwd_ns;
  fh.unique = r->unique;
  fh.len = r->len;
  fh.code = r->code;
  fh.write_errno = r->write_errno;
  fh.dir = r->dir;
  const uint8_t* data = reinterpret_cast<const uint8_t*>(r + 1);
  if (r->dir == 1 && r->unique == sink_.init_unique.load() && r->cap_len >= kOutHeader) {
    uint8_t copy[kOutHeader + 64] = {};
    size_t c = r->cap_len < sizeof copy ? r->cap_len : sizeof copy;
    memcpy(copy, data, c);
    sink_.ClampInitReply(copy, c, false);
  }
  fh.cap_len = r->cap_len;
  uint64_t target = 0;
  if (r->dir == 0 && uint32_t(r->code) == kOpInterrupt && r->cap_len >= kInHeader + 8) {
    target = Get64(data + kInHeader);  // fuse_interrupt_in.unique
  }
  if (target != 0 && !RecentlyRecorded(target) && !force) {
    held_.push_back(HeldFrame{target, NowNs() + 1000000000ull, fh, std::vector<uint8_t>(data, data + r->cap_len)});
  } else if (r->flags & FT_RECF_PATCH_FOLLOWS) {
    patches_[at] = sink_.RecordNext(fh, data);
  } else {
    Emit(fh, data);
  }
  if (r->dir == 0) sink_.NotePid(r->pid);
}

void RingConsumer::ReleaseHeld(bool force) {
  if (held_.empty()) return;
  // Targets that never came (or a session ending): record the INTERRUPTs as they are.
  uint64_t now = NowNs();
  std::vector<HeldFrame> keep;
  for (HeldFrame& hf : held_) {
    if (force || now >= hf.deadline_ns) {
      sink_.RecordNext(hf.hdr, hf.data.data());
    } else {
      keep.push_back(std::move(hf));
    }
  }
  held_.swap(keep);
}

void RingConsumer::Emit(FrameHeader hdr, const uint8_t* data) {
  sink_.RecordNext(hdr, data);
  if (hdr.dir != 0) return;
  // Not an INTERRUPT: its unique (the target's | 1 since 5.0) shares its target's slot, and an
  // INTERRUPT sent again after EAGAIN must still find the target.
  if (uint32_t(hdr.code) != kOpInterrupt) recent_[RecentSlot(hdr.unique)] = hdr.unique;
  if (held_.empty()) return;
  for (size_t i = 0; i < held_.size();) {
    if (held_[i].target == hdr.unique) {
      HeldFrame hf = std::move(held_[i]);
      held_.erase(held_.begin() + long(i));
      sink_.RecordNext(hf.hdr, hf.data.data());
    } else {
      i++;
    }
  }
}

namespace {
constexpr long kBusyPeriodMs = 20;  // while frames come
constexpr long kIdlePeriodMs = 50;  // after ten empty rounds
}  // namespace

void RingConsumer::Loop() {
  pthread_setname_np(pthread_self(), "ft-ring");
  // The ring is drained on a timer (below), not per frame (a wake-up per frame is what the
  // takeover saves); producers wake this thread early once an eighth of the ring is in use.
  // While the queue to JS is full, records stay in the ring: the server then waits for room
  // (preload.c ring_wait) instead of losing frames, up to a bound.
  int idle = 0;
  for (;;) {
    bool stop = stopping_;
    bool full = false;
    size_t n = Consume(false, &full);
    if (stop) return;  // Finish() consumes once more after the join
    if (full) {
      sink_.WakeForStatus();  // JS drains on a 100 ms timer otherwise
      usleep(1000);
      continue;
    }
    idle = n > 0 ? 0 : idle + 1;
    // Each wake-up costs this thread ~80 us of CPU on a 2-vCPU VM under load (bench record:
    // schedstat and context switches of ft-ring; the futex syscall and the switch dominate its
    // perf profile, the copying is a few %). At 2 ms that was 500 wake-ups a second, 6-10 us per
    // frame of find+stat. The period only bounds how long frames wait in the ring when few come:
    // producers wake this thread at an eighth of the ring (8 MiB by default, ~4 ms of a 2 GB/s
    // capture), and JS takes the queue every 100 ms anyway.
    long ms = idle < 10 ? kBusyPeriodMs : kIdlePeriodMs;
    __atomic_store_n(&ring_->sleeping, 1u, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&ring_->head, __ATOMIC_SEQ_CST) - ring_->tail < ring_->size / 8 && !stopping_) {
      struct timespec ts = {0, ms * 1000000L};
      syscall(SYS_futex, &ring_->sleeping, FUTEX_WAIT, 1, &ts, nullptr, 0);
    }
    __atomic_store_n(&ring_->sleeping, 0u, __ATOMIC_RELAXED);
  }
}

}  // namespace fusetrace
