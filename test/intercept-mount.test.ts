// Mount interception (src/proxy/intercept.ts, native/supervisor.h, exec_helper.c --notify):
// real FUSE servers of every family run with their command lines unchanged under the filter and
// mount by themselves; fusetrace performs each mount with the server's own options on a /dev/fuse
// fd of its own, and puts that fd at the server's number (DirectStrategy: the server then talks to
// the kernel itself). Each is compared with the same server mounting directly: mountinfo type,
// source and options identical, the same data, a clean unmount and the same exit status.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample, buildServer } from './helpers/build.js';
import { CleanupRegistry, isMounted, mountAt, runDirect, unmount, waitExit, type ExitInfo } from './helpers/mount.js';
import { CASES, requireBin, source } from './helpers/server-families.js';
import { DirectStrategy, spawnIntercepted, type InterceptEvent } from '../src/proxy/intercept.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => requireFuse(), 120_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A server run under the interception filter, mounting by itself. */
async function runIntercepted(argv: string[], mnt: string) {
  const logPath = join(reg.tempDir('fusetrace-iclog-'), 'server.log');
  const fd = openSync(logPath, 'w');
  const strategy = new DirectStrategy();
  const events: InterceptEvent[] = [];
  let started;
  try {
    started = spawnIntercepted(argv, strategy, { stdio: ['ignore', fd, fd] }, (e) => events.push(e));
  } finally {
    closeSync(fd);
  }
  const { child, interceptor } = started;
  reg.mount(mnt);
  reg.process(child);
  reg.defer(() => {
    interceptor.stop();
    strategy.close();
  });
  const log = () => readFileSync(logPath, 'utf8');
  const exited = waitExit(child);
  const deadline = Date.now() + 15_000;
  while (!isMounted(mnt)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${argv[0]} exited before mounting:\n${log()}`);
    if (Date.now() > deadline) throw new Error(`${argv[0]} did not mount ${mnt}:\n${log()}\n${JSON.stringify(events)}`);
    await sleep(20);
  }
  return { child, interceptor, strategy, events, log, exited };
}

/** The parts of a mountinfo line a server's options decide (the mount id and device differ). */
function mountShape(mnt: string) {
  const m = mountAt(mnt);
  if (!m) throw new Error(`${mnt} is not mounted`);
  return { fsType: m.fsType, source: m.source, mountOptions: m.mountOptions, superOptions: m.superOptions };
}

describe('mount interception, as root', () => {
  for (const c of CASES) {
    it(`${c.name}: mounts by itself with its command line unchanged; mountinfo, data and exit as a direct mount`, async () => {
      requireBin(c.bin);
      // Direct run first.
      const dDir = reg.tempDir();
      const dArgv = c.setup(dDir);
      const dMnt = reg.mountpoint();
      const direct = await runDirect(dArgv[0], dArgv.slice(1), dMnt, { registry: reg });
      const want = mountShape(dMnt);
      const wantData = c.check(dMnt);
      const dExit = await direct.stop();

      const iDir = reg.tempDir();
      const iArgv = c.setup(iDir);
      const iMnt = reg.mountpoint();
      const run = await runIntercepted([...iArgv, iMnt], iMnt);
      const got = mountShape(iMnt);
      // The source names the branch or cipher directory for some servers: compare it relative.
      expect({ ...got, source: got.source.replace(iDir, 'DIR') }).toEqual({ ...want, source: want.source.replace(dDir, 'DIR') });
      expect(c.check(iMnt)).toBe(wantData);
      const mounts = run.events.filter((e) => e.kind === 'mount');
      expect(mounts).toHaveLength(1);
      expect(mounts[0].kind === 'mount' && mounts[0].call.target).toBe(iMnt);
      expect(run.strategy.made.map((m) => m.mountpoint)).toEqual([iMnt]);

      // Unmounted from outside, the server ends as it does natively.
      expect(await unmount(iMnt)).toBe('umount');
      const iExit: ExitInfo = await Promise.race([run.exited, sleep(10_000).then(() => ({ code: -1, signal: null }))]);
      expect(iExit).toEqual(dExit);
      await run.interceptor.done; // no process left under the filter
      expect(isMounted(iMnt)).toBe(false);
    });
  }

  it('fuse-overlayfs: allow_other from its code reaches the mount; another uid reads through it', async () => {
    requireBin('fuse-overlayfs');
    const dir = reg.tempDir();
    chmodSync(dir, 0o755);
    const argv = CASES.find((c) => c.bin === 'fuse-overlayfs')!.setup(dir);
    const mnt = reg.mountpoint();
    const run = await runIntercepted([...argv, mnt], mnt);
    expect(mountShape(mnt).superOptions.split(',')).toContain('allow_other');
    expect(mountShape(mnt).mountOptions.split(',')).toContain('noatime');
    const r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'cat', join(mnt, 'a')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('content of a\n');
    await unmount(mnt);
    expect((await run.exited).code).toBe(0);
  });

  it('libfuse -o clone_fd: the clone ioctl fails under the filter and libfuse serves on the one fd', async () => {
    const dir = reg.tempDir();
    const mnt = reg.mountpoint();
    const run = await runIntercepted([buildExample('passthrough_ll'), '-f', '-o', 'clone_fd', '-o', `source=${source(dir)}`, mnt], mnt);
    // The multi-threaded loop clones a fd per worker thread (lib/fuse_loop_mt.c fuse_clone_chan).
    for (let i = 0; i < 20; i++) expect(readFileSync(join(mnt, 'a'), 'utf8')).toBe('content of a\n');
    expect(run.log()).toMatch(/failed to clone device fd: Invalid argument/);
    await unmount(mnt);
    expect((await run.exited).code).toBe(0);
  });

  it('the new mount API fails with ENOSYS; a non-FUSE mount(2) and its umount2 run as made', async () => {
    const probe = buildServer('mount_probe');
    const dir = reg.tempDir();
    const logPath = join(dir, 'out');
    const fd = openSync(logPath, 'w');
    const target = join(dir, 't');
    mkdirSync(target);
    const strategy = new DirectStrategy();
    const events: InterceptEvent[] = [];
    const { child, interceptor } = spawnIntercepted([probe, target], strategy, { stdio: ['ignore', fd, fd] }, (e) => events.push(e));
    closeSync(fd);
    reg.process(child);
    reg.defer(() => interceptor.stop());
    expect((await waitExit(child)).code).toBe(0);
    await interceptor.done;
    expect(readFileSync(logPath, 'utf8')).toBe('fsopen=ENOSYS\nopen_tree=ENOSYS\nmount_tmpfs=0\numount2_tmpfs=0\n');
    expect(events.map((e) => e.kind)).toEqual(['passed', 'passed']);
    expect(strategy.made).toEqual([]);
    expect(isMounted(target)).toBe(false);
  });
});
