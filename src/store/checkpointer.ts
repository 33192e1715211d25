/**
 * WAL checkpoints of a recording on a worker thread (checkpointer-worker.ts), and the protocol the
 * two threads share: four Int32 slots in a SharedArrayBuffer, waited on with Atomics.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Database } from 'better-sqlite3';

/** When the checkpointer asks for checkpoints and waits for them (frame bytes committed). */
export interface CheckpointBytes {
  /** Between two checkpoint requests: about what SQLite's automatic one waits for (1000 pages). */
  every: number;
  /**
   * Since the last catch-up, past which a flush first waits for the checkpointer to have copied the
   * whole WAL (see Checkpointer.catchUp): bounds the WAL file while the JS thread commits without
   * a pause, which keeps the WAL from ever starting over on its own.
   */
  walMax: number;
}

export const CHECKPOINT_BYTES: CheckpointBytes = { every: 48 * 1024 * 1024, walMax: 256 * 1024 * 1024 };
/**
 * At most this much (frame bytes committed) left for a catch-up's RESTART checkpoint to copy: it
 * blocks the recorder's commits while it copies and syncs (Checkpointer.catchUp). Smaller when the
 * checkpoints come more often (tests).
 */
const RESTART_BYTES = 8 * 1024 * 1024;
/** PASSIVE copies a catch-up makes before its RESTART, whatever they leave behind. */
const MAX_COPIES = 2;
/** The automatic checkpoint's threshold in pages (SQLite's default), restored when the checkpointer stops. */
const AUTOCHECKPOINT_PAGES = 1000;

/** Slots of the Int32Array shared with the checkpointer worker (checkpointer-worker.ts). */
export const CK_REQUEST = 0; // generation the writer asks to have checkpointed (bumped after commits; -1: stop)
export const CK_DONE = 1; // generation of the last finished checkpoint (-1: the worker failed)
export const CK_CAUGHT_UP = 2; // 1 when that checkpoint copied the whole WAL (log == checkpointed) and, a RESTART, saw the readers leave it
export const CK_STATE = 3; // one of CkState
export const CK_RESTART = 4; // the generation the writer waits on to start the WAL over (catchUp): checkpointed in RESTART mode
/** Values of the CK_STATE slot. */
export const CkState = { starting: 0, running: 1, closed: 2, failed: 3 } as const;

/** What the worker is started with. */
export interface CheckpointerData {
  /** The Int32Array's buffer (CK_* slots). */
  shared: SharedArrayBuffer;
  /** The trace file. */
  file: string;
}

/**
 * The compiled worker. From dist/ it sits next to this file; under vitest this file is the .ts
 * source, which a worker thread cannot load, and the worker runs from the build that `npm test`
 * compiles first (as the demo server does, src/demo/fixture.ts).
 */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = here.endsWith('.js') ? dirname(here) : join(dirname(here), '..', '..', 'dist', 'src', 'store');
  const file = join(dir, 'checkpointer-worker.js');
  if (!existsSync(file)) throw new Error(`no checkpointer worker at ${file} (npm run build)`);
  return file;
}

/**
 * Runs the WAL checkpoints of a TraceWriter's connection on a worker thread. During a full
 * capture the checkpoints were ~40% of the recorder's JS-thread CPU and most of its wall time
 * (fsync of the WAL and of the database file), time in which the pump's queue fills and drops.
 * The writer's own automatic checkpoint is off while it runs (wal_autocheckpoint = 0).
 * Crash safety is unchanged: a checkpoint never touches what a commit made durable, and SQLite
 * recovers a WAL whose checkpoint was cut short by SIGKILL.
 */
export class Checkpointer {
  private readonly shared = new Int32Array(new SharedArrayBuffer(20));
  private readonly worker: Worker;
  private generation = 0;
  private sinceRequest = 0;
  private sinceRestart = 0;
  /** The generation of a catch-up's PASSIVE copy under way (catchUp's first phase); 0: none. */
  private copying = 0;
  /** Frame bytes committed since that copy was asked for. */
  private sinceCopy = 0;
  /** PASSIVE copies of the catch-up under way. */
  private copies = 0;
  private restartCount = 0;
  /** The connection's journal_size_limit before (restored by stop()). */
  private readonly sizeLimit: number;

  constructor(
    private readonly db: Database,
    file: string,
    private readonly bytes: CheckpointBytes = CHECKPOINT_BYTES,
  ) {
    const data: CheckpointerData = { shared: this.shared.buffer as SharedArrayBuffer, file };
    this.worker = new Worker(workerFile(), { workerData: data });
    // Never keeps the process alive; an error is seen through CK_STATE (failed()).
    this.worker.unref();
    this.worker.on('error', () => undefined);
    db.pragma('wal_autocheckpoint = 0');
    // The WAL keeps its size when it starts over, instead of being cut to the connection's limit
    // (db.ts: 64 MiB) by the commit that starts it over: truncating the ~300 MiB a catch-up leaves
    // took that commit 0.2-0.3 s of the recorder's JS thread (fio 4k, 55 MB/s into the trace), and
    // the WAL then grew into newly allocated blocks again. The file is deleted when the trace is
    // closed, and the limit comes back with stop().
    this.sizeLimit = db.pragma('journal_size_limit', { simple: true }) as number;
    db.pragma('journal_size_limit = -1');
  }

  /** RESTART checkpoints of catch-ups asked for so far (tests). */
  get restarts(): number {
    return this.restartCount;
  }

  /** A catch-up's PASSIVE copy was asked for and its RESTART has not been (tests). */
  get catchingUp(): boolean {
    return this.copying !== 0;
  }

  /** That copy (or every checkpoint asked for) is done (tests). */
  copied(): boolean {
    return Atomics.load(this.shared, CK_DONE) >= this.generation;
  }

  /** The worker died (could not open the file, SQLite failed): the writer checkpoints itself again. */
  failed(): boolean {
    return Atomics.load(this.shared, CK_STATE) === CkState.failed;
  }

  /** After a commit of `bytes` frame bytes: asks for a checkpoint every `bytes.every`. */
  committed(bytes: number): void {
    this.sinceRequest += bytes;
    this.sinceRestart += bytes;
    this.sinceCopy += bytes;
    if (this.sinceRequest < this.bytes.every) return;
    this.sinceRequest = 0;
    this.request();
  }

  /**
   * Before a commit: when the WAL has not started over for `bytes.walMax`, has the worker copy all
   * of it, so that a commit starts the WAL over (SQLite does that in the first write transaction
   * that finds the WAL wholly checkpointed and no reader in it). A reader that keeps an old
   * snapshot past the wait keeps any checkpoint from finishing: the WAL then grows, and the next
   * attempt comes sooner.
   *
   * In two phases, because the last one stops this thread: a RESTART checkpoint blocks new writers
   * until it has copied and synced what it found (https://sqlite.org/c3ref/wal_checkpoint_v2.html),
   * and this thread waits for it. Asked at once, with up to an interval of commits not yet copied
   * (and synced: synchronous=NORMAL), it held the recorder's commits for 0.49-0.59 s at every
   * catch-up (fio 4k, 55 MB/s into the trace), while the pump's queue grew by 30 MB into fresh
   * memory and the server came within a second of waiting for room. So first PASSIVE checkpoints,
   * which block nobody, until what they leave behind is at most RESTART_BYTES; then the RESTART.
   */
  catchUp(): void {
    if (this.copying === 0) {
      if (this.sinceRestart < this.bytes.walMax) return;
      this.copyFirst();
      return;
    }
    const copied = Atomics.load(this.shared, CK_DONE) >= this.copying || this.failed();
    // Still copying: commits go on, up to a quarter of the interval more (a worker slow in a long
    // checkpoint); then the RESTART, queued behind the copy, is waited for.
    if (!copied && this.sinceCopy < this.bytes.walMax / 4) return;
    if (copied && this.sinceCopy > this.restartBytes() && this.copies < MAX_COPIES) {
      this.copyFirst();
      return;
    }
    this.copying = 0;
    this.sinceRestart = 0;
    // A checkpoint copies what was committed before it started, so the last one only speaks for
    // the commits before the last request: trusting it let the WAL of a full capture grow without
    // bound (1.3 GiB after 12 s of fio 4k reads with the derivation paused, the checkpointer copying
    // all of it each time and the WAL never starting over). So one more, covering every commit, in
    // RESTART mode: a PASSIVE checkpoint gives up at once when the derivation's connection is
    // checkpointing (SQLITE_BUSY), and copies no further than a reader's snapshot; RESTART waits
    // for both, briefly (checkpointer-worker.ts RESTART_WAIT_MS), and for the readers to leave the
    // WAL, so that this writer's next transaction starts it over. The derivation starts no step
    // meanwhile (deriver.ts writing(): the flush holds its turn).
    this.sinceRequest = 0;
    this.restartCount++;
    this.request(true);
    this.wait(this.generation);
    // Something stayed in the way past the wait (a long read transaction, a slow checkpoint of the
    // derivation's connection): try again after a quarter of the interval rather than a whole one.
    if (Atomics.load(this.shared, CK_CAUGHT_UP) !== 1) this.sinceRestart = (this.bytes.walMax * 3) / 4;
  }

  /** Asks for a PASSIVE checkpoint of everything committed so far, the first phase of a catch-up. */
  private copyFirst(): void {
    this.copies = this.copying === 0 ? 1 : this.copies + 1;
    this.sinceRequest = 0;
    this.sinceCopy = 0;
    this.request();
    this.copying = this.generation;
  }

  /** What a catch-up's RESTART may find left to copy (see RESTART_BYTES). */
  private restartBytes(): number {
    return Math.min(RESTART_BYTES, this.bytes.every / 2);
  }

  /** Stops the worker and waits until its connection is closed; the writer checkpoints itself again. */
  stop(): void {
    Atomics.store(this.shared, CK_REQUEST, -1);
    Atomics.notify(this.shared, CK_REQUEST);
    for (let state = Atomics.load(this.shared, CK_STATE); state < CkState.closed; state = Atomics.load(this.shared, CK_STATE)) {
      // Bounded: a worker that never started (out of threads) must not hang the recorder's end.
      if (Atomics.wait(this.shared, CK_STATE, state, 10_000) === 'timed-out') break;
    }
    void this.worker.terminate();
    this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    this.db.pragma(`journal_size_limit = ${this.sizeLimit}`);
  }

  private request(restart = false): void {
    this.generation++;
    if (restart) Atomics.store(this.shared, CK_RESTART, this.generation);
    Atomics.store(this.shared, CK_REQUEST, this.generation);
    Atomics.notify(this.shared, CK_REQUEST);
  }

  /** Waits until checkpoint generation `gen` is done (or the worker failed). */
  private wait(gen: number): void {
    for (let done = Atomics.load(this.shared, CK_DONE); done >= 0 && done < gen; done = Atomics.load(this.shared, CK_DONE)) {
      if (Atomics.wait(this.shared, CK_DONE, done, 10_000) === 'timed-out') return;
    }
  }
}
