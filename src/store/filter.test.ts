import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFilter, FilterError, formatFilterError, globToRegex, registerFilterFunctions } from './filter.js';
import { addSession, createFixtureDb, type FixtureDb, type FixtureRequest } from './requests.fixture.js';

// Ten requests with known fields; row i has unique 2(i+1) and starts at i µs.
const ROWS: FixtureRequest[] = [
  /* 0 */ { opcode: 1, path: '/a/b.txt', dur_ns: 50_000, pid: 10, comm: 'cat' },
  /* 1 */ { opcode: 15, path: '/a/b.txt', dur_ns: 2_000_000, pid: 10, comm: 'cat', reply_len: 16 + 4096 },
  /* 2 */ { opcode: 15, path: '/a/c.log', dur_ns: 500_000, pid: 11, comm: 'grep' },
  /* 3 */ { opcode: 16, path: '/a/b.txt', dur_ns: 3_000_000, errno: 5, pid: 12, comm: 'dd', len: 80 + 4096 },
  /* 4 */ { opcode: 1, path: '/a/missing', dur_ns: 20_000, errno: 2, pid: 10, comm: 'cat' },
  /* 5 */ { opcode: 3, path: '/', dur_ns: null, pid: 13, comm: 'ls' },
  /* 6 */ { opcode: 15, path: `/x/"quoted'.txt`, dur_ns: 1_500_000_000, errno: 4, state: 'interrupted', outcome: 'eintr', pid: 11, comm: 'grep' },
  /* 7 */ { opcode: 2, path: '/a/b.txt', dur_ns: null, errno: null, state: 'noreply', pid: 0, comm: null },
  /* 8 */ { opcode: 14, path: '/dir/sub/deep.txt', dur_ns: 100_000, nodeid: 0xffffffffffffffffn, fh: 7 },
  /* 9 */ { opcode: 18, path: '/dir/sub/deep.txt', dur_ns: 150_000, uid: 1000, background: 1 },
];
const ALL = ROWS.map((_, i) => i);
const except = (...xs: number[]): number[] => ALL.filter((i) => !xs.includes(i));

let fx: FixtureDb;
let session: number;
beforeAll(() => {
  fx = createFixtureDb();
  registerFilterFunctions(fx.db);
  // A decoy session: every query must stay within its own session.
  addSession(fx.db, ROWS.slice(0, 3));
  session = addSession(fx.db, ROWS);
});
afterAll(() => fx.cleanup());

/** The fixture rows (by index) an expression selects, run through SQLite. */
function select(expr: string): number[] {
  const { where, params } = compileFilter(expr);
  const uniques = fx.db.prepare(`SELECT unique_id FROM requests WHERE session = ? AND ${where} ORDER BY seq`).pluck().all(session, ...params) as number[];
  return uniques.map((u) => u / 2 - 1);
}

describe('filter: valid expressions select the right rows', () => {
  const cases: [string, number[]][] = [
    ['', ALL],
    ['op==READ', [1, 2, 6]],
    ['op == 15', [1, 2, 6]],
    ['op==read', [1, 2, 6]],
    ['op==FUSE_READ', [1, 2, 6]],
    ['op==0xf', [1, 2, 6]],
    ['op != READ', except(1, 2, 6)],
    ['op in {READ WRITE}', [1, 2, 3, 6]],
    ['op in {READ, WRITE, 1}', [0, 1, 2, 3, 4, 6]],
    ['dur>1ms', [1, 3, 6]],
    ['dur>=1.5s', [6]],
    ['dur > 1500000000ns', []],
    ['dur<100us', [0, 4]],
    ['dur<=100µs', [0, 4, 8]],
    ['dur>0', except(5, 7)],
    ['dur', except(5, 7)],
    ['!(dur>1ms)', [0, 2, 4, 5, 7, 8, 9]],
    ['not dur', [5, 7]],
    ['err', [3, 4, 6]],
    ['!err', except(3, 4, 6)],
    ['err==ENOENT', [4]],
    ['err==enoent', [4]],
    ['err==2', [4]],
    ['err!=ENOENT', except(4)],
    ['err==0', [0, 1, 2, 8, 9]],
    ['err in {EIO EINTR}', [3, 6]],
    ['state==interrupted', [6]],
    ['state == "noreply"', [7]],
    ['state in {error interrupted unanswered}', [3, 4, 5, 6]],
    ['state ~ "*r*"', [3, 4, 5, 6, 7]],
    ['path ~ "/a/*"', [0, 1, 2, 3, 4, 7]],
    ['path ~ "/**.txt"', [0, 1, 3, 6, 7, 8, 9]],
    ['path ~ "/*.txt"', []],
    ['path ~ "/a/?.txt"', [0, 1, 3, 7]],
    ['path ~ "/a/[bc].*"', [0, 1, 2, 3, 7]],
    ['path ~ "/a/[!b]*"', [2, 4]],
    ['path ~ /\\.log$/', [2]],
    ['path ~ /B\\.TXT/i', [0, 1, 3, 7]],
    ['path ~ /B\\.TXT/', []],
    ['path == "/a/b.txt"', [0, 1, 3, 7]],
    [`path == "/x/\\"quoted'.txt"`, [6]],
    [`path == '/x/"quoted\\'.txt'`, [6]],
    ['path', ALL],
    ['comm == cat', [0, 1, 4, 8, 9]],
    ['comm ~ "gr*"', [2, 6]],
    ['comm', except(7)],
    ['pid == 0x0a', [0, 1, 4]],
    ['pid', except(7)],
    ['pid >= 11 && pid < 13', [2, 3, 6]],
    ['nodeid == 0xffffffffffffffff', [8]],
    ['fh', [8]],
    ['fh == 7', [8]],
    ['unique == 14', [6]],
    ['unique >= 14 && unique <= 0x12', [6, 7, 8]],
    ['t >= 5us && t < 7us', [5, 6]],
    ['t < 0.002ms', [0, 1]],
    ['len > 100', [3]],
    ['uid == 1000', [9]],
    ['op==READ && dur>1ms || state==noreply', [1, 6, 7]],
    ['state==noreply || op==READ && dur>1ms', [1, 6, 7]],
    ['op==READ and (dur>1ms or err)', [1, 6]],
    ['(op==READ || op==WRITE) && !(path ~ "/x/**")', [1, 2, 3]],
    ['not op==READ', except(1, 2, 6)],
    ['!!op==READ', [1, 2, 6]],
    ['op==READ&&dur>1ms', [1, 6]],
    ['OP==READ AND DUR>1MS', [1, 6]],
  ];
  it.each(cases)('%s', (expr, rows) => {
    expect(select(expr)).toEqual(rows);
  });
});

describe('filter: compiled SQL shape', () => {
  const cases: [string, string, unknown[]][] = [
    ['', '1', []],
    ['op==READ && dur>1ms', '(opcode = ? AND dur_ns > ?)', [15, 1_000_000]],
    ['op==READ || !err', '(opcode = ? OR ((errno > 0) IS NOT 1))', [15]],
    ['err != ENOENT', 'errno IS NOT ?', [2]],
    ['op in {READ WRITE}', 'opcode IN (?, ?)', [15, 16]],
    ['path ~ "/a/*.txt"', 'regexp(?, path)', ['^/a/[^/]*\\.txt$']],
    ['path ~ /x/i', 'regexp(?, path, ?)', ['x', 'i']],
    ['dur > 1.5s', 'dur_ns > ?', [1_500_000_000]],
    ['t < 250us', 'start_ns < ?', [250_000]],
    ['dur < 100ns', 'dur_ns < ?', [100]],
    ['nodeid == 0xffffffffffffffff', 'nodeid = ?', [-1]],
    ['unique == 0x7fffffffffffffff', 'unique_id = ?', [0x7fffffffffffffffn]],
    ['state == interrupted', 'state = ?', ['interrupted']],
  ];
  it.each(cases)('%s', (expr, where, params) => {
    expect(compileFilter(expr)).toEqual({ where, params });
  });
});

describe('filter: globs', () => {
  it.each([
    ['/a/*.txt', '^/a/[^/]*\\.txt$'],
    ['/a/**', '^/a/.*$'],
    ['f?o', '^f[^/]o$'],
    ['[!ab]x', '^[^ab]x$'],
    ['a\\*b', '^a\\*b$'],
    ['(x)+', '^\\(x\\)\\+$'],
  ])('%s -> %s', (glob, re) => {
    expect(globToRegex(glob)).toBe(re);
  });
});

describe('filter: errors name the column', () => {
  const FIELDS = 'op, unique, nodeid, fh, path, pid, comm, uid, err, state, dur, t, len';
  const STATES = 'ok, error, interrupted, late, unanswered, aborted, noreply, notify, unknown, lost';
  const cases: [string, number, string][] = [
    ['op == && dur>1ms', 7, "expected a value after '==' at column 7"],
    ['op ==', 6, "expected a value after '==' at column 6"],
    ['foo == 1', 1, `unknown field 'foo' at column 1; valid fields: ${FIELDS}`],
    ['dru > 1ms', 1, `unknown field 'dru' at column 1; did you mean dur?; valid fields: ${FIELDS}`],
    ['op==RAED', 5, "unknown opcode 'RAED' at column 5; did you mean READ?"],
    ['op==LOOKUPP', 5, "unknown opcode 'LOOKUPP' at column 5; did you mean LOOKUP?"],
    ['op==XYZZYQ', 5, "unknown opcode 'XYZZYQ' at column 5"],
    ['state==interupted', 8, `unknown state 'interupted' at column 8; did you mean interrupted? (states: ${STATES})`],
    ['err==ENOENTT', 6, "unknown errno 'ENOENTT' at column 6; did you mean ENOENT?"],
    ['dur>10', 5, 'dur needs a time unit (ns, us, ms, s) at column 5, e.g. dur>10ms'],
    ['dur>10xs', 5, "unknown unit 'xs' at column 5; use ns, us, ms or s"],
    ['dur>1.5ns', 5, "'1.5ns' is finer than a nanosecond at column 5"],
    ['pid == 1.5', 8, "expected a whole number for pid, found '1.5' at column 8"],
    ['pid < "x"', 7, `expected a number for pid, found '"x"' at column 7`],
    ['pid == 10ms', 8, "unexpected unit 'ms' after a number for pid at column 8"],
    ['(op==READ', 10, "expected ')' to close the '(' at column 1, found the end of the expression at column 10"],
    ['op==READ)', 9, "unexpected ')' without a matching '(' at column 9"],
    ['()', 2, "expected an expression inside '()' at column 2"],
    ['path ~ /(/', 8, 'invalid regular expression (/(/: Unterminated group) at column 8'],
    ['path ~ /abc', 8, "unterminated regular expression (missing closing '/') at column 8"],
    ['path ~ /a/g', 8, "unknown regular expression flag in 'g' at column 8; use i, m, s or u"],
    ['path == "abc', 9, 'unterminated string (missing closing ") at column 9'],
    ['op = READ', 4, "'=' is not an operator at column 4; use '==' to compare"],
    ['path < "x"', 6, "'<' does not apply to path at column 6; use ==, !=, ~ or in"],
    ['op ~ "R*"', 4, "'~' applies to path, comm and state, not to op at column 4"],
    ['op READ', 4, "expected an operator (== != < <= > >= ~ in) after 'op', found 'READ' at column 4"],
    ['&& op==READ', 1, `expected a field (${FIELDS}), found '&&' at column 1`],
    ['op==READ &&', 12, "expected a field after '&&', found the end of the expression at column 12"],
    ['op==READ || || err', 13, "expected a field after '||', found '||' at column 13"],
    ['pid == 12 13', 11, "expected '&&', '||' or the end after a test, found '13' at column 11"],
    ['op in {}', 7, "expected at least one value in '{}' at column 7"],
    ['op in {READ', 12, "expected '}' to close the '{' at column 7 at column 12"],
    ['op in READ', 7, "expected '{' after 'in', found 'READ' at column 7"],
    ['path == /a/b', 9, `unexpected '/' at column 9; quote paths (path == "/a/b") and write regular expressions after ~ (path ~ /re/)`],
    ['path == 12', 9, 'expected a quoted string for path at column 9, e.g. path=="12"'],
    ['pid == 0x', 8, "expected hex digits after '0x' at column 8"],
    ['pid == 0x10000000000000000', 8, "number '0x10000000000000000' does not fit in 64 bits at column 8"],
    ['pid == 1.2.3', 8, "malformed number '1.2.3' at column 8"],
    ['op == READ # x', 12, "unexpected character '#' at column 12"],
    ['state > ok', 7, "'>' does not apply to state at column 7; use ==, !=, ~ or in"],
    ['dur > fast', 7, "expected a duration (e.g. 10ms) for dur, found 'fast' at column 7"],
  ];
  it.each(cases)('%s', (expr, column, message) => {
    let err: unknown;
    try {
      compileFilter(expr);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FilterError);
    expect((err as FilterError).message).toBe(message);
    expect((err as FilterError).column).toBe(column);
    expect((err as FilterError).expression).toBe(expr);
  });

  it('formats the expression with a caret under the column', () => {
    let err: FilterError | undefined;
    try {
      compileFilter('op == && dur>1ms');
    } catch (e) {
      err = e as FilterError;
    }
    expect(formatFilterError(err!)).toBe("op == && dur>1ms\n      ^ expected a value after '==' at column 7");
  });
});

describe('filter: user text never reaches SQL unparameterised', () => {
  // Every token of a compiled WHERE must come from the compiler's own vocabulary.
  const VOCAB = new Set([
    '(', ')', ',', '?', '1', '0', '=', '<', '<=', '>', '>=', '!=', 'AND', 'OR', 'IS', 'NOT', 'IN', 'NULL', 'regexp',
    'opcode', 'unique_id', 'nodeid', 'fh', 'path', 'pid', 'comm', 'uid', 'errno', 'state', 'dur_ns', 'start_ns', 'len',
  ]);
  const EVIL = [
    `'; DROP TABLE requests; --`,
    `"); DROP TABLE requests; --`,
    `') OR 1=1 --`,
    `x" OR "1"="1`,
    `)))`,
    `\\'\\"`,
    `/**/UNION SELECT * FROM sessions--`,
  ];
  const quote = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const exprs = EVIL.flatMap((s) => [
    `path == ${quote(s)}`,
    `comm != ${quote(s)}`,
    `path ~ ${quote(s)}`,
    `comm in {${quote(s)} ${quote(s + s)}}`,
    `path ~ /${s.replace(/[/\\()[\]*+?.^$|{}]/g, '\\$&')}/i`,
    `!(path == ${quote(s)}) && (comm ~ ${quote(s)} || op==READ)`,
  ]);
  it.each(exprs)('%s', (expr) => {
    const before = fx.db.prepare('SELECT count(*) FROM requests').pluck().get();
    const { where, params } = compileFilter(expr);
    for (const tok of where.split(/\s+|(?=[(),])|(?<=[(),])/).filter(Boolean)) {
      expect(VOCAB.has(tok), `token ${JSON.stringify(tok)} of ${where}`).toBe(true);
    }
    for (const s of EVIL) expect(where).not.toContain(s);
    // The hostile text went into the parameters instead, and the query runs harmlessly.
    expect(params.some((p) => typeof p === 'string')).toBe(true);
    fx.db.prepare(`SELECT count(*) FROM requests WHERE session = ? AND ${where}`).pluck().get(session, ...params);
    expect(fx.db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'requests'").pluck().get()).toBe(1);
    expect(fx.db.prepare('SELECT count(*) FROM requests').pluck().get()).toBe(before);
  });

  it('matches a stored value full of quotes exactly, as data', () => {
    expect(select(`path == "/x/\\"quoted'.txt" || path == "'; DROP TABLE requests; --"`)).toEqual([6]);
  });
});
