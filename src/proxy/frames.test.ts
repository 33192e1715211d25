import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_BYTES, SeqOrderer, unpackFrames, type PumpFrame } from './frames.js';

/** Packs frames the way native/frame_queue.h does. */
function pack(frames: Array<{ seq: number; dir: 0 | 1; data: Buffer; len?: number; code?: number; fwd?: bigint; errno?: number; flags?: number }>): Buffer {
  const parts: Buffer[] = [];
  for (const f of frames) {
    const h = Buffer.alloc(FRAME_HEADER_BYTES);
    h.writeBigUInt64LE(BigInt(f.seq), 0);
    h.writeBigUInt64LE(1000n + BigInt(f.seq), 8);
    h.writeBigUInt64LE(f.fwd ?? 0n, 16);
    h.writeBigUInt64LE(BigInt(f.seq) * 2n, 24);
    h.writeUInt32LE(f.len ?? f.data.length, 32);
    h.writeUInt32LE(f.data.length, 36);
    h.writeInt32LE(f.code ?? 0, 40);
    h.writeInt32LE(f.errno ?? 0, 44);
    h[48] = f.dir;
    h[49] = f.flags ?? 0;
    parts.push(h, f.data, Buffer.alloc((8 - (f.data.length % 8)) % 8));
  }
  return Buffer.concat(parts);
}

describe('unpackFrames', () => {
  it('reads headers and slices data without copying, padding to 8 bytes', () => {
    const buf = pack([
      { seq: 0, dir: 0, data: Buffer.from('abcdefghijk'), code: 26, fwd: 5n },
      { seq: 1, dir: 1, data: Buffer.from('xyz'), len: 100, code: -2, errno: 2 },
    ]);
    const [a, b] = unpackFrames(buf, 2);
    expect(a).toMatchObject({ seq: 0, dir: 0, opcode: 26, error: null, len: 11, fwdNs: 5n, tsNs: 1000n, unique: 0n, writeErrno: 0 });
    expect(a.data.toString()).toBe('abcdefghijk');
    expect(a.data.buffer).toBe(buf.buffer);
    expect(b).toMatchObject({ seq: 1, dir: 1, opcode: null, error: -2, len: 100, fwdNs: null, writeErrno: 2, unique: 2n });
    expect(b.data.toString()).toBe('xyz');
  });

  it('stops at a short buffer instead of throwing', () => {
    const buf = pack([{ seq: 0, dir: 0, data: Buffer.from('abc') }]);
    expect(unpackFrames(buf.subarray(0, 20), 1)).toEqual([]);
    expect(unpackFrames(buf, 5)).toHaveLength(1);
  });
});

describe('SeqOrderer', () => {
  const f = (seq: number) => ({ seq }) as PumpFrame;
  it('releases frames in seq order up to the watermark and holds the rest', () => {
    const o = new SeqOrderer();
    expect(o.push([f(0), f(2), f(1)], 2).map((x) => x.seq)).toEqual([0, 1]);
    expect(o.find(2)?.seq).toBe(2);
    expect(o.push([f(4)], 4).map((x) => x.seq)).toEqual([2]);
    // seq 3 was dropped (never arrives): the watermark moves past it
    expect(o.push([f(5)], 6).map((x) => x.seq)).toEqual([4, 5]);
    expect(o.push([f(7)], 7)).toEqual([]);
    expect(o.rest().map((x) => x.seq)).toEqual([7]);
  });

  it('holds(buf) tells whether a frame it still holds slices that drained buffer (recycling is unsafe then)', () => {
    const a = Buffer.alloc(64);
    const b = Buffer.alloc(64);
    const at = (seq: number, buf: Buffer) => ({ seq, data: buf.subarray(8, 16) }) as PumpFrame;
    const o = new SeqOrderer();
    expect(o.push([at(0, a), at(2, b)], 1).map((x) => x.seq)).toEqual([0]);
    expect(o.holds(a)).toBe(false); // seq 0 was released: a may be recycled after the flush
    expect(o.holds(b)).toBe(true); // seq 2 still waits for seq 1: b must stay
    expect(o.push([], 3).map((x) => x.seq)).toEqual([2]);
    expect(o.holds(b)).toBe(false);
  });
});
