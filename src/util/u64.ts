/**
 * Little-endian u64 fields (FUSE headers and structs, the store's packed batches) as bigints,
 * without Buffer.readBigUInt64LE / writeBigUInt64LE: those build or split the value through four
 * BigInts, and on a replay's hot path (every unique, nodeid and fh of every frame) those
 * temporaries were the largest item in an allocation profile. Below 2^53 (every seq, timestamp,
 * unique and nodeid in practice) a read makes one BigInt and a write none.
 */

/** 2^32, and the high words below which a u64 is exact as a double (hi < 2^21: below 2^53). */
const TWO32 = 4294967296;
const EXACT_HI = 0x200000;
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);

/** A little-endian u64 at `off` (which must be in bounds), as Buffer.readBigUInt64LE gives it. */
export function readU64(b: Buffer, off: number): bigint {
  const lo = b[off] + b[off + 1] * 0x100 + b[off + 2] * 0x10000 + b[off + 3] * 0x1000000;
  const hi = b[off + 4] + b[off + 5] * 0x100 + b[off + 6] * 0x10000 + b[off + 7] * 0x1000000;
  return hi < EXACT_HI ? BigInt(hi * TWO32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * A u64 (unique, nodeid) as a Map key: a number when it is exact as one (nearly always), else the
 * bigint itself. A number key is a little cheaper to hash (Map set/get/delete: ~12 ns an operation
 * less, by hand), and the two kinds never collide (Map keys compare with SameValueZero: 5 and 5n
 * are different keys).
 */
export type U64Key = number | bigint;

export function u64Key(v: bigint): U64Key {
  return v >= 0n && v <= MAX_EXACT ? Number(v) : v;
}

/** Writes `v` (0 <= v < 2^64) at `off` as Buffer.writeBigUInt64LE does. */
export function writeU64(b: Buffer, v: bigint, off: number): void {
  if (v >= 0n && v <= MAX_EXACT) {
    const n = Number(v);
    const lo = n % TWO32;
    b.writeUInt32LE(lo, off);
    b.writeUInt32LE((n - lo) / TWO32, off + 4);
  } else {
    b.writeBigUInt64LE(v, off);
  }
}
