/**
 * Mount interception (issue 11): the FUSE server runs with its command line unchanged and mounts
 * by itself; fusetrace sees its mount-family system calls through seccomp user notification
 * (native/exec_helper.c installs the filter, native/supervisor.h receives the calls) and answers
 * them here.
 *
 * A FUSE mount(2) (type fuse, fuse.NAME or fuseblk; data `fd=N,rootmode=...,user_id=...,
 * group_id=...[,allow_other][,default_permissions][,max_read=][,blksize=]`, fs/fuse/inode.c
 * fuse_parse_param) comes from the server itself (libfuse as root, mergerfs, go-fuse as root) or
 * from the fusermount3 it runs (libfuse and go-fuse as non-root, bazil and jacobsa always). The
 * strategy decides what happens (a real mount with exactly the caller's options on a /dev/fuse fd
 * of fusetrace's, or none at all for replay) and which fd takes the caller's number N; the caller
 * then gets 0 and finds that fd at N. fusermount3 passes it on over _FUSE_COMMFD unchanged.
 *
 * An unmount of a mountpoint the strategy mounted is the strategy's to perform; any other mount
 * or unmount (a bind mount, fusectl, ...) runs as the caller made it (SECCOMP_USER_NOTIF_FLAG_
 * CONTINUE: the kernel then checks the caller's own privileges).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { constants as osConstants } from 'node:os';
import { MOUNT_FLAG_OPTIONS } from './args.js';
import { MNT_DETACH, fusermountMount, unmountFuse, type FuseMount } from './mount.js';
import { execHelperPath, native, type MountRequest, type Supervisor } from './native.js';

const { EINVAL, EFAULT, EIO } = osConstants.errno;

/** mount(2) flags that change an existing mount instead of making one (include/uapi/linux/mount.h):
 *  MS_REMOUNT 0x20, MS_BIND 0x1000, MS_MOVE 0x2000, MS_PRIVATE 0x40000, MS_SLAVE 0x80000, MS_SHARED 0x100000. */
const NOT_A_NEW_MOUNT = 0x20 | 0x1000 | 0x2000 | 0x40000 | 0x80000 | 0x100000;

/** The data string of a FUSE mount(2), as the kernel parses it (fs/fuse/inode.c fuse_fs_parameters). */
export interface FuseMountData {
  /** fd=N: the caller's /dev/fuse fd, replaced by the strategy's. */
  fd: number;
  /** rootmode= (octal file type of the root), user_id=, group_id=. */
  rootmode?: string;
  userId?: number;
  groupId?: number;
  allowOther: boolean;
  defaultPermissions: boolean;
  maxRead?: number;
  blksize?: number;
  /** Every option but fd=, in the caller's order (what fusetrace's own mount passes on). */
  options: string[];
}

/** One FUSE mount(2) the server (or its fusermount3) made. */
export interface FuseMountCall {
  /** The calling process (fusermount3's when it mounted for the server). */
  pid: number;
  /** The target resolved against the caller's cwd and root, as fusetrace sees the path. */
  target: string;
  /** Source (fsname) and type (fuse.SUBTYPE) exactly as passed. */
  source: string;
  fstype: string;
  /** mount(2) flags (MS_*) exactly as passed. */
  flags: number;
  /** The data string exactly as passed. */
  data: string;
  parsed: FuseMountData;
}

/** True for the file system types the kernel's FUSE module registers (fs/fuse/inode.c). */
export function isFuseType(fstype: string | null): boolean {
  return fstype === 'fuse' || fstype === 'fuseblk' || (fstype?.startsWith('fuse.') ?? false);
}

/** Parses a FUSE mount data string; throws when fd= is missing or not a number. */
export function parseFuseMountData(data: string): FuseMountData {
  const out: FuseMountData = { fd: -1, allowOther: false, defaultPermissions: false, options: [] };
  // The kernel splits on commas (no escapes: fs_context's legacy parser, vfs_parse_comma_sep).
  for (const opt of data.split(',')) {
    if (opt === '') continue;
    const eq = opt.indexOf('=');
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? '' : opt.slice(eq + 1);
    if (key === 'fd') {
      out.fd = /^\d+$/.test(value) ? Number(value) : -1;
      continue;
    }
    out.options.push(opt);
    if (key === 'rootmode') out.rootmode = value;
    else if (key === 'user_id') out.userId = Number(value);
    else if (key === 'group_id') out.groupId = Number(value);
    else if (key === 'allow_other') out.allowOther = true;
    else if (key === 'default_permissions') out.defaultPermissions = true;
    else if (key === 'max_read') out.maxRead = Number(value);
    else if (key === 'blksize') out.blksize = Number(value);
  }
  if (out.fd < 0) throw new Error(`FUSE mount data without fd=N: ${data}`);
  return out;
}

/** The caller's target as a path in fusetrace's view: relative to its cwd, below its root. */
export function resolveTarget(r: Pick<MountRequest, 'target' | 'cwd' | 'root'>): string {
  if (isAbsolute(r.target)) return r.root && r.root !== '/' ? join(r.root, r.target) : resolve(r.target);
  return resolve(r.cwd || '/', r.target);
}

/**
 * The fusermount3 -o string for an intercepted mount: its flags by name, the kernel options but
 * those fusermount3 computes itself (fd, rootmode, user_id, group_id: util/fusermount.c
 * do_mount), and the source and type as fsname= and subtype=.
 */
export function fusermountOptions(call: FuseMountCall): string {
  const opts: string[] = [];
  for (const [name, f] of Object.entries(MOUNT_FLAG_OPTIONS)) {
    if (f.set && call.flags & f.flag) opts.push(name);
  }
  for (const o of call.parsed.options) {
    if (!/^(rootmode|user_id|group_id)=/.test(o)) opts.push(o);
  }
  // fsname/subtype values may hold commas; fusermount3 splits -o with libfuse's \\, escapes.
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
  if (call.source) opts.push(`fsname=${esc(call.source)}`);
  if (call.fstype.startsWith('fuse.')) opts.push(`subtype=${esc(call.fstype.slice(5))}`);
  return opts.join(',');
}

/**
 * Performs `call` for real with exactly the caller's options, on a /dev/fuse fd of fusetrace's:
 * mount(2) as root (the data string with only fd= changed), else the real fusermount3, outside
 * the filter, which receives the fd back over _FUSE_COMMFD.
 */
export async function mountLikeCaller(call: FuseMountCall, asRoot = process.geteuid?.() === 0): Promise<FuseMount> {
  if (!asRoot) return fusermountMount(call.target, fusermountOptions(call));
  const devFd = openSync('/dev/fuse', 'r+');
  const data = [`fd=${devFd}`, ...call.parsed.options].join(',');
  try {
    native().mountFuse(call.source, call.target, call.fstype, call.flags, data);
  } catch (err) {
    closeSync(devFd);
    throw err;
  }
  return { devFd, mountpoint: call.target, via: 'mount', options: data };
}

/** What fusetrace does with the server's mounts. */
export interface InterceptStrategy {
  /** Answers a FUSE mount: returns our fd to put at the caller's fd N (we keep ours open). Throwing fails the call. */
  mount(call: FuseMountCall): Promise<number>;
  /** The caller unmounts a mountpoint `mount` answered (umount2 `flags`). Throwing fails the call. */
  unmount(call: FuseMountCall, flags: number): Promise<void>;
  /** The fd `mount` returned is now the caller's too (ADDFD succeeded); e.g. close our copy. */
  placed?(call: FuseMountCall, fd: number): void;
  /**
   * The server runs in a mount namespace of its own (exec_helper.c --private-mounts; root only):
   * what `mount` puts at its mountpoint there is seen by the server's processes only.
   */
  readonly privateMounts?: boolean;
}

/** What happened to one intercepted call, for the caller's log and the session. */
export type InterceptEvent =
  | { kind: 'mount'; call: FuseMountCall }
  | { kind: 'unmount'; call: FuseMountCall; flags: number }
  | { kind: 'passed'; request: MountRequest }
  | { kind: 'failed'; request: MountRequest; errno: number; message: string };

/** The errno to fail a call with for `err` (a native error carries it; anything else is EIO). */
function errnoOf(err: unknown): number {
  const n = (err as NodeJS.ErrnoException).errno;
  return typeof n === 'number' && n !== 0 ? Math.abs(n) : EIO;
}

/** Answers the mount-family calls of the processes under one listener. */
export class Interceptor {
  /** Mounts made for the server, by target; removed on its unmount. */
  readonly mounts = new Map<string, FuseMountCall>();
  /** Targets the server unmounted (a second unmount of them is answered 0: see answerUnmount). */
  private readonly ended = new Set<string>();
  private readonly sup: Supervisor;
  private stopped = false;
  /** Resolves when no process is under the filter any more (or after stop()). */
  readonly done: Promise<void>;

  /** JS thread. Takes ownership of `listenerFd`. */
  constructor(
    listenerFd: number,
    private readonly strategy: InterceptStrategy,
    private readonly onEvent: (e: InterceptEvent) => void = () => undefined,
  ) {
    let end!: () => void;
    this.done = new Promise((r) => (end = r));
    this.sup = new (native().Supervisor)(listenerFd, (r) => void this.answer(r), () => end());
    this.sup.start();
  }

  /** Closes the listener: later mount calls of the server fail with ENOSYS. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.sup.stop();
  }

  private reply(r: MountRequest, errno: number, cont = false): void {
    try {
      this.sup.reply(r.id, errno, cont);
    } catch (err) {
      // ENOENT: the caller died while we worked on its call; nothing to answer.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || this.stopped) return;
    }
  }

  private fail(r: MountRequest, errno: number, message: string): void {
    this.onEvent({ kind: 'failed', request: r, errno, message });
    this.reply(r, errno);
  }

  private async answer(r: MountRequest): Promise<void> {
    if (this.stopped) return;
    if (r.error !== null) return this.fail(r, EFAULT, `cannot read the ${r.syscall} arguments of pid ${r.pid}: ${r.error}`);
    if (r.syscall === 'mount') return this.answerMount(r);
    return this.answerUnmount(r);
  }

  private async answerMount(r: MountRequest): Promise<void> {
    // Remounts, binds, moves and propagation changes of a FUSE mount carry no fd=: they run as made.
    if (!isFuseType(r.fstype) || r.flags & NOT_A_NEW_MOUNT) {
      this.onEvent({ kind: 'passed', request: r });
      return this.reply(r, 0, true);
    }
    let call: FuseMountCall;
    try {
      call = { pid: r.pid, target: resolveTarget(r), source: r.source ?? '', fstype: r.fstype!, flags: r.flags, data: r.data ?? '', parsed: parseFuseMountData(r.data ?? '') };
    } catch (err) {
      return this.fail(r, EINVAL, (err as Error).message);
    }
    let fd: number;
    try {
      fd = await this.strategy.mount(call);
    } catch (err) {
      return this.fail(r, errnoOf(err), `mount ${call.target}: ${(err as Error).message}`);
    }
    this.mounts.set(call.target, call);
    this.ended.delete(call.target);
    try {
      this.sup.addFd(r.id, r.pid, fd, call.parsed.fd);
    } catch (err) {
      // The caller died, or its fd table is full: undo, so no mount is left that nobody serves.
      this.mounts.delete(call.target);
      await this.strategy.unmount(call, 0).catch(() => undefined);
      return this.fail(r, errnoOf(err), `cannot place fd ${call.parsed.fd} in pid ${r.pid}: ${(err as Error).message}`);
    }
    this.strategy.placed?.(call, fd);
    this.onEvent({ kind: 'mount', call });
    this.reply(r, 0);
  }

  private async answerUnmount(r: MountRequest): Promise<void> {
    const target = resolveTarget(r);
    const call = this.mounts.get(target);
    if (!call) {
      // libfuse unmounts at exit even when the mount is already gone (it cannot see that through
      // a socket: fuse_kern_unmount looks for POLLERR on the fd). Natively that call never
      // happens; answer it as done rather than run it against whatever is mounted there now.
      if (this.ended.has(target)) return this.reply(r, 0);
      this.onEvent({ kind: 'passed', request: r });
      return this.reply(r, 0, true);
    }
    try {
      await this.strategy.unmount(call, r.flags);
    } catch (err) {
      return this.fail(r, errnoOf(err), `unmount ${target}: ${(err as Error).message}`);
    }
    this.mounts.delete(target);
    this.ended.add(target);
    this.onEvent({ kind: 'unmount', call, flags: r.flags });
    this.reply(r, 0);
  }

  /** Marks `target` as unmounted by fusetrace (or the user), so the server's own unmount of it is answered 0. */
  forget(target: string): void {
    if (this.mounts.delete(target)) this.ended.add(target);
  }
}

/**
 * A strategy that mounts for real like the caller and hands the caller the mounted /dev/fuse fd
 * itself: the server then talks to the kernel directly, as without fusetrace. Used by `doctor`
 * and the interception tests; `record` puts its socket there instead.
 */
export class DirectStrategy implements InterceptStrategy {
  readonly made: FuseMount[] = [];
  async mount(call: FuseMountCall): Promise<number> {
    const m = await mountLikeCaller(call);
    this.made.push(m);
    return m.devFd;
  }
  async unmount(call: FuseMountCall, flags: number): Promise<void> {
    const i = this.made.findIndex((m) => m.mountpoint === call.target);
    const m = this.made[i];
    await unmountFuse(m ?? { mountpoint: call.target, via: process.geteuid?.() === 0 ? 'mount' : 'fusermount3' }, flags & MNT_DETACH);
    if (m) {
      closeSync(m.devFd);
      this.made.splice(i, 1);
    }
  }
  /** Closes the fds still held (after the server is gone). */
  close(): void {
    for (const m of this.made.splice(0)) closeSync(m.devFd);
  }
}

/** A server started under the interception filter. */
export interface InterceptedServer {
  child: ChildProcess;
  interceptor: Interceptor;
}

/**
 * Starts `argv` unchanged through the exec helper with --notify and takes its listener.
 * `sockFd` is the number the splice rule matches (see exec_helper.c), or undefined when the
 * socket's number is not known before the mount.
 */
export function spawnIntercepted(
  argv: readonly string[],
  strategy: InterceptStrategy,
  spawnOpts: SpawnOptions = {},
  onEvent?: (e: InterceptEvent) => void,
  sockFd?: number,
): InterceptedServer {
  const pair = native().seqpacketPair(65536);
  const [ours, theirs] = pair.fds;
  const given = spawnOpts.stdio ?? 'inherit';
  const stdio: unknown[] = typeof given === 'string' ? [given, given, given] : [...given];
  const chanFd = stdio.length;
  let child: ChildProcess;
  try {
    const ns = strategy.privateMounts ? ['--private-mounts'] : [];
    child = spawn(execHelperPath(), [...ns, '--notify', String(chanFd), sockFd === undefined ? '-' : String(sockFd), ...argv], {
      ...spawnOpts,
      argv0: spawnOpts.argv0 ?? argv[0],
      stdio: [...stdio, theirs] as SpawnOptions['stdio'],
    });
  } finally {
    closeSync(theirs);
  }
  let listener: number;
  try {
    // The helper sends the listener before it execs the server; end-of-file if it failed first.
    listener = native().recvFd(ours);
  } catch (err) {
    closeSync(ours);
    if (child.pid !== undefined) child.kill('SIGKILL');
    throw new Error(`the exec helper did not pass its seccomp listener: ${(err as Error).message}`);
  }
  closeSync(ours);
  return { child, interceptor: new Interceptor(listener, strategy, onEvent) };
}

/** Whether the kernel has seccomp user notification (SECCOMP_RET_USER_NOTIF in actions_avail). */
export function userNotifAvailable(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/seccomp/actions_avail', 'utf8').split(/\s+/).includes('user_notif');
  } catch {
    return false;
  }
}
