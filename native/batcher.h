// Cuts what the pump queued into the trace's packed batches (src/store/batch.ts, schema.ts
// `batches`), on the JS thread, so that JavaScript handles a batch of frames, never a frame: the
// recorder's hot path is one INSERT per batch.
//
// Frames leave here in seq order. The in-process ring consumer pushes them in order already (the
// fast path: batches are slices of the drained region, no copy); the relay's reader and writer
// threads push after forwarding, so a drain may hold seq 8 before 7, or 7 may come with the next
// drain: those drains are sorted into a copy, up to the queue's watermark, and frames at or past
// it are held for the next drain.
// Patch records (a notification's write result, FRAME_FLAG_PATCH) are applied to their frame when
// it is in this drain or held; otherwise they are handed to JS, which stores them as `patches`.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "frame_queue.h"

namespace fusetrace {

// One batch: bytes [off, off + size) of the drained (or sorted) buffer.
struct BatchCut {
  size_t off = 0, size = 0;
  uint64_t first_seq = 0, last_seq = 0, first_ns = 0, last_ns = 0, bytes = 0;
  uint32_t count = 0;
  // The batch's frames with the payload of READ replies and WRITE requests cut off after their
  // headers (batches.heads, src/store/schema.ts format 6): what the derivation reads instead of the
  // body. Empty when no frame was cut (the body is its own heads).
  std::vector<uint8_t> heads;
};

// What batches.heads keeps of a frame whose payload the derivation never reads: a WRITE request's
// fuse_in_header and fuse_write_in (40 + 40 bytes), a READ reply's fuse_out_header (16). Frames
// of at most kHeadsMinCut bytes are kept whole (cutting them saves too little to be worth a copy).
constexpr uint32_t kHeadsWriteIn = 80;
constexpr uint32_t kHeadsReadOut = 16;
constexpr uint32_t kHeadsMinCut = 512;

struct PatchOut {
  uint64_t seq, fwd_ns;
  int32_t write_errno;
};

constexpr size_t kBatchBytes = 256 * 1024;  // = BATCH_BYTES in src/store/batch.ts
constexpr uint32_t kBatchFrames = 4096;     // = BATCH_FRAMES

class Batcher {
 public:
  ~Batcher() { std::free(held_); }
  // Where a sorted copy goes: a malloc()ed buffer of at least `need` bytes (its capacity in
  // *cap), or nullptr when there is no memory.
  using Alloc = std::function<uint8_t*(size_t need, size_t* cap)>;
  // Takes a drained region (`size` bytes, `count` records). Returns the buffer the cuts refer
  // to: `region` itself (fast path) or a sorted copy from `alloc` (`*copied` true, its capacity in
  // *out_cap; the caller owns it, and `region` may be recycled at once). `final`: the pump has
  // stopped, nothing is held back.
  uint8_t* Take(uint8_t* region, size_t size, size_t count, uint64_t watermark, bool final, const Alloc& alloc, bool* copied,
                size_t* out_size, size_t* out_cap, std::vector<BatchCut>* cuts, std::vector<PatchOut>* patches);
  // Frames held for a later drain.
  size_t held() const { return held_n_; }

 private:
  struct Ent {
    uint64_t seq;
    const uint8_t* at;  // its header, in the region or in held_
    size_t size;        // header + padded data
  };
  void Cut(uint8_t* buf, size_t size, std::vector<BatchCut>* cuts);
  // Bytes of `h`'s data batches.heads keeps (cap_len: all); notes READ requests to know their replies.
  uint32_t HeadKeep(const FrameHeader& h);
  bool ApplyPatch(std::vector<Ent>& ents, const FrameHeader& p);

  uint8_t* held_ = nullptr;  // packed frames waiting for the watermark, in seq order
  size_t held_size_ = 0, held_n_ = 0;
  // Uniques of READ requests whose reply has not been cut yet (Cut sees frames in seq order, so a
  // reply always after its request), direct-mapped by unique: the kernel numbers requests in steps
  // of 2 (fs/fuse/dev.c FUSE_REQ_ID_STEP), so up to kReadSlots READs in flight never collide. A READ
  // that lost its slot to a later one has its reply kept whole in heads: never wrong, only larger.
  static constexpr size_t kReadSlots = 1u << 14;
  std::vector<uint64_t> reads_ = std::vector<uint64_t>(kReadSlots, 0);
  static size_t ReadSlot(uint64_t unique) { return (unique >> 1) & (kReadSlots - 1); }
};

}  // namespace fusetrace
