import { describe, expect, it } from 'vitest';
import { uniqueKey } from './ids.js';

describe('uniqueKey', () => {
  it('is a number below 2^53 and the bigint above, so distinct uniques never share a key', () => {
    expect(uniqueKey(42n)).toBe(42);
    expect(uniqueKey(2n ** 53n - 1n)).toBe(Number.MAX_SAFE_INTEGER);
    // 2^53 and 2^53 + 1 are the same double: they must not become the same key.
    const keys = [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n | 1n, 2n ** 64n - 1n].map(uniqueKey);
    expect(new Set(keys).size).toBe(4);
    const m = new Map(keys.map((k, i) => [k, i]));
    expect(m.get(uniqueKey(2n ** 53n + 1n))).toBe(1);
    // An INTERRUPT's unique (FUSE_INT_REQ_BIT) differs from its target's.
    expect(uniqueKey(1000n | 1n)).not.toBe(uniqueKey(1000n));
  });
});
