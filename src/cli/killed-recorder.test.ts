// A recording whose derivation lagged when its recorder was SIGKILLed (batches committed, the
// requests behind): the read commands complete it first, through the real CLI,
// unless its recorder still runs (never raced) or the file cannot be written (one warning line).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTraceDb } from '../store/db.js';
import { Deriver } from '../store/derive.js';
import { START_MONO, busyScript } from '../store/ledger-frames.fixture.js';
import { rebuildLedger } from '../store/ledger.js';
import { TraceWriter } from '../store/writer.js';
import { asUser } from '../../test/helpers/as-user.js';
import { compileDist } from '../../test/helpers/dist.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'fusetrace.js');

let dir: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  compileDist();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-killed-'));
});
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A pid that ran and exited: the killed recorder. */
function deadPid(): number {
  return spawnSync('true').pid as number;
}

/**
 * What a recorder SIGKILLed mid-session leaves: every batch committed, its Deriver 40 frames in.
 * Returns the frames count and the requests rows a rebuild gives.
 */
function killedRecording(file: string, recorderPid: number): { frames: number; requests: unknown[] } {
  const s = busyScript();
  const db = openTraceDb(file, { create: true });
  const w = new TraceWriter(db, { derive: 'deferred' });
  const session = w.beginSession({ command: ['testfs', '/mnt'], startedWallNs: 1n, startedMonoNs: START_MONO, meta: { recorderPid } });
  for (let i = 0; i < s.frames.length; i += 30) {
    w.addFrames(s.frames.slice(i, i + 30));
    w.flush();
  }
  new Deriver(db, session).step(40);
  w.close();
  db.close();
  // The rows it should end with, from a copy.
  const copy = `${file}.copy`;
  fs.copyFileSync(file, copy);
  const c = openTraceDb(copy);
  rebuildLedger(c, session);
  const requests = c.prepare('SELECT * FROM requests ORDER BY seq').all();
  c.close();
  fs.rmSync(copy);
  return { frames: s.frames.length, requests };
}

function state(file: string): { derived: number; requests: unknown[] } {
  const db = openTraceDb(file, { readonly: true });
  try {
    return {
      derived: db.prepare('SELECT derived FROM sessions WHERE id = 1').pluck().get() as number,
      requests: db.prepare('SELECT * FROM requests ORDER BY seq').all(),
    };
  } finally {
    db.close();
  }
}

function fusetrace(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: dir, env: { ...process.env, TZ: 'UTC', NO_COLOR: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('a session whose recorder was killed before its derivation caught up', () => {
  it('is completed by the first read command, with one line, and equals a rebuild', () => {
    const file = path.join(dir, 'killed.db');
    const want = killedRecording(file, deadPid());
    const missing = state(file);
    expect(missing.derived).toBeLessThan(want.frames);
    const r = fusetrace(['--db', file, 'stats', '--json']);
    expect(r.status, r.stderr).toBe(0);
    // Seqs have no gaps here, so the frames not derived are those from `derived` on.
    expect(r.stderr).toBe(`fusetrace: completing the request index of session 1 (its recorder ended before deriving it): ${want.frames - missing.derived} frames\n`);
    expect(JSON.parse(r.stdout).requests).toBe(want.requests.length);
    expect(state(file)).toEqual({ derived: want.frames, requests: want.requests });
    // Nothing left to do the second time.
    const again = fusetrace(['--db', file, 'show']);
    expect({ status: again.status, stderr: again.stderr }).toEqual({ status: 0, stderr: '' });
  });

  it('is read as derived, and left alone, while its recorder still runs', () => {
    const file = path.join(dir, 'live.db');
    // A process whose command line names fusetrace, as a running `fusetrace record` does.
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)', 'fusetrace-record-stand-in'], { stdio: 'ignore' });
    children.push(live);
    killedRecording(file, live.pid as number);
    const before = state(file);
    const r = fusetrace(['--db', file, 'sessions']);
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(state(file)).toEqual(before);
    live.kill('SIGKILL');
  });

  it('gets one warning line when the reader may not write the file', () => {
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'readonly.db');
    killedRecording(file, deadPid());
    fs.chmodSync(file, 0o644);
    const before = state(file);
    const asRoot = process.getuid?.() === 0;
    let stderr: string;
    let status: number | null;
    if (asRoot) {
      const u = asUser(65534, [process.execPath, BIN, '--db', file, 'stats']);
      try {
        const x = spawnSync(u.cmd, u.args, { encoding: 'utf8', cwd: dir, env: { ...process.env, TZ: 'UTC', NO_COLOR: '' } });
        [stderr, status] = [x.stderr, x.status];
      } finally {
        u.cleanup();
      }
    } else {
      fs.chmodSync(file, 0o444);
      const x = fusetrace(['--db', file, 'stats']);
      [stderr, status] = [x.stderr, x.status];
    }
    expect(status, stderr).toBe(0);
    const lines = stderr.split('\n').filter((l) => l.includes('request index'));
    expect(lines).toEqual([expect.stringMatching(/^fusetrace: session 1: its recorder ended before \d+ frames reached the request index; showing what is indexed/)]);
    expect(state(file)).toEqual(before);
  });
});
