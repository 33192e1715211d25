/**
 * `fusetrace record`: mounts /dev/fuse, starts the unmodified FUSE server on /dev/fd/3 (one end of
 * a SOCK_SEQPACKET socketpair), runs the native pump between the two and commits every frame to
 * the trace file, then ends the session the way the user or the server asked.
 *
 * This file validates the request (plan) and builds the parts in an order that never leaves a
 * mount nobody serves: the trace file, the socket, the mount, the writer and the pump, then the
 * server. The parts, mirroring the replayer (src/replay/engine.ts):
 *  - RecordSession (session.ts): phases, end reasons, signals; the one place that decides;
 *  - FramePipeline (pipeline.ts): drain, patches, seq order, buffer recycling, into the writer;
 *  - RecordStatus (status.ts): the live line, notes and the summary;
 *  - ServerProcess (src/server/process.ts): starting and ending the server, shared with replay.
 */
import { closeSync, existsSync, fstatSync, readFileSync, rmSync, statSync } from 'node:fs';
import { constants as osConstants, release } from 'node:os';
import { basename, resolve } from 'node:path';
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { DevFdArgv, SERVER_FD, ServerProcess, resolveExecutable } from '../server/process.js';
import { dropDurationIndexes, openTraceDb } from '../store/db.js';
import { TraceWriter } from '../store/writer.js';
import { classifyMountOptions, collectDashO, findMountpoint, splitOptions, type MountOptions } from './args.js';
import { frameLimits, initMask } from './init.js';
import { canonicalMountPath, mountAsRoot, mountAt, mountWithFusermount, unmountFuse, type FuseMount } from './mount.js';
import { native, preloadPath, type Pump } from './native.js';
import { userNotifAvailable } from './intercept.js';
import { startIntercepted, type InterceptedStart } from './record-mount.js';
import { DeriverThread } from './deriver.js';
import { FramePipeline } from './pipeline.js';
import { RecordSession, type RecordResult } from './session.js';
import { RecordStatus } from './status.js';

export type { EndReason, RecordResult } from './session.js';

/** What `record` was asked to do. */
export interface RecordOptions {
  /** Trace file (created if missing). */
  dbPath: string;
  name?: string;
  /** --mountpoint: which server argument is the mountpoint. */
  mountpoint?: string;
  /** -o given to fusetrace: extra mount options. */
  mountOptions?: string;
  /** --snaplen: bytes kept per frame; undefined = whole frames. */
  snaplen?: number;
  /** The server's argv as the user gave it. */
  command: string[];
  /** Where the live line and the summary go (default process.stderr). */
  log?: NodeJS.WriteStream;
  /** An fd for the server's stdout and stderr (default: fusetrace's own), e.g. a file while the TUI owns the terminal. */
  serverOutput?: number;
  /** Called once the session row exists, with its id (e.g. to open the live TUI on it). */
  onSession?: (session: number) => void;
  /** Keep at most one request unread in the socket (default: true unless FUSETRACE_GATE=0; see native/pump.h). */
  gate?: boolean;
  /** Start the server through the seccomp exec helper (default: true unless FUSETRACE_SECCOMP=0, a diagnostic switch). */
  seccomp?: boolean;
  /**
   * Let a server that reads /dev/fuse through libc (libfuse, pyfuse3, fuser) take the device over
   * and record in its own process (native/ring.h); servers that bypass libc (go-fuse) stay on the
   * relay either way. Default: true unless FUSETRACE_INPROCESS=0; `record --relay` turns it off.
   */
  inProcess?: boolean;
  /**
   * --lossy: when the recorder falls behind, drop frames (each request they belong to is labelled
   * `lost`) instead of making the server wait (backpressure, the default).
   */
  lossy?: boolean;
  /**
   * Let the server mount by itself and intercept its mount (intercept.ts; default: true where seccomp
   * user notification exists, unless FUSETRACE_INTERCEPT=0); false: the /dev/fd/N fallback.
   */
  intercept?: boolean;
  /** Socket send buffer to ask for (default: enough for the largest frame; FUSETRACE_SNDBUF overrides, to exercise the INIT clamp). */
  sndbuf?: number;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Largest frame the proxy must carry: fuse_max_pages_limit pages (fs/fuse/sysctl.c, default 256) + a page of headers. */
function largestFrame(): number {
  let pages = 256;
  try {
    const v = Number(readFileSync('/proc/sys/fs/fuse/max_pages_limit', 'utf8').trim());
    if (Number.isInteger(v) && v > 0) pages = v;
  } catch {
    /* older kernels: FUSE_MAX_MAX_PAGES = 256 */
  }
  return pages * 4096 + 4096;
}

/** Validated, resolved inputs of a recording; every failure is a one-line UserError. */
interface Plan {
  server: string;
  argv: string[];
  /** The mountpoint argument; with interception only what the user expects (the server decides). */
  mountIndex: number | undefined;
  mountpoint: string | undefined;
  mountOptions: MountOptions;
  asRoot: boolean;
}

function plan(opts: RecordOptions, intercept: boolean): Plan {
  const argv = opts.command;
  if (argv.length === 0) throw new UserError('record needs the server command: fusetrace record [options] -- SERVER [ARGS...] MOUNTPOINT');
  const server = resolveExecutable(argv[0]);
  if (!server) throw new UserError(`server not found or not executable: ${argv[0]}`);
  if (!existsSync('/dev/fuse')) throw new UserError('/dev/fuse does not exist (load the fuse module, or give the container the device)');
  let found = findMountpoint(argv, isDirectory, opts.mountpoint);
  if (!found && opts.mountpoint !== undefined) {
    // --mountpoint may name the argument differently (relative vs absolute).
    const want = resolve(opts.mountpoint);
    const i = argv.findIndex((a, k) => k > 0 && resolve(a) === want);
    if (i > 0) found = { mountIndex: i, mountpoint: argv[i] };
    else throw new UserError(`--mountpoint ${opts.mountpoint} is not one of the server's arguments`);
  }
  const extra = opts.mountOptions ? splitOptions(opts.mountOptions) : [];
  const mountOptions = classifyMountOptions([...collectDashO(argv), ...extra]);
  const asRoot = process.geteuid?.() === 0;
  // With interception the server names its own mountpoint; a directory among its arguments is
  // only what the user expects (a different one is reported).
  if (!found && intercept) return { server, argv, mountIndex: undefined, mountpoint: undefined, mountOptions, asRoot };
  if (!found) throw new UserError('no mountpoint among the server arguments (an existing directory); name it with --mountpoint');
  if (!isDirectory(found.mountpoint)) throw new UserError(`mountpoint is not a directory: ${found.mountpoint}`);
  const mountpoint = canonicalMountPath(resolve(found.mountpoint));
  const busy = mountAt(mountpoint);
  if (busy) throw new UserError(`mountpoint ${mountpoint} is busy: already a ${busy.fsType} mount (unmount it first)`);
  return { server, argv, mountIndex: found.mountIndex, mountpoint, mountOptions, asRoot };
}

/** The socket between pump and server, sized for the largest frame (see DESIGN.md hazards). */
interface Socket {
  proxyFd: number;
  serverFd: number;
  sndbuf: number;
  forced: boolean;
  maxFrame: number;
}

function openSocket(opts: RecordOptions): Socket {
  const envSndbuf = Number(process.env.FUSETRACE_SNDBUF);
  // The socket first: its buffer size decides the largest frame and thus the INIT clamp.
  const want = largestFrame();
  const pair = native().seqpacketPair(opts.sndbuf ?? (envSndbuf > 0 ? envSndbuf : want + 65536));
  // A SEQPACKET message must fit sk_sndbuf - 32 (net/unix/af_unix.c unix_dgram_sendmsg); keep a margin.
  const maxFrame = Math.min(want, pair.sndbuf - 32 - 512);
  return { proxyFd: pair.fds[0], serverFd: pair.fds[1], sndbuf: pair.sndbuf, forced: pair.forced, maxFrame };
}

/** Switches of one recording, from the options and the diagnostic environment variables. */
interface Switches {
  /** FUSETRACE_GATE=0 turns the killability gate off, to measure what it costs and buys. */
  gate: boolean;
  seccomp: boolean;
  inProcess: boolean;
  /** Mount interception (intercept.ts) unless it cannot work here (doctor says) or is switched off. */
  intercept: boolean;
}

function switches(opts: RecordOptions): Switches {
  const seccomp = opts.seccomp ?? process.env.FUSETRACE_SECCOMP !== '0';
  return {
    gate: opts.gate ?? process.env.FUSETRACE_GATE !== '0',
    seccomp,
    intercept: opts.intercept ?? (seccomp && process.env.FUSETRACE_INTERCEPT !== '0' && userNotifAvailable()),
    inProcess: (opts.inProcess ?? process.env.FUSETRACE_INPROCESS !== '0') && existsSync(preloadPath()),
  };
}

/** The writer and ledger of a new session, and the pump between /dev/fuse and the socket. */
interface Recording {
  writer: TraceWriter;
  deriver: DeriverThread;
  session: number;
  pump: Pump;
}

/**
 * Begins the session and starts the pump. `started` receives the pump once it exists: from then on
 * it owns /dev/fuse and the socket's proxy end (a failure must close them through pump.stop()).
 */
function startRecording(
  opts: RecordOptions, p: Plan, db: Database, m: ServerMount, sock: Socket, sw: Switches, onWake: () => void,
  started: { pump?: Pump; deriver?: DeriverThread },
): Recording {
  const mount = m.mount;
  const call = m.intercepted?.recorded.call;
  const startedMonoNs = native().monotonicNs();
  const startedWallNs = BigInt(Date.now()) * 1_000_000n;
  // The live ledger is several times faster without the duration indexes; they come back at the end.
  dropDurationIndexes(db);
  // Deferred: a flush writes the batches alone; the ledger is derived from
  // them on the derivation thread (deriver.ts).
  const writer = new TraceWriter(db, { derive: 'deferred' });
  const session = writer.beginSession({
    name: opts.name,
    command: opts.command,
    mountpoint: mount.mountpoint,
    snaplen: opts.snaplen,
    startedWallNs,
    startedMonoNs,
    meta: {
      uid: process.getuid?.(),
      kernel: release(),
      // Whose derivation a reader must not race (src/store: a session the recorder is still deriving).
      recorderPid: process.pid,
      mountedVia: mount.via,
      mountOptions: mount.options,
      // With interception: the server's own mount(2), exactly as it made it (intercept.ts).
      ...(call
        ? { intercepted: true, serverMount: { source: call.source, fstype: call.fstype, flags: call.flags, data: call.data, target: call.target } }
        : { intercepted: false, ignoredOptions: p.mountOptions.ignored }),
      sndbuf: sock.sndbuf,
      sndbufForced: sock.forced,
      maxFrame: sock.maxFrame,
      gate: sw.gate,
      seccomp: sw.seccomp,
      lossy: opts.lossy === true,
      // 'relay' until the server takes /dev/fuse over ('in-process', written when it happens).
      transport: 'relay',
    },
  });
  // Committed before the thread opens its own connection: it starts from the session row.
  writer.flush();
  const deriver = new DeriverThread(opts.dbPath, session, {
    onFailure: (why) => (opts.log ?? process.stderr).write(`\nfusetrace: the request ledger stopped (frames are still recorded; a rebuild recomputes it): ${why}\n`),
  });
  started.deriver = deriver;
  const limits = frameLimits(sock.maxFrame);
  const pump = new (native().Pump)(
    {
      devFd: mount.devFd,
      sockFd: sock.proxyFd,
      maxFrame: sock.maxFrame,
      snaplen: opts.snaplen ?? 0,
      initMask: initMask(),
      maxWriteLimit: limits.maxWrite,
      maxPagesLimit: limits.maxPages,
      gate: sw.gate,
      inProcess: sw.inProcess,
      lossy: opts.lossy === true,
      // FUSETRACE_RING_BYTES: a smaller in-process ring (tests make --lossy drop with it).
      ...(Number(process.env.FUSETRACE_RING_BYTES) > 0 ? { ringBytes: Number(process.env.FUSETRACE_RING_BYTES) } : {}),
      // FUSETRACE_QUEUE_BYTES: the pump's queue to JS (native/frame_sink.h; the bench that sized it).
      ...(Number(process.env.FUSETRACE_QUEUE_BYTES) > 0 ? { queueBytes: Number(process.env.FUSETRACE_QUEUE_BYTES) } : {}),
    },
    onWake,
  );
  started.pump = pump;
  pump.start();
  return { writer, deriver, session, pump };
}

/** The server's environment: with in-process recording, the preload library and what it checks. */
function serverEnv(sock: Socket, inProcess: boolean, fd: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (inProcess) {
    // native/preload.c: inert unless fd FUSETRACE_FD (with `any`: whichever fd it finds) is this
    // very socket when the server reads it.
    env.LD_PRELOAD = [preloadPath(), ...(env.LD_PRELOAD ?? '').split(/[: ]/).filter(Boolean)].join(':');
    env.FUSETRACE_FD = fd;
    env.FUSETRACE_SOCK_INO = String(fstatSync(sock.serverFd).ino);
    env.FUSETRACE_MAX_FRAME = String(sock.maxFrame);
  }
  return env;
}

/** The recorded FUSE mount, and with interception the server that made it. */
interface ServerMount {
  mount: FuseMount;
  intercepted?: InterceptedStart;
}

/**
 * Gets the mount to record. With interception the server starts now, with its command line
 * unchanged, and this resolves at its first FUSE mount (record-mount.ts); `stillServed` is the
 * session's daemon check, bound later. Otherwise fusetrace mounts the mountpoint argument with
 * the options read from argv (the /dev/fd/N fallback). Closes the socket's fds on failure.
 */
async function mountServer(opts: RecordOptions, p: Plan, sock: Socket, sw: Switches, stillServed: () => Promise<boolean>): Promise<ServerMount> {
  const log = opts.log ?? process.stderr;
  try {
    if (!sw.intercept) {
      const progName = basename(p.server);
      return { mount: p.asRoot ? mountAsRoot(p.mountpoint!, p.mountOptions, progName) : await mountWithFusermount(p.mountpoint!, p.mountOptions, progName) };
    }
    const intercepted = await startIntercepted({
      argv: p.argv,
      program: p.server,
      env: serverEnv(sock, sw.inProcess, 'any'),
      output: opts.serverOutput ?? 'inherit',
      serverFd: sock.serverFd,
      say: (line) => log.write(`fusetrace: ${line}\n`),
      stillServed,
      extra: opts.mountOptions ? classifyMountOptions(splitOptions(opts.mountOptions)) : undefined,
    });
    return { mount: intercepted.recorded.mount, intercepted };
  } catch (err) {
    closeSync(sock.proxyFd);
    if (!sw.intercept) closeSync(sock.serverFd); // startIntercepted owns it, and closes it
    if (err instanceof UserError) throw err;
    throw new UserError(`cannot mount ${p.mountpoint}: ${(err as Error).message}`);
  }
}

/** Runs one recording to its end; resolves with how it ended (never rejects after the mount). */
export async function record(opts: RecordOptions): Promise<RecordResult> {
  // SIGINT/SIGTERM before the session runs (while fusermount3 mounts, say) must neither kill us
  // with a mount half made (Node's default action: the connection aborts, a disconnected mount
  // stays) nor be forgotten: note it, and end the session by it as soon as it runs.
  let early: NodeJS.Signals | undefined;
  const noteEarly = (sig: NodeJS.Signals) => (early ??= sig);
  process.on('SIGINT', noteEarly);
  process.on('SIGTERM', noteEarly);
  try {
    return await recordSession(opts, () => early);
  } finally {
    process.off('SIGINT', noteEarly);
    process.off('SIGTERM', noteEarly);
  }
}

async function recordSession(opts: RecordOptions, early: () => NodeJS.Signals | undefined): Promise<RecordResult> {
  const sw = switches(opts);
  const p = plan(opts, sw.intercept);
  const log = opts.log ?? process.stderr;
  // The trace file before the mount: a refusal (permissions, a foreign file) must not leave a
  // mount that nobody serves.
  const dbExisted = existsSync(opts.dbPath);
  const db = openTraceDb(opts.dbPath, { create: true });
  const sock = openSocket(opts);
  if (early()) {
    closeSync(sock.proxyFd);
    closeSync(sock.serverFd);
    db.close();
    const sig = early()!;
    throw new UserError(`${sig} received before the mount: nothing recorded`, 128 + (osConstants.signals[sig] ?? 0));
  }
  let stillServed: (() => Promise<boolean>) | undefined;
  let m: ServerMount;
  try {
    m = await mountServer(opts, p, sock, sw, () => stillServed?.() ?? Promise.resolve(false));
  } catch (err) {
    db.close();
    // Nothing was recorded (the server never mounted): leave no trace file we created.
    if (!dbExisted) for (const f of [opts.dbPath, `${opts.dbPath}-wal`, `${opts.dbPath}-shm`]) rmSync(f, { force: true });
    throw err;
  }
  const { mount, intercepted } = m;
  // From here on a failure must not leave a mount nobody serves: close our /dev/fuse fd (the
  // connection aborts) and unmount before reporting it.
  let wake = (): void => undefined;
  let rec: Recording;
  const started: { pump?: Pump; deriver?: DeriverThread } = {};
  try {
    rec = startRecording(opts, p, db, m, sock, sw, () => wake(), started);
  } catch (err) {
    await started.deriver?.stop();
    if (started.pump) started.pump.stop(); // closes both of its fds
    else {
      closeSync(mount.devFd);
      closeSync(sock.proxyFd);
    }
    if (intercepted) {
      // The server already runs, on a mount nobody will serve: end it by its PID.
      intercepted.server.signal('SIGKILL');
      intercepted.interceptor.stop();
      intercepted.strategy.close();
    } else {
      closeSync(sock.serverFd);
    }
    await unmountFuse(mount).catch(() => undefined);
    db.close();
    throw err;
  }
  const status = new RecordStatus(log);
  if (p.mountpoint !== undefined && p.mountpoint !== mount.mountpoint) {
    status.notes.push(`the server mounted ${mount.mountpoint}, not ${p.mountpoint} (the directory among its arguments)`);
  }
  const pipeline = new FramePipeline(rec.pump, rec.writer, rec.deriver, sock.maxFrame, (line) => log.write(line));
  const session = new RecordSession({
    ...rec, dbPath: opts.dbPath, mountpoint: mount.mountpoint, mount, db, pipeline, status,
    interception: intercepted && { connectionEnded: () => intercepted.strategy.connectionEnded(), finish: (d) => finishInterception(intercepted, d) },
  });
  wake = () => session.onWake();
  const finished = session.run((ss) => {
    stillServed = ss;
    if (intercepted) return intercepted.server;
    try {
      return new ServerProcess({
        argv: p.argv,
        program: p.server,
        serverFd: sock.serverFd,
        strategy: new DevFdArgv(p.mountIndex),
        seccomp: sw.seccomp,
        env: serverEnv(sock, sw.inProcess, String(SERVER_FD)),
        output: opts.serverOutput ?? 'inherit',
        detached: true,
        stillServed: ss,
      });
    } finally {
      closeSync(sock.serverFd);
    }
  });
  const pending = early();
  if (pending) void session.onSignal(pending);
  if (opts.onSession) setImmediate(opts.onSession, rec.session);
  return finished;
}

/**
 * The end of an intercepted session, once the server is gone (or in the background): a server in
 * the background may still be unmounting (its umount2 waits for our answer), so the processes
 * under the filter get a moment to end before the listener closes.
 */
async function finishInterception(i: InterceptedStart, daemonized: boolean): Promise<void> {
  await Promise.race([i.interceptor.done, new Promise((r) => setTimeout(r, daemonized ? 2_000 : 500))]);
  i.interceptor.stop();
  i.strategy.close();
}
