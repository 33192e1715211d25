// `fusetrace record` and `replay` with the server's command line unchanged (issue 11): every server
// family mounts by itself, fusetrace intercepts the mount, records every frame and replays the
// session against the same command line with no mount. Each is compared with the same server
// mounting directly: mountinfo type, source and options identical, the same data, a clean
// unmount, nothing left (no mount, no process).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildExample, buildServer } from './helpers/build.js';
import { isMounted, mountAt, runCommand, runDirect, unmount, waitExit } from './helpers/mount.js';
import { CASES, requireBin, source } from './helpers/server-families.js';
import { CLI, dbIn, expectCompletePairing, inNamespaceAs, readTrace, recordingTests } from './helpers/record.js';

const { reg, startRecord } = recordingTests();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  // A zombie is as good as gone: its parent reaps it.
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] === 'Z';
}

function mountShape(mnt: string) {
  const m = mountAt(mnt);
  if (!m) throw new Error(`${mnt} is not mounted`);
  return { fsType: m.fsType, source: m.source, mountOptions: m.mountOptions, superOptions: m.superOptions };
}

describe('record and replay with the command line unchanged, as root', () => {
  for (const c of CASES) {
    it(`${c.name}: recorded with mountinfo and data as a direct mount, every frame, then replayed with no mount`, async () => {
      requireBin(c.bin);
      const dDir = reg.tempDir();
      const dArgv = c.setup(dDir);
      const dMnt = reg.mountpoint();
      const direct = await runDirect(dArgv[0], dArgv.slice(1), dMnt, { registry: reg });
      const want = mountShape(dMnt);
      const wantData = c.check(dMnt);
      await direct.stop();

      const dir = reg.tempDir();
      const argv = c.setup(dir);
      const mnt = reg.mountpoint();
      const rec = await startRecord(argv[0], argv.slice(1), mnt, dbIn(dir));
      const got = mountShape(mnt);
      expect({ ...got, source: got.source.replace(dir, 'DIR') }).toEqual({ ...want, source: want.source.replace(dDir, 'DIR') });
      expect(c.check(mnt)).toBe(wantData);
      expect(spawnSync('umount', [mnt]).status).toBe(0);
      expect(await rec.exited).toEqual({ code: 0, signal: null });
      expect(rec.stderr()).toMatch(/ended by unmount; server exited 0\n$/);
      expect(isMounted(mnt)).toBe(false);
      expect(pidGone(rec.serverPid)).toBe(true);

      const { session, frames } = readTrace(rec.db);
      expectCompletePairing(frames);
      expect(session.frames).toBe(frames.length);
      const meta = JSON.parse(session.meta!);
      expect(meta.intercepted).toBe(true);
      expect(meta.serverMount).toMatchObject({ target: mnt, fstype: want.fsType });

      // Replay: the same command line, the server's mount answered without mounting.
      const r = spawnSync(process.execPath, [CLI, '--db', rec.db, 'replay', '--', ...argv, mnt], { encoding: 'utf8', timeout: 60_000 });
      expect(r.stdout + r.stderr, r.stdout + r.stderr).toMatch(/result: all replies matched/);
      expect(r.status).toBe(0);
      // The replay ends the session as the unmount did (ENODEV, or end-of-file for a relayed
      // server) and the server exits 0 again, as when recorded (issue 16).
      expect(r.stdout).toMatch(/^the server ended as recorded at the end of the session: exit code 0$/m);
      expect(isMounted(mnt)).toBe(false);
      // Nothing of the replay reached the host: the mountpoint directory is as it was (go-fuse's
      // pollHack file is on a tmpfs in the server's own mount namespace).
      expect(readdirSync(mnt)).toEqual([]);
    });
  }

  it('fuse-overlayfs: allow_other from its own code reaches the recorded mount; another uid reads through it', async () => {
    requireBin('fuse-overlayfs');
    const dir = reg.tempDir();
    chmodSync(dir, 0o755);
    const argv = CASES.find((c) => c.bin === 'fuse-overlayfs')!.setup(dir);
    const mnt = reg.mountpoint();
    const rec = await startRecord(argv[0], argv.slice(1), mnt, dbIn(dir));
    expect(mountShape(mnt).superOptions.split(',')).toContain('allow_other');
    const r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'cat', join(mnt, 'a')], { encoding: 'utf8' });
    expect(r.stdout).toBe('content of a\n');
    await unmount(mnt);
    expect((await rec.exited).code).toBe(0);
    // The read of uid 65534 is in the trace.
    expect(readTrace(rec.db).frames.some((f) => f.dir === 0 && f.data.length >= 32 && f.data.readUInt32LE(24) === 65534)).toBe(true);
  });

  it('a server that mounts somewhere else than the directory among its arguments: recorded there, and said so', async () => {
    const dir = reg.tempDir();
    const real = reg.mountpoint();
    const expected = reg.mountpoint();
    // A wrapper that mounts its first directory argument; the last one is what record expects.
    const rec = await startRecord('sh', ['-c', 'exec "$0" -f -o source="$1" "$2"', buildExample('passthrough_ll'), source(dir), real], expected, dbIn(dir), {
      noWait: true,
    });
    const deadline = Date.now() + 15_000;
    while (!isMounted(real) && Date.now() < deadline) await sleep(20);
    expect(readFileSync(join(real, 'a'), 'utf8')).toBe('content of a\n');
    expect(isMounted(expected)).toBe(false);
    await unmount(real);
    expect((await rec.exited).code).toBe(0);
    expect(rec.stderr()).toContain(`fusetrace: the server mounted ${real}, not ${expected} (the directory among its arguments)`);
    const { session } = readTrace(rec.db);
    expect(JSON.parse(session.meta!).serverMount.target).toBe(real);
  });

  it('a server that never mounts: warned after 10 s, ended by SIGTERM within 5 s, nothing left', async () => {
    const dir = reg.tempDir();
    const mnt = reg.mountpoint();
    // A server that never mounts (`sleep`; the mountpoint startRecord appends goes to sh's $1).
    const rec = await startRecord('sh', ['-c', 'exec sleep 600', 'sh'], mnt, dbIn(dir), { noWait: true });
    const deadline = Date.now() + 20_000;
    while (!/has not mounted anything after 10 s/.test(rec.stderr()) && Date.now() < deadline) await sleep(100);
    expect(rec.stderr()).toMatch(/^fusetrace: the server has not mounted anything after 10 s/m);
    const serverPid = Number(readFileSync(`/proc/${rec.pid}/task/${rec.pid}/children`, 'utf8').trim());
    expect(serverPid).toBeGreaterThan(0);
    const t0 = Date.now();
    rec.child.kill('SIGTERM');
    const exit = await waitExit(rec.child);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(exit).toEqual({ code: 128 + 15, signal: null });
    expect(rec.stderr()).toMatch(/^fusetrace: SIGTERM before sh mounted anything: the server \(pid \d+\) ended by SIGTERM; nothing was recorded$/m);
    expect(pidGone(serverPid)).toBe(true);
    expect(existsSync(dbIn(dir))).toBe(false);
  }, 40_000);
});

/** The server under fusetrace: the one child of its main thread, once started. */
async function serverPidOf(fusetracePid: number): Promise<number> {
  for (let i = 0; i < 250; i++) {
    const kids = readFileSync(`/proc/${fusetracePid}/task/${fusetracePid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    if (kids.length === 1) return kids[0];
    await sleep(20);
  }
  throw new Error(`fusetrace ${fusetracePid} started no server`);
}

describe('a server that mounts twice (test/servers/twice_fs.c): the first mount is recorded, the second served directly', () => {
  // What a user expects: the first mount is the session (one session records one FUSE
  // connection); the second works for the server as without fusetrace, is not recorded, and one
  // line says so, naming it; when the session ends nothing is left mounted, whoever unmounts what.
  async function start(extra: string[]) {
    const dir = reg.tempDir();
    const mnt = reg.mountpoint();
    const second = reg.mountpoint();
    const rec = await startRecord(buildServer('twice_fs'), ['-f', ...extra, `--second=${second}`], mnt, dbIn(dir));
    const deadline = Date.now() + 15_000;
    while (!isMounted(second) && Date.now() < deadline) await sleep(20);
    expect(readFileSync(join(mnt, 'which'), 'utf8')).toBe('mount 1\n');
    expect(readFileSync(join(second, 'which'), 'utf8')).toBe('mount 2\n');
    const notes = rec.stderr().split('\n').filter((l) => l.startsWith('fusetrace:') && l.includes(second));
    expect(notes).toEqual([`fusetrace: the server mounted again on ${second} (pid ${rec.serverPid}): that mount is served directly and not recorded (one session records one FUSE connection)`]);
    return { rec, mnt, second };
  }
  /** The trace holds the first mount's traffic and none of the second's. */
  function expectOnlyFirst(db: string) {
    const { frames } = readTrace(db);
    expectCompletePairing(frames);
    const replies = frames.filter((f) => f.dir === 1).map((f) => f.data.subarray(16).toString('latin1'));
    expect(replies.some((d) => d.includes('mount 1\n'))).toBe(true);
    expect(replies.some((d) => d.includes('mount 2\n'))).toBe(false);
  }

  it('SIGTERM to fusetrace ends the session and the server, which unmounts its second mount: nothing left', async () => {
    const { rec, mnt, second } = await start([]);
    rec.child.kill('SIGTERM');
    expect(await rec.exited, rec.stderr()).toEqual({ code: 0, signal: null });
    expect(isMounted(mnt)).toBe(false);
    expect(isMounted(second)).toBe(false);
    expect(pidGone(rec.serverPid)).toBe(true);
    expectOnlyFirst(rec.db);
  }, 30_000);

  it('a server that exits at its first unmount, leaving its second mount: fusetrace unmounts it and says so', async () => {
    const { rec, mnt, second } = await start(['--exit-after-first']);
    await unmount(mnt);
    expect(await rec.exited, rec.stderr()).toEqual({ code: 0, signal: null });
    // Before: the second mount stayed, disconnected ("Transport endpoint is not connected").
    expect(isMounted(second)).toBe(false);
    expect(rec.stderr()).toContain(`fusetrace: unmounted ${second}: the server left its unrecorded mount behind\n`);
    expect(rec.stderr()).toMatch(/ended by unmount; server exited 0\n$/);
    expect(pidGone(rec.serverPid)).toBe(true);
    expectOnlyFirst(rec.db);
  }, 30_000);
});

describe('a server that mounts but never answers FUSE_INIT (stuck_fs --limbo), under interception', () => {
  // record-signals.test.ts covers this on the /dev/fd/N fallback (FUSETRACE_INTERCEPT=0), where
  // fusetrace mounts; here the server mounts by itself, its mount is intercepted, then it parks
  // its fuse fd (fusetrace's socket) where nobody reads it and ignores SIGTERM (libfuse's
  // handler only asks a loop that never runs to exit).
  it('warned after 10 s; SIGTERM ends it within 5 s while a process waits on the mount: no mount, no process', async () => {
    const dir = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildServer('stuck_fs'), ['-f', '--limbo'], mnt, dbIn(dir), { noWait: true });
    const deadline = Date.now() + 15_000;
    while (!isMounted(mnt) && Date.now() < deadline) await sleep(20);
    expect(isMounted(mnt), rec.stderr()).toBe(true);
    const serverPid = await serverPidOf(rec.pid);
    reg.process(serverPid);
    // Someone waits on the mountpoint for the INIT that never comes.
    const waiter = runCommand('stat', [mnt], 30_000);
    const warnBy = Date.now() + 20_000;
    while (!/has not answered FUSE_INIT after 10 s/.test(rec.stderr()) && Date.now() < warnBy) await sleep(100);
    expect(rec.stderr()).toMatch(/^fusetrace: the server has not answered FUSE_INIT after 10 s: it mounted but does not serve$/m);
    const t0 = Date.now();
    rec.child.kill('SIGTERM');
    const exit = await rec.exited;
    expect(Date.now() - t0, rec.stderr()).toBeLessThan(5_000);
    expect(exit, rec.stderr()).toEqual({ code: 0, signal: null });
    expect(isMounted(mnt)).toBe(false);
    expect(pidGone(serverPid)).toBe(true);
    expect((await waiter).timedOut).toBe(false);
    expect(rec.stderr()).not.toMatch(/left disconnected|busy/);
    expect(JSON.parse(readTrace(rec.db).session.meta!).intercepted).toBe(true);
  }, 45_000);
});

describe('record as an ordinary user (uid 65534, a 0666 /dev/fuse in a private mount namespace)', () => {
  // Under no_new_privs the setuid fusermount3 the server runs is not setuid: its mount(2) is
  // intercepted like the server's own, and fusetrace mounts through the real fusermount3.
  const nobody = 65534;
  for (const c of CASES.filter((x) => x.bin === 'unionfs-fuse' || x.bin === 'gocryptfs')) {
    it(`${c.name}: records with its command line unchanged, its options in mountinfo`, async () => {
      requireBin(c.bin);
      const dir = reg.tempDir();
      const argv = c.setup(dir);
      spawnSync('chown', ['-R', `${nobody}:${nobody}`, dir]);
      chmodSync(dir, 0o755);
      const mnt = reg.mountpoint();
      chownSync(mnt, nobody, nobody);
      const rec = await startRecord(argv[0], argv.slice(1), mnt, dbIn(dir), { asUser: nobody });
      const line = readFileSync(`/proc/${rec.pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt)!;
      expect(line).toMatch(/ - fuse\.\S+ \S+ rw,user_id=65534,group_id=65534/);
      if (c.bin === 'gocryptfs') expect(line).toMatch(/max_read=131072/);
      else expect(inNamespaceAs(rec.pid, nobody, ['cat', join(mnt, 'a')]).stdout).toBe('content of a\n');
      rec.child.kill('SIGTERM'); // unshare, sh and setpriv exec()ed: this PID is fusetrace itself
      expect(await rec.exited).toEqual({ code: 0, signal: null });
      const { session, frames } = readTrace(rec.db);
      expect(JSON.parse(session.meta!)).toMatchObject({ uid: nobody, mountedVia: 'fusermount3', intercepted: true });
      expectCompletePairing(frames);
    });
  }
});
