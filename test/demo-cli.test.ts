// End-to-end tests of `fusetrace demo --no-tui`: the real CLI, the real `fusetrace record` under
// it, a real mount of the demo server (src/demo/server.ts) and a real SQLite trace. The demo must
// finish in under 30 s, leave no mount, directory or process, and its printed summary must show
// every request lifecycle it promises. Then the recorded session is replayed against the same
// server: a deterministic server makes every reply match.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TraceReader } from '../src/store/reader.js';
import { spawn } from 'node:child_process';
import { CleanupRegistry, waitExit } from './helpers/mount.js';
import { buildForDemo, cleanupAfterDemo, CLI, ROOT, demoTempDirs, fuseMountsUnder, parseDemoStderr, pidExists, pidsMentioning, runCli } from './demo-helpers.js';
import { demoServerArgv } from '../src/demo/fixture.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());

beforeAll(() => buildForDemo(), 180_000);

/** The `show` rows printed after "interesting requests": TSV when stdout is a pipe. */
function showRows(stdout: string): Array<Record<string, string>> {
  const lines = stdout.split('\n');
  const h = lines.findIndex((l) => l.startsWith('UNIQUE\t'));
  expect(h, `no show header in:\n${stdout}`).toBeGreaterThan(0);
  const cols = lines[h]!.split('\t');
  const rows: Array<Record<string, string>> = [];
  for (const l of lines.slice(h + 1)) {
    if (!l.includes('\t')) break;
    const cells = l.split('\t');
    rows.push(Object.fromEntries(cols.map((c, i) => [c, cells[i] ?? ''])));
  }
  return rows;
}

describe('fusetrace demo --no-tui', () => {
  it('records every lifecycle state in under 30 s and leaves no mount, directory or process', async () => {
    const work = reg.tempDir('fusetrace-demo-test-');
    const db = join(work, 'trace.db');
    cleanupAfterDemo(reg, work);

    const r = await runCli(['--db', db, 'demo', '--no-tui'], 30_000, { TMPDIR: work });
    expect(r.signal, `killed after 30 s; stderr:\n${r.stderr}`).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(r.ms).toBeLessThan(30_000);

    // Nothing left behind.
    const { tempDir, pids, session } = parseDemoStderr(r.stderr);
    expect(tempDir.startsWith(`${work}/fusetrace-demo-`)).toBe(true);
    expect(existsSync(tempDir)).toBe(false);
    expect(demoTempDirs(work)).toEqual([]);
    expect(fuseMountsUnder(tempDir)).toEqual([]);
    expect(pids.length).toBe(5); // recorder, server, three readers
    for (const pid of pids) expect(pidExists(pid), `pid ${pid} still exists`).toBe(false);
    expect(pidsMentioning(tempDir)).toEqual([]);

    // The stats summary counts each state; the show lines name them per request.
    expect(r.stdout).toMatch(new RegExp(`session ${session}: \\d+ requests`));
    const states = /states: (.*)/.exec(r.stdout)?.[1] ?? '';
    for (const s of ['ok', 'error', 'interrupted', 'aborted']) expect(states).toMatch(new RegExp(`\\b${s} \\d+`));

    const rows = showRows(r.stdout);
    const row = (path: string, op = 'READ') => rows.find((x) => x.PATH === path && x.OP === op);
    expect(row('/missing', 'LOOKUP')).toMatchObject({ RESULT: 'ENOENT', STATE: 'error' });
    expect(row('/broken')).toMatchObject({ RESULT: 'EIO', STATE: 'error' });
    expect(row('/slow.txt')).toMatchObject({ RESULT: 'OK', STATE: 'ok' });
    expect(row('/wait-eintr')).toMatchObject({ RESULT: 'EINTR', STATE: 'interrupted:eintr' });
    expect(row('/wait-anyway')).toMatchObject({ RESULT: 'OK', STATE: 'interrupted:answered' });
    // Outstanding when the session ended: the ledger (src/store/ledger.ts) calls a request with no
    // reply in a session whose end was recorded `aborted`, with the end reason as outcome; the demo
    // ends the recording with SIGINT (twice: the waiting reader keeps the mount busy).
    expect(row('/never')).toMatchObject({ STATE: 'aborted:signal' });

    // The trace file agrees with what was printed, and the slow read took its 300 ms.
    const h = new Database(db, { readonly: true });
    try {
      const s = h.prepare('SELECT name, end_reason FROM sessions WHERE id = ?').get(session) as { name: string; end_reason: string };
      expect(s).toEqual({ name: 'demo', end_reason: 'signal' });
      const slow = h.prepare("SELECT reply_ns - start_ns FROM requests WHERE session = ? AND path = '/slow.txt' AND opcode = 15 ORDER BY start_ns LIMIT 1").pluck().get(session) as number;
      expect(slow).toBeGreaterThanOrEqual(290e6);
      const interrupts = [...new TraceReader(h).frames(session)].filter((f) => f.dir === 0 && f.opcode === 36).length;
      expect(interrupts).toBeGreaterThanOrEqual(2);
    } finally {
      h.close();
    }

    // The same server replays the session with every reply matching (it is deterministic).
    const replay = await runCli(['--db', db, 'replay', String(session), '--', ...demoServerArgv()], 30_000);
    expect(replay.code, `${replay.stdout}${replay.stderr}`).toBe(0);
    expect(replay.stdout + replay.stderr).toMatch(/diverged 0, races 0, missing replies 0, unexpected replies 0/);
    expect(replay.stdout + replay.stderr).toMatch(/all replies matched/);
  }, 90_000);

  it('stops in order on SIGINT: exit 130, one line, no mount, directory or process left', async () => {
    const work = reg.tempDir('fusetrace-demo-test-');
    cleanupAfterDemo(reg, work);
    const child = spawn(process.execPath, [CLI, '--db', join(work, 'trace.db'), 'demo', '--no-tui'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TMPDIR: work },
    });
    reg.process(child);
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // Mid-way, with the mount up and readers about to start: SIGINT to the demo alone, by PID.
      if (!sent && stderr.includes('a slow request')) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const exit = await waitExit(child);
    expect(sent, stderr).toBe(true);
    expect(exit).toEqual({ code: 130, signal: null });
    expect(stderr).toMatch(/^fusetrace: interrupted: the recording was ended and the temporary mount removed$/m);
    const dirs = /recording the demo server at (\S+)\/mnt /.exec(stderr)![1]!;
    expect(existsSync(dirs)).toBe(false);
    expect(fuseMountsUnder(work)).toEqual([]);
    expect(pidsMentioning(work)).toEqual([]);
    expect(demoTempDirs(work)).toEqual([]);
  }, 60_000);

  it('refuses a trace file it cannot write with one line and leaves nothing behind', async () => {
    const work = reg.tempDir('fusetrace-demo-test-');
    cleanupAfterDemo(reg, work);
    const r = await runCli(['--db', join(work, 'no-such-dir', 'trace.db'), 'demo', '--no-tui'], 30_000, { TMPDIR: work });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^fusetrace: /m);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(demoTempDirs(work)).toEqual([]);
  }, 60_000);
});
