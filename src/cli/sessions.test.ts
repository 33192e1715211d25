// `fusetrace sessions` through the real CLI (node bin/fusetrace.js, from dist/) on real trace files:
// exit codes, exact stderr lines, the terminal table, the pipe format and --json.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTraceDb } from '../store/db.js';
import { FORMAT_VERSION } from '../store/schema.js';
import { addRequests } from '../store/requests.fixture.js';
import { TraceWriter } from '../store/writer.js';
import { asUser } from '../../test/helpers/as-user.js';
import { compileDist } from '../../test/helpers/dist.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'fusetrace.js');

let dir: string;

beforeAll(() => {
  compileDist(['dist/src/cli/sessions.js']);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-cli-sessions-'));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function fusetrace(args: string[], opts: { env?: Record<string, string>; uid?: number; gid?: number } = {}): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, TZ: 'UTC', NO_COLOR: '', ...opts.env },
    uid: opts.uid,
    gid: opts.gid,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const WALL = BigInt(Date.UTC(2026, 0, 2, 3, 4, 5)) * 1_000_000n;

/** A trace file with two sessions: one ended after 75 s with ledger rows, one killed mid-recording. */
function makeTrace(file: string): void {
  const db = openTraceDb(file, { create: true });
  const w = new TraceWriter(db);
  const one = w.beginSession({ name: 'first', command: ['./hello', '-f', 'my dir'], mountpoint: '/mnt', startedWallNs: WALL, startedMonoNs: 1_000n });
  const frame = (seq: number, tsNs: bigint) => ({ seq, tsNs, fwdNs: null, dir: 0 as const, unique: BigInt(seq + 2), opcode: 1, error: null, len: 40, data: Buffer.alloc(40), writeErrno: 0 });
  w.addFrames([frame(0, 2_000n), frame(1, 3_000n)]);
  w.updateSession({ endedMonoNs: 1_000n + 75n * 10n ** 9n, endReason: 'unmount', exitStatus: 0 });
  const states = ['ok', 'ok', 'error', 'error', 'error', 'interrupted', 'unanswered', 'unanswered', 'late'];
  addRequests(db, one, states.map((state, i) => ({ seq: i, unique: i + 2, opcode: 1, start_ns: 0, len: 40, state })));
  w.beginSession({ command: ['./passthrough', '/srv'], startedWallNs: WALL + 3_600n * 10n ** 9n, startedMonoNs: 10n ** 12n });
  // The recorder "died" 2.5 s in: no end; the duration runs to the last frame.
  w.addFrames([frame(0, 10n ** 12n + 2_500_000_000n)]);
  w.close();
  db.close();
}

describe('fusetrace sessions', () => {
  it('lists sessions as tab-separated lines when stdout is not a terminal', () => {
    const file = path.join(dir, 'two.db');
    makeTrace(file);
    const r = fusetrace(['--db', file, 'sessions']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      [
        'ID\tNAME\tSTART\tDURATION\tCOMMAND\tREQUESTS\tERRORS\tINTERRUPTED\tUNANSWERED\tLOST',
        "1\tfirst\t2026-01-02 03:04:05\t1m15s\t./hello -f 'my dir'\t9\t3\t1\t2\t0",
        '2\t-\t2026-01-02 04:04:05\t2.5s+\t./passthrough /srv\t0\t0\t0\t0\t0',
        '',
      ].join('\n'),
    );
    // The global --db also comes from $FUSETRACE_DB.
    expect(fusetrace(['sessions'], { env: { FUSETRACE_DB: file } }).stdout).toBe(r.stdout);
  });

  it('prints an aligned table without tabs on a terminal', () => {
    const file = path.join(dir, 'tty.db');
    makeTrace(file);
    // script(1) gives the CLI a pseudo-terminal as stdout.
    const cmd = `${process.execPath} ${BIN} --db ${file} sessions`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC', NO_COLOR: '1' } });
    expect(r.status).toBe(0);
    const lines = r.stdout.replace(/\r/g, '').trimEnd().split('\n');
    expect(lines).toEqual([
      'ID  NAME   START                DURATION  COMMAND              REQUESTS  ERRORS  INTERRUPTED  UNANSWERED  LOST',
      " 1  first  2026-01-02 03:04:05  1m15s     ./hello -f 'my dir'         9       3            1           2     0",
      ' 2  -      2026-01-02 04:04:05  2.5s+     ./passthrough /srv          0       0            0           0     0',
    ]);
  });

  it('--json prints one object per line', () => {
    const file = path.join(dir, 'json.db');
    makeTrace(file);
    const r = fusetrace(['--db', file, 'sessions', '--json']);
    expect(r.status).toBe(0);
    const rows = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({
      id: 1, name: 'first', start: '2026-01-02T03:04:05.000Z', durationNs: '75000000000', ended: true,
      command: ['./hello', '-f', 'my dir'], mountpoint: '/mnt', endReason: 'unmount', frames: 2,
      requests: 9, errors: 3, interrupted: 1, unanswered: 2, lost: 0,
    });
    expect(rows[1]).toMatchObject({ id: 2, name: null, durationNs: '2500000000', ended: false, frames: 1, requests: 0 });
  });

  it('says how to record one when the file has no sessions', () => {
    const file = path.join(dir, 'empty.db');
    openTraceDb(file, { create: true }).close();
    const r = fusetrace(['--db', file, 'sessions']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`no sessions in ${file} yet; record one with: fusetrace record -- SERVER ARGS... MOUNTPOINT\n`);
  });

  it('refuses a missing, foreign, random or newer file with one line and exit 2', () => {
    const missing = path.join(dir, 'missing.db');
    const plain = path.join(dir, 'plain.db');
    const raw = new Database(plain);
    raw.exec('CREATE TABLE t (x)');
    raw.close();
    const random = path.join(dir, 'random.db');
    fs.writeFileSync(random, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)));
    const newer = path.join(dir, 'newer.db');
    openTraceDb(newer, { create: true }).close();
    const n = new Database(newer);
    n.pragma(`user_version = ${FORMAT_VERSION + 7}`);
    n.close();
    const cases: Array<[string, string]> = [
      [missing, `no trace file at ${missing} (record a session first, or pass --db)`],
      [plain, `${plain} is not a fusetrace trace file`],
      [random, `${random} is not a fusetrace trace file`],
      [newer, `${newer} was written by a newer fusetrace (format ${FORMAT_VERSION + 7}, this one reads up to ${FORMAT_VERSION}); upgrade fusetrace`],
    ];
    for (const [file, message] of cases) {
      const r = fusetrace(['--db', file, 'sessions']);
      expect({ status: r.status, stderr: r.stderr, stdout: r.stdout }).toEqual({ status: 2, stderr: `fusetrace: ${message}\n`, stdout: '' });
    }
    expect(fs.existsSync(missing)).toBe(false); // listing never creates a file
  });

  it('says permission denied for a trace file the user may not read', () => {
    // Directories others may traverse, so that only the file's own mode stands in the way.
    fs.chmodSync(dir, 0o711);
    const sub = fs.mkdtempSync(path.join(dir, 'perm-'));
    fs.chmodSync(sub, 0o755);
    const file = path.join(sub, 'private.db');
    makeTrace(file); // mode 0600, owned by the test's user
    // root reads everything: run the CLI as nobody; anyone else: take the read bit away.
    const asRoot = process.getuid?.() === 0;
    if (!asRoot) fs.chmodSync(file, 0o000);
    let r: Run;
    if (asRoot) {
      // In a private mount namespace with the checkout at a path nobody may enter (helpers/as-user.ts).
      const u = asUser(65534, [process.execPath, BIN, '--db', file, 'sessions']);
      try {
        const x = spawnSync(u.cmd, u.args, { encoding: 'utf8', cwd: sub, env: { ...process.env, TZ: 'UTC', NO_COLOR: '' } });
        r = { status: x.status, stdout: x.stdout, stderr: x.stderr };
      } finally {
        u.cleanup();
      }
    } else {
      r = fusetrace(['--db', file, 'sessions']);
    }
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 2, stderr: `fusetrace: cannot open ${file}: permission denied\n` });
  });
});
