/**
 * The recorder's side of the derivation thread (derive-worker.ts): everything derived from the
 * committed batches (the request ledger, the live line's in-flight and error
 * counts) is computed there, at a lower priority, so the recorder's hot path is the pump, one
 * INSERT per batch and the commit. The thread is told after each commit; at the end of the session
 * it catches up, ends the ledger (aborted requests, lost labels) and builds the duration indexes.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** What the worker is started with. */
export interface DeriverData {
  file: string;
  session: number;
  attached: boolean;
  /** The nice value the thread lowers itself to (never raises it). */
  nice: number;
  /** Derive nothing until finish (tests: the derivation lagging behind a whole recording). */
  paused: boolean;
  /** Derive nothing while this file exists (tests: a lag that ends when the test says so). */
  hold: string | undefined;
  /** Share of a CPU the thread takes while the CPUs are contended (derive-worker.ts DUTY). */
  duty: number;
  /** One Int32: 1 while the recorder wants the write lock (see DeriverThread.writing). */
  turn: SharedArrayBuffer;
  /** While frames keep coming, derive only once this many are waiting (0: at every commit; derive-worker.ts DEFER). */
  deferFrames: number;
  /** ... or once the recording has been quiet this long, ms. */
  quietMs: number;
  /** ... or once the oldest frame waiting was committed this long ago, ms. */
  maxDeferMs: number;
}

/** Recorder -> thread. */
export type DeriveMessage = { type: 'committed' } | { type: 'finish'; endReason: string | null } | { type: 'stop' };

/** Thread -> recorder. */
export type DeriveReport =
  | { type: 'progress'; derived: number; recorded: number; outstanding: number; errors: number }
  | { type: 'done'; lost: number; cpuNs: number }
  | { type: 'failed'; message: string };

/** The thread's default nice value: below the server and the application, above idle. */
const DEFAULT_NICE = 10;
/**
 * The thread's default share of a CPU while the CPUs are contended (derive-worker.ts DUTY). Against
 * unthrottled derivation (1), `npm run bench -- record` on 2026-12-06, two rounds of 3 runs, gave
 * find+stat 0.86x and 0.71x direct (unthrottled 0.69x and 0.70x), fio 4k randread 0.58x and 0.64x
 * (0.55x, 0.60x), the 8+8 mixed load 0.41x and 0.45x (0.35x, 0.40x); derivation held to the end of
 * the workload: 0.98x/0.80x, 0.63x/0.73x, 0.42x/0.48x.
 */
const DEFAULT_DUTY = 0.25;
/**
 * While frames keep coming the thread waits until DEFAULT_DEFER_FRAMES are recorded and not
 * derived, the recording has been quiet for DEFAULT_QUIET_MS, or the oldest of them has waited
 * DEFAULT_MAX_DEFER_MS (derive-worker.ts DEFER). `npm run bench -- record`, 2026-12-07, 3 runs a
 * cell, two rounds against deriving at every commit (`record, derive eagerly`): find+stat 0.92x
 * and 0.95x direct against 0.92x and 0.80x; by hand, 5 alternating runs of one find+stat each:
 * median 0.91x against 0.76x. The 3-second fio workloads outlast the 2 s bound and come out alike
 * (fio 4k 0.73x/0.75x against 0.75x/0.73x, mixed 8+8 0.67x/0.62x against 0.64x/0.65x).
 */
const DEFAULT_DEFER_FRAMES = 65_536;
const DEFAULT_QUIET_MS = 300;
const DEFAULT_MAX_DEFER_MS = 2000;

/**
 * How long stop() waits for the thread to leave between two steps before it terminates it: a step
 * may be waiting for the write lock for the connection's busy timeout (5 s, db.ts tune).
 */
const STOP_WAIT_MS = 15_000;

/** A non-negative integer from the environment, or `dflt`. */
function envCount(name: string, dflt: number): number {
  const v = process.env[name];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : dflt;
}

/** The compiled worker (from dist/; under vitest from the build `npm test` makes first, as checkpointer.ts). */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = here.endsWith('.js') ? dirname(here) : join(dirname(here), '..', '..', 'dist', 'src', 'proxy');
  const file = join(dir, 'derive-worker.js');
  if (!existsSync(file)) throw new Error(`no derivation worker at ${file} (npm run build)`);
  return file;
}

/** How the derivation ended. */
export interface DeriveEnd {
  /** Requests labelled lost (sessions.lost). */
  lost: number;
  /** The thread's CPU over its whole life, ns (0 when it failed). */
  cpuNs?: number;
  /** Why it stopped early, if it did: the frames are all recorded, the derived tables need `rebuildLedger`. */
  failure?: string;
}

export class DeriverThread {
  private readonly worker: Worker;
  /** [0] = 1 while the recorder commits: the thread starts no step meanwhile (see writing()). */
  private readonly turn = new Int32Array(new SharedArrayBuffer(4));
  private last: Extract<DeriveReport, { type: 'progress' }> = { type: 'progress', derived: 0, recorded: 0, outstanding: 0, errors: 0 };
  private readonly ended: Promise<DeriveEnd>;
  private readonly exited: Promise<void>;
  private failure: string | undefined;
  private onProgress: ((p: { derived: number; recorded: number }) => void) | undefined;

  constructor(file: string, session: number, opts: { attached?: boolean; onFailure?: (why: string) => void } = {}) {
    const nice = Number(process.env.FUSETRACE_DERIVE_NICE);
    const duty = Number(process.env.FUSETRACE_DERIVE_DUTY);
    const data: DeriverData = {
      file,
      session,
      attached: opts.attached === true,
      nice: Number.isInteger(nice) ? nice : DEFAULT_NICE,
      paused: process.env.FUSETRACE_DERIVE_PAUSE === '1',
      hold: process.env.FUSETRACE_DERIVE_HOLD || undefined,
      duty: duty > 0 && duty <= 1 ? duty : DEFAULT_DUTY,
      turn: this.turn.buffer as SharedArrayBuffer,
      deferFrames: envCount('FUSETRACE_DERIVE_DEFER', DEFAULT_DEFER_FRAMES),
      quietMs: envCount('FUSETRACE_DERIVE_QUIET_MS', DEFAULT_QUIET_MS),
      maxDeferMs: envCount('FUSETRACE_DERIVE_MAX_DEFER_MS', DEFAULT_MAX_DEFER_MS),
    };
    this.worker = new Worker(workerFile(), { workerData: data });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.ended = new Promise((resolve) => {
      this.worker.on('message', (r: DeriveReport) => {
        if (r.type === 'progress') {
          this.last = r;
          this.onProgress?.(r);
        } else if (r.type === 'done') {
          resolve({ lost: r.lost, cpuNs: r.cpuNs });
        } else {
          this.failure = r.message;
          opts.onFailure?.(r.message);
          resolve({ lost: 0, failure: r.message });
        }
      });
      this.worker.on('error', (err) => {
        this.failure ??= String(err);
        opts.onFailure?.(this.failure);
        resolve({ lost: 0, failure: this.failure });
      });
      this.worker.on('exit', () => resolve({ lost: 0, failure: this.failure ?? 'the derivation thread exited' }));
    });
  }

  /**
   * Runs the recorder's commit with the thread kept from starting a step meanwhile. The thread
   * runs at a lower priority: on a busy machine a step it holds the write lock for can take many
   * times its CPU time, and the recorder (whose queue fills while it waits) must not wait for a
   * queue of such steps, only for the one under way.
   */
  writing<T>(commit: () => T): T {
    Atomics.store(this.turn, 0, 1);
    try {
      return commit();
    } finally {
      Atomics.store(this.turn, 0, 0);
      Atomics.notify(this.turn, 0);
    }
  }

  /** The recorder committed batches: there is more to derive. */
  committed(): void {
    if (this.failure === undefined) this.worker.postMessage({ type: 'committed' } satisfies DeriveMessage);
  }

  /** What the thread derived so far (it lags behind the recording under load). */
  get counts(): { derived: number; recorded: number; outstanding: number; errors: number } {
    return this.last;
  }

  /** Why the thread stopped, if it did. */
  get failed(): string | undefined {
    return this.failure;
  }

  /**
   * The session is committed to its end: derive the rest, end the ledger with `endReason`. Calls
   * `progress` as it goes (the rest may be a long recording's worth when the thread lagged).
   */
  async finish(endReason: string | null, progress?: (p: { derived: number; recorded: number }) => void): Promise<DeriveEnd> {
    this.onProgress = progress;
    if (this.failure === undefined) this.worker.postMessage({ type: 'finish', endReason } satisfies DeriveMessage);
    const end = await this.ended;
    await this.worker.terminate();
    return end;
  }

  /**
   * Stops the thread without finishing (the recorder failed before the session began, or could not
   * commit its end): the derived rows stay as its last step committed them. The thread is asked to
   * leave between two steps, not terminated in one: terminating a thread inside an SQLite call
   * aborts the whole process (better-sqlite3 cannot raise the call's error in a terminating thread:
   * a step waiting for a locked file did that). Terminated only if it has not left after
   * STOP_WAIT_MS.
   */
  async stop(): Promise<void> {
    this.worker.postMessage({ type: 'stop' } satisfies DeriveMessage);
    let timer: NodeJS.Timeout | undefined;
    const left = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STOP_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!left) await this.worker.terminate();
  }
}
