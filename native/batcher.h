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
#include <vector>

#include "frame_queue.h"

namespace fusetrace {

// One batch: bytes [off, off + size) of the drained (or sorted) buffer.
struct BatchCut {
  size_t off = 0, size = 0;
  uint64_t first_seq = 0, last_seq = 0, first_ns = 0, last_ns = 0, bytes = 0;
  uint32_t count = 0;
};

struct PatchOut {
  uint64_t seq, fwd_ns;
  int32_t write_errno;
};

constexpr size_t kBatchBytes = 256 * 1024;  // = BATCH_BYTES in src/store/batch.ts
constexpr uint32_t kBatchFrames = 4096;     // = BATCH_FRAMES

class Batcher {
 public:
  ~Batcher() { std::free(held_); }
  // Takes a drained region (`size` bytes, `count` records). Returns the buffer the cuts refer
  // to: `region` itself (fast path) or a malloc()ed sorted copy (`*copied` true; the caller owns
  // it, and `region` may be recycled at once). `final`: the pump has stopped, nothing is held back.
  uint8_t* Take(uint8_t* region, size_t size, size_t count, uint64_t watermark, bool final, bool* copied, size_t* out_size,
                std::vector<BatchCut>* cuts, std::vector<PatchOut>* patches);
  // Frames held for a later drain.
  size_t held() const { return held_n_; }

 private:
  struct Ent {
    uint64_t seq;
    const uint8_t* at;  // its header, in the region or in held_
    size_t size;        // header + padded data
  };
  static void Cut(uint8_t* buf, size_t size, std::vector<BatchCut>* cuts);
  bool ApplyPatch(std::vector<Ent>& ents, const FrameHeader& p);

  uint8_t* held_ = nullptr;  // packed frames waiting for the watermark, in seq order
  size_t held_size_ = 0, held_n_ = 0;
};

}  // namespace fusetrace
