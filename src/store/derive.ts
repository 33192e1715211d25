/**
 * Deriving a session's `requests` rows (the ledger) and its `loose_frames` rows from its committed
 * batches (schema.ts format 5), possibly long after they were recorded.
 *
 * Two places derive: TraceWriter in 'inline' mode (attach, fixtures, tests: in the transaction of
 * each flush), and a Deriver (`record`: on its own connection, in a worker thread at a lower
 * priority, so the recorder's hot path only appends batches). Both go through FrameIndexer, so the
 * rows are the same either way, and the same as rebuildLedger's.
 *
 * Locking: the recorder's connection and the Deriver's both write the file in WAL mode, and SQLite
 * lets one write transaction run at a time. The Deriver reads the batches before it takes the
 * write lock (a plain read sees the last commit, WAL readers never block), and holds the lock
 * (BEGIN IMMEDIATE, waiting up to busy_timeout) only to decode and derive them one batch at a time:
 * each step is bounded by `maxFrames` (plus at most one batch), and ends after the batch under way
 * when its caller says the recorder wants the lock (step's yieldNow), so the recorder never waits
 * long for it.
 */
import type { Database, Statement } from 'better-sqlite3';
import { BatchPages, decodeRaw, patchFrames, type DecodedBatch, type Patch, type RawBatch } from './batch-read.js';
import type { BatchFrame } from './batch.js';
import { createDurationIndexes, openTraceDb } from './db.js';
import { Ledger, type LedgerOptions } from './ledger.js';
import type { FrameRecord } from './writer.js';

/**
 * Writes the derived per-frame state of one session that is not the ledger's: sessions.derived,
 * and the patches that arrive after their frame was derived. Frames have no row of their own
 * (schema.ts format 5: readers find them in their batches, with the patches applied), so a late
 * patch only changes the notification's requests row. Every method runs inside the caller's
 * transaction.
 */
export class FrameIndexer {
  readonly session: number;
  private readonly setDerivedStmt: Statement;
  private readonly mismatched: Statement;
  private readonly patchNotify: Statement;

  constructor(db: Database, session: number) {
    this.session = session;
    this.setDerivedStmt = db.prepare('UPDATE sessions SET derived = ? WHERE id = ?');
    // ledger.ts notify(): a notification's requests.errno is the errno of its write to /dev/fuse.
    // Patches are rare (notifications whose write outlived their batch), so scanning them all is
    // cheap; a patch of a frame not derived yet has no row to join. CROSS JOIN keeps patches the
    // outer loop: left to itself SQLite walked every requests row of the session at every step.
    this.mismatched = db
      .prepare(
        `SELECT p.seq, p.write_errno FROM patches p CROSS JOIN requests r ON r.session = p.session AND r.seq = p.seq
          WHERE p.session = ? AND r.state = 'notify' AND r.errno IS NOT p.write_errno`,
      )
      .safeIntegers(true)
      .raw(true);
    this.patchNotify = db.prepare("UPDATE requests SET errno = ? WHERE session = ? AND seq = ? AND state = 'notify'");
  }

  /** The frames of these decoded batches (patches already applied), in seq order. */
  index(batches: readonly DecodedBatch[]): BatchFrame[] {
    if (batches.length === 1) return batches[0].frames;
    const frames: BatchFrame[] = [];
    for (const b of batches) for (const f of b.frames) frames.push(f);
    return frames;
  }

  /**
   * Applies the patches rows that arrived after their frame was derived: the notification's
   * requests.errno. What the ledger decided from the unpatched frame otherwise stays (a
   * NOTIFY_DELETE already removed its name from the path tree, as if the write had succeeded): a
   * rebuild, which sees the patch before the frame, can differ only there.
   * Returns the write errnos it applied.
   */
  latePatches(): number[] {
    const rows = this.mismatched.all(this.session) as Array<[bigint, bigint]>;
    for (const [seq, errno] of rows) this.patchNotify.run(errno, this.session, seq);
    return rows.map((r) => Number(r[1]));
  }

  /** Whether latePatches() has anything to do (a read: no write lock needed). */
  hasLatePatches(): boolean {
    return this.mismatched.get(this.session) !== undefined;
  }

  /** sessions.derived: every frame below `next` is derived (in requests or loose_frames). */
  setDerived(next: number): void {
    this.setDerivedStmt.run(next, this.session);
  }
}

/**
 * Error replies (a negative error with a unique), failed forwards (write_errno) and failed
 * notifications: what the live line counts as errors.
 */
function countErrors(frames: readonly FrameRecord[]): number {
  let n = 0;
  for (const f of frames) {
    if (f.dir === 1 && f.unique !== 0n && (f.error ?? 0) < 0) n++;
    else if (f.writeErrno !== 0) n++;
  }
  return n;
}

/** Options of a Deriver: the ledger's, and how many frames each ledger.add() gets (tests: batch boundaries must not matter). */
export interface DeriverOptions extends LedgerOptions {
  feed?: number;
}

/** PRAGMA temp_store's value for MEMORY (https://sqlite.org/pragma.html#pragma_temp_store). */
const TEMP_STORE_MEMORY = 2;
/**
 * The connection's page cache while a Deriver steps, KiB (restored, as temp_store, before the
 * duration indexes are built: their sort's memory is sized from it). A step reads each batch once
 * and writes at the right edge of the requests table and its indexes: a few dozen 64 KiB pages. At
 * a writing connection's 32 MiB (db.ts tune) the reads filled the whole cache with pages never read
 * again, each a fresh page of memory the first time (8192 page faults): a fio 4k trace of 146k
 * frames derived in a fresh process (the recorder's derivation thread is one) took 3.85-4.10 us a
 * frame of the thread's CPU at 32 MiB and 3.54-3.58 at 2 and 4 MiB, 100 against 80 faults per 1000
 * frames; warm, 2.02-2.26 either way.
 */
const STEP_CACHE_KIB = 4096;

/** A step's batches, read before its write transaction (Deriver.readAhead). */
interface Ahead {
  raw: RawBatch[];
  /** The patches rows over their seqs (null: none, the rule). */
  patches: Map<number, Patch> | null;
}

/** How far derivation is, as seq bounds: frames below `derived` are derived; `recorded` is past the last committed frame. */
export interface DeriveLag {
  derived: number;
  recorded: number;
}

/**
 * Derives one session's requests (and loose_frames) from its committed batches, in seq order, a
 * bounded step at a time. Usable on its own connection in a worker thread: it needs only a path
 * (or a Database), a session id and the LedgerOptions.
 */
export class Deriver {
  readonly session: number;
  private readonly db: Database;
  private readonly ownDb: boolean;
  private readonly pages: BatchPages;
  private readonly indexer: FrameIndexer;
  private readonly ledger: Ledger;
  private readonly feed: number;
  private readonly recordedStmt: Statement;
  private readonly commit: (ahead: Ahead, yieldNow?: () => boolean) => { frames: number; next: number };
  /** The next seq to derive (sessions.derived as this Deriver last committed it). */
  private cursor = 0;
  /** Error replies, failed forwards and failed notifications among the frames derived (the live line's count). */
  private errors = 0;
  /** The connection's temp_store before this Deriver set it to MEMORY (restored by finish() and close()); null: not changed, or restored. */
  private tempStore: number | null;
  /** The connection's cache_size before this Deriver set STEP_CACHE_KIB (restored with temp_store); null: not changed, or restored. */
  private cacheSize: number | null;

  constructor(db: Database | string, session: number, opts: DeriverOptions = {}) {
    this.ownDb = typeof db === 'string';
    this.db = typeof db === 'string' ? openTraceDb(db) : db;
    this.session = session;
    // Statement journals in memory, as TraceWriter does while recording: a step's multi-row
    // INSERTs into requests need one, and with 64 KiB pages it spilled to a file in /var/tmp at
    // its first page, so every few steps created, wrote and unlinked a file (strace of ft-derive
    // during fio 4k: 24 in 5 s), and a full /var/tmp would have failed the derivation. Restored
    // before finish() builds the duration indexes, whose sorts may be large. Left alone inside a
    // caller's transaction (rebuildLedger), where it could not be restored before that sort.
    const was = this.db.pragma('temp_store', { simple: true }) as number;
    this.tempStore = was === TEMP_STORE_MEMORY || this.db.inTransaction ? null : was;
    if (this.tempStore !== null) this.db.pragma(`temp_store = ${TEMP_STORE_MEMORY}`);
    // The page cache likewise (STEP_CACHE_KIB); inside a caller's transaction its dirty pages must fit.
    this.cacheSize = this.db.inTransaction ? null : (this.db.pragma('cache_size', { simple: true }) as number);
    if (this.cacheSize !== null) this.db.pragma(`cache_size = -${STEP_CACHE_KIB}`);
    try {
      this.restart();
      // heads: the derivation never reads the payload of READ replies and WRITE requests.
      this.pages = new BatchPages(this.db, { heads: true });
      this.indexer = new FrameIndexer(this.db, session);
      this.ledger = new Ledger(this.db, session, opts);
    } catch (err) {
      if (this.ownDb) this.db.close();
      else this.restorePragmas();
      throw err;
    }
    this.feed = opts.feed ?? Infinity;
    // The last batch by first_seq holds the largest seq (batches are in seq order): one index seek,
    // where max(last_seq) read every batch of the session at every step.
    this.recordedStmt = this.db.prepare('SELECT last_seq FROM batches WHERE session = ? ORDER BY first_seq DESC LIMIT 1').pluck();
    this.commit = this.db.transaction((ahead: Ahead, yieldNow?: () => boolean) => this.write(ahead, yieldNow)).immediate;
  }

  /**
   * Derives the next committed batches, about `maxFrames` frames (whole batches, at least one);
   * returns how many frames it derived, 0 when caught up. One write transaction per step. If the
   * write lock cannot be had (SQLITE_BUSY, thrown by BEGIN IMMEDIATE), nothing changed: call again.
   * `yieldNow`, asked after each batch, ends the step early (what it derived is committed, the rest
   * is read again by the next step): the recorder wants the write lock (derive-worker.ts).
   */
  step(maxFrames = 8192, yieldNow?: () => boolean): number {
    this.checkLedger();
    const ahead = this.readAhead(maxFrames);
    if (ahead.raw.length === 0) {
      // Caught up; a patch may still have come in for a frame already derived. Looked for
      // without the write lock: the recorder commits every 100 ms and should not wait for nothing.
      if (!this.indexer.hasLatePatches()) return 0;
      const late = () => this.countPatches(this.indexer.latePatches());
      if (this.db.inTransaction) late();
      else this.db.transaction(late).immediate();
      return 0;
    }
    const { frames, next } = this.commit(ahead, yieldNow);
    this.cursor = next;
    return frames;
  }

  /**
   * Derives everything committed, then ends the ledger (outstanding requests: aborted with
   * endReason) and builds the duration indexes. If the write lock cannot be had (SQLITE_BUSY), it
   * throws before it changed anything, in memory or in the file: calling it again goes on.
   */
  finish(endReason?: string | null): void {
    while (this.step() > 0) {
      // until caught up
    }
    const reason = endReason === undefined ? this.storedEndReason() : endReason;
    // The lock first (BEGIN IMMEDIATE), then the ledger's last rows: a Ledger marks itself finished
    // as it starts, so a lock lost half-way would leave its outstanding requests unwritten.
    if (this.db.inTransaction) this.ledger.finish({ endReason: reason });
    else this.db.transaction(() => this.ledger.finish({ endReason: reason })).immediate();
    this.checkLedger();
    this.restorePragmas();
    createDurationIndexes(this.db);
  }

  /** Derived and recorded seq bounds, for a progress line or a lag warning. */
  lag(): DeriveLag {
    const last = this.recordedStmt.get(this.session) as number | null;
    return { derived: this.cursor, recorded: last === null ? 0 : last + 1 };
  }

  /** For the live line: requests waiting for their reply, and errors, as derived so far. */
  counts(): { outstanding: number; errors: number } {
    return { outstanding: this.ledger.outstanding, errors: this.errors };
  }

  /** sessions.lost: requests labelled lost (final once finish() ran). */
  lost(): number {
    return this.db.prepare('SELECT lost FROM sessions WHERE id = ?').pluck().get(this.session) as number;
  }

  /** Closes the connection if the Deriver opened it. */
  close(): void {
    if (this.ownDb && this.db.open) this.db.close();
    else this.restorePragmas();
  }

  private restorePragmas(): void {
    if (!this.db.open || this.db.inTransaction) return;
    if (this.cacheSize !== null) this.db.pragma(`cache_size = ${this.cacheSize}`);
    this.cacheSize = null;
    if (this.tempStore === null) return;
    this.db.pragma(`temp_store = ${this.tempStore}`);
    this.tempStore = null;
  }

  /**
   * A Deriver starts a session from its first frame. The ledger's state (outstanding requests,
   * the path tree, the negotiated minor) lives in memory and cannot be resumed mid-session, so a
   * session already partly derived by another process (a recorder killed with SIGKILL) loses its
   * derived rows and is derived again from scratch.
   */
  private restart(): void {
    const derived = this.db.prepare('SELECT derived FROM sessions WHERE id = ?').pluck().get(this.session) as number | undefined;
    if (derived === undefined) throw new Error(`Deriver: no session ${this.session}`);
    if (derived === 0) return;
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM loose_frames WHERE session = ?').run(this.session);
      this.db.prepare('DELETE FROM requests WHERE session = ?').run(this.session);
      this.db.prepare('UPDATE sessions SET derived = 0 WHERE id = ?').run(this.session);
    }).immediate();
  }

  /**
   * Reads, before any write lock, the batches of the next step and the patches over them; they
   * are decoded one at a time inside the step's transaction (write()).
   */
  private readAhead(maxFrames: number): Ahead {
    const raw: RawBatch[] = [];
    let from = this.pages.startSeq(this.session, this.cursor);
    let frames = 0;
    while (frames < maxFrames) {
      const got = this.pages.raw(this.session, from, Number.MAX_SAFE_INTEGER, 1);
      if (got.length === 0) break;
      const b = got[0];
      raw.push(b);
      // Its seq span: the frames it holds, dropped ones aside.
      frames += b.lastSeq - Math.max(b.firstSeq, this.cursor) + 1;
      from = b.lastSeq + 1;
    }
    const patches = raw.length === 0 ? null : this.pages.patchesOver(this.session, raw[0].firstSeq, raw[raw.length - 1].lastSeq);
    return { raw, patches };
  }

  /**
   * Inside the step's transaction: the ledger (its rows), late patches, the cursor. Each batch is
   * decoded and handed to the ledger on its own, so that only one batch's frames and rows are
   * live at a time: a step's write transaction can then cover many batches (fewer commits, each
   * rewriting the last page of the table and of every index) without its frames and requests
   * outliving V8's young generation (see derive-worker.ts STEP_FRAMES).
   */
  private write(ahead: Ahead, yieldNow?: () => boolean): { frames: number; next: number } {
    let n = 0;
    let errors = 0;
    let next = this.cursor;
    for (const r of ahead.raw) {
      if (n > 0 && yieldNow?.()) break;
      const { frames } = decodeRaw(r, this.cursor, Number.MAX_SAFE_INTEGER);
      if (ahead.patches) patchFrames(frames, ahead.patches);
      for (let i = 0; i < frames.length; i += this.feed) {
        this.ledger.add(this.feed === Infinity ? frames : frames.slice(i, i + this.feed));
      }
      errors += countErrors(frames);
      n += frames.length;
      next = Math.max(next, r.lastSeq + 1);
    }
    this.countPatches(this.indexer.latePatches());
    this.indexer.setDerived(next);
    this.errors += errors;
    return { frames: n, next };
  }

  private countPatches(errnos: number[]): void {
    for (const e of errnos) if (e !== 0) this.errors++;
  }

  private storedEndReason(): string | null {
    return this.db.prepare('SELECT end_reason FROM sessions WHERE id = ?').pluck().get(this.session) as string | null;
  }

  private checkLedger(): void {
    const failed = this.ledger.failure;
    if (failed) throw failed.error;
  }
}
