/**
 * `fusetrace record`: mounts /dev/fuse, starts the unmodified FUSE server on /dev/fd/3 (one end of
 * a SOCK_SEQPACKET socketpair), runs the native pump between the two and commits every frame to
 * the trace file, then ends the session the way the user or the server asked.
 *
 * Session ends (DESIGN.md):
 *  - the user unmounts: the pump's read() gets ENODEV, the server gets end-of-file and exits
 *    (libfuse: "short read on fuse device", status 1); the session ended by `unmount`, exit 0;
 *  - SIGINT/SIGTERM: we unmount (never lazily), then as above; `signal`, exit 0;
 *  - the server exits by itself: we unmount as libfuse's fuse_session_unmount would have;
 *    `server-exit`, fusetrace exits with the server's status;
 *  - the server dies of a signal: like a native crash, closing the last /dev/fuse fd aborts the
 *    connection and the mount is left disconnected (ENOTCONN), not lazily unmounted;
 *    `server-crash`, exit 128 + signal;
 *  - fusetrace is SIGKILLed: the kernel closes our /dev/fuse fd (connection aborted) and the
 *    server reads end-of-file; frames are committed every FLUSH_MS so the trace stays readable.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, fstatSync, readFileSync, rmSync, statSync } from 'node:fs';
import { constants as osConstants, release } from 'node:os';
import { basename, delimiter, join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { createDurationIndexes, dropDurationIndexes, openTraceDb } from '../store/db.js';
import { TraceWriter } from '../store/writer.js';
import { Ledger } from '../store/ledger.js';
import { classifyMountOptions, collectDashO, findMountpoint, splitOptions, type MountOptions } from './args.js';
import { FRAME_FLAG_PATCH, SeqOrderer, unpackFrames, type PumpFrame } from './frames.js';
import { frameLimits, initChanges, initMask } from './init.js';
import { canonicalMountPath, mountAsRoot, mountAt, mountWithFusermount, unmountFuse, type FuseMount } from './mount.js';
import { execHelperPath, native, preloadPath, type Pump, type PumpStatus } from './native.js';
import { userNotifAvailable } from './intercept.js';
import { startIntercepted, type InterceptedStart } from './record-mount.js';

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
   * Let the server mount by itself and intercept its mount (intercept.ts; default: true where seccomp
   * user notification exists, unless FUSETRACE_INTERCEPT=0); false: the /dev/fd/N fallback.
   */
  intercept?: boolean;
  /** Socket send buffer to ask for (default: enough for the largest frame; FUSETRACE_SNDBUF overrides, to exercise the INIT clamp). */
  sndbuf?: number;
}

export type EndReason = 'unmount' | 'signal' | 'server-exit' | 'server-crash' | 'error';

/** How the recording ended. */
export interface RecordResult {
  session: number;
  endReason: EndReason;
  exitStatus: number;
  serverExitCode: number | null;
  serverSignal: string | null;
  frames: number;
  dropped: number;
  partial: number;
}

/** Commit period: a SIGKILLed fusetrace loses at most this much of the trace. */
const FLUSH_MS = 100;
/** Drained bytes past which drainOnce() flushes and recycles the pump's regions (see recycleDrained). */
const RECYCLE_BYTES = 16 << 20;
/** How long the server gets to exit after the connection ended, before SIGTERM (then SIGKILL). */
const SERVER_GRACE_MS = 5_000;
/** When to warn that the server has not answered FUSE_INIT. */
const INIT_WARN_MS = 10_000;
/** fuse_in_header.opcode of requests that never get a reply (FORGET, BATCH_FORGET) or only sometimes (INTERRUPT). */
const NO_REPLY_OPCODES = new Set([2, 36, 42]);

/** Resolves a command like execvp() would; undefined when not found or not executable. */
export function resolveExecutable(cmd: string): string | undefined {
  const ok = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) return ok(cmd) ? resolve(cmd) : undefined;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir || '.', cmd);
    if (ok(p)) return p;
  }
  return undefined;
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

/** The server's environment: with in-process recording, the preload library and what it checks. */
function serverEnv(serverSock: number, maxFrame: number, inProcess: boolean, fd: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (inProcess) {
    // native/preload.c: inert unless fd FUSETRACE_FD (or, with `any`, the fd it finds) is this very
    // socket when the server reads it.
    env.LD_PRELOAD = [preloadPath(), ...(env.LD_PRELOAD ?? '').split(/[: ]/).filter(Boolean)].join(':');
    env.FUSETRACE_FD = fd;
    env.FUSETRACE_SOCK_INO = String(fstatSync(serverSock).ino);
    env.FUSETRACE_MAX_FRAME = String(maxFrame);
  }
  return env;
}

/**
 * Mounts for the fallback path (no interception): fusetrace mounts the mountpoint argument itself
 * with the options read from argv, and the server gets /dev/fd/3.
 */
async function mountForDevFd(p: Plan, progName: string): Promise<FuseMount> {
  try {
    return p.asRoot ? mountAsRoot(p.mountpoint!, p.mountOptions, progName) : await mountWithFusermount(p.mountpoint!, p.mountOptions, progName);
  } catch (err) {
    throw new UserError(`cannot mount ${p.mountpoint}: ${(err as Error).message}`);
  }
}

/** Runs one recording to its end; resolves with how it ended (never rejects after the mount). */
export async function record(opts: RecordOptions): Promise<RecordResult> {
  const seccomp = opts.seccomp ?? process.env.FUSETRACE_SECCOMP !== '0';
  // Mount interception (intercept.ts) unless it cannot work here (doctor says) or is switched off.
  const intercept = opts.intercept ?? (seccomp && process.env.FUSETRACE_INTERCEPT !== '0' && userNotifAvailable());
  const p = plan(opts, intercept);
  // FUSETRACE_GATE=0 turns the killability gate off, to measure what it costs and buys.
  const gate = opts.gate ?? process.env.FUSETRACE_GATE !== '0';
  const inProcess = (opts.inProcess ?? process.env.FUSETRACE_INPROCESS !== '0') && existsSync(preloadPath());
  const envSndbuf = Number(process.env.FUSETRACE_SNDBUF);
  const log = opts.log ?? process.stderr;
  const progName = basename(p.server);

  // The trace file before the mount: a refusal (permissions, a foreign file) must not leave a
  // mount that nobody serves.
  const dbExisted = existsSync(opts.dbPath);
  const db = openTraceDb(opts.dbPath, { create: true });

  // The socket first: its buffer size decides the largest frame and thus the INIT clamp.
  const want = largestFrame();
  const pair = native().seqpacketPair(opts.sndbuf ?? (envSndbuf > 0 ? envSndbuf : want + 65536));
  // A SEQPACKET message must fit sk_sndbuf - 32 (net/unix/af_unix.c unix_dgram_sendmsg); keep a margin.
  const maxFrame = Math.min(want, pair.sndbuf - 32 - 512);
  const limits = frameLimits(maxFrame);
  const [proxySock, serverSock] = pair.fds;

  const stdio: StdioOptions = opts.serverOutput === undefined ? ['inherit', 'inherit', 'inherit'] : ['ignore', opts.serverOutput, opts.serverOutput];
  const earlyNotes: string[] = [];
  let mount: FuseMount;
  let started: InterceptedStart | undefined;
  try {
    if (intercept) {
      // The server runs with its command line unchanged and mounts by itself; its first FUSE mount
      // is made for real with its own options, and our socket takes its fuse fd's number.
      started = await startIntercepted({
        argv: p.argv,
        program: p.server,
        env: serverEnv(serverSock, maxFrame, inProcess, 'any'),
        stdio,
        serverFd: serverSock,
        say: (line) => log.write(`fusetrace: ${line}\n`),
        extra: opts.mountOptions ? classifyMountOptions(splitOptions(opts.mountOptions)) : undefined,
      });
      mount = started.recorded.mount;
      if (p.mountpoint !== undefined && p.mountpoint !== mount.mountpoint) {
        earlyNotes.push(`the server mounted ${mount.mountpoint}, not ${p.mountpoint} (the directory among its arguments)`);
      }
    } else {
      mount = await mountForDevFd(p, progName);
    }
  } catch (err) {
    closeSync(proxySock);
    if (!intercept) closeSync(serverSock); // startIntercepted owns it, and closes it
    db.close();
    // Nothing was recorded (the server never mounted): leave no trace file we created.
    if (!dbExisted) for (const f of [opts.dbPath, `${opts.dbPath}-wal`, `${opts.dbPath}-shm`]) rmSync(f, { force: true });
    throw err;
  }
  const mountpoint = mount.mountpoint;

  const startedMonoNs = native().monotonicNs();
  const startedWallNs = BigInt(Date.now()) * 1_000_000n;
  // From here on a failure must not leave a mount nobody serves: close our /dev/fuse fd (the
  // connection aborts) and unmount before reporting it.
  let writer!: TraceWriter;
  let session!: number;
  let ledger!: Ledger;
  let pump!: Pump;
  try {
    // The live ledger is several times faster without the duration indexes; they come back at the end.
    dropDurationIndexes(db);
    writer = new TraceWriter(db);
    session = writer.beginSession({
      name: opts.name,
      command: opts.command,
      mountpoint,
      snaplen: opts.snaplen,
      startedWallNs,
      startedMonoNs,
      meta: {
        uid: process.getuid?.(),
        kernel: release(),
        mountedVia: mount.via,
        mountOptions: mount.options,
        // With interception: the server's own mount(2), exactly as it made it (intercept.ts).
        ...(started
          ? {
              intercepted: true,
              serverMount: {
                source: started.recorded.call.source,
                fstype: started.recorded.call.fstype,
                flags: started.recorded.call.flags,
                data: started.recorded.call.data,
                target: started.recorded.call.target,
              },
            }
          : { intercepted: false, ignoredOptions: p.mountOptions.ignored }),
        sndbuf: pair.sndbuf,
        sndbufForced: pair.forced,
        maxFrame,
        gate,
        seccomp,
        // 'relay' until the server takes /dev/fuse over ('in-process', written when it happens).
        transport: 'relay',
      },
    });

    // The request ledger runs inside each flush's transaction, so the `requests` rows commit with
    // their frames (and survive a SIGKILL just as the frames do).
    ledger = new Ledger(db, session);
    writer.onFrames((_s, frames) => ledger.add(frames));

    pump = new (native().Pump)(
      {
        devFd: mount.devFd,
        sockFd: proxySock,
        maxFrame,
        snaplen: opts.snaplen ?? 0,
        initMask: initMask(),
        maxWriteLimit: limits.maxWrite,
        maxPagesLimit: limits.maxPages,
        gate,
        inProcess,
      },
      () => onWake(),
    );
    pump.start();
  } catch (err) {
    if (pump) pump.stop(); // closes both of its fds
    else {
      closeSync(mount.devFd);
      closeSync(proxySock);
    }
    if (started) {
      // The server already runs, on a mount nobody will serve: end it by its PID.
      started.child.kill('SIGKILL');
      started.interceptor.stop();
      started.strategy.close();
    } else {
      closeSync(serverSock);
    }
    await unmountFuse(mount).catch(() => undefined);
    db.close();
    throw err;
  }

  // Own process group: a terminal's Ctrl-C reaches fusetrace only, which then ends the session
  // in order (unmount first, then the server sees end-of-file).
  let child: ChildProcess;
  if (started) {
    child = started.child;
  } else {
    const serverArgv = [...p.argv];
    serverArgv[p.mountIndex!] = '/dev/fd/3';
    try {
      const [file, args] = seccomp ? [execHelperPath(), ['3', p.server, ...serverArgv.slice(1)]] : [p.server, serverArgv.slice(1)];
      child = spawn(file, args, { stdio: [...stdio, serverSock], detached: true, argv0: p.argv[0], env: serverEnv(serverSock, maxFrame, inProcess, '3') });
    } finally {
      closeSync(serverSock);
    }
  }
  if (opts.onSession) setImmediate(opts.onSession, session);

  // ---- live state ----
  let recorded = 0;
  let bytes = 0;
  let dropped = 0;
  let errors = 0;
  const inFlight = new Set<bigint>();
  let initRecorded = false;
  let inProcessNoted = false;
  let initAnswered = false;
  let lastStatus: PumpStatus | undefined;
  let lastDroppedWritten = 0;

  let phase: 'running' | 'unmounting' | 'ending' | 'done' = 'running';
  let endReason: EndReason | undefined;
  let serverExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let unmountBusy = false;
  let connectionEnded = false; // the pump read ENODEV
  let aborted = false;
  let daemonized = false;
  let finishResolve!: (r: RecordResult) => void;
  const finished = new Promise<RecordResult>((r) => (finishResolve = r));
  const timers: NodeJS.Timeout[] = [];
  let graceTimer: NodeJS.Timeout | undefined;
  const notes: string[] = [...earlyNotes];

  const observe = (frames: PumpFrame[]) => {
    for (const f of frames) {
      if (f.dir === 0) {
        if (f.opcode !== null && !NO_REPLY_OPCODES.has(f.opcode) && f.writeErrno === 0) inFlight.add(f.unique);
        if (f.writeErrno !== 0) errors++;
      } else {
        if (f.unique !== 0n) inFlight.delete(f.unique);
        if ((f.error ?? 0) < 0 && f.unique !== 0n) errors++;
        else if (f.writeErrno !== 0) errors++;
      }
    }
  };

  const orderer = new SeqOrderer();
  /** Notifications not yet committed, by seq: their write result (a patch) may still change them. */
  const unflushedNotifies = new Map<number, PumpFrame>();
  writer.onFrames((_s, frames) => {
    for (const f of frames) if (f.dir === 1 && f.unique === 0n) unflushedNotifies.delete(f.seq);
  });
  const patchRow = db.prepare('UPDATE frames SET fwd_ns = ?, write_errno = ? WHERE session = ? AND seq = ?');
  /** Applies a notification's write result: to the frame if not yet committed, else to its row. */
  function patchNotify(p: PumpFrame): void {
    const f = unflushedNotifies.get(p.seq) ?? orderer.find(p.seq);
    if (f) {
      f.fwdNs = p.fwdNs;
      f.writeErrno = p.writeErrno;
    } else {
      patchRow.run(p.fwdNs, p.writeErrno, session, p.seq);
    }
    if (p.writeErrno !== 0) errors++;
  }

  let ledgerNoted = false;
  /** Runs a writer call; an error of the ledger observer (the frames still committed) stops only the ledger. */
  function guarded(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (!ledger.failure) throw err;
      if (!ledgerNoted) {
        ledgerNoted = true;
        log.write(`fusetrace: the request ledger stopped (frames are still recorded; rebuild it later): ${String(err)}\n`);
      }
    }
  }

  /**
   * Drained Buffers the writer may still refer to (its records' `data` slices them until its next
   * flush, see TraceWriter.addFrames; the orderer holds frames across drains). Handed back to the
   * pump after a flush, so a full capture refills a few regions instead of faulting in new ones.
   */
  let drained: Buffer[] = [];
  let drainedBytes = 0;
  function recycleDrained(): void {
    const keep: Buffer[] = [];
    drainedBytes = 0;
    for (const b of drained) {
      if (orderer.holds(b)) {
        keep.push(b);
        drainedBytes += b.length;
      } else {
        pump.recycle(b);
      }
    }
    drained = keep;
  }

  function drainOnce(final = false): void {
    const d = pump.drain();
    if (d.frames.length > 0 && !final) {
      drained.push(d.frames);
      drainedBytes += d.frames.length;
    }
    for (const [pid, comm] of d.procs) writer.addProc(pid, comm);
    let frames = d.count > 0 ? unpackFrames(d.frames, d.count) : [];
    let patches: PumpFrame[] = [];
    if (frames.some((f) => f.flags & FRAME_FLAG_PATCH)) {
      patches = frames.filter((f) => f.flags & FRAME_FLAG_PATCH);
      frames = frames.filter((f) => !(f.flags & FRAME_FLAG_PATCH));
    }
    let ready = orderer.push(frames, d.watermark);
    if (final) ready = ready.concat(orderer.rest());
    for (const f of ready) if (f.dir === 1 && f.unique === 0n && !(f.flags & 1)) unflushedNotifies.set(f.seq, f);
    // A patch always follows its notification in the queue: the frame is held, pending, or committed.
    for (const p of patches) patchNotify(p);
    if (ready.length > 0) {
      observe(ready);
      guarded(() => writer.addFrames(ready));
    }
    // A busy JS thread drains seldom and large (a full capture: tens to hundreds of MiB per
    // drain, while commitTick's timer waits behind it): commit and hand the regions back now
    // rather than at the next tick. The writer flushes past 16 MiB on its own anyway.
    if (drainedBytes >= RECYCLE_BYTES && !final) {
      guarded(() => writer.flush());
      recycleDrained();
    }
    recorded = d.recorded;
    bytes = d.bytes;
    dropped = d.dropped;
    const st = pump.status();
    lastStatus = st;
    if (st.transport === 'in-process' && !inProcessNoted) {
      inProcessNoted = true;
      guarded(() => writer.flush());
      db.prepare("UPDATE sessions SET meta = json_set(meta, '$.transport', 'in-process') WHERE id = ?").run(session);
    }
    if (st.init.replySeen && !initRecorded) {
      initRecorded = true;
      initAnswered = st.init.replyError === 0;
      guarded(() => writer.flush()); // updateSession flushes first; keep a ledger error out of it
      writer.updateSession({
        kernelMajor: st.init.kernelMajor,
        kernelMinor: st.init.kernelMinor,
        serverMajor: st.init.serverMajor,
        serverMinor: st.init.serverMinor,
        initFlags: st.init.serverFlags,
        maxWrite: st.init.maxWriteForwarded,
        initChanges: initChanges(st.init, maxFrame),
      });
    }
    // The end of the connection first: a background server that read ENODEV (in-process) closes
    // its end of the socket as it exits, and that is the unmount, not the server going away.
    if (st.readerEnd && !connectionEnded) {
      connectionEnded = true;
      started?.strategy.connectionEnded();
      onConnectionEnded(st.readerEnd);
    }
    if (daemonized && st.writerEnd !== '' && !serverExit && phase === 'running') {
      // The background server closed its fuse fd: its status is unknown.
      serverExit = { code: null, signal: null };
      void onServerExit();
    }
  }

  function onWake(): void {
    if (phase === 'done') return;
    try {
      drainOnce();
    } catch (err) {
      fail(err);
    }
  }

  function commitTick(): void {
    if (phase === 'done') return;
    try {
      drainOnce();
      guarded(() => writer.flush());
      recycleDrained();
      if (dropped !== lastDroppedWritten) {
        lastDroppedWritten = dropped;
        writer.updateSession({ dropped });
      }
    } catch (err) {
      fail(err);
    }
  }

  const live = log.isTTY === true;
  const liveLine = () =>
    `fusetrace: ${recorded} frames, ${inFlight.size} in flight, ${errors} errors` +
    (dropped ? `, ${dropped} dropped` : '') +
    (lastStatus?.partial ? `, ${lastStatus.partial} partial` : '');
  timers.push(setInterval(commitTick, FLUSH_MS));
  // A server that ignores /dev/fd/N and mounts by itself (libfuse 2, fuser's own mount) keeps
  // running without ever reading our INIT: say so once instead of waiting silently.
  const initTimer = setTimeout(() => {
    if (!initRecorded && phase === 'running' && !serverExit) {
      log.write(
        `${live ? '\n' : ''}fusetrace: the server has not answered FUSE_INIT after ${INIT_WARN_MS / 1000} s: ` +
          (started ? 'it mounted but does not serve\n' : 'it may ignore /dev/fd/N and mount by itself (libfuse 2, fuser); fusetrace sees nothing of such a mount\n'),
      );
    }
  }, INIT_WARN_MS);
  initTimer.unref();
  timers.push(initTimer);
  if (live) {
    timers.push(
      setInterval(() => {
        if (phase !== 'done') log.write(`\r\x1b[K${liveLine()}`);
      }, 500),
    );
  }

  function startGrace(): void {
    if (graceTimer || serverExit) return;
    graceTimer = setTimeout(() => {
      if (serverExit) return;
      notes.push(`server did not exit ${SERVER_GRACE_MS / 1000}s after the connection ended: sent SIGTERM`);
      child.kill('SIGTERM');
      graceTimer = setTimeout(() => {
        if (!serverExit) {
          notes.push('server ignored SIGTERM: sent SIGKILL');
          child.kill('SIGKILL');
        }
      }, 3_000);
    }, SERVER_GRACE_MS);
  }

  function onConnectionEnded(how: string): void {
    if (how === 'unmount') {
      if (phase === 'running') {
        endReason = 'unmount';
        phase = 'ending';
      }
    } else if (how !== 'stopped' && how !== 'server-gone' && phase === 'running') {
      endReason = 'error';
      notes.push(`pump: ${how}`);
      phase = 'ending';
    }
    if (serverExit || daemonized) void finish();
    else startGrace();
  }

  async function unmountNow(): Promise<boolean> {
    try {
      await unmountFuse(mount);
      return true;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      log.write(
        `${live ? '\n' : ''}fusetrace: cannot unmount ${mountpoint}: ${e.message}` +
          (e.code === 'EBUSY' || /busy/i.test(e.message) ? ' (files are open there; close them, or signal again to abort the connection)' : '') +
          '\n',
      );
      return false;
    }
  }

  function abortConnection(): void {
    if (aborted) return;
    aborted = true;
    started?.strategy.connectionEnded();
    pump.stop(); // closes the only /dev/fuse fd: fuse_dev_release -> fuse_abort_conn
  }

  async function onSignal(sig: NodeJS.Signals): Promise<void> {
    if (phase === 'done') return;
    if (phase === 'running') {
      phase = 'unmounting';
      endReason = 'signal';
      notes.push(`${sig} received`);
      if (await unmountNow()) {
        phase = 'ending';
        return;
      }
      unmountBusy = true;
      return;
    }
    if (unmountBusy && phase === 'unmounting') {
      // Signalled again while the mount was busy: the files may be closed by now; if not, abort
      // the connection, as `echo 1 > /sys/fs/fuse/connections/N/abort` would.
      if (await unmountNow()) {
        phase = 'ending';
        return;
      }
      notes.push(`${sig} again: connection aborted`);
      phase = 'ending';
      abortConnection();
      // The mount is disconnected now; a plain unmount succeeds unless files are still open.
      if (!(await unmountNow())) notes.push(`${mountpoint} is left disconnected: unmount it with umount/fusermount3 -u`);
      startGrace();
    }
  }
  const sigint = () => void onSignal('SIGINT');
  const sigterm = () => void onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);

  child.on('error', (err) => {
    notes.push(`cannot start the server: ${err.message}`);
    serverExit = { code: 127, signal: null };
    void onServerExit();
  });
  child.on('exit', (code, signal) => {
    if (serverExit) return;
    // The pump publishes an unmount before the server can read end-of-file: look at it first,
    // so a server exiting because of the unmount is not taken for the server ending the session.
    onWake();
    void (async () => {
      if (code === 0 && phase === 'running') {
        // A server that daemonizes (libfuse without -f) exits 0 in the parent while its child keeps
        // the socket open. The process's fds close before it is reaped, so give the writer thread
        // a moment to see end-of-file before concluding that the server went to the background.
        for (let i = 0; i < 20 && pump.status().writerEnd === '' && phase === 'running'; i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        if (pump.status().writerEnd === '' && phase === 'running') {
          daemonized = true;
          log.write('fusetrace: the server went to the background (it forked); recording continues until unmount or until it closes its fuse fd\n');
          return;
        }
      }
      serverExit = { code, signal };
      void onServerExit();
    })();
  });

  async function onServerExit(): Promise<void> {
    if (phase === 'done') return;
    if (graceTimer) clearTimeout(graceTimer);
    if (phase !== 'running') {
      // We (or the user) ended the connection; the server's status after end-of-file is expected.
      await finish();
      return;
    }
    phase = 'ending';
    const sx = serverExit!;
    if (!initAnswered && !started) {
      notes.push(
        'the server exited before answering FUSE_INIT: it may not accept a mounted fd as /dev/fd/N ' +
          '(libfuse >= 3.3, pyfuse3 and go-fuse >= 2.2 do; libfuse 2 and fuser mount by themselves)',
      );
    }
    if (sx.signal) {
      endReason = 'server-crash';
      // Native behaviour of a crashed server: the connection aborts, the mount stays (ENOTCONN).
      abortConnection();
      notes.push(`${mountpoint} is left disconnected like after a native crash: unmount it with umount/fusermount3 -u`);
    } else {
      endReason = 'server-exit';
      if (!(await unmountNow())) {
        abortConnection();
        notes.push(`${mountpoint} is left disconnected: unmount it with umount/fusermount3 -u`);
      }
    }
    await finish();
  }

  function fail(err: unknown): void {
    if (phase === 'done') return;
    notes.push(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    endReason = 'error';
    phase = 'ending';
    void (async () => {
      if (!(await unmountNow())) abortConnection();
      startGrace();
    })();
  }

  let finishing = false;
  async function finish(): Promise<void> {
    if (finishing) return;
    finishing = true;
    // Wait for the server process to be reaped before the final commit (it may still be writing
    // replies that the pump records until the socket reaches end-of-file).
    if (!serverExit && !daemonized) {
      startGrace();
      await new Promise<void>((r) => child.once('exit', () => r()));
    }
    if (graceTimer) clearTimeout(graceTimer);
    pump.stop();
    if (started) {
      // A server in the background may still be unmounting (its umount2 waits for our answer):
      // give the processes under the filter a moment to end before the listener closes.
      await Promise.race([started.interceptor.done, new Promise((r) => setTimeout(r, daemonized ? 2_000 : 500))]);
      started.interceptor.stop();
      started.strategy.close();
    }
    for (const t of timers) clearInterval(t); // clearInterval clears timeouts too
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
    let st: PumpStatus | undefined;
    try {
      drainOnce(true);
      st = lastStatus;
    } catch (err) {
      notes.push(`final drain failed: ${String(err)}`);
    }
    phase = 'done';
    const sx = serverExit ?? { code: null, signal: null };
    const reason: EndReason = endReason ?? (sx.signal ? 'server-crash' : 'server-exit');
    let exitStatus = 0;
    if (reason === 'server-exit') exitStatus = sx.code ?? 0;
    else if (reason === 'server-crash') exitStatus = 128 + (sx.signal ? (osConstants.signals[sx.signal] ?? 0) : 0);
    else if (reason === 'error') exitStatus = 1;
    if (reason === 'server-exit' && !initAnswered && exitStatus === 0) exitStatus = 1;
    try {
      guarded(() => writer.flush());
      writer.updateSession({
        endedMonoNs: native().monotonicNs(),
        endReason: reason,
        serverExitCode: sx.code,
        serverSignal: sx.signal,
        exitStatus,
        dropped,
      });
      writer.close();
      try {
        ledger.finish({ endReason: reason });
      } catch (err) {
        notes.push(`the request ledger failed (rebuild it from the frames): ${String(err)}`);
      }
      createDurationIndexes(db);
      db.close();
    } catch (err) {
      notes.push(`cannot commit the trace: ${String(err)}`);
      exitStatus = exitStatus || 1;
    }
    if (live) log.write('\r\x1b[K');
    const server = sx.signal
      ? `server killed by ${sx.signal}`
      : sx.code === null && daemonized
        ? 'server in the background (its exit status is not ours to see)'
        : `server exited ${sx.code}`;
    const afterEof = (reason === 'unmount' || reason === 'signal') && sx.code !== 0 && sx.code !== null && !sx.signal ? ' (end-of-file on its fuse fd after the unmount: expected)' : '';
    for (const n of notes) log.write(`fusetrace: ${n}\n`);
    log.write(
      `fusetrace: session ${session} in ${opts.dbPath}: ${recorded} frames (${bytes} bytes), ` +
        `${errors} errors, ${dropped} dropped${st?.partial ? `, ${st.partial} partial (not forwarded)` : ''}` +
        `${st?.gateWaits ? `, ${st.gateWaits} gate waits` : ''}` +
        `${st?.ringLost ? `, ${st.ringLost} ring bytes lost` : ''}; ` +
        `${st?.transport === 'in-process' ? 'recorded in-process' : 'relayed'}; ` +
        `ended by ${reason}; ${server}${afterEof}\n`,
    );
    finishResolve({
      session,
      endReason: reason,
      exitStatus,
      serverExitCode: sx.code,
      serverSignal: sx.signal,
      frames: recorded,
      dropped,
      partial: st?.partial ?? 0,
    });
  }

  return finished;
}
