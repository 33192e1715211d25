// diff.ts, fail-if.ts and report.ts on two sessions of known ledger rows in a real trace file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Opcode, errnoNumber } from '../protocol/index.js';
import { createFixtureDb, addSession, type FixtureDb, type FixtureRequest } from '../store/requests.fixture.js';
import { formatFilterError, FilterError } from '../store/filter.js';
import { sessionProfile } from '../store/profile.js';
import { diffProfiles, type SessionDiff } from './diff.js';
import { evaluateFailIf, parseFailIf } from './fail-if.js';
import { diffReport } from './report.js';

const { READ, GETATTR, OPEN, LOOKUP } = Opcode as Record<'READ' | 'GETATTR' | 'OPEN' | 'LOOKUP', number>;
const EIO = errnoNumber('EIO')!;
const ENOENT = errnoNumber('ENOENT')!;

let fx: FixtureDb;
let diff: SessionDiff;

const rows = (n: number, r: FixtureRequest): FixtureRequest[] => Array.from({ length: n }, () => ({ ...r }));

beforeAll(() => {
  fx = createFixtureDb();
  // A: 10 READs of 1 ms (4 KiB each), 2 OPENs, 2 GETATTRs, a LOOKUP that fails ENOENT.
  addSession(fx.db, [
    ...rows(2, { opcode: OPEN, path: '/a', comm: 'cat', pid: 10 }),
    ...rows(10, { opcode: READ, path: '/a', dur_ns: 1_000_000, reply_len: 16 + 4096, comm: 'cat', pid: 10 }),
    ...rows(2, { opcode: GETATTR, path: '/a', dur_ns: 10_000, comm: 'ls', pid: 11 }),
    { opcode: LOOKUP, path: '/missing', errno: ENOENT, comm: 'ls', pid: 11 },
  ], { name: 'a' });
  // B: the same READs at 3 ms and one failing EIO, a GETATTR storm, and the ENOENT gone.
  addSession(fx.db, [
    ...rows(2, { opcode: OPEN, path: '/a', comm: 'cat', pid: 10 }),
    ...rows(10, { opcode: READ, path: '/a', dur_ns: 3_000_000, reply_len: 16 + 4096, comm: 'cat', pid: 10 }),
    { opcode: READ, path: '/b', dur_ns: 50_000, errno: EIO, comm: 'cat', pid: 10 },
    ...rows(8, { opcode: GETATTR, path: '/a', dur_ns: 10_000, comm: 'ls', pid: 11 }),
  ], { name: 'b' });
  diff = diffProfiles(sessionProfile(fx.db, 1), sessionProfile(fx.db, 2), { a: 'a', b: 'b' });
});
afterAll(() => fx.cleanup());

describe('diffProfiles', () => {
  it('orders opcodes by the change in time, and counts every figure per side', () => {
    expect(diff.ops.map((o) => o.op)).toEqual(['READ', 'GETATTR', 'LOOKUP', 'OPEN']);
    expect(diff.ops[0]).toMatchObject({
      count: { a: 10, b: 11 }, errors: { a: 0, b: 1 }, p50_ns: { a: 1_000_000, b: 3_000_000 }, time_ns: { a: 10_000_000, b: 30_050_000 },
    });
    expect(diff.errors).toEqual([
      { op: 'READ', err: 'EIO', errno: EIO, a: 0, b: 1, kind: 'appeared' },
      { op: 'LOOKUP', err: 'ENOENT', errno: ENOENT, a: 1, b: 0, kind: 'disappeared' },
    ]);
    expect(diff.amplification.find((m) => m.name === 'getattrs_per_open')).toMatchObject({ a: 1, b: 4 });
    expect(diff.processes[0]).toMatchObject({ key: 'cat', time_ns: { a: 10_000_200, b: 30_050_200 } });
    expect(diff.paths.map((p) => p.key)).toEqual(['/a', '/b', '/missing']);
  });

  it('says what changed most first in the report', () => {
    const lines = diffReport(diff).map((l) => l.text);
    expect(lines[0]).toBe('A a (session 1: 15 requests, 1 errors, 10.0ms in requests)');
    expect(lines[2]).toBe('most changed: READ +20.1ms (3.00x time), count 10 → 11, p99 1.00ms → 3.00ms');
    expect(diffReport(diff, { ops: 1 }).map((l) => l.text)).toContain('  (3 more opcodes; --json or a pipe shows all)');
  });
});

describe('--fail-if', () => {
  const trips = (expr: string): boolean => evaluateFailIf(parseFailIf(expr), diff).tripped;

  it.each([
    ['p99(READ) > 1.2x', true],
    ['p99(READ) > 3.5x', false],
    ['p50(READ) >= 3ms', true],
    ['p50(READ) > +2ms', false],
    ['p50(READ) >= +2ms', true],
    ['time(READ) > 150%', true],
    ['count(GETATTR) > 300%', false],
    ['count(GETATTR) >= 300%', true],
    ['count(getattr) == +6', true],
    ['errors > 0', true],
    ['errors(LOOKUP) > 0', false],
    ['new_errors > 0', true],
    ['getattrs_per_open > 2x', true],
    ['lookups_per_dirent > 0', false],
    ['p99(WRITE) < 1s', false],
    ['!(p99(WRITE) < 1s)', true],
    ['count(WRITE) == 0 and not errors(READ) == 0', true],
    ['p99(READ) > 1.2x && (errors > 5 || new_errors > 0)', true],
    ['p99 < 0.5x || max(READ) < 2ms', false],
  ])('%s -> %s', (expr, want) => {
    expect(trips(expr)).toBe(want);
  });

  it('reports every check with its figures', () => {
    const r = evaluateFailIf(parseFailIf('p99(READ) > 1.2x || errors > 0'), diff);
    expect(r.checks).toEqual([
      { text: 'p99(READ) > 1.2x', a: 1_000_000, b: 3_000_000, value: 3, mode: 'factor', holds: true },
      { text: 'errors > 0', a: 1, b: 1, value: 1, mode: 'value', holds: true },
    ]);
  });

  it.each([
    ['p95(READ) > 1.2x', "unknown metric 'p95' at column 1; did you mean p90?; metrics: count, errors, p50, p90, p99, max, time, new_errors, lookups_per_dirent, lookups_per_open, getattrs_per_open, getattrs_per_lookup, reads_per_open, bytes_per_read, bytes_per_write", 1],
    ['p99(RAED) > 1.2x', "unknown opcode 'RAED' at column 5; did you mean READ?", 5],
    ['p99(READ) > 20', 'p99 needs a time unit (ns, us, ms, s) at column 13, e.g. 20ms, or a factor such as 1.2x', 13],
    ['p99(READ) = 2x', "'=' is not an operator at column 11; use '==' to compare", 11],
    ['p99(READ) >', "expected a threshold after '>' (e.g. 1.2x, 20%, +5ms, 10ms, 0), found the end of the expression at column 12", 12],
    ['errors > 2ms', "unexpected unit 'ms' after a number for errors at column 10; errors is a count (use x or % for a relative threshold)", 10],
    ['count(READ) > +20%', 'a percentage takes no sign at column 15 (20%: up by a fifth; use < for a drop, e.g. < 80%)', 15],
    ['new_errors(READ) > 0', 'new_errors is a figure of the whole session and takes no opcode at column 11', 11],
    ['p99(READ) > 2x errors > 0', "expected '&&', '||' or the end after a check, found 'errors' at column 16", 16],
    ['(p99 > 2x', "expected ')' to close the '(' at column 1, found the end of the expression at column 10", 10],
    ['p99(READ) 2x', "expected a comparison (> >= < <= == !=) after 'p99(READ)', found '2x' at column 11", 11],
    ['p99 > 2furlongs', "unknown unit 'furlongs' at column 7; use ns, us, ms, s, x (factor) or % (change)", 7],
    ['', "expected a check such as 'p99(READ) > 1.2x' at column 1", 1],
  ])('refuses %j with the column of the mistake', (expr, message, column) => {
    let err: unknown;
    try {
      parseFailIf(expr);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FilterError);
    expect((err as FilterError).message).toBe(message);
    expect((err as FilterError).column).toBe(column);
    expect(formatFilterError(err as FilterError).split('\n')[1]).toBe(`${' '.repeat(column - 1)}^ ${message}`);
  });
});
