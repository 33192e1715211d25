/**
 * Unpacks what the pump's drain() returns into FrameRecords without copying frame bytes.
 * Layout: native/frame_queue.h struct FrameHeader (56 bytes), then cap_len bytes padded to 8.
 */
import type { FrameRecord } from '../store/writer.js';

export const FRAME_HEADER_BYTES = 56;
/** FrameHeader.flags: the frame's length disagreed with its header; it was not forwarded. */
export const FRAME_FLAG_PARTIAL = 1;
/** FrameHeader.flags: not a frame but the forwarding result (fwdNs, writeErrno) of notification `seq`. */
export const FRAME_FLAG_PATCH = 2;

/** A FrameRecord plus what only the proxy needs to know. */
export interface PumpFrame extends FrameRecord {
  /** FRAME_FLAG_* bits. */
  flags: number;
}

/** Decodes `count` packed frames of `buf`. Never throws on a short buffer: it stops there. */
export function unpackFrames(buf: Buffer, count: number): PumpFrame[] {
  const out: PumpFrame[] = new Array(count);
  let at = 0;
  let i = 0;
  for (; i < count && at + FRAME_HEADER_BYTES <= buf.length; i++) {
    const seq = Number(buf.readBigUInt64LE(at));
    const tsNs = buf.readBigUInt64LE(at + 8);
    const fwd = buf.readBigUInt64LE(at + 16);
    const unique = buf.readBigUInt64LE(at + 24);
    const len = buf.readUInt32LE(at + 32);
    const capLen = buf.readUInt32LE(at + 36);
    const code = buf.readInt32LE(at + 40);
    const writeErrno = buf.readInt32LE(at + 44);
    const dir = buf[at + 48] === 0 ? 0 : 1;
    const flags = buf[at + 49];
    const dataAt = at + FRAME_HEADER_BYTES;
    const data = buf.subarray(dataAt, Math.min(dataAt + capLen, buf.length));
    out[i] = {
      seq,
      tsNs,
      fwdNs: fwd === 0n ? null : fwd,
      dir,
      unique,
      opcode: dir === 0 ? code : null,
      error: dir === 1 ? code : null,
      len,
      data,
      writeErrno,
      flags,
    };
    at = dataAt + ((capLen + 7) & ~7);
  }
  out.length = i;
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
