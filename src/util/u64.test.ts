import { describe, expect, it } from 'vitest';
import { readU64, writeU64 } from './u64.js';

const EDGES = [0n, 1n, 0xffn, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, 0x0123_4567_89ab_cdefn];

describe('u64', () => {
  it('reads what Buffer.writeBigUInt64LE wrote, at any offset, below and above 2^53', () => {
    for (const v of EDGES) {
      const b = Buffer.alloc(11, 0xee);
      b.writeBigUInt64LE(v, 3);
      expect(readU64(b, 3)).toBe(v);
    }
  });

  it('writes the bytes Buffer.writeBigUInt64LE writes, and nothing around them', () => {
    for (const v of EDGES) {
      const ours = Buffer.alloc(11, 0xee);
      const theirs = Buffer.alloc(11, 0xee);
      writeU64(ours, v, 2);
      theirs.writeBigUInt64LE(v, 2);
      expect(ours.toString('hex')).toBe(theirs.toString('hex'));
    }
  });
});
