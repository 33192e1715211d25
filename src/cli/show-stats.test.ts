// `fusetrace show` and `fusetrace stats` through the real CLI (node bin/fusetrace.js, from dist/) on a
// real trace file: synthetic ledger rows, and for one session real frames built by the codec.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReply, buildRequest, Opcode } from '../protocol/index.js';
import { openTraceDb } from '../store/db.js';
import { addRequests, addSession } from '../store/requests.fixture.js';
import { TraceWriter } from '../store/writer.js';
import { compileDist } from '../../test/helpers/dist.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'fusetrace.js');

let dir: string;
let file: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function fusetrace(...args: string[]): Run {
  const r = spawnSync(process.execPath, [BIN, '--db', file, ...args], { encoding: 'utf8', cwd: dir, env: { ...process.env, TZ: 'UTC' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The first column of each data line of a piped (tab-separated) table: the uniques. */
const uniques = (out: string): string[] => out.trimEnd().split('\n').slice(1).map((l) => l.split('\t')[0]!);

beforeAll(() => {
  compileDist(['dist/src/cli/show.js']);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-cli-show-'));
  file = path.join(dir, 'trace.db');
  const db = openTraceDb(file, { create: true });

  // Session 1 "ledger": synthetic rows only.
  addSession(
    db,
    [
      { opcode: 1, path: '/src/a.c', dur_ns: 40_000, pid: 10, comm: 'make' },
      { opcode: 15, path: '/src/a.c', dur_ns: 2_500_000, pid: 11, comm: 'cc1', reply_len: 16 + 8192 },
      { opcode: 16, path: '/out/a.o', dur_ns: 1_200_000, pid: 11, comm: 'cc1', len: 80 + 4096 },
      { opcode: 1, path: '/src/missing.h', dur_ns: 30_000, errno: 2, pid: 11, comm: 'cc1' },
      { opcode: 15, path: '/src/b.c', dur_ns: 900_000, errno: 4, state: 'interrupted', outcome: 'eintr', pid: 12, comm: 'cat' },
      { opcode: 3, path: '/', dur_ns: null, pid: 13, comm: 'ls' },
    ],
    { name: 'ledger' },
  );

  // Session 2 "frames": a LOOKUP and its reply, a READ interrupted and answered EINTR, as real frames.
  const w = new TraceWriter(db);
  const mono = 5_000_000_000n;
  const s2 = w.beginSession({ name: 'frames', command: ['./hello', '/mnt'], mountpoint: '/mnt', startedWallNs: 1_700_000_000_000_000_000n, startedMonoNs: mono });
  const frame = (seq: number, tsNs: bigint, dir: 0 | 1, data: Buffer, writeErrno = 0) => ({
    seq, tsNs: mono + tsNs, fwdNs: mono + tsNs + 100n, dir, unique: data.readBigUInt64LE(8), opcode: dir === 0 ? data.readUInt32LE(4) : null,
    error: dir === 1 ? data.readInt32LE(4) : null, len: data.length, data, writeErrno,
  });
  w.addFrames([
    frame(0, 1_000n, 0, buildRequest({ opcode: Opcode.LOOKUP!, unique: 2n, nodeid: 1n, pid: 77, names: ['hello'] })),
    frame(1, 31_000n, 1, buildReply({ unique: 2n, opcode: Opcode.LOOKUP!, args: [{ nodeid: 2n, attr: { ino: 2n, size: 13n, mode: 0o100444 } }] })),
    frame(2, 40_000n, 0, buildRequest({ opcode: Opcode.READ!, unique: 4n, nodeid: 2n, pid: 77, arg: { fh: 0n, offset: 0n, size: 4096 } })),
    frame(3, 50_000n, 0, buildRequest({ opcode: Opcode.INTERRUPT!, unique: 5n, arg: { unique: 4n } })),
    frame(4, 60_000n, 1, buildReply({ unique: 4n, error: -4 })),
  ]);
  w.flush();
  addRequests(db, s2, [
    { seq: 0, unique: 2, opcode: 1, nodeid: 1, path: '/hello', pid: 77, comm: 'cat', start_ns: 1_000, dur_ns: 30_000, reply_seq: 1 },
    { seq: 2, unique: 4, opcode: 15, nodeid: 2, path: '/hello', pid: 77, comm: 'cat', start_ns: 40_000, dur_ns: 20_000, errno: 4, state: 'interrupted', outcome: 'eintr', reply_seq: 4, interrupt_seq: 3 },
  ]);
  db.close();
}, 300_000);
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('fusetrace show', () => {
  it('prints the latest session as tab-separated cells when piped', () => {
    const r = fusetrace('show');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      'UNIQUE\tTIME\tOP\tDUR\tRESULT\tSTATE\tPID\tCOMM\tNODEID\tPATH\n' +
        '2\t0.000001\tLOOKUP\t30.0µs\tOK\tok\t77\tcat\t1\t/hello\n' +
        '4\t0.000040\tREAD\t20.0µs\tEINTR\tinterrupted:eintr\t77\tcat\t2\t/hello\n',
    );
  });
  it('selects a session by id or name, a range, a filter, a sort and a page', () => {
    expect(uniques(fusetrace('show', 'ledger').stdout)).toEqual(['2', '4', '6', '8', '10', '12']);
    expect(uniques(fusetrace('show', '1', '4-8').stdout)).toEqual(['4', '6', '8']);
    expect(uniques(fusetrace('show', 'ledger', 'end').stdout)).toEqual(['12']);
    expect(uniques(fusetrace('show', 'ledger', '8-end').stdout)).toEqual(['8', '10', '12']);
    // A lone argument that names no session is a range in the latest session.
    expect(uniques(fusetrace('show', '4-end').stdout)).toEqual(['4']);
    expect(uniques(fusetrace('show', 'ledger', '--filter', 'op==READ && dur>1ms').stdout)).toEqual(['4']);
    expect(uniques(fusetrace('show', 'ledger', '-f', 'err || !dur').stdout)).toEqual(['8', '10', '12']);
    expect(uniques(fusetrace('show', 'ledger', '--filter', 'path ~ "/src/*.c"', '--sort', 'dur').stdout)).toEqual(['4', '10', '2']);
    expect(uniques(fusetrace('show', 'ledger', '--sort', 'dur', '-n', '2', '--offset', '1').stdout)).toEqual(['6', '10']);
  });
  it('aligns the table on a terminal', () => {
    // `script` gives the child a pseudo-terminal; NO_COLOR keeps escapes out of the comparison.
    const r = spawnSync('script', ['-qec', `${process.execPath} ${BIN} --db ${file} show ledger 4-6`, '/dev/null'], {
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
    });
    expect(r.status).toBe(0);
    expect(r.stdout.replace(/\r/g, '')).toBe(
      '  UNIQUE         TIME OP                DUR RESULT    STATE           PID COMM             NODEID PATH\n' +
        '       4     0.000001 READ           2.50ms OK        ok               11 cc1                   1 /src/a.c\n' +
        '       6     0.000002 WRITE          1.20ms OK        ok               11 cc1                   1 /out/a.o\n',
    );
  });
  it('prints one JSON object per line, with the decoded frames when they were recorded', () => {
    const ledger = fusetrace('show', 'ledger', '8', '--json').stdout.trimEnd().split('\n');
    expect(ledger.map((l) => JSON.parse(l))).toEqual([
      {
        unique: 8, op: 'LOOKUP', nodeid: 1, fh: null, path: '/src/missing.h', pid: 11, comm: 'cc1', uid: 0, start_ns: 3000, dur_ns: 30000,
        err: 'ENOENT', errno: 2, state: 'error', outcome: null, background: false, len: 56, reply_len: 16,
      },
    ]);
    const framed = fusetrace('show', 'frames', '2', '--json').stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(framed).toHaveLength(1);
    expect(framed[0].decoded.request.line).toBe('rx 2 LOOKUP n1 "hello" pid 77');
    expect(framed[0].decoded.request.fields['name[0]']).toBe('"hello"');
    expect(framed[0].decoded.reply.line).toMatch(/^tx 2 OK .*0\.03ms$/);
    expect(framed[0].decoded.reply.fields['fuse_entry_out.nodeid']).toBe('n2');
  });
  it('prints the frames of each request with --frames', () => {
    const r = fusetrace('show', 'frames', '--frames');
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe('0.000001 #0 rx 2 LOOKUP n1 "hello" pid 77');
    expect(lines[1]).toMatch(/^0\.000031 #1 tx 2 OK /);
    expect(lines[2]).toMatch(/^0\.000040 #2 rx 4 READ n2 .*pid 77$/);
    expect(lines[3]).toMatch(/^0\.000050 #3 rx 5 INTERRUPT /);
    expect(lines[4]).toBe('0.000060 #4 tx 4 EINTR 0.02ms');
    expect(fusetrace('show', 'ledger', '2', '--frames').stdout).toBe('0.000000 unique 2 LOOKUP: no frames recorded for this request\n');
  });
  it('stops quietly when the reader goes away', () => {
    const r = spawnSync('sh', ['-c', `${process.execPath} ${BIN} --db ${file} show ledger | head -1`], { encoding: 'utf8' });
    expect(r.stdout).toBe('UNIQUE\tTIME\tOP\tDUR\tRESULT\tSTATE\tPID\tCOMM\tNODEID\tPATH\n');
    expect(r.stderr).toBe('');
  });
  it.each([
    [['show', '--filter', 'op == && dur>1ms'], "fusetrace: bad --filter:\n  op == && dur>1ms\n        ^ expected a value after '==' at column 7\n"],
    [['show', '--filter', 'op==RAED'], "fusetrace: bad --filter:\n  op==RAED\n      ^ unknown opcode 'RAED' at column 5; did you mean READ?\n"],
    [['show', 'ledger', '9-3'], "fusetrace: bad range '9-3': 3 is before 9\n"],
    [['show', 'nosuch'], 'fusetrace: no session "nosuch" in ' + '<file>' + ' (fusetrace sessions lists them)\n'],
    [['show', '--sort', 'size'], "fusetrace: unknown --sort 'size' (expected time or dur)\n"],
    [['show', '-n', 'ten'], "fusetrace: --limit needs a whole number, not 'ten'\n"],
    [['stats', '--filter', 'dur>10'], 'fusetrace: bad --filter:\n  dur>10\n      ^ dur needs a time unit (ns, us, ms, s) at column 5, e.g. dur>10ms\n'],
  ])('refuses %j with one clear message', (args, message) => {
    const r = fusetrace(...args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(message.replace('<file>', file));
  });
});

describe('fusetrace stats', () => {
  it('prints the report', () => {
    const r = fusetrace('stats', 'ledger');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      [
        'session 1: 6 requests, 2 errors',
        '  states: ok 3, error 1, interrupted 1, unanswered 1',
        '  read 8.00KiB, written 4.00KiB; most in flight: 6 at 0.000005s',
        '',
        '  OP       COUNT       %  ERRORS  ANSWERED     P50     P90     P99     MAX',
        '  LOOKUP       2   33.3%       1         2  30.0µs  40.0µs  40.0µs  40.0µs',
        '  READ         2   33.3%       1         2   900µs  2.50ms  2.50ms  2.50ms',
        '  GETATTR      1   16.7%       0         0       -       -       -       -',
        '  WRITE        1   16.7%       0         1  1.20ms  1.20ms  1.20ms  1.20ms',
        '  (all)        6  100.0%       2         5   900µs  2.50ms  2.50ms  2.50ms',
        '',
        '  ERRNO   COUNT',
        '  ENOENT      1',
        '  EINTR       1',
        '',
        '  PATH            REQUESTS  TOTAL TIME',
        '  /src/a.c               2      2.54ms',
        '  /out/a.o               1      1.20ms',
        '  /src/b.c               1       900µs',
        '  /src/missing.h         1      30.0µs',
        '  /                      1         0ns',
        '',
        '  PROCESS  REQUESTS  TOTAL TIME',
        '  11 cc1          3      3.73ms',
        '  12 cat          1       900µs',
        '  10 make         1      40.0µs',
        '  13 ls           1         0ns',
        '',
      ].join('\n'),
    );
  });
  it('prints JSON with a filter', () => {
    const r = fusetrace('stats', 'ledger', '--filter', 'comm == cc1', '--json', '--top', '1');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({
      session: 1,
      filter: 'comm == cc1',
      requests: 3,
      errors: 1,
      errnos: [{ errno: 2, err: 'ENOENT', count: 1 }],
      bytes_read: 8192,
      bytes_written: 4096,
      top_paths: [{ path: '/src/a.c', requests: 1, total_ns: 2_500_000 }],
      top_procs: [{ pid: 11, comm: 'cc1', requests: 3, total_ns: 3_730_000 }],
    });
    expect(s.overall).toEqual({ answered: 3, p50_ns: 1_200_000, p90_ns: 2_500_000, p99_ns: 2_500_000, max_ns: 2_500_000 });
  });
});
