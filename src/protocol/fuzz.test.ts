/**
 * Property test: no byte string makes the codec throw, and whatever decodes re-encodes to the
 * same bytes. Inputs: random bytes, random bytes behind a plausible header (so the opcode and
 * notify paths are reached), every truncation of every captured frame, and byte mutations of them.
 * Seeded, so a failure reproduces.
 */
import { describe, expect, it } from 'vitest';
import { prng as rng } from '../util/prng.js';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { decodeReply, decodeRequest, encode, formatFields, formatLine, OPCODE_TABLE, SessionDecoder, type DecodeResult } from './index.js';

const dir = fileURLToPath(new URL('../../test/fixtures/frames/', import.meta.url));
const captured: Array<{ dir: 'rx' | 'tx'; buf: Buffer }> = readdirSync(dir).filter((f) => f.endsWith('.json')).flatMap((f) =>
  (JSON.parse(readFileSync(join(dir, f), 'utf8')).frames as Array<{ dir: 'rx' | 'tx'; hex: string }>).map((x) => ({ dir: x.dir, buf: Buffer.from(x.hex, 'hex') })));
const opcodes = [...OPCODE_TABLE.map((o) => o.opcode), 0, 7, 99, 0xffffffff];

/** Decoding never throws; a frame re-encodes to the input; printing never throws. */
function check(res: DecodeResult, input: Buffer): void {
  if (res.frame) {
    expect(encode(res.frame).equals(input)).toBe(true);
    formatLine(res.frame, { durNs: 1 });
  } else {
    expect(res.ok).toBe(false);
  }
  expect(res.raw).toBe(input);
  formatFields(res);
}

function decodeBoth(buf: Buffer, pick: () => number): void {
  const minor = [8, 12, 23, 31, 36, 38, 45][Math.floor(pick() * 7)];
  check(decodeRequest(buf, { minor }), buf);
  const opcode = pick() < 0.1 ? undefined : opcodes[Math.floor(pick() * opcodes.length)];
  check(decodeReply(buf, { opcode, minor }), buf);
}

describe('fuzz: the codec never throws on bytes', () => {
  it('random byte strings, bare and behind plausible headers', () => {
    const pick = rng(0xf05e);
    for (let i = 0; i < 20000; i++) {
      const len = Math.floor(pick() * 300);
      const buf = Buffer.alloc(len);
      for (let j = 0; j < len; j++) buf[j] = Math.floor(pick() * 256);
      if (len >= 40 && pick() < 0.7) {
        // Mostly-right headers reach the per-opcode paths: len right (or off by a little), a real opcode.
        buf.writeUInt32LE(pick() < 0.8 ? len : Math.floor(pick() * 400), 0);
        buf.writeUInt32LE(opcodes[Math.floor(pick() * opcodes.length)], 4);
        if (pick() < 0.5) buf.writeUInt16LE(Math.floor(pick() * 4), 36); // small total_extlen
      }
      if (len >= 16 && pick() < 0.3) {
        buf.writeBigUInt64LE(0n, 8); // notify frame
        buf.writeInt32LE(Math.floor(pick() * 12), 4);
      }
      decodeBoth(buf, pick);
    }
  });

  it('every truncation and random mutations of every captured frame', () => {
    const pick = rng(0xcafe);
    let n = 0;
    for (const f of captured) {
      const step = Math.max(1, Math.floor(f.buf.length / 200));
      for (let cut = 0; cut <= f.buf.length; cut += step) {
        decodeBoth(f.buf.subarray(0, cut), pick);
        n++;
      }
      for (let k = 0; k < 20; k++) {
        const m = Buffer.from(f.buf);
        const flips = 1 + Math.floor(pick() * 4);
        for (let j = 0; j < flips; j++) m[Math.floor(pick() * m.length)] = Math.floor(pick() * 256);
        decodeBoth(m, pick);
        n++;
      }
    }
    expect(n).toBeGreaterThan(5000);
  });

  it('a session decoder fed mutated captures in order', () => {
    const pick = rng(7);
    for (let round = 0; round < 20; round++) {
      const d = new SessionDecoder();
      for (const f of captured) {
        const m = Buffer.from(f.buf);
        if (pick() < 0.2) m[Math.floor(pick() * m.length)] ^= 1 << Math.floor(pick() * 8);
        const res = d.decode(f.dir, pick() < 0.05 ? m.subarray(0, Math.floor(pick() * m.length)) : m);
        if (res.frame) formatLine(res.frame);
      }
    }
  });
});
