/**
 * One `fusetrace attach` session: a capture source (ptrace, or the kernel's tracepoints) feeding
 * the same writer and ledger as `record`, until the user detaches (Ctrl-C, SIGTERM, --duration),
 * the mount goes away or the server exits. The session is marked `attached`: it starts in the
 * middle of the connection (no INIT; replies to requests read before the attach).
 */
import { UserError } from '../errors.js';
import { native } from '../proxy/native.js';
import { KERNEL_MAJOR, KERNEL_MINOR } from '../protocol/index.js';
import { readMountInfo } from '../proxy/mountinfo.js';
import { createDurationIndexes, dropDurationIndexes, openTraceDb, type Database } from '../store/db.js';
import { Ledger } from '../store/ledger.js';
import { TraceWriter } from '../store/writer.js';
import { PtraceSource, type CaptureSource } from './ptrace-source.js';
import { TracepointSource } from './tracepoint-source.js';
import type { AttachTarget } from './target.js';

export interface AttachSessionOptions {
  target: AttachTarget;
  dbPath: string;
  name?: string;
  durationMs?: number;
  snaplen?: number;
  /** Skip ptrace: headers and timings from the kernel's fuse tracepoints only. */
  tracepoints?: boolean;
  /** Where progress lines go (stderr). */
  log: (line: string) => void;
}

/** How an attach session ended. */
export type AttachEnd = 'detached' | 'unmount' | 'server-exit';

export interface AttachResult {
  session: number;
  frames: number;
  dropped: number;
  mechanism: string;
  end: AttachEnd;
  lacks: string[];
}

const TICK_MS = 100;

/** ptrace, or the tracepoints when ptrace is impossible (no permission, another tracer) or not wanted. */
async function openSource(opts: AttachSessionOptions, onWake: () => void): Promise<{ source: CaptureSource; why?: string }> {
  if (!opts.tracepoints) {
    try {
      return { source: new PtraceSource(opts.target, opts.snaplen ?? 0, onWake) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ESRCH') throw new UserError(`process ${opts.target.pid} went away`);
      if (code !== 'EPERM') throw err;
      const why = `ptrace refused (EPERM: no permission, or another tracer is attached)`;
      return { source: await TracepointSource.open(opts.target), why };
    }
  }
  return { source: await TracepointSource.open(opts.target), why: '--tracepoints' };
}

/** Runs the session to its end; resolves with its summary. */
export async function runAttach(opts: AttachSessionOptions): Promise<AttachResult> {
  const db = openTraceDb(opts.dbPath, { create: true });
  const startedMonoNs = native().monotonicNs();
  let wake: () => void = () => undefined;
  let source: CaptureSource;
  let why: string | undefined;
  try {
    ({ source, why } = await openSource(opts, () => wake()));
  } catch (err) {
    db.close();
    throw err;
  }
  if (why) opts.log(`fusetrace: full frames are not available (${why}): recording the kernel's fuse tracepoints instead; the session lacks ${source.lacks.join(', ')}`);
  try {
    return await record(db, source, opts, startedMonoNs, (fn) => (wake = fn));
  } finally {
    await source.stop();
    db.close();
  }
}

async function record(db: Database, source: CaptureSource, opts: AttachSessionOptions, startedMonoNs: bigint, setWake: (fn: () => void) => void): Promise<AttachResult> {
  const t = opts.target;
  dropDurationIndexes(db);
  const writer = new TraceWriter(db);
  const session = writer.beginSession({
    name: opts.name,
    command: t.command,
    mountpoint: t.mount?.mountPoint,
    snaplen: opts.snaplen || undefined,
    startedWallNs: BigInt(Date.now()) * 1_000_000n,
    startedMonoNs,
    origin: 'attached',
    capture: source.capture,
    meta: { attachedPid: t.pid, connection: t.conn, mechanism: source.mechanism, lacks: source.lacks, protocol: `no INIT seen: the structs of ${KERNEL_MAJOR}.${KERNEL_MINOR} assumed` },
  });
  opts.log(`fusetrace: attached to pid ${t.pid} with ${source.mechanism}: recording session ${session}; Ctrl-C detaches`);
  const ledger = new Ledger(db, session, { attached: true });
  writer.onFrames((_s, frames) => ledger.add(frames));
  let frames = 0;
  let dropped = 0;
  const drain = (final = false) => {
    const d = source.drain(final);
    for (const [pid, comm] of d.procs) writer.addProc(pid, comm);
    if (d.frames.length > 0) writer.addFrames(d.frames);
    frames += d.frames.length;
    dropped = d.dropped;
  };
  setWake(() => drain());
  const end = await waitForEnd(source, opts, () => {
    drain();
    writer.flush();
  });
  await source.stop();
  drain(true);
  writer.updateSession({ endedMonoNs: native().monotonicNs(), endReason: end, dropped });
  writer.mergeMeta({ stats: source.stats() });
  writer.close();
  // Outstanding requests: a detach leaves them with the server (still unanswered); an unmount
  // or the server's exit ended them (aborted).
  ledger.finish({ endReason: end === 'detached' ? null : end });
  createDurationIndexes(db);
  return { session, frames, dropped, mechanism: source.mechanism, end, lacks: source.lacks };
}

/** Ticks until Ctrl-C/SIGTERM, --duration, the unmount or the server's exit. */
function waitForEnd(source: CaptureSource, opts: AttachSessionOptions, tick: () => void): Promise<AttachEnd> {
  const mountId = opts.target.mount?.mountId;
  const deadline = opts.durationMs === undefined ? Infinity : Date.now() + opts.durationMs;
  return new Promise((resolve, reject) => {
    const finish = (end: AttachEnd) => {
      clearInterval(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(end);
    };
    const onSignal = () => finish('detached');
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const timer = setInterval(() => {
      try {
        tick();
        if (source.ended() === 'exited') finish('server-exit');
        else if (mountId !== undefined && !readMountInfo().some((m) => m.mountId === mountId)) finish('unmount');
        else if (Date.now() >= deadline) finish('detached');
      } catch (err) {
        clearInterval(timer);
        reject(err);
      }
    }, TICK_MS);
  });
}
