/**
 * Unpacks what the pump's drain() returns into FrameRecords without copying frame bytes.
 * Layout: the packed batch of src/store/batch.ts (native/frame_queue.h struct FrameHeader, 56 bytes,
 * then cap_len bytes padded to 8), decoded by its frameAt.
 */
import type { FrameRecord } from '../store/writer.js';
import { FRAME_HEADER_BYTES, frameAt, packedSize } from '../store/batch.js';

export { FRAME_HEADER_BYTES, FRAME_FLAG_PARTIAL, FRAME_FLAG_PATCH } from '../store/batch.js';

/** A FrameRecord plus what only the proxy needs to know. */
export interface PumpFrame extends FrameRecord {
  /** FRAME_FLAG_* bits. */
  flags: number;
}

/** Decodes `count` packed frames of `buf`. Never throws on a short buffer: it stops there. */
export function unpackFrames(buf: Buffer, count: number): PumpFrame[] {
  const out: PumpFrame[] = [];
  for (let at = 0; out.length < count && at + FRAME_HEADER_BYTES <= buf.length; ) {
    const { off: _off, ...f } = frameAt(buf, at);
    out.push(f);
    at += packedSize(buf.readUInt32LE(at + 36)); // cap_len, which a short buffer may have cut from data
  }
  return out;
}

/**
 * Hands frames to the store in seq order. The pump's threads push after forwarding, so a batch
 * may hold seq 8 before seq 7, or seq 7 may come in the next batch; the pump's watermark says
 * below which seq everything has arrived (seqs of dropped frames never arrive: gaps are fine).
 */
export class SeqOrderer {
  private held: PumpFrame[] = [];

  /** Adds a drained batch; returns the frames now releasable, in seq order. */
  push(frames: PumpFrame[], watermark: number): PumpFrame[] {
    let held = this.held;
    if (frames.length > 0) held = held.length === 0 ? frames : held.concat(frames);
    let sorted = true;
    for (let i = 1; i < held.length; i++) {
      if (held[i].seq < held[i - 1].seq) {
        sorted = false;
        break;
      }
    }
    if (!sorted) held = [...held].sort((a, b) => a.seq - b.seq);
    let n = 0;
    while (n < held.length && held[n].seq < watermark) n++;
    const out = n === held.length ? held : held.slice(0, n);
    this.held = n === held.length ? [] : held.slice(n);
    return out;
  }

  /** Whether a held frame's data lies in `buf` (a drained Buffer, see Pump.recycle). */
  holds(buf: Buffer): boolean {
    return this.held.some((f) => f.data.buffer === buf.buffer);
  }

  /** A held frame by seq, if any. */
  find(seq: number): PumpFrame | undefined {
    return this.held.find((f) => f.seq === seq);
  }

  /** Frames still held back (for the final drain, when the pump has stopped). */
  rest(): PumpFrame[] {
    const r = this.held;
    this.held = [];
    return r;
  }
}
