// Mounts, unmounts and process bookkeeping for tests that run real FUSE servers.
//
// Rules this file enforces for every test: a mount is removed with umount(2) (util-linux umount
// or fusermount3 -u), never lazily; a wedged connection is ended through fusectl's `abort` file
// (Documentation/filesystems/fuse.rst, "Aborting a filesystem connection") and then unmounted;
// processes are stopped by the PID we started, never by name.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { canonicalMountPath, readMountInfo, type MountEntry as MountInfo } from '../../src/proxy/mountinfo.js';
import { canonicalMountPath, readMountInfo, type MountEntry as MountInfo } from '../../src/proxy/mountinfo.js';

/** The topmost mount on `dir`, or undefined. */
export function mountAt(dir: string): MountInfo | undefined {
  const mp = canonicalMountPath(dir);
  const all = readMountInfo().filter((m) => m.mountPoint === mp);
  return all[all.length - 1];
}

/** True when something is mounted on `dir` (from /proc/self/mountinfo). */
export function isMounted(dir: string): boolean {
  return mountAt(dir) !== undefined;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a short command with a timeout (SIGKILL on expiry: a FUSE wait is always killable). */
export function runCommand(cmd: string, args: string[], timeoutMs = 10_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: stderr + String(err), timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const FUSECTL_DIR = '/sys/fs/fuse/connections';

/**
 * Aborts the FUSE connection mounted on `dir` through fusectl: every request waiting for the
 * server fails (ECONNABORTED), the server's next read() gets ENODEV. Mounts fusectl for the
 * duration when it is not mounted. Returns false when `dir` is not a FUSE mount.
 */
export async function abortConnection(dir: string): Promise<boolean> {
  const m = mountAt(dir);
  if (!m || !(m.fsType === 'fuse' || m.fsType.startsWith('fuse.') || m.fsType === 'fuseblk')) return false;
  // For fuse (anonymous superblock) st_dev is 0:N and fusectl names the connection N
  // (fs/fuse/control.c uses fc->dev, which is sb->s_dev). fuseblk has a real block device and
  // fusectl then uses the same dev_t number, MKDEV packed as major<<20|minor.
  const [major, minor] = m.device.split(':').map(Number);
  const connId = major === 0 ? minor : (major << 20) | minor;
  const weMountFusectl = !readMountInfo().some((x) => x.fsType === 'fusectl' && x.mountPoint === FUSECTL_DIR);
  if (weMountFusectl) {
    const r = await runCommand('mount', ['-t', 'fusectl', 'fusectl', FUSECTL_DIR]);
    if (r.code !== 0) throw new Error(`cannot mount fusectl to abort ${dir}: ${r.stderr.trim()}`);
  }
  try {
    const abortFile = join(FUSECTL_DIR, String(connId), 'abort');
    if (!existsSync(abortFile)) throw new Error(`no fusectl connection ${connId} for ${dir} (${abortFile})`);
    writeFileSync(abortFile, '1');
  } finally {
    if (weMountFusectl) await runCommand('umount', [FUSECTL_DIR]);
  }
  return true;
}

/**
 * Unmounts `dir` (all stacked mounts). Tries umount(2) (util-linux `umount -c` does not stat the
 * path, so a wedged server cannot hang it), then `fusermount3 -u`; if the mount is still there
 * (EBUSY because a process waits on the server, or the server does not answer), aborts the
 * connection through fusectl and retries while the aborted processes let go of their files.
 * Never a lazy unmount: throws if the mount cannot be removed. Says how the mount went away.
 */
export async function unmount(dir: string, timeoutMs = 10_000): Promise<'not-mounted' | 'umount' | 'abort'> {
  const mp = canonicalMountPath(dir);
  if (!isMounted(mp)) return 'not-mounted';
  const errors: string[] = [];
  const attempt = async () => {
    const r = await runCommand('umount', ['-c', mp], 5_000);
    if (r.code !== 0 && isMounted(mp)) {
      errors.push(`umount: ${r.timedOut ? 'timed out' : r.stderr.trim()}`);
      const f = await runCommand('fusermount3', ['-u', mp], 5_000);
      if (f.code !== 0 && isMounted(mp)) errors.push(`fusermount3 -u: ${f.timedOut ? 'timed out' : f.stderr.trim()}`);
    }
  };
  await attempt();
  if (!isMounted(mp)) return 'umount';
  let aborted = false;
  const deadline = Date.now() + timeoutMs;
  while (isMounted(mp) && Date.now() < deadline) {
    // Abort once; retry only if that failed (another test may have unmounted fusectl under us).
    if (!aborted) {
      try {
        aborted = await abortConnection(mp);
      } catch (err) {
        errors.push(String(err));
      }
    }
    // Aborted waiters return ECONNABORTED and close their files; umount succeeds once they have.
    await sleep(50);
    await attempt();
  }
  if (isMounted(mp)) {
    throw new Error(`cannot unmount ${mp} (refusing a lazy unmount):\n  ${errors.slice(-4).join('\n  ')}`);
  }
  return aborted ? 'abort' : 'umount';
}

/**
 * Unmounts `dir` as unmount() does, then removes the directory with rmdir(2), which refuses a
 * non-empty directory: a mountpoint is never emptied recursively.
 */
export async function cleanupMount(dir: string): Promise<'not-mounted' | 'umount' | 'abort'> {
  const how = await unmount(dir);
  try {
    rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return how;
}

/** Creates a fresh empty directory under os.tmpdir() (used as a mountpoint or source tree). */
export function makeTempDir(prefix = 'fusetrace-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** How a process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** True while `pid` exists (a zombie counts until its parent reaps it). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Resolves when the child exits (immediately if it already has). */
export function waitExit(child: ChildProcess): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode as NodeJS.Signals | null });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function waitPidGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/**
 * Stops a process we started: waits `graceMs` for it to exit by itself, then SIGTERM, then
 * SIGKILL. Accepts a ChildProcess (exit observed through Node) or a bare PID.
 */
export async function stopProcess(p: ChildProcess | number, graceMs = 2_000): Promise<void> {
  if (typeof p === 'number') {
    if (await waitPidGone(p, graceMs)) return;
    try { process.kill(p, 'SIGTERM'); } catch { return; }
    if (await waitPidGone(p, 3_000)) return;
    try { process.kill(p, 'SIGKILL'); } catch { return; }
    await waitPidGone(p, 5_000);
    return;
  }
  const exited = waitExit(p);
  // The timer is cleared as soon as the process exits: a pending grace timer would otherwise keep
  // the caller's event loop (and a bench's process) alive for the whole grace time.
  const within = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      exited.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  if (await within(graceMs)) return;
  p.kill('SIGTERM');
  if (await within(3_000)) return;
  p.kill('SIGKILL');
  await within(5_000);
}

/**
 * Everything a test file mounted or started, cleaned up in afterEach even when the test failed:
 *
 *     const reg = new CleanupRegistry();
 *     afterEach(() => reg.cleanup());
 *
 * Order: unmount (lets servers exit by themselves), stop processes by PID, unmount again (a killed
 * server leaves a dead mount), remove temp dirs that no longer hold a mount.
 */
export class CleanupRegistry {
  private mounts: string[] = [];
  private processes: (ChildProcess | number)[] = [];
  private dirs: string[] = [];
  private hooks: (() => Promise<void> | void)[] = [];

  /** Registers a mountpoint to unmount. Returns it. */
  mount(dir: string): string {
    this.mounts.push(dir);
    return dir;
  }

  /** Registers a process (ChildProcess or PID) to stop. Returns it. */
  process<T extends ChildProcess | number>(p: T): T {
    this.processes.push(p);
    return p;
  }

  /** Creates a temp directory under os.tmpdir() that is removed at cleanup. */
  tempDir(prefix = 'fusetrace-'): string {
    const dir = makeTempDir(prefix);
    this.dirs.push(dir);
    return dir;
  }

  /** Creates a temp mountpoint, registered both as a mount and as a directory to remove. */
  mountpoint(prefix = 'fusetrace-mnt-'): string {
    return this.mount(this.tempDir(prefix));
  }

  /** Registers an extra cleanup step, run first (last registered runs first). */
  defer(fn: () => Promise<void> | void): void {
    this.hooks.push(fn);
  }

  /** Runs every cleanup step; throws one aggregated error at the end if any step failed. */
  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    const hooks = this.hooks.splice(0).reverse();
    for (const h of hooks) {
      try { await h(); } catch (err) { errors.push(err); }
    }
    const mounts = this.mounts.splice(0).reverse();
    const procs = this.processes.splice(0);
    const dirs = this.dirs.splice(0).reverse();
    for (const m of mounts) {
      try { await unmount(m); } catch (err) { errors.push(err); }
    }
    await Promise.all(procs.map((p) => stopProcess(p).catch((err) => errors.push(err))));
    for (const m of mounts) {
      try { await unmount(m); } catch (err) { errors.push(err); }
    }
    for (const d of dirs) {
      const mp = canonicalMountPath(d);
      const busy = readMountInfo().some((x) => x.mountPoint === mp || x.mountPoint.startsWith(mp + '/'));
      if (busy) {
        errors.push(new Error(`not removing ${d}: something is still mounted there`));
        continue;
      }
      rmSync(d, { recursive: true, force: true });
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map(String).join('\n'));
  }
}

/** A FUSE server we started that mounts by itself (no fusetrace in between). */
export interface DirectMount {
  pid: number;
  child: ChildProcess;
  mountpoint: string;
  /** File receiving the server's stdout and stderr. */
  logPath: string;
  /** Current content of the server's log. */
  log(): string;
  /** Resolves when the server exits. */
  exited: Promise<ExitInfo>;
  /** Unmounts (abort if wedged), then waits `graceMs` (default 5 s) for the server to exit by
   *  itself before SIGTERM, then SIGKILL. */
  stop(graceMs?: number): Promise<ExitInfo>;
}

export interface RunDirectOptions {
  /** Registers the mount and the process here so afterEach cleans them up on failure. */
  registry?: CleanupRegistry;
  /** Where the server's stdout+stderr go (default: a temp file). A file, not a pipe: a verbose
   *  server (-d) must never block on a pipe nobody drains while the test does sync I/O. */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How long to wait for the mount to appear in mountinfo (default 10 s). */
  timeoutMs?: number;
  /** Extra arguments placed after the mountpoint. */
  argsAfter?: string[];
}

/**
 * Starts `server ...args mountpoint` mounting directly. The server must stay in the foreground
 * (libfuse: -f; gocryptfs: -fg). Resolves once the mount appears in /proc/self/mountinfo.
 */
export async function runDirect(server: string, args: string[], mountpoint: string, opts: RunDirectOptions = {}): Promise<DirectMount> {
  let logDir: string | undefined;
  let logPath = opts.logFile;
  if (!logPath) {
    logDir = makeTempDir('fusetrace-log-');
    logPath = join(logDir, 'server.log');
  }
  const fd = openSync(logPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn(server, [...args, mountpoint, ...(opts.argsAfter ?? [])], {
      stdio: ['ignore', fd, fd],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
  } finally {
    closeSync(fd);
  }
  const log = () => {
    try {
      return readFileSync(logPath!, 'utf8');
    } catch {
      return '';
    }
  };
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  if (opts.registry) {
    opts.registry.mount(mountpoint);
    opts.registry.process(child);
    if (logDir) {
      const d = logDir;
      opts.registry.defer(() => rmSync(d, { recursive: true, force: true }));
    }
  }
  const exited = waitExit(child);
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  while (!isMounted(mountpoint)) {
    if (spawnError) throw new Error(`cannot start ${server}: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${server} exited (${child.exitCode ?? child.signalCode}) before mounting ${mountpoint}:\n${log()}`);
    }
    if (Date.now() > deadline) {
      await stopProcess(child, 0);
      throw new Error(`${server} did not mount ${mountpoint} within ${opts.timeoutMs ?? 10_000} ms:\n${log()}`);
    }
    await sleep(10);
  }
  const handle: DirectMount = {
    pid: child.pid!,
    child,
    mountpoint,
    logPath,
    log,
    exited,
    async stop(graceMs = 5_000) {
      await unmount(mountpoint);
      await stopProcess(child, graceMs);
      const info = await exited;
      if (logDir && !opts.registry) rmSync(logDir, { recursive: true, force: true });
      return info;
    },
  };
  return handle;
}
