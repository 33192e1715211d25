/**
 * What `record` does with the mounts of a server it intercepts (src/proxy/intercept.ts).
 *
 * The first FUSE mount is the recorded one: fusetrace mounts it for real with the caller's exact
 * options on a /dev/fuse fd of its own (the pump's), and the server end of the socketpair takes
 * the caller's fd number. A server that mounts again (several mountpoints, or a remount after an
 * unmount) gets those mounts directly, on a device fd of their own, and a note says they are not
 * recorded: one session is one FUSE connection. They live as long as the server does: when it ends
 * (by itself, or stopped with the session) it normally unmounts them, and that unmount is performed
 * as asked; a mount it leaves behind fusetrace unmounts once no process of the server is left,
 * because fusetrace made it and nobody can serve it any more (natively a disconnected mount would
 * stay; a session must end with nothing mounted).
 *
 * The server's own unmount (libfuse's fuse_session_unmount at exit, `fusermount3 -u`) of the
 * recorded mountpoint is performed as asked; if the mount is already gone (the user or fusetrace
 * unmounted it: through a socket libfuse cannot see POLLERR, lib/mount.c fuse_kern_unmount, and
 * unmounts anyway) it is answered 0 without touching whatever is mounted there now.
 */
import { spawnSync } from 'node:child_process';
import { closeSync } from 'node:fs';
import { UserError } from '../errors.js';
import { InterceptMount, ServerProcess } from '../server/process.js';
import { errnoName } from '../protocol/errno.js';
import { mountLikeCaller, type FuseMountCall, type InterceptEvent, type InterceptStrategy, type Interceptor } from './intercept.js';
import { MNT_DETACH, mountAt, unmountFuse, type FuseMount } from './mount.js';
import { native } from './native.js';
import { MOUNT_FLAG_OPTIONS, type MountOptions } from './args.js';

/**
 * The server's mount with `record -o` options added: MS_* flags set or cleared, kernel options
 * appended unless present, fsname= as the source and subtype= in the type.
 */
export function withExtraOptions(call: FuseMountCall, extra: MountOptions): FuseMountCall {
  let flags = call.flags;
  for (const o of extra.all) {
    const f = MOUNT_FLAG_OPTIONS[o];
    if (f) flags = f.set ? flags | f.flag : flags & ~f.flag;
  }
  const have = new Set(call.parsed.options.map((o) => o.split('=')[0]));
  const added = extra.kernel.filter((o) => !have.has(o.split('=')[0]));
  const parsed = { ...call.parsed, options: [...call.parsed.options, ...added] };
  const fstype = extra.subtype ? `${call.fstype === 'fuseblk' ? 'fuseblk' : 'fuse'}.${extra.subtype}` : call.fstype;
  return { ...call, flags, fstype, source: extra.fsname ?? call.source, parsed };
}

/** The recorded mount: what the server asked for and what fusetrace made of it. */
export interface RecordedMount {
  call: FuseMountCall;
  mount: FuseMount;
  /** st_dev of the mount ("0:N"), to tell it from a later mount on the same directory. */
  device: string | undefined;
}

export class RecordMountStrategy implements InterceptStrategy {
  private recorded: RecordedMount | undefined;
  /** The first mount is under way (mounts of several server threads may overlap). */
  private claimed = false;
  private readonly others: Array<{ mount: FuseMount; device: string | undefined }> = [];
  private firstResolve!: (m: RecordedMount) => void;
  /** Resolves with the first FUSE mount once the server holds the socket at its number. */
  readonly first: Promise<RecordedMount>;

  /**
   * `serverFd`: our copy of the server end of the socketpair (closed once the server holds it, so
   * that its exit reads as end-of-file). `say` prints one line to the user.
   */
  constructor(
    private serverFd: number,
    private readonly say: (line: string) => void,
    /** `fusetrace record -o`: options the user adds to the server's own (flags, kernel options, names). */
    private readonly extra?: MountOptions,
  ) {
    this.first = new Promise((r) => (this.firstResolve = r));
  }

  /** The recorded connection ended (unmounted, or aborted by fusetrace): see unmount(). */
  connectionEnded(): void {
    this.ended = true;
  }
  private ended = false;

  async mount(call: FuseMountCall): Promise<number> {
    const isFirst = !this.claimed;
    this.claimed = true;
    let mount: FuseMount;
    try {
      mount = await mountLikeCaller(isFirst && this.extra ? withExtraOptions(call, this.extra) : call);
    } catch (err) {
      if (isFirst) this.claimed = false;
      throw err;
    }
    const device = mountAt(call.target)?.device;
    if (isFirst) {
      this.recorded = { call, mount, device };
      return this.serverFd;
    }
    this.others.push({ mount, device });
    this.say(`the server mounted again on ${call.target} (pid ${call.pid}): that mount is served directly and not recorded (one session records one FUSE connection)`);
    return mount.devFd;
  }

  placed(call: FuseMountCall, fd: number): void {
    if (fd !== this.serverFd || !this.recorded || this.recorded.call !== call) return;
    closeSync(this.serverFd);
    this.serverFd = -1;
    this.firstResolve(this.recorded);
  }

  async unmount(call: FuseMountCall, flags: number): Promise<void> {
    const lazy = flags & MNT_DETACH;
    if (this.recorded && this.recorded.call === call) {
      // Already gone: the user's umount or fusetrace's own ended the session first. Or aborted:
      // natively the server would see POLLERR on its fd and leave the disconnected mount alone
      // (lib/mount.c fuse_kern_unmount); through the socket it cannot, so do what it would.
      if (this.ended || mountAt(call.target)?.device !== this.recorded.device) return;
      await unmountFuse(this.recorded.mount, lazy);
      return;
    }
    const i = this.others.findIndex((o) => o.mount.mountpoint === call.target);
    if (i < 0) return;
    const o = this.others[i];
    if (mountAt(call.target)?.device === o.device) await unmountFuse(o.mount, lazy);
    closeSync(o.mount.devFd);
    this.others.splice(i, 1);
  }

  /** No process is under the interception filter any more: the server and all it started are gone. */
  serverGone(): void {
    this.gone = true;
  }
  private gone = false;

  /**
   * Closes the device fds of the unrecorded mounts (after the server is gone, or in the
   * background). Closing the last fd of a connection aborts it (fs/fuse/dev.c fuse_dev_release);
   * an unrecorded mount still there when no process of the server is left is then unmounted, and
   * said so. A server in the background keeps its own fd, and its mounts stay with it.
   */
  close(): void {
    for (const o of this.others.splice(0)) {
      closeSync(o.mount.devFd);
      if (!this.gone || o.device === undefined || mountAt(o.mount.mountpoint)?.device !== o.device) continue;
      const err = unmountNowSync(o.mount);
      this.say(
        err
          ? `cannot unmount ${o.mount.mountpoint}, the server's unrecorded mount that it left behind: ${err}`
          : `unmounted ${o.mount.mountpoint}: the server left its unrecorded mount behind`,
      );
    }
    if (this.serverFd >= 0) {
      closeSync(this.serverFd);
      this.serverFd = -1;
    }
  }
}

/**
 * unmountFuse, synchronously (close() runs at the very end of a session): umount2 as root, else
 * `fusermount3 -u`. Never lazy: a lazy unmount of a disconnected mount would hide that it failed.
 * Returns the failure, or undefined.
 */
function unmountNowSync(m: FuseMount): string | undefined {
  if (m.via === 'mount') {
    try {
      native().umount(m.mountpoint, 0);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }
  const r = spawnSync('fusermount3', ['-u', '--', m.mountpoint], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? undefined : r.stderr.trim() || `fusermount3 -u: exit ${r.status}`;
}

/** How waiting for the server's first mount ended. */
export type MountWait =
  | { kind: 'mounted'; recorded: RecordedMount }
  /** The server, and every process it started under the filter, ended without a FUSE mount. */
  | { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null }
  /** SIGINT/SIGTERM reached fusetrace first: the server was ended by its PID. */
  | { kind: 'signal'; signal: NodeJS.Signals; server: { code: number | null; signal: NodeJS.Signals | null } };

export interface MountWaitOptions {
  strategy: RecordMountStrategy;
  /** Resolves when no process is under the filter any more (Interceptor.done). */
  filterGone: Promise<void>;
  /** Resolves when the process we started exited (with its status). */
  serverExited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal to the process we started (by its PID, nothing else). */
  kill: (sig: NodeJS.Signals) => void;
  say: (line: string) => void;
  /** When to say that nothing was mounted yet (default 10 s). */
  warnMs?: number;
  /** After SIGTERM, how long the server gets before SIGKILL (default 3 s). */
  killAfterMs?: number;
}

/**
 * Waits for the server's first FUSE mount. A server that exits non-zero before it mounted ends
 * the wait at once; one that exits 0 may have gone to the background before mounting (a process
 * it started is still under the filter), so the wait goes on until the filter has no process
 * left. A signal to fusetrace ends the server by its PID (SIGTERM, then SIGKILL).
 */
export async function awaitFirstMount(o: MountWaitOptions): Promise<MountWait> {
  const timers: NodeJS.Timeout[] = [];
  let onSignal!: (sig: NodeJS.Signals) => void;
  const signalled = new Promise<NodeJS.Signals>((r) => (onSignal = r));
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  const warnMs = o.warnMs ?? 10_000;
  timers.push(
    setTimeout(
      () => o.say(`the server has not mounted anything after ${warnMs / 1000} s (recording starts at its mount; Ctrl-C ends it)`),
      warnMs,
    ),
  );
  const exited = o.serverExited.then(async (x) => {
    if (x.code === 0 && x.signal === null) await o.filterGone;
    return x;
  });
  try {
    const first = await Promise.race([
      o.strategy.first.then((recorded) => ({ kind: 'mounted' as const, recorded })),
      exited.then((x) => ({ kind: 'exited' as const, ...x })),
      signalled.then((signal) => ({ kind: 'signal' as const, signal })),
    ]);
    if (first.kind !== 'signal') return first;
    o.kill('SIGTERM');
    timers.push(setTimeout(() => o.kill('SIGKILL'), o.killAfterMs ?? 3_000));
    return { kind: 'signal', signal: first.signal, server: await o.serverExited };
  } finally {
    for (const t of timers) clearTimeout(t);
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}

/** A server started under interception whose first mount is made. */
export interface InterceptedStart {
  server: ServerProcess;
  interceptor: Interceptor;
  strategy: RecordMountStrategy;
  recorded: RecordedMount;
}

export interface InterceptedSpawn {
  /** The server's argv, unchanged; `program` is what execvp() runs (argv[0] stays as given). */
  argv: string[];
  program: string;
  env: NodeJS.ProcessEnv;
  output: 'inherit' | number;
  /** Our copy of the server end of the socketpair: it takes the number of the server's fuse fd. */
  serverFd: number;
  say: (line: string) => void;
  /** The session's daemon check, once the server has mounted (ServerProcessOptions.stillServed). */
  stillServed: () => Promise<boolean>;
  warnMs?: number;
  /** `record -o`: options added to the server's own. */
  extra?: MountOptions;
}

/** Before its mount, a server that exited 0 went to the background if a process it started is still under the filter. */
async function filterPopulated(interceptor: Interceptor | undefined): Promise<boolean> {
  if (!interceptor) return false;
  return Promise.race([interceptor.done.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 100))]);
}

/**
 * Starts the server with its command line unchanged under the interception filter and waits for
 * its first FUSE mount. Every way it can end without one is a one-line UserError: the server's
 * own exit status when it exited before mounting, 128 + signal when fusetrace was signalled (the
 * server is then ended by its PID). Nothing is left behind in either case.
 */
export async function startIntercepted(s: InterceptedSpawn): Promise<InterceptedStart> {
  const strategy = new RecordMountStrategy(s.serverFd, s.say, s.extra);
  const onEvent = (e: InterceptEvent) => {
    if (e.kind === 'failed') s.say(`the server's ${e.request.syscall} failed with ${errnoName(e.errno)}: ${e.message}`);
  };
  let mounted = false;
  void strategy.first.then(() => (mounted = true));
  let server: ServerProcess;
  try {
    server = new ServerProcess({
      argv: s.argv,
      program: s.program,
      strategy: new InterceptMount(strategy, onEvent),
      env: s.env,
      output: s.output,
      // Own process group: a terminal's Ctrl-C reaches fusetrace only, which ends the session in order.
      detached: true,
      stillServed: () => (mounted ? s.stillServed() : filterPopulated(server.interceptor)),
    });
  } catch (err) {
    strategy.close();
    throw new UserError(`cannot start ${s.argv[0]} under the mount interception: ${(err as Error).message} (FUSETRACE_INTERCEPT=0 falls back to /dev/fd/N)`);
  }
  const interceptor = server.interceptor!;
  // Before anything else waits on it: close() must know, when it runs, that nobody is left.
  void interceptor.done.then(() => strategy.serverGone());
  const wait = await awaitFirstMount({
    strategy,
    filterGone: interceptor.done,
    serverExited: server.exited.then((x) => (x.spawnError !== undefined ? { code: 127, signal: null } : { code: x.code, signal: x.signal })),
    kill: (sig) => void server.signal(sig),
    say: s.say,
    warnMs: s.warnMs,
  });
  if (wait.kind === 'mounted') return { server, interceptor, strategy, recorded: wait.recorded };
  interceptor.stop();
  strategy.close();
  if (wait.kind === 'exited') {
    const status = wait.signal ? `was killed by ${wait.signal}` : `exited with status ${wait.code}`;
    throw new UserError(`${s.argv[0]} ${status} before it mounted anything: nothing was recorded`, ServerProcess.statusOf(wait) || 1);
  }
  const how = wait.server.signal ? `ended by ${wait.server.signal}` : `exited ${wait.server.code}`;
  throw new UserError(`${wait.signal} before ${s.argv[0]} mounted anything: the server (pid ${server.pid}) ${how}; nothing was recorded`, ServerProcess.statusOf({ code: null, signal: wait.signal }));
}
