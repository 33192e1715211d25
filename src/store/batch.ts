/**
 * The packed batch: how frames are stored (batches.body, schema.ts) and how the native pump hands
 * them over (native/frame_queue.h): per frame a 56-byte header, then cap_len bytes of the frame,
 * padded to a multiple of 8. Little-endian.
 *
 *   0 seq u64 | 8 ts_ns u64 | 16 fwd_ns u64 (0: not forwarded) | 24 unique u64 | 32 len u32
 *   36 cap_len u32 | 40 code i32 (opcode, dir 0; error, dir 1) | 44 write_errno i32 | 48 dir u8
 *   49 flags u8 (FRAME_FLAG_*) | 50 pad[6]
 *
 * A batch holds frames in seq order (seqs of dropped frames are missing), never a FRAME_FLAG_PATCH
 * record (those become `patches` rows or are applied before the batch is written).
 */
import type { FrameRecord } from './writer.js';
import { readU64 } from '../util/u64.js';

export const FRAME_HEADER_BYTES = 56;
/** FrameHeader.flags: the frame's length disagreed with its header; it was not forwarded. */
export const FRAME_FLAG_PARTIAL = 1;
/** FrameHeader.flags: not a frame but the forwarding result (fwdNs, writeErrno) of notification `seq`. */
export const FRAME_FLAG_PATCH = 2;

/** Frame bytes past which a batch is closed (a larger frame makes a batch of its own). */
export const BATCH_BYTES = 256 * 1024;
/** Frames past which a batch is closed. */
export const BATCH_FRAMES = 4096;

/** A frame of a batch, with where it sits in the body. */
export interface BatchFrame extends FrameRecord {
  /** Byte offset of its header in the body (frames.off). */
  off: number;
  /** FRAME_FLAG_* bits. */
  flags: number;
}

/** What a batches row says about its body besides the bytes. */
export interface BatchInfo {
  firstSeq: number;
  lastSeq: number;
  count: number;
  firstNs: bigint;
  lastNs: bigint;
  /** Sum of the frames' full lengths (before snaplen). */
  bytes: number;
}

/** Bytes a frame of `capLen` kept bytes takes in a body. */
export function packedSize(capLen: number): number {
  return FRAME_HEADER_BYTES + ((capLen + 7) & ~7);
}

/** 2^32: seq's high word as a number. */
const TWO32 = 4294967296;

/** Decodes the frame whose header starts at `off` (its data is a view of `body`, not a copy). */
export function frameAt(body: Buffer, off: number): BatchFrame {
  // seq as a number, as Number(readBigUInt64LE) would round it (hi * 2^32 is exact; one rounding of the sum).
  const seq = body.readUInt32LE(off + 4) * TWO32 + body.readUInt32LE(off);
  const tsNs = readU64(body, off + 8);
  const fwd = readU64(body, off + 16);
  const unique = readU64(body, off + 24);
  const len = body.readUInt32LE(off + 32);
  const capLen = body.readUInt32LE(off + 36);
  const code = body.readInt32LE(off + 40);
  const writeErrno = body.readInt32LE(off + 44);
  const dir = body[off + 48] === 0 ? 0 : 1;
  const flags = body[off + 49];
  const dataAt = off + FRAME_HEADER_BYTES;
  return {
    seq,
    tsNs,
    fwdNs: fwd === 0n ? null : fwd,
    dir,
    unique,
    opcode: dir === 0 ? code : null,
    error: dir === 1 ? code : null,
    len,
    data: body.subarray(dataAt, Math.min(dataAt + capLen, body.length)),
    writeErrno,
    off,
    flags,
  };
}

/** Where the frame after the one whose header starts at `off` starts. */
export function nextFrameAt(body: Buffer, off: number): number {
  return off + packedSize(body.readUInt32LE(off + 36));
}

/**
 * The frame whose header starts at `off` as a plain FrameRecord, its bytes copied out of the body
 * (a caller that keeps a few frames, such as replay's pending requests, must not keep their whole
 * 256 KiB batches alive with them). frameAt() then a copy, without the view in between.
 */
export function frameCopyAt(body: Buffer, off: number): FrameRecord {
  const dataAt = off + FRAME_HEADER_BYTES;
  const end = Math.min(dataAt + body.readUInt32LE(off + 36), body.length);
  const data = Buffer.allocUnsafe(Math.max(0, end - dataAt));
  body.copy(data, 0, dataAt, end);
  const fwd = readU64(body, off + 16);
  const code = body.readInt32LE(off + 40);
  const dir = body[off + 48] === 0 ? 0 : 1;
  return {
    seq: body.readUInt32LE(off + 4) * TWO32 + body.readUInt32LE(off),
    tsNs: readU64(body, off + 8),
    fwdNs: fwd === 0n ? null : fwd,
    dir,
    unique: readU64(body, off + 24),
    opcode: dir === 0 ? code : null,
    error: dir === 1 ? code : null,
    len: body.readUInt32LE(off + 32),
    data,
    writeErrno: body.readInt32LE(off + 44),
  };
}

/**
 * Decodes up to `count` frames of a body (all of them when omitted). Never throws on a short
 * body (a damaged row): it stops at the last whole header.
 */
export function decodeBatch(body: Buffer, count = Infinity): BatchFrame[] {
  const out: BatchFrame[] = [];
  let off = 0;
  while (out.length < count && off + FRAME_HEADER_BYTES <= body.length) {
    const f = frameAt(body, off);
    out.push(f);
    off += packedSize(body.readUInt32LE(off + 36));
  }
  return out;
}

/** Writes one frame's packed form at `off` of `buf` (which must have packedSize(data.length) bytes there). */
function packInto(buf: Buffer, off: number, f: FrameRecord, flags: number): number {
  const capLen = f.data.length;
  buf.writeBigUInt64LE(BigInt(f.seq), off);
  buf.writeBigUInt64LE(BigInt.asUintN(64, f.tsNs), off + 8);
  buf.writeBigUInt64LE(f.fwdNs === null ? 0n : BigInt.asUintN(64, f.fwdNs), off + 16);
  buf.writeBigUInt64LE(BigInt.asUintN(64, f.unique), off + 24);
  buf.writeUInt32LE(f.len >>> 0, off + 32);
  buf.writeUInt32LE(capLen, off + 36);
  buf.writeInt32LE((f.dir === 0 ? f.opcode ?? 0 : f.error ?? 0) | 0, off + 40);
  buf.writeInt32LE(f.writeErrno | 0, off + 44);
  buf[off + 48] = f.dir;
  buf[off + 49] = flags;
  buf.fill(0, off + 50, off + FRAME_HEADER_BYTES);
  f.data.copy(buf, off + FRAME_HEADER_BYTES);
  const end = off + packedSize(capLen);
  buf.fill(0, off + FRAME_HEADER_BYTES + capLen, end);
  return end;
}

/**
 * Packs frames (in seq order) into batches of at most BATCH_BYTES / BATCH_FRAMES each: the
 * writer's path for frames that do not come from the pump already packed (attach, tests).
 */
export function encodeBatches(frames: readonly FrameRecord[]): Array<{ body: Buffer; info: BatchInfo }> {
  const out: Array<{ body: Buffer; info: BatchInfo }> = [];
  let i = 0;
  while (i < frames.length) {
    let size = 0;
    let j = i;
    while (j < frames.length && j - i < BATCH_FRAMES) {
      const s = packedSize(frames[j].data.length);
      if (j > i && size + s > BATCH_BYTES) break;
      size += s;
      j++;
    }
    const body = Buffer.allocUnsafe(size);
    let off = 0;
    let bytes = 0;
    for (let k = i; k < j; k++) {
      off = packInto(body, off, frames[k], 0);
      bytes += frames[k].len;
    }
    out.push({
      body,
      info: {
        firstSeq: frames[i].seq,
        lastSeq: frames[j - 1].seq,
        count: j - i,
        firstNs: frames[i].tsNs,
        lastNs: frames[j - 1].tsNs,
        bytes,
      },
    });
    i = j;
  }
  return out;
}
