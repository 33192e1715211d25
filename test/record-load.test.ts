// Issue 12 item 2: in-process recording under parallel load loses nothing by default, and an
// explicit `record --lossy` labels every request whose frames it dropped `lost`.
//
// The load is the issue's: 8 parallel fio jobs (random 4 KiB reads and writes, verified) plus 8
// metadata loops (create, stat, rename, readdir, unlink) through libfuse's passthrough_ll recorded
// in-process. Before backpressure the ring dropped 76% of the frames under this load and a clean
// unmount left 240 requests `unknown` and 197 `aborted:unmount`: a request whose reply frame was
// dropped looked outstanding at the end, and a reply whose request was dropped answered nothing.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildExample } from './helpers/build.js';
import { isMounted, runCommand } from './helpers/mount.js';
import { CLI, dbIn, recordDirs, recordingTests } from './helpers/record.js';

const { reg, startRecord } = recordingTests();

/** Seconds of load per run (the suite's time budget; the failure showed within seconds). */
const LOAD_S = 6;

/** 8 fio jobs, random 4 KiB reads and writes, every block verified (crc32c) while the jobs run. */
function fio(dir: string, seconds: number): Promise<{ code: number | null; out: string }> {
  const args = [
    '--name=load', `--directory=${dir}`, '--rw=randrw', '--bs=4k', '--size=4m', '--numjobs=8',
    '--time_based', `--runtime=${seconds}`, '--verify=crc32c', '--verify_backlog=64', '--verify_fatal=1',
    '--group_reporting', '--ioengine=psync',
    // fio saves its verify state (local-load-N-verify.state) in the current directory: not the checkout.
    '--verify_state_save=0',
  ];
  return new Promise((resolve) => {
    const p = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    reg.process(p);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => resolve({ code, out }));
  });
}

/** One metadata loop until `until`: create, stat, rename, readdir, unlink; returns the rounds done. */
async function metaLoop(dir: string, until: number): Promise<number> {
  mkdirSync(dir, { recursive: true });
  let n = 0;
  while (Date.now() < until) {
    const a = join(dir, `f${n}`);
    const b = join(dir, `g${n}`);
    await fsp.writeFile(a, `round ${n}\n`);
    await fsp.stat(a);
    await fsp.rename(a, b);
    const names = await fsp.readdir(dir);
    if (!names.includes(`g${n}`)) throw new Error(`readdir of ${dir} misses g${n}`);
    if ((await fsp.readFile(b, 'utf8')) !== `round ${n}\n`) throw new Error(`${b}: wrong contents`);
    await fsp.unlink(b);
    n++;
  }
  return n;
}

/** Runs the load in `mnt` and checks that everything the applications saw was right; on failure, says what fusetrace said. */
async function load(mnt: string, seconds: number, stderr: () => string): Promise<void> {
  try {
    await applyLoad(mnt, seconds);
  } catch (err) {
    throw new Error(`${String(err)}\nfusetrace said:\n${stderr().slice(-3000)}`);
  }
}

async function applyLoad(mnt: string, seconds: number): Promise<void> {
  mkdirSync(join(mnt, 'fio'));
  const until = Date.now() + seconds * 1000;
  const [f, ...rounds] = await Promise.all([fio(join(mnt, 'fio'), seconds), ...Array.from({ length: 8 }, (_, i) => metaLoop(join(mnt, `meta${i}`), until))]);
  expect(f.code, f.out.slice(-2000)).toBe(0);
  expect(f.out).not.toMatch(/verify: bad/i);
  for (const r of rounds) expect(r).toBeGreaterThan(0);
}

interface Outcome {
  dropped: number;
  lost: number;
  states: Record<string, number>;
  /** Requests that expect a reply, have none, and are not labelled lost. */
  unexplained: number;
  lostRows: number;
  lostUniques: number;
  transport: string;
}

function outcome(db: string): Outcome {
  const d = new Database(db, { readonly: true });
  try {
    const s = d.prepare('SELECT id, dropped, lost, meta FROM sessions ORDER BY id DESC LIMIT 1').get() as { id: number; dropped: number; lost: number; meta: string };
    const states = Object.fromEntries(
      (d.prepare('SELECT state, count(*) AS n FROM requests WHERE session = ? GROUP BY state').all(s.id) as Array<{ state: string; n: number }>).map((r) => [r.state, r.n]),
    );
    const unexplained = d
      .prepare("SELECT count(*) FROM requests WHERE session = ? AND reply_seq IS NULL AND state NOT IN ('noreply', 'notify', 'lost')")
      .pluck()
      .get(s.id) as number;
    const lostUniques = d.prepare('SELECT count(*) FROM lost WHERE session = ?').pluck().get(s.id) as number;
    return { dropped: s.dropped, lost: s.lost, states, unexplained, lostRows: states.lost ?? 0, lostUniques, transport: JSON.parse(s.meta).transport };
  } finally {
    d.close();
  }
}

async function unmountAndWait(rec: { mnt: string; exited: Promise<{ code: number | null }>; stderr(): string }): Promise<void> {
  const u = await runCommand('umount', [rec.mnt]);
  expect(u.code, u.stderr).toBe(0);
  const ex = await rec.exited;
  expect(ex.code, rec.stderr()).toBe(0);
  expect(isMounted(rec.mnt)).toBe(false);
}

describe('in-process recording under parallel load (issue 12 item 2)', () => {
  it('drops nothing by default: 0 dropped, 0 unknown, 0 aborted after a clean unmount', async () => {
    const { work, src, mnt } = recordDirs(reg, 'fusetrace-load-');
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work));
    await load(mnt, LOAD_S, rec.stderr);
    await unmountAndWait(rec);
    const o = outcome(dbIn(work));
    // The figures of the run, for the record (issue 12: 76% dropped, 240 unknown, 197 aborted before).
    console.log(`default: ${JSON.stringify(o)}; ${rec.stderr().trim().split('\n').pop()}`);
    expect(o.transport).toBe('in-process');
    expect(o.dropped).toBe(0);
    expect(o.lost).toBe(0);
    expect(o.states.unknown ?? 0).toBe(0);
    expect(o.states.aborted ?? 0).toBe(0);
    expect(o.unexplained).toBe(0);
    // The load did happen through the mount (tens of thousands of requests on this VM).
    expect(o.states.ok).toBeGreaterThan(10_000);
    expect(rec.stderr()).toMatch(/, 0 dropped[,;]/);
  }, 120_000);

  it('--lossy drops when the recorder is behind and labels every affected request lost, never unknown or aborted', async () => {
    const { work, src, mnt } = recordDirs(reg, 'fusetrace-lossy-');
    // The smallest ring the pump accepts (two of the largest frame): the trace writer falls behind
    // this load within milliseconds, so frames are dropped.
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work), {
      extra: ['--lossy'],
      env: { ...process.env, FUSETRACE_RING_BYTES: '1' },
    });
    await load(mnt, LOAD_S, rec.stderr);
    await unmountAndWait(rec);
    const o = outcome(dbIn(work));
    console.log(`lossy: ${JSON.stringify(o)}; ${rec.stderr().trim().split('\n').pop()}`);
    expect(o.transport).toBe('in-process');
    expect(o.dropped).toBeGreaterThan(0);
    expect(o.lostUniques).toBeGreaterThan(0);
    expect(o.lostRows).toBeGreaterThan(0);
    expect(o.lost).toBeGreaterThanOrEqual(o.lostRows);
    expect(o.states.unknown ?? 0).toBe(0);
    expect(o.states.aborted ?? 0).toBe(0);
    expect(o.unexplained).toBe(0);
    expect(rec.stderr()).toMatch(/dropped \(\d+ requests lost\)/);
    // The read commands show the count.
    const sessions = spawnSync(process.execPath, [CLI, '--db', dbIn(work), 'sessions', '--json'], { encoding: 'utf8' });
    expect(sessions.status, sessions.stderr).toBe(0);
    expect(JSON.parse(sessions.stdout.trim().split('\n').pop()!).lost).toBe(o.lost);
    const stats = spawnSync(process.execPath, [CLI, '--db', dbIn(work), 'stats'], { encoding: 'utf8' });
    expect(stats.status, stats.stderr).toBe(0);
    expect(stats.stdout).toMatch(new RegExp(`lost\\D+${o.lost}\\b`));
  }, 120_000);
});
