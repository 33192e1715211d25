// Issue 12 items 5 and 9: every user or environment error is one line on stderr with status 2, and
// the read commands work on traces they cannot write: in a read-only directory (as an ordinary
// user), on a read-only file system (a tmpfs this test mounts and remounts read-only), with a -wal
// file left behind and no -shm. Also: oversized and deeply nested filters, damaged and truncated
// files, planted -wal/-shm symlinks, `doctor --db DIR`, and -wal/-shm modes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openTraceDb } from '../src/store/db.js';
import { addSession } from '../src/store/requests.fixture.js';
import { asUser } from './helpers/as-user.js';
import { runCommand } from './helpers/mount.js';
import { compileDist } from './helpers/dist.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'fusetrace.js');
const NOBODY = 65534;

let dir: string;
const mounts: string[] = [];

beforeAll(() => {
  compileDist();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-robust-'));
  fs.chmodSync(dir, 0o755); // nobody must reach the read-only directory inside
});
afterEach(async () => {
  for (const m of mounts.splice(0).reverse()) await runCommand('umount', [m]);
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function fusetrace(args: string[], opts: { uid?: number } = {}): Run {
  // As another user, through asUser: a fresh clone may sit below a 0700 directory (mktemp), which
  // that user could not traverse to reach bin/fusetrace.js.
  const user = opts.uid === undefined ? undefined : asUser(opts.uid, [process.execPath, BIN, ...args]);
  try {
    const [cmd, argv] = user ? [user.cmd, user.args] : [process.execPath, [BIN, ...args]];
    const r = spawnSync(cmd, argv, { encoding: 'utf8', cwd: dir, env: { ...process.env, TZ: 'UTC', NO_COLOR: '1' } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    user?.cleanup();
  }
}

/** One line on stderr, status 2, no stack. */
function expectUserError(r: Run, pattern: RegExp): void {
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.status).toBe(2);
}

/** A trace of `n` requests at `file`; with `leaveWal`, a copy taken while the -wal still held the rows. */
function makeTrace(file: string, n = 50, leaveWal = false): void {
  const tmp = leaveWal ? `${file}.tmp` : file;
  const db = openTraceDb(tmp, { create: true });
  db.pragma('wal_autocheckpoint = 0');
  addSession(db, Array.from({ length: n }, () => ({})), { name: 'ro' });
  if (leaveWal) {
    // As after a SIGKILLed recorder whose trace was then copied without its -shm: rows only in the -wal.
    fs.copyFileSync(tmp, file);
    fs.copyFileSync(`${tmp}-wal`, `${file}-wal`);
  }
  db.close();
  if (leaveWal) fs.rmSync(tmp);
}

const READ_COMMANDS: string[][] = [['sessions'], ['show'], ['stats'], ['export', '--format', 'jsonl'], ['show', '--json']];

function expectReadable(file: string, uid?: number): void {
  for (const c of READ_COMMANDS) {
    const r = fusetrace(['--db', file, ...c], { uid });
    expect(r.status, `${c.join(' ')}: ${r.stderr}`).toBe(0);
    expect(r.stderr).not.toMatch(/error/);
  }
  const show = fusetrace(['--db', file, 'show', '--json'], { uid });
  expect(show.stdout.trim().split('\n')).toHaveLength(50);
}

describe('read-only traces (issue 12 item 5)', () => {
  it('every read command works in a read-only directory, as an ordinary user, with or without a -wal left behind', () => {
    const ro = path.join(dir, 'rodir');
    fs.mkdirSync(ro);
    makeTrace(path.join(ro, 'clean.db'));
    makeTrace(path.join(ro, 'wal.db'), 50, true);
    expect(fs.existsSync(path.join(ro, 'wal.db-wal'))).toBe(true);
    expect(fs.existsSync(path.join(ro, 'wal.db-shm'))).toBe(false);
    for (const f of fs.readdirSync(ro)) fs.chmodSync(path.join(ro, f), 0o644);
    fs.chmodSync(ro, 0o555);
    try {
      expectReadable(path.join(ro, 'clean.db'), NOBODY);
      expectReadable(path.join(ro, 'wal.db'), NOBODY);
      expect(fs.readdirSync(ro).sort()).toEqual(['clean.db', 'wal.db', 'wal.db-wal']);
    } finally {
      fs.chmodSync(ro, 0o755);
    }
  });

  it('every read command works on a read-only file system (tmpfs remounted ro), with or without a -wal', async () => {
    const fsDir = path.join(dir, 'rofs');
    fs.mkdirSync(fsDir);
    const m = await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'fusetrace-test-ro', fsDir]);
    expect(m.code, m.stderr).toBe(0);
    mounts.push(fsDir);
    makeTrace(path.join(fsDir, 'clean.db'));
    makeTrace(path.join(fsDir, 'wal.db'), 50, true);
    const r = await runCommand('mount', ['-o', 'remount,ro', fsDir]);
    expect(r.code, r.stderr).toBe(0);
    expectReadable(path.join(fsDir, 'clean.db'));
    expectReadable(path.join(fsDir, 'wal.db'));
    // Writing is refused with one line.
    expectUserError(fusetrace(['--db', path.join(fsDir, 'new.db'), 'record', '--', '/bin/true', dir]), /read-only|cannot/);
  });
});

describe('bad input and damaged files: one line, status 2 (issue 12 item 5)', () => {
  it('refuses filters of 1000 terms and deep nesting with a clear message', () => {
    const file = path.join(dir, 'filters.db');
    makeTrace(file);
    const many = Array.from({ length: 1000 }, (_, i) => `unique != ${i}`).join(' && ');
    expectUserError(oneLine(fusetrace(['--db', file, 'show', '--filter', many])), /more than 256 tests/);
    const deep = `${'('.repeat(5000)}op==READ${')'.repeat(5000)}`;
    expectUserError(oneLine(fusetrace(['--db', file, 'stats', '--filter', deep])), /nests more than 64 levels/);
    const nots = `${'!'.repeat(5000)}err`;
    expectUserError(oneLine(fusetrace(['--db', file, 'export', '--format', 'jsonl', '--filter', nots])), /nests more than 64 levels/);
    // Within the limits a long filter works.
    const ok = fusetrace(['--db', file, 'show', '--filter', Array.from({ length: 200 }, (_, i) => `unique != ${1000 + i}`).join(' && ')]);
    expect(ok.status, ok.stderr).toBe(0);
  });

  it('calls a truncated trace damaged or truncated, not a foreign file', () => {
    const file = path.join(dir, 'cut.db');
    makeTrace(file, 20_000);
    const size = fs.statSync(file).size;
    fs.truncateSync(file, Math.floor(size / 3));
    for (const c of READ_COMMANDS) expectUserError(fusetrace(['--db', file, ...c]), /damaged or truncated/);
  });

  it('refuses a planted -wal or -shm symlink and leaves its target alone', () => {
    const file = path.join(dir, 'planted.db');
    makeTrace(file);
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'precious');
    for (const suffix of ['-wal', '-shm']) {
      fs.symlinkSync(victim, file + suffix);
      expectUserError(fusetrace(['--db', file, 'sessions']), new RegExp(`${suffix} is a symbolic link`));
      expectUserError(fusetrace(['--db', file, 'record', '--', '/bin/true', dir]), new RegExp(`${suffix} is a symbolic link`));
      fs.rmSync(file + suffix);
    }
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('doctor --db agrees with record about a directory', () => {
    const r = fusetrace(['--db', dir, 'doctor', '--no-mount']);
    expect(r.stdout).toMatch(/FAIL\s+trace file: not writable: .* is a directory/);
    expectUserError(fusetrace(['--db', dir, 'record', '--', '/bin/true', dir]), /is a directory/);
  });
});

describe('-wal and -shm modes (issue 12 item 9)', () => {
  it('a writer gives existing -wal/-shm files the trace file mode', () => {
    const file = path.join(dir, 'modes.db');
    makeTrace(file);
    fs.writeFileSync(`${file}-wal`, '');
    fs.chmodSync(`${file}-wal`, 0o644);
    fs.chmodSync(file, 0o600);
    const db = openTraceDb(file);
    db.prepare('SELECT count(*) FROM sessions').get();
    expect(fs.statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
    expect(fs.statSync(`${file}-shm`).mode & 0o777).toBe(0o600);
    db.close();
    // A trace the user made group-readable keeps that for its side files.
    fs.chmodSync(file, 0o640);
    const db2 = openTraceDb(file);
    db2.prepare('SELECT count(*) FROM sessions').get();
    expect(fs.statSync(`${file}-wal`).mode & 0o777).toBe(0o640);
    db2.close();
  });
});

/** The filter error is reported as the expression, a caret and the message: fold it into its message line. */
function oneLine(r: Run): Run {
  const msg = r.stderr.split('\n').find((l) => /more than|nests/.test(l)) ?? r.stderr;
  expect(r.stderr).not.toMatch(/internal error|Maximum call stack|\n\s+at /);
  return { ...r, stderr: `${msg.trim()}\n` };
}
