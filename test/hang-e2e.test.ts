// End-to-end tests of `fusetrace hang`: real mounts that fusetrace did not start (test/servers/
// stuck_fs.c mounting by itself), real processes blocked on them, the real CLI.
//
// fusectl: `hang` needs /sys/fs/fuse/connections, which this machine does not mount, and other
// tests on the machine mount and unmount it for their own aborts. So every `hang` here runs in a
// private mount namespace (unshare -m, private propagation) that mounts its own fusectl: nothing
// changes on the host, and the FUSE mounts and processes it inspects are the host's.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildServer } from './helpers/build.js';
import { CleanupRegistry, runCommand, runDirect, waitExit, type DirectMount, type RunResult } from './helpers/mount.js';
import { asUser } from './helpers/as-user.js';
import { buildCli, CLI } from './helpers/record.js';
import type { HangReport } from '../src/inspect/inspect.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());

let stuckFs: string;
beforeAll(() => {
  requireFuse();
  buildCli();
  stuckFs = buildServer('stuck_fs');
}, 120_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const WITH_FUSECTL = 'mount -t fusectl none /sys/fs/fuse/connections && exec "$@"';
const WITHOUT_FUSECTL = 'while umount /sys/fs/fuse/connections 2>/dev/null; do :; done; exec "$@"';

/** Runs `fusetrace ARGS` in a private mount namespace with (or without) fusectl mounted. */
function fusetrace(args: string[], fusectl = true): Promise<RunResult> {
  return runCommand('unshare', ['-m', 'sh', '-c', fusectl ? WITH_FUSECTL : WITHOUT_FUSECTL, 'sh', process.execPath, CLI, ...args], 20_000);
}

/** `hang --json` as a parsed report (fails the test on a non-zero status). */
async function hangJson(mnt: string, extra: string[] = []): Promise<HangReport> {
  const r = await fusetrace(['hang', '--json', ...extra, mnt]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as HangReport;
}

/** Polls `hang --json` until `ok` holds for its report (processes need a moment to block). */
async function hangUntil(mnt: string, ok: (r: HangReport) => boolean, extra: string[] = []): Promise<HangReport> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await hangJson(mnt, extra);
    if (ok(r) || Date.now() > deadline) return r;
    await sleep(200);
  }
}

/** Starts stuck_fs on a fresh mountpoint; after the unmount its sleeping threads are SIGKILLed by PID. */
async function startStuck(args: string[]): Promise<DirectMount> {
  const mnt = reg.mountpoint('fusetrace-hang-');
  const m = await runDirect(stuckFs, ['-f', ...args], mnt, { registry: reg });
  // A thread asleep in the slow READ (or the deadlocked one) outlives SIGTERM; this kill runs
  // after the registry's unmount, on the PID this test started.
  reg.defer(() => {
    if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
  });
  return m;
}

interface Reader {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `cat PATH` in the background: a process that blocks on the mount. */
function reader(path: string): Reader {
  const child = spawn('cat', [path], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  reg.process(child);
  return { child, stderr: () => err, exited: waitExit(child) };
}

describe('fusetrace hang', () => {
  it('shows a reader blocked on a slow server: path, pid, wait, the sleeping server thread; --abort ends the wait with ECONNABORTED', async () => {
    const m = await startStuck(['--delay-ms=60000']);
    const cat = reader(join(m.mountpoint, 'slow'));
    const r = await hangUntil(m.mountpoint, (x) => x.blocked.length === 1 && (x.blocked[0].waitMs ?? 0) > 300, ['--hung-after', '300ms']);
    expect(r.mount.mountPoint).toBe(m.mountpoint);
    expect(r.connection.waiting).toBeGreaterThanOrEqual(1);
    expect(r.matchedBy).toBe('fdinfo');
    expect(r.servers.map((s) => s.pid)).toEqual([m.pid]);
    const b = r.blocked[0];
    expect(b).toMatchObject({ pid: cat.child.pid, comm: 'cat', syscall: 'read', file: join(m.mountpoint, 'slow'), inRequest: true, hung: true });
    expect(b.waitMs).toBeGreaterThan(300);
    const threads = r.servers[0].threads;
    const sleeper = threads.find((t) => t.syscall.kind === 'syscall' && t.syscall.name === 'clock_nanosleep');
    expect(sleeper?.state).toBe('S');
    expect(sleeper?.sinceMs).toBeGreaterThan(300);
    expect(threads.some((t) => t.activity === 'reading' && t.file === '/dev/fuse')).toBe(true);
    expect(r.verdict.kind).toBe('slow');
    expect(r.verdict.line).toMatch(/the server is slow, not dead/);

    const text = await fusetrace(['hang', m.mountpoint]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`pid ${cat.child.pid}  cat  read  ${join(m.mountpoint, 'slow')}  waiting`);
    expect(text.stdout).toMatch(/clock_nanosleep/);
    expect(text.stdout).toMatch(/^verdict .*slow, not dead$/m);

    const noTty = await fusetrace(['hang', '--abort', m.mountpoint]);
    expect(noTty.code).toBe(2);
    expect(noTty.stderr).toBe('fusetrace: --abort needs a confirmation and stdin is not a terminal: add --yes\n');
    const ab = await fusetrace(['hang', '--abort', '--yes', m.mountpoint]);
    expect(ab.code).toBe(0);
    expect(ab.stderr).toMatch(/aborted connection \d+/);
    const exit = await Promise.race([cat.exited, sleep(10_000).then(() => null)]);
    expect(exit?.code).toBe(1);
    expect(cat.stderr()).toMatch(/Software caused connection abort/); // strerror(ECONNABORTED)
  });

  it('calls a server whose only thread is blocked in futex deadlocked, with every waiter listed', async () => {
    const m = await startStuck(['-s']);
    const first = reader(join(m.mountpoint, 'deadlock'));
    await hangUntil(m.mountpoint, (x) => x.blocked.length === 1);
    const second = reader(join(m.mountpoint, 'hello'));
    const r = await hangUntil(m.mountpoint, (x) => x.blocked.length === 2);
    expect(r.blocked.map((b) => b.pid).sort()).toEqual([first.child.pid, second.child.pid].sort());
    expect(r.blocked[0].pid).toBe(first.child.pid); // oldest first
    expect(r.blocked[1].file).toBe(join(m.mountpoint, 'hello')); // an openat() whose LOOKUP waits
    const threads = r.servers[0].threads;
    expect(threads).toHaveLength(1);
    expect(threads[0].syscall).toMatchObject({ kind: 'syscall', name: 'futex' });
    expect(r.verdict.kind).toBe('deadlock');
    expect(r.verdict.line).toMatch(/^2 requests waiting .*the server's only thread is blocked \(1 in futex\) and none reads the device: the server is deadlocked$/);
    const ab = await fusetrace(['hang', '--abort', '--yes', m.mountpoint]);
    expect(ab.code).toBe(0);
    for (const c of [first, second]) {
      const exit = await Promise.race([c.exited, sleep(10_000).then(() => null)]);
      expect(exit?.code).toBe(1);
    }
    expect(first.stderr()).toMatch(/Software caused connection abort/);
  });

  it('says the server died when it was SIGKILLed (the kernel aborted the connection)', async () => {
    const m = await startStuck([]);
    m.child.kill('SIGKILL');
    await m.exited;
    const r = await hangJson(m.mountpoint);
    expect(r.servers).toEqual([]);
    expect(r.aborted).toBe(true);
    expect(r.verdict.kind).toBe('no-server');
    expect(r.verdict.line).toMatch(/^no process holds the device: the server died/);
    expect(r.verdict.actions).toEqual([`umount ${m.mountpoint}   (removes the dead mount)`]);
  });

  it('says no server holds the device when its file lives only in a unix socket, with the waiter it strands', async () => {
    const m = await startStuck(['--limbo']);
    const cat = reader(join(m.mountpoint, 'hello'));
    const r = await hangUntil(m.mountpoint, (x) => x.blocked.length === 1);
    expect(r.servers).toEqual([]);
    expect(r.aborted).toBe(false);
    expect(r.blocked[0]).toMatchObject({ pid: cat.child.pid, file: join(m.mountpoint, 'hello') });
    expect(r.verdict.kind).toBe('no-server');
    // INIT, never read, counts among the waiting requests too (fc->num_waiting).
    expect(r.verdict.line).toMatch(/^no process holds the device \(.*in flight in a unix socket.*\): 2 requests waiting .*that no server will answer$/);
    expect((await fusetrace(['hang', '--abort', '--yes', m.mountpoint])).code).toBe(0);
    const exit = await Promise.race([cat.exited, sleep(10_000).then(() => null)]);
    expect(exit?.code).toBe(1);
  });

  it('refuses with one line: not a FUSE mount, no fusectl, no permission, a bad duration', async () => {
    const notFuse = await fusetrace(['hang', '/']);
    expect(notFuse.code).toBe(2);
    expect(notFuse.stderr).toMatch(/^fusetrace: \/ is not on a FUSE mount \(it is on \S+ mounted at \/\)\n$/);
    const m = await startStuck([]);
    const noCtl = await fusetrace(['hang', m.mountpoint], false);
    expect(noCtl.code).toBe(2);
    expect(noCtl.stderr).toBe('fusetrace: fusectl is not mounted, so the connection cannot be inspected: mount -t fusectl none /sys/fs/fuse/connections\n');
    const bad = await fusetrace(['hang', '--hung-after', 'soon', m.mountpoint]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("fusetrace: --hung-after must be a duration like 500ms, 5s or 2m, got 'soon'\n");
    // fusectl's files belong to the mount's owner (root here), mode 0400 (fs/fuse/control.c).
    const u = asUser(65534, [process.execPath, CLI, 'hang', m.mountpoint]);
    reg.defer(() => u.cleanup());
    const denied = await runCommand('unshare', ['-m', 'sh', '-c', WITH_FUSECTL, 'sh', u.cmd, ...u.args], 20_000);
    expect(denied.code).toBe(2);
    expect(denied.stderr).toMatch(/^fusetrace: permission denied reading \/sys\/fs\/fuse\/connections\/\d+\/waiting: run as root or as the mount's owner\n$/);
  });
});
