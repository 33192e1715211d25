import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UserError } from '../errors.js';
import { openTraceDb } from './db.js';
import { addSession, createFixtureDb, type FixtureDb, type FixtureRequest } from './requests.fixture.js';
import { countRequests, parseRange, queryRequests } from './query.js';
import { stats } from './stats.js';

describe('parseRange', () => {
  it.each([
    ['127', { first: 127n, last: 127n }],
    ['1000-5000', { first: 1000n, last: 5000n }],
    ['end', { last: 'end' }],
    ['END', { last: 'end' }],
    ['1000-end', { first: 1000n, last: 'end' }],
    ['0x10-0x20', { first: 16n, last: 32n }],
    ['18446744073709551615', { first: -1n, last: -1n }],
  ])('%s', (text, range) => {
    expect(parseRange(text)).toEqual(range);
  });
  it.each([
    ['abc', "bad range 'abc': expected a unique, FIRST-LAST, end or FIRST-end (e.g. 127, 1000-5000, 1000-end)"],
    ['5-3', "bad range '5-3': 3 is before 5"],
    ['1-', "bad range '1-': expected a unique, FIRST-LAST, end or FIRST-end (e.g. 127, 1000-5000, 1000-end)"],
    ['end-5', "bad range 'end-5': expected a unique, FIRST-LAST, end or FIRST-end (e.g. 127, 1000-5000, 1000-end)"],
    ['99999999999999999999', "bad range '99999999999999999999': 99999999999999999999 does not fit in 64 bits"],
  ])('%s is refused', (text, message) => {
    expect(() => parseRange(text)).toThrow(new UserError(message));
  });
});

describe('queryRequests / countRequests', () => {
  let fx: FixtureDb;
  let s: number;
  beforeAll(() => {
    fx = createFixtureDb();
    addSession(fx.db, [{}, {}, {}]); // another session that must never leak in
    // uniques 2, 4, ..., 20; durations chosen so that dur order differs from time order.
    const durs = [30, 10, null, 50, 20, 40, null, 60, 5, 15];
    s = addSession(
      fx.db,
      durs.map((d, i): FixtureRequest => ({ dur_ns: d, opcode: i % 2 ? 15 : 1, nodeid: i === 9 ? 0xfffffffffffffff0n : i + 1 })),
    );
  });
  afterAll(() => fx.cleanup());
  const uniques = (rows: { unique: number | bigint }[]): (number | bigint)[] => rows.map((r) => r.unique);

  it('returns the session in time order with names and decoded columns', () => {
    const rows = queryRequests(fx.db, s);
    expect(uniques(rows)).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    expect(rows[1]).toMatchObject({ op: 'READ', opcode: 15, dur_ns: 10, errno: 0, err: null, state: 'ok', path: '/', comm: 'cat', background: false });
    expect(rows[2]).toMatchObject({ dur_ns: null, errno: null, state: 'unanswered' });
    // A u64 nodeid above 2^63 comes back as the same unsigned value.
    expect(rows[9]!.nodeid).toBe(0xfffffffffffffff0n);
  });
  it.each([
    ['8', [8]],
    ['6-12', [6, 8, 10, 12]],
    ['end', [20]],
    ['15-end', [16, 18, 20]],
    ['21-30', []],
  ])('range %s', (range, expected) => {
    expect(uniques(queryRequests(fx.db, s, { range }))).toEqual(expected);
    expect(countRequests(fx.db, s, { range })).toBe(expected.length);
  });
  it('combines range, filter, sort and paging', () => {
    expect(uniques(queryRequests(fx.db, s, { sort: 'dur' }))).toEqual([16, 8, 12, 2, 10, 20, 4, 18, 6, 14]);
    expect(uniques(queryRequests(fx.db, s, { sort: 'dur', limit: 3, offset: 1 }))).toEqual([8, 12, 2]);
    expect(uniques(queryRequests(fx.db, s, { filter: 'op==READ && dur>=15ns', range: '1-16' }))).toEqual([8, 12, 16]);
    expect(countRequests(fx.db, s, { filter: 'op==READ && dur>=15ns', range: '1-16' })).toBe(3);
    expect(countRequests(fx.db, s, { filter: '!dur' })).toBe(2);
    expect(uniques(queryRequests(fx.db, s, { limit: 2, offset: 8 }))).toEqual([18, 20]);
  });
  it('refuses a bad page or sort', () => {
    expect(() => queryRequests(fx.db, s, { limit: -1 })).toThrow(new RangeError('limit must be a non-negative integer, not -1'));
    expect(() => queryRequests(fx.db, s, { sort: 'size' as 'dur' })).toThrow(TypeError);
  });
});

describe('stats', () => {
  let fx: FixtureDb;
  let pct: number;
  let sweep: number;
  let shuffled: number;
  beforeAll(() => {
    fx = createFixtureDb();
    // 100 GETATTRs of 1..100 µs and 10 READs of 10..100 ms, interleaved in time.
    const rows: FixtureRequest[] = [];
    for (let i = 1; i <= 100; i++) rows.push({ opcode: 3, dur_ns: i * 1000, start_ns: i * 1_000_000_000 });
    for (let i = 1; i <= 10; i++) rows.push({ opcode: 15, dur_ns: i * 10_000_000, start_ns: i * 1_000_000_000 + 500, reply_len: 16 });
    rows.sort((a, b) => a.start_ns! - b.start_ns!);
    pct = addSession(fx.db, rows.map((r, i) => ({ ...r, seq: i * 2, unique: 2 * (i + 1) })));

    // A session whose overlaps, bytes and totals are worked out by hand:
    //   A [0,10] B [5,15] C [10,20] (starts as A ends: no overlap) D [12, never] FORGET at 13.
    //   In flight: 1 at 0, 2 at 5, 2 at 10 (A gone, C in), 3 at 12 (B C D); the FORGET never waits.
    sweep = addSession(fx.db, [
      { opcode: 15, start_ns: 0, dur_ns: 10, path: '/f', pid: 1, comm: 'cat', reply_len: 16 + 4096 },
      { opcode: 16, start_ns: 5, dur_ns: 10, path: '/f', pid: 2, comm: 'dd', len: 80 + 100 },
      { opcode: 16, start_ns: 10, dur_ns: 10, path: '/g', pid: 2, comm: 'dd', len: 80 + 7, errno: 5 },
      { opcode: 15, start_ns: 12, dur_ns: null, path: '/g', pid: 3, comm: 'sleep' },
      { opcode: 2, start_ns: 13, dur_ns: null, errno: null, state: 'noreply', path: '/h', pid: 0, comm: null },
      { opcode: 15, start_ns: 30, dur_ns: 100, path: '/h', pid: 1, comm: 'cat', reply_len: 16 + 50, errno: 0 },
      { opcode: 1, start_ns: 40, dur_ns: 1, path: '/nope', pid: 1, comm: 'cat', errno: 2 },
    ]);
    // The same requests stored in an order that is not start order (seq 0 starts last).
    shuffled = addSession(fx.db, [
      { opcode: 15, start_ns: 12, dur_ns: null, seq: 0 },
      { opcode: 15, start_ns: 0, dur_ns: 10, seq: 2 },
      { opcode: 16, start_ns: 5, dur_ns: 10, seq: 4 },
      { opcode: 16, start_ns: 10, dur_ns: 10, seq: 6 },
    ]);
  });
  afterAll(() => fx.cleanup());

  const expectPercentiles = (s: ReturnType<typeof stats>): void => {
    const getattr = s.ops.find((o) => o.op === 'GETATTR')!;
    const read = s.ops.find((o) => o.op === 'READ')!;
    expect(getattr).toMatchObject({ requests: 100, answered: 100, p50_ns: 50_000, p90_ns: 90_000, p99_ns: 99_000, max_ns: 100_000 });
    // Nearest rank of 10 values: p50 is the 5th, p90 the 9th, p99 the 10th.
    expect(read).toMatchObject({ requests: 10, answered: 10, p50_ns: 50_000_000, p90_ns: 90_000_000, p99_ns: 100_000_000, max_ns: 100_000_000 });
    // Overall, 110 values: ranks 55, 99 and 109.
    expect(s.overall).toEqual({ answered: 110, p50_ns: 55_000, p90_ns: 99_000, p99_ns: 90_000_000, max_ns: 100_000_000 });
    expect(s.ops.map((o) => o.op)).toEqual(['GETATTR', 'READ']);
  };

  it('computes nearest-rank percentiles per opcode and overall (index seeks)', () => {
    expectPercentiles(stats(fx.db, pct));
  });
  it('gets the same percentiles through a filter (window functions)', () => {
    expectPercentiles(stats(fx.db, pct, 'op==GETATTR || op==READ'));
  });
  it('gets the same percentiles on a file without requests_op_dur', () => {
    const copy = `${fx.file}.noindex`;
    fx.db.exec(`VACUUM INTO '${copy}'`);
    const db = openTraceDb(copy, {});
    try {
      db.exec('DROP INDEX requests_op_dur');
      expectPercentiles(stats(db, pct));
    } finally {
      db.close();
      fs.rmSync(copy, { force: true });
    }
  });

  it('gives the same nearest-rank percentiles from index seeks at either end, a filter, and without the indexes', () => {
    // Durations with many ties, 3 opcodes of different sizes, a few unanswered; percentiles
    // worked out here by sorting, independently of stats().
    const rows: FixtureRequest[] = Array.from({ length: 1237 }, (_, i) => ({
      opcode: [1, 3, 15][i % 7 === 0 ? 2 : i % 2]!,
      start_ns: i * 100,
      dur_ns: i % 97 === 5 ? null : ((i * 7919) % 389) * 1000,
    }));
    const session = addSession(fx.db, rows.map((r, i) => ({ ...r, seq: 2 * i, unique: 2 * (i + 1) })));
    const expected = (durs: number[]) => {
      const d = durs.sort((a, b) => a - b);
      const at = (p: number) => d[Math.max(1, Math.ceil((d.length * p) / 100)) - 1];
      return { answered: d.length, p50_ns: at(50), p90_ns: at(90), p99_ns: at(99), max_ns: d[d.length - 1] };
    };
    const answered = rows.filter((r) => r.dur_ns !== null);
    const check = (s: ReturnType<typeof stats>): void => {
      expect(s.overall).toEqual(expected(answered.map((r) => r.dur_ns!)));
      for (const op of [1, 3, 15]) {
        const { answered: n, p50_ns, p90_ns, p99_ns, max_ns } = s.ops.find((o) => o.opcode === op)!;
        expect({ answered: n, p50_ns, p90_ns, p99_ns, max_ns }).toEqual(expected(answered.filter((r) => r.opcode === op).map((r) => r.dur_ns!)));
      }
    };
    check(stats(fx.db, session));
    check(stats(fx.db, session, 'op != FORGET'));
    const copy = `${fx.file}.noindexes`;
    fx.db.exec(`VACUUM INTO '${copy}'`);
    const db = openTraceDb(copy, {});
    try {
      db.exec('DROP INDEX requests_dur');
      check(stats(db, session));
      db.exec('DROP INDEX requests_op_dur');
      check(stats(db, session));
    } finally {
      db.close();
      fs.rmSync(copy, { force: true });
    }
  });
  it('counts errors, bytes, in-flight and top paths/processes', () => {
    const s = stats(fx.db, sweep);
    expect(s.requests).toBe(7);
    expect(s.errors).toBe(2);
    expect(s.states).toEqual({ ok: 3, error: 2, noreply: 1, unanswered: 1 });
    expect(s.errnos).toEqual([
      { errno: 2, err: 'ENOENT', count: 1 },
      { errno: 5, err: 'EIO', count: 1 },
    ]);
    expect(s.ops.map((o) => [o.op, o.requests, o.errors])).toEqual([
      ['READ', 3, 0],
      ['WRITE', 2, 1],
      ['LOOKUP', 1, 1],
      ['FORGET', 1, 0],
    ]);
    expect(s.bytes_read).toBe(4096 + 50);
    expect(s.bytes_written).toBe(100);
    expect(s.max_in_flight).toEqual({ count: 3, at_ns: 12 });
    expect(s.top_paths).toEqual([
      { path: '/h', requests: 2, total_ns: 100 },
      { path: '/f', requests: 2, total_ns: 20 },
      { path: '/g', requests: 2, total_ns: 10 },
      { path: '/nope', requests: 1, total_ns: 1 },
    ]);
    expect(s.top_procs).toEqual([
      { pid: 1, comm: 'cat', requests: 3, total_ns: 111 },
      { pid: 2, comm: 'dd', requests: 2, total_ns: 20 },
      { pid: 0, comm: null, requests: 1, total_ns: 0 },
      { pid: 3, comm: 'sleep', requests: 1, total_ns: 0 },
    ]);
    expect(stats(fx.db, sweep, null, { top: 1 }).top_paths).toEqual([{ path: '/h', requests: 2, total_ns: 100 }]);
  });
  it('applies the filter to every figure', () => {
    const s = stats(fx.db, sweep, 'comm == dd');
    expect(s.requests).toBe(2);
    expect(s.bytes_read).toBe(0);
    expect(s.bytes_written).toBe(100);
    expect(s.max_in_flight).toEqual({ count: 2, at_ns: 10 });
    expect(s.top_procs).toEqual([{ pid: 2, comm: 'dd', requests: 2, total_ns: 20 }]);
  });
  it('sweeps in-flight correctly when rows are not stored in start order', () => {
    expect(stats(fx.db, shuffled).max_in_flight).toEqual({ count: 3, at_ns: 12 });
  });
  it('counts thousands in flight at once, in start order or not (the sweep heap grows)', () => {
    // 3000 requests that all overlap: each starts 1 ns after the previous and is answered after
    // the last one started; every fifth is never answered. The most in flight is all of them.
    const rows: FixtureRequest[] = Array.from({ length: 3000 }, (_, i) => ({ opcode: 3, start_ns: i, dur_ns: i % 5 === 4 ? null : 10_000 - i }));
    const ordered = addSession(fx.db, rows.map((r, i) => ({ ...r, seq: 2 * i, unique: 2 * (i + 1) })));
    const reversed = addSession(fx.db, rows.map((r, i) => ({ ...r, seq: 2 * (2999 - i), unique: 2 * (i + 1) })));
    expect(stats(fx.db, ordered).max_in_flight).toEqual({ count: 3000, at_ns: 2999 });
    expect(stats(fx.db, reversed).max_in_flight).toEqual({ count: 3000, at_ns: 2999 });
    expect(stats(fx.db, ordered, 'dur > 0ns').max_in_flight).toEqual({ count: 2400, at_ns: 2998 });
  });
  it('counts errors per errno and opcode for any int32 a server may send', () => {
    // fuse_out_header.error is whatever the server wrote: errno 2^31-1 on two opcodes stays two counts.
    const big = 0x7fff_ffff;
    const session = addSession(fx.db, [
      { opcode: 3, start_ns: 0, dur_ns: 5, errno: big },
      { opcode: 4, start_ns: 1, dur_ns: 5, errno: big },
      { opcode: 4, start_ns: 2, dur_ns: 5, errno: 2 },
    ]);
    const s = stats(fx.db, session);
    expect(s.ops.map((o) => [o.opcode, o.errors])).toEqual([
      [4, 2],
      [3, 1],
    ]);
    expect(s.errnos.map((e) => [e.errno, e.count])).toEqual([
      [big, 2],
      [2, 1],
    ]);
  });
  it('sweeps in one pass when only a notify row is out of start order', () => {
    // The pump stamps a server notification on its writer thread, so its (seq, start_ns) may fall
    // out of order among requests; nobody waits for it, so it cannot change the in-flight figure
    // and must not send stats to the SQL fallback (a sort of 2n events: seconds on 1M requests).
    const session = addSession(fx.db, [
      { opcode: 15, start_ns: 0, dur_ns: 10 },
      { opcode: 15, start_ns: 5, dur_ns: 10 },
      { opcode: 0, start_ns: 3, dur_ns: 0, state: 'notify', errno: 0 },
      { opcode: 15, start_ns: 12, dur_ns: null },
    ]);
    const prepare = vi.spyOn(fx.db, 'prepare');
    try {
      expect(stats(fx.db, session).max_in_flight).toEqual({ count: 2, at_ns: 5 });
      expect(prepare.mock.calls.filter(([sql]) => sql.includes('UNION ALL'))).toEqual([]);
    } finally {
      prepare.mockRestore();
    }
  });
  it('gives the same in-flight figure whatever order the rows are stored in, zero durations included', () => {
    // B answered the instant it was read, while A was outstanding: the one-pass sweep (rows in
    // start order) and the fallback for rows out of order must agree on it.
    const a = { opcode: 15, start_ns: 0, dur_ns: 10 };
    const b = { opcode: 15, start_ns: 5, dur_ns: 0 };
    const c = { opcode: 15, start_ns: 7, dur_ns: 1 };
    const inOrder = addSession(fx.db, [a, b, c].map((r, i) => ({ ...r, seq: 2 * i })));
    const outOfOrder = addSession(fx.db, [c, b, a].map((r, i) => ({ ...r, seq: 2 * i })));
    expect(stats(fx.db, inOrder).max_in_flight).toEqual({ count: 2, at_ns: 5 });
    expect(stats(fx.db, outOfOrder).max_in_flight).toEqual(stats(fx.db, inOrder).max_in_flight);
  });
  it('reports an empty selection as zeros', () => {
    const s = stats(fx.db, sweep, 'op == SETXATTR');
    expect(s).toMatchObject({ requests: 0, errors: 0, ops: [], bytes_read: 0, bytes_written: 0, max_in_flight: { count: 0, at_ns: null }, top_paths: [], top_procs: [] });
    expect(s.overall).toEqual({ answered: 0, p50_ns: null, p90_ns: null, p99_ns: null, max_ns: null });
  });
});
