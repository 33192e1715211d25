/**
 * The derivation thread of a recording (started by DeriverThread in deriver.ts): it owns a second
 * connection to the trace file and derives the request ledger (and loose_frames) from the
 * batches the recorder commits (src/store/derive.ts), at a lower priority than the server and the
 * recorder's hot path. It may lag under load and catches up when the load stops; it never makes the
 * recorder wait except for the short write transactions of its steps.
 */
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { isSqliteBusy, openTraceDb } from '../store/db.js';
import { Deriver } from '../store/derive.js';
import type { DeriveMessage, DeriveReport, DeriverData } from './deriver.js';

/**
 * Frames per step: one write transaction each, and each commit rewrites the last 64 KiB page of
 * the requests table and of each of its indexes into the WAL, which the checkpointer then copies
 * again. Deriving a 146k-frame fio 4k trace wrote 135 MB of WAL in steps of 1024 frames, 59 MB in
 * steps of 4096, 29 MB in steps of 16384. Steps decode and derive one batch at a time (derive.ts
 * write()), so their size no longer grows what V8 must collect, and a step gives the lock back
 * after the batch under way once the recorder wants it (recorderWaits): the recorder's commits
 * waited as long as with steps of 1024 (fio 4k, p90 35-36 ms against 38-44; 142 ms with 16384 and
 * no yielding). 12 s fio 4k recordings, second half, steps of 1024 against 16384 (2 alternations):
 * the derivation 3.39 / 3.68 against 2.51 / 2.56 us a frame, the checkpointer 4.39 / 4.46 against
 * 3.67 / 3.80; with --snaplen 256 the derivation 2.92 / 3.27 against 2.05 / 1.82.
 */
const STEP_FRAMES = 16384;
/**
 * This connection's automatic checkpoint while the recording runs, in WAL pages (64 KiB). The
 * recorder's checkpointer thread copies the WAL and lets it start over every 256 MiB of frames
 * (src/store/checkpointer.ts). At SQLite's default (1000 pages) this connection checkpointed too,
 * after most of its steps once a full capture had the WAL past 64 MiB: a quarter of this thread's
 * CPU (perf, fio 4k), at its low priority, holding the checkpoint lock the recorder's catch-up then
 * waited for or missed (WAL peaks of 0.8-1.3 GiB in 40 s captures). Not off: while the recorder
 * commits nothing (a quiet mount) and this thread catches up a backlog, its steps alone grow the
 * WAL (8-21 pages each), and this bounds it.
 */
const RECORDING_AUTOCHECKPOINT_PAGES = 8192;
/** SQLite's default, once the recording has ended. */
const AUTOCHECKPOINT_PAGES = 1000;
/** How long a step waits for the recorder's commit to end before it goes ahead anyway (the commit waits for the lock then). */
const TURN_WAIT_MS = 1000;

const data = workerData as DeriverData;
const port = parentPort!;
const turn = new Int32Array(data.turn);

/**
 * Share of one CPU the thread takes while the recording runs and the CPUs are contended
 * (FUSETRACE_DERIVE_DUTY, 0 < d <= 1; deriver.ts DEFAULT_DUTY): after a step during which the
 * thread waited on the run queue (others wanted the CPU: the server, its callers) for more than
 * CONTENDED of its own CPU time, it sleeps (1/d - 1) times that CPU time, so they keep the rest; on
 * idle CPUs it goes on at once. Never once it lags by more than MAX_THROTTLED_LAG frames, nor after
 * the session's end.
 */
const DUTY = data.duty;
/** Lag (frames recorded, not derived) past which a throttled thread stops sleeping between steps. */
const MAX_THROTTLED_LAG = 1_000_000;
/**
 * Deferral: while frames keep coming, the thread leaves them until data.deferFrames are waiting,
 * the recording has been quiet for data.quietMs, or the oldest has waited data.maxDeferMs; then it
 * derives until it has caught up (a burst), and waits again. Derivation that runs beside the
 * workload slows the server itself on this 2-vCPU VM whatever the thread's priority (nice 19,
 * SCHED_IDLE and duty 0.25 all measured alike: find+stat about 0.75x direct against 0.9x with the
 * derivation paused, the server's own CPU per request up 20%, with the CPUs half idle), so a burst
 * of requests is best left alone and derived in the quiet after it. A hang is quiet: what is
 * outstanding shows within data.quietMs. deferFrames 0 derives at every commit.
 */
const DEFER = data.deferFrames;
/** How often a held thread (FUSETRACE_DERIVE_HOLD) looks for its file. */
const HOLD_POLL_MS = 50;
/** Run-queue wait, as a share of the step's CPU time, that counts as contention. */
const CONTENDED = 0.1;

/** This thread's kernel id (/proc/thread-self -> PID/task/TID). */
function threadId(): number {
  return Number(readlinkSync('/proc/thread-self').split('/').pop());
}

/** Names the thread (for top, /proc and the bench) and lowers its priority: Linux nice values are per thread. */
function settle(): void {
  const tid = threadId();
  try {
    writeFileSync(`/proc/self/task/${tid}/comm`, 'ft-derive');
  } catch {
    // a name is a convenience
  }
  try {
    setPriority(tid, Math.min(19, Math.max(data.nice, currentNice(tid))));
  } catch {
    // not allowed (a sandbox): derive at the recorder's priority
  }
}

/** The thread's nice value now (field 19 of /proc/self/task/TID/stat). */
function currentNice(tid: number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** This thread's on-CPU ns so far (schedstat's first field): reported at the end for `npm run bench`. */
function threadCpuNs(): number {
  return schedstat()[0];
}

/** schedstat: ns on the CPU and ns waiting on a run queue, so far (zeros where unreadable). */
function schedstat(): [number, number] {
  try {
    const f = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
    return [Number(f[0]), Number(f[1])];
  } catch {
    return [0, 0];
  }
}

function post(r: DeriveReport): void {
  port.postMessage(r);
}

settle();
let deriver: Deriver;
const db = openTraceDb(data.file);
db.pragma(`wal_autocheckpoint = ${RECORDING_AUTOCHECKPOINT_PAGES}`);
try {
  deriver = new Deriver(db, data.session, { attached: data.attached });
} catch (err) {
  post({ type: 'failed', message: String(err) });
  db.close();
  throw err;
}

/** Back-off between attempts while the trace stays locked (each attempt also waits busy_timeout). */
const BUSY_RETRY_MIN_MS = 50;
const BUSY_RETRY_MAX_MS = 1000;
let busyRetryMs = BUSY_RETRY_MIN_MS;

let finishReason: string | null | undefined;
let scheduled = false;
let failed = false;
/** DeriverThread.stop() asked the thread to leave; it has closed the connection. */
let stopped = false;

function progress(): void {
  const lag = deriver.lag();
  const c = deriver.counts();
  post({ type: 'progress', derived: lag.derived, recorded: lag.recorded, outstanding: c.outstanding, errors: c.errors });
}

/** The recorder wants the write lock (DeriverThread.writing). */
function recorderWaits(): boolean {
  return Atomics.load(turn, 0) === 1;
}

/** Derives what is committed, one step per turn of the event loop so that messages get through. */
function run(): void {
  scheduled = false;
  if (failed || stopped) return;
  try {
    const held = data.hold !== undefined && finishReason === undefined && existsSync(data.hold);
    if (held) {
      schedule(HOLD_POLL_MS);
      return;
    }
    const paused = data.paused && finishReason === undefined;
    // The recorder is committing: let it have the write lock first.
    Atomics.wait(turn, 0, 1, TURN_WAIT_MS);
    const before = DUTY < 1 ? schedstat() : undefined;
    // A step gives the lock back after the batch under way once the recorder wants it (turn).
    const n = paused ? 0 : deriver.step(STEP_FRAMES, recorderWaits);
    busyRetryMs = BUSY_RETRY_MIN_MS;
    if (n > 0) {
      progress();
      schedule(before && finishReason === undefined ? throttle(before, schedstat()) : 0);
      return;
    }
    burst = false;
    if (finishReason !== undefined) {
      deriver.finish(finishReason);
      progress();
      post({ type: 'done', lost: deriver.lost(), cpuNs: threadCpuNs() });
      db.close();
      port.close();
    }
  } catch (err) {
    if (isSqliteBusy(err)) {
      // The trace stayed locked past the busy timeout (another process writing it, or the recorder
      // slowed down by a saturated machine or a profiler). step() and finish() throw this before
      // they change anything: try again later; the derivation lags and catches up.
      busyRetryMs = Math.min(BUSY_RETRY_MAX_MS, busyRetryMs * 2);
      schedule(busyRetryMs);
      return;
    }
    failed = true;
    post({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    try {
      db.close();
    } catch {
      // the file stays as the last commit left it
    }
    port.close();
  }
}

/** ms to sleep after a step, from schedstat before and after it (see DUTY). */
function throttle(before: [number, number], after: [number, number]): number {
  const cpuNs = after[0] - before[0];
  const waitNs = after[1] - before[1];
  if (waitNs <= cpuNs * CONTENDED) return 0;
  const lag = deriver.lag();
  if (lag.recorded - lag.derived > MAX_THROTTLED_LAG) return 0;
  return (cpuNs / 1e6) * (1 / DUTY - 1);
}

let timer: NodeJS.Timeout | undefined;

/** Runs the next step now (or after `delayMs`); the session's end cuts a sleep short, a commit does not. */
function schedule(delayMs = 0): void {
  if (scheduled) {
    if (timer === undefined || finishReason === undefined) return;
    clearTimeout(timer);
    timer = undefined;
    setImmediate(run);
    return;
  }
  scheduled = true;
  if (delayMs >= 1) timer = setTimeout(() => {
    timer = undefined;
    run();
  }, delayMs);
  else setImmediate(run);
}

/** Deriving until caught up (see DEFER); false while frames wait for a reason to be derived. */
let burst = false;
/** When the first frame not derived was committed (Date.now()), while waiting; undefined when caught up. */
let waitingSince: number | undefined;
let quietTimer: NodeJS.Timeout | undefined;

/** Starts a burst: derive until caught up. */
function startBurst(): void {
  if (quietTimer !== undefined) clearTimeout(quietTimer);
  quietTimer = undefined;
  waitingSince = undefined;
  burst = true;
  schedule();
}

/** The recorder committed frames: start a burst now, or wait for one of DEFER's reasons. */
function committed(): void {
  if (burst || DEFER === 0) {
    startBurst();
    return;
  }
  const now = Date.now();
  waitingSince ??= now;
  let behind: number;
  try {
    const lag = deriver.lag();
    behind = lag.recorded - lag.derived;
  } catch {
    behind = Infinity; // a step reports what is wrong with the file (run(): failed, or busy and retried)
  }
  if (behind >= DEFER || now - waitingSince >= data.maxDeferMs) {
    startBurst();
    return;
  }
  // Quiet for quietMs (no commit with frames since this one), or the oldest frame's deadline.
  if (quietTimer !== undefined) clearTimeout(quietTimer);
  quietTimer = setTimeout(startBurst, Math.min(data.quietMs, waitingSince + data.maxDeferMs - now));
}

/**
 * Leaves without finishing (DeriverThread.stop): runs between two steps, never inside one, so the
 * file keeps what the last step committed.
 */
function stop(): void {
  stopped = true;
  if (timer !== undefined) clearTimeout(timer);
  if (quietTimer !== undefined) clearTimeout(quietTimer);
  timer = quietTimer = undefined;
  try {
    if (db.open) db.close();
  } catch {
    // the file stays as the last commit left it
  }
  port.close();
}

port.on('message', (m: DeriveMessage) => {
  if (stopped) return;
  if (m.type === 'stop') {
    stop();
  } else if (m.type === 'finish') {
    finishReason = m.endReason;
    // The recorder stops committing, and its checkpointer with it: this connection keeps the WAL short from now on.
    try {
      db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    } catch {
      // the next step reports what is wrong with the file
    }
    startBurst();
  } else {
    committed();
  }
});
