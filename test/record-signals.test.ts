// Issue 12 items 3 and 6: every end state ends, and a failed start leaves no mount.
//  - a server that never answers FUSE_INIT (it never reads its fd: `sh -c 'exec sleep 600'`) is
//    ended by SIGTERM within 5 s, while a process waits on the mountpoint: no mount, no server
//    process, a readable trace;
//  - a server that exits before answering INIT while a process stats the mountpoint leaves no
//    mount behind (before: EBUSY advice that did not apply and "Transport endpoint is not
//    connected" left over).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { CleanupRegistry, isMounted, runCommand } from './helpers/mount.js';
import { buildCli, CLI, dbIn, recorder } from './helpers/record.js';

const reg = new CleanupRegistry();
// These servers (`sh -c ...`) never mount anything: they stand for a server stuck before INIT on
// the path where fusetrace mounts and hands the server /dev/fd/N (FUSETRACE_INTERCEPT=0, also what
// runs where seccomp user notification is missing). Under interception such a server never mounts,
// which test/intercept-record.test.ts covers (the 10 s warning, SIGTERM within 5 s).
const FALLBACK = { ...process.env, FUSETRACE_INTERCEPT: '0' };
afterEach(() => reg.cleanup());
const startRecord = recorder(reg);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(() => {
  requireFuse();
  buildCli();
}, 120_000);

async function mounted(mnt: string, stderr: () => string): Promise<void> {
  const until = Date.now() + 15_000;
  while (!isMounted(mnt)) {
    if (Date.now() > until) throw new Error(`no mount at ${mnt}:\n${stderr()}`);
    await sleep(20);
  }
}

function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

function lastSession(db: string): { endReason: string | null } {
  const r = spawnSync(process.execPath, [CLI, '--db', db, 'sessions', '--json'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { endReason: string | null };
}

describe('every end state ends (issue 12 items 3 and 6)', () => {
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig} ends a server that never answers FUSE_INIT within 5 s, leaving nothing`, async () => {
      const work = reg.tempDir('fusetrace-sig-');
      const mnt = join(work, 'mnt');
      mkdirSync(mnt);
      const rec = await startRecord('/bin/sh', ['-c', 'exec sleep 600', 'sh'], mnt, dbIn(work), { noWait: true, env: FALLBACK });
      await mounted(mnt, rec.stderr);
      let server = 0;
      for (let i = 0; i < 100 && server === 0; i++) {
        server = childrenOf(rec.pid)[0] ?? 0;
        if (server === 0) await sleep(20);
      }
      expect(server).toBeGreaterThan(0);
      reg.process(server);
      // Someone waits on the mountpoint for the INIT that never comes.
      const waiter = runCommand('stat', [mnt], 20_000);
      await sleep(300);
      const t0 = Date.now();
      process.kill(rec.pid, sig);
      const ex = await rec.exited;
      const took = Date.now() - t0;
      expect(took, rec.stderr()).toBeLessThan(5_000);
      expect(ex.code, rec.stderr()).toBe(0);
      expect(isMounted(mnt)).toBe(false);
      expect(existsSync(`/proc/${server}`) && !readFileSync(`/proc/${server}/stat`, 'utf8').includes(') Z ')).toBe(false);
      const w = await waiter;
      expect(w.timedOut).toBe(false);
      expect(rec.stderr()).not.toMatch(/left disconnected|busy/);
      expect(lastSession(dbIn(work)).endReason).toBe('signal');
    }, 60_000);
  }

  it('a SIGKILLed fusetrace leaves no orphan: the server that never read its fd gets SIGTERM', async () => {
    const work = reg.tempDir('fusetrace-orphan-');
    const mnt = join(work, 'mnt');
    mkdirSync(mnt);
    const rec = await startRecord('/bin/sh', ['-c', 'exec sleep 600', 'sh'], mnt, dbIn(work), { noWait: true, env: FALLBACK });
    await mounted(mnt, rec.stderr);
    let server = 0;
    for (let i = 0; i < 100 && server === 0; i++) {
      server = childrenOf(rec.pid)[0] ?? 0;
      if (server === 0) await sleep(20);
    }
    expect(server).toBeGreaterThan(0);
    reg.process(server);
    // The server has loaded the preload (and exec'd sleep) by the time it sleeps.
    for (let i = 0; i < 100 && !readFileSync(`/proc/${server}/cmdline`, 'utf8').startsWith('sleep'); i++) await sleep(20);
    process.kill(rec.pid, 'SIGKILL');
    await rec.exited;
    const until = Date.now() + 3_000;
    while (existsSync(`/proc/${server}`) && Date.now() < until) await sleep(50);
    // Gone, or at most a zombie of init's.
    const alive = existsSync(`/proc/${server}`) && !/\) Z /.test(readFileSync(`/proc/${server}/stat`, 'utf8'));
    expect(alive).toBe(false);
  }, 60_000);

  it('a server that exits before answering INIT, while a process stats the mountpoint, leaves no mount', async () => {
    const work = reg.tempDir('fusetrace-failstart-');
    const mnt = join(work, 'mnt');
    mkdirSync(mnt);
    const rec = await startRecord('/bin/sh', ['-c', 'sleep 1; exit 3', 'sh'], mnt, dbIn(work), { noWait: true, env: FALLBACK });
    await mounted(mnt, rec.stderr);
    const waiter = runCommand('stat', [mnt], 20_000);
    const ex = await rec.exited;
    expect(ex.code, rec.stderr()).toBe(3);
    expect(isMounted(mnt)).toBe(false);
    expect(rec.stderr()).toMatch(/exited before answering FUSE_INIT/);
    expect(rec.stderr()).not.toMatch(/busy|left disconnected/);
    const w = await waiter;
    expect(w.timedOut).toBe(false);
    expect(w.code).not.toBe(0);
    // The mountpoint is the plain directory again.
    const after = await runCommand('stat', [mnt], 5_000);
    expect(after.code, after.stderr).toBe(0);
    expect(lastSession(dbIn(work)).endReason).toBe('server-exit');
  }, 60_000);
});
