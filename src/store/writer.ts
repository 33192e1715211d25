import type { Database, Statement } from 'better-sqlite3';
import { BatchPages, type DecodedBatch } from './batch-read.js';
import { decodeBatch, encodeBatches, type BatchInfo } from './batch.js';
import { Checkpointer, type CheckpointBytes } from './checkpointer.js';
import { isSqliteBusy } from './db.js';
import { FrameIndexer } from './derive.js';

/** One frame as the native pump hands it over; also what TraceReader.frames() yields. */
export interface FrameRecord {
  /** 0, 1, 2, ... in the order the pump saw the frames (both directions share one sequence). */
  seq: number;
  /** CLOCK_MONOTONIC ns right after the read() that got the frame. */
  tsNs: bigint;
  /** CLOCK_MONOTONIC ns right after the forwarding write() returned; null if it was not forwarded. */
  fwdNs: bigint | null;
  /** 0 kernel->server (DIR_KERNEL_TO_SERVER), 1 server->kernel (DIR_SERVER_TO_KERNEL). */
  dir: 0 | 1;
  /** fuse_in_header.unique / fuse_out_header.unique: a u64, may exceed 2^53 (and 2^63). */
  unique: bigint;
  /** fuse_in_header.opcode for dir 0, else null. */
  opcode: number | null;
  /** fuse_out_header.error for dir 1 (0, -errno, or the notify code when unique is 0), else null. */
  error: number | null;
  /** The frame's full length (fuse_in_header.len / fuse_out_header.len, or bytes read). */
  len: number;
  /** The bytes kept: the whole frame, or its first snaplen bytes. cap_len = data.length. */
  data: Buffer;
  /** errno of the forwarding write() to /dev/fuse or the socket; 0 when it succeeded. */
  writeErrno: number;
}

/** What `record` knows when a session starts. */
export interface SessionStart {
  name?: string;
  /** The server's argv as the user gave it. */
  command: string[];
  mountpoint?: string;
  snaplen?: number;
  startedWallNs: bigint;
  startedMonoNs: bigint;
  meta?: Record<string, unknown>;
  /** 'attached' for `fusetrace attach` (schema.ts sessions.origin); default 'record'. */
  origin?: 'record' | 'attached';
  /** 'tracepoints' when only the kernel's fuse tracepoints were available (sessions.capture); default 'frames'. */
  capture?: 'frames' | 'tracepoints';
}

/** Session columns filled in as the session goes (INIT, end); undefined fields are left alone. */
export interface SessionPatch {
  kernelMajor?: number;
  kernelMinor?: number;
  serverMajor?: number;
  serverMinor?: number;
  /** flags | flags2 << 32 of the INIT reply as the kernel saw it (a u64). */
  initFlags?: bigint;
  maxWrite?: number;
  initChanges?: object;
  endedMonoNs?: bigint;
  /** `detached`: fusetrace attach let go of a server that runs on (its outstanding requests stay unanswered). */
  endReason?: 'unmount' | 'signal' | 'server-exit' | 'server-crash' | 'error' | 'detached';
  serverExitCode?: number | null;
  serverSignal?: string | null;
  exitStatus?: number;
  /** Total frames passed through but not recorded so far (an absolute count, not an increment). */
  dropped?: number;
}

/** Sees every batch of frames inside the transaction that commits it (see TraceWriter.onFrames). */
export type FramesObserver = (session: number, frames: FrameRecord[]) => void;

/** SessionPatch field -> column and how to store it. */
const PATCH_COLUMNS: Record<keyof SessionPatch, [string, (v: never) => unknown]> = {
  kernelMajor: ['kernel_major', (v: number) => v],
  kernelMinor: ['kernel_minor', (v: number) => v],
  serverMajor: ['server_major', (v: number) => v],
  serverMinor: ['server_minor', (v: number) => v],
  initFlags: ['init_flags', (v: bigint) => toSqlU64(v)],
  maxWrite: ['max_write', (v: number) => v],
  initChanges: ['init_changes', (v: object) => JSON.stringify(v)],
  endedMonoNs: ['ended_mono_ns', (v: bigint) => v],
  endReason: ['end_reason', (v: string) => v],
  serverExitCode: ['server_exit_code', (v: number | null) => v],
  serverSignal: ['server_signal', (v: string | null) => v],
  exitStatus: ['exit_status', (v: number) => v],
  dropped: ['dropped', (v: number) => v],
};

/**
 * u64 FUSE values (unique, flags) are stored in SQLite's signed 64-bit INTEGER by reinterpreting
 * the bits: values >= 2^63 read back negative in raw SQL; fromSqlU64 undoes it.
 */
export function toSqlU64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** The inverse of toSqlU64: SQLite's signed INTEGER (read with safeIntegers) back to the u64. */
export function fromSqlU64(v: bigint | number): bigint {
  return BigInt.asUintN(64, BigInt(v));
}

/** A 'deferred' writer's page cache, KiB (see the TraceWriter constructor). */
const RECORDING_CACHE_KIB = 4 * 1024;

/** Flush on its own once this many frames or bytes are buffered; the caller also flushes on a timer. */
const FLUSH_FRAMES = 8192;
const FLUSH_BYTES = 16 * 1024 * 1024;

/**
 * Frame bytes committed before the writer moves WAL checkpoints to a worker thread: a small
 * recording (and every test writing a few frames) never starts one.
 */
const CHECKPOINTER_AFTER_BYTES = 64 * 1024 * 1024;

/**
 * How long a commit waits for the write lock once the trace was found locked by another writer
 * (a sqlite3 shell with a transaction open, another program holding it): short, so that the JS
 * thread keeps handling signals, the unmount and the live line while the lock lasts, and the
 * recorder retries at each commit tick instead of sleeping the connection's busy_timeout (5 s) in
 * every attempt. See TraceWriter.locked.
 */
const LOCKED_RETRY_MS = 50;

/** How a TraceWriter derives what it writes (derive.ts). */
export interface TraceWriterOptions {
  /**
   * 'inline' (default: attach, fixtures, tests): each flush also runs the onFrames observers (the
   * ledger, which writes requests and loose_frames), applies late patches and advances
   * sessions.derived, in the flush's transaction,
   * so a SIGKILL leaves everything consistent. 'deferred' (record): a flush writes only batches,
   * patches, procs, lost frames and counters; a Deriver derives the rest on another connection.
   */
  derive?: 'inline' | 'deferred';
  /**
   * When the WAL checkpoints move to a worker thread and how often it is asked to checkpoint
   * (frame bytes committed; defaults: CHECKPOINTER_AFTER_BYTES and checkpointer.ts
   * CHECKPOINT_BYTES). Tests make them small to see many WAL cycles in a few MiB.
   */
  checkpoints?: CheckpointBytes & { after: number };
}

/** A packed batch waiting for the next flush. */
interface PendingBatch {
  body: Buffer;
  info: BatchInfo;
  /** batches.heads: body with the large payloads the derivation does not read cut off (native/batcher.h); null: none. */
  heads?: Buffer | null;
}

/**
 * Batched writer of one recording into a trace file. Single-threaded, like the JS side of the pump.
 * Every flush is one transaction holding the batches, patches, new procs, the session counters
 * and, inline, the derived rows and whatever the observers (the request ledger) write, so a
 * SIGKILLed recorder leaves a file that is consistent up to its last flush.
 */
export class TraceWriter {
  private readonly db: Database;
  private readonly mode: 'inline' | 'deferred';
  private session = 0;
  /** Frames given to addFrames, packed into `batches` at the next flush (or before the next addBatch). */
  private frames: FrameRecord[] = [];
  private batches: PendingBatch[] = [];
  private bufferedFrameCount = 0;
  private bufferedBytes = 0;
  private patches: Array<[number, bigint | null, number]> = [];
  private procs: Array<[number, string | null]> = [];
  /** Uniques of dropped frames not yet committed (lost table). */
  private lost: bigint[] = [];
  private readonly insertLost: Statement;
  private readonly procsSeen = new Set<number>();
  private readonly observers: Array<(session: number, frames: FrameRecord[]) => void> = [];
  private readonly insertBatch: Statement;
  private readonly insertPatch: Statement;
  private readonly insertProc: Statement;
  private readonly bumpCounters: Statement;
  private readonly pages: BatchPages;
  /** The current session's derived rows (inline mode only). */
  private indexer: FrameIndexer | null = null;
  private readonly commit: () => unknown[];
  private closed = false;
  /** Runs the WAL checkpoints once this writer has committed CHECKPOINTER_AFTER_BYTES (null before, or after it failed). */
  private checkpointer: Checkpointer | null = null;
  /** Frame bytes committed while no checkpointer runs; -1 once the writer no longer starts one. */
  private committedBytes = 0;
  /** The connection's temp_store before this writer set it (restored by close()). */
  private readonly tempStore: number;
  /** The connection's cache_size before a 'deferred' writer set it (restored by close()); null: not changed. */
  private readonly cacheSize: number | null;
  /** The connection's busy_timeout (ms), restored once a commit gets through after the file was locked. */
  private readonly busyTimeout: number;
  private lockedByOther = false;
  /** TraceWriterOptions.checkpoints (undefined: the defaults). */
  private readonly checkpointBytes: (CheckpointBytes & { after: number }) | undefined;

  constructor(db: Database, opts: TraceWriterOptions = {}) {
    const mode = opts.derive ?? 'inline';
    this.checkpointBytes = opts.checkpoints;
    if (mode !== 'inline' && mode !== 'deferred') throw new TypeError(`TraceWriter: derive must be 'inline' or 'deferred', not ${String(mode)}`);
    this.db = db;
    this.mode = mode;
    // Statement journals in memory. Each flush runs the observers under a savepoint, so SQLite
    // saves every page they change that existed before it (the requests table's and its indexes'
    // right edges) in a statement journal, which spills to a temp file past 64 KiB, i.e. at its
    // first 64 KiB page: every flush created, wrote and unlinked a file in /var/tmp (~70 per GiB
    // of a full capture). Only while recording: index builds and ledger rebuilds on this
    // connection keep sorting through temp files rather than in memory.
    this.tempStore = db.pragma('temp_store', { simple: true }) as number;
    db.pragma('temp_store = MEMORY');
    // A small page cache while recording. Each commit after one of the derivation's finds the
    // file changed and drops this connection's whole cache (WAL mode), so at db.ts's 32 MiB every
    // flush freed and refilled up to 32 MiB: fresh pages, about 10 us each on the 2-vCPU test VM
    // (the JS thread took 17-31k fresh pages per 1000 frames of 1 MiB reads in the steady state,
    // 0.3-3.3k with 4 MiB; 28-30 against 3 per 1000 frames of fio 4k). A flush larger than the
    // cache writes its first pages into the WAL before the commit instead of at it: without the
    // ledger's savepoint ('inline' keeps db.ts's size) only a page changed again after it was
    // spilled (a b-tree's right edge) is written twice.
    this.cacheSize = mode === 'deferred' ? (db.pragma('cache_size', { simple: true }) as number) : null;
    if (this.cacheSize !== null) db.pragma(`cache_size = -${RECORDING_CACHE_KIB}`);
    this.busyTimeout = db.pragma('busy_timeout', { simple: true }) as number;
    this.insertBatch = db.prepare(
      'INSERT INTO batches (session, first_seq, last_seq, count, first_ns, last_ns, bytes, heads, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.insertPatch = db.prepare('INSERT OR REPLACE INTO patches (session, seq, fwd_ns, write_errno) VALUES (?, ?, ?, ?)');
    this.insertProc = db.prepare('INSERT OR IGNORE INTO procs (session, pid, comm) VALUES (?, ?, ?)');
    this.insertLost = db.prepare('INSERT OR IGNORE INTO lost (session, unique_id) VALUES (?, ?)');
    this.bumpCounters = db.prepare('UPDATE sessions SET frames = frames + ?, bytes = bytes + ? WHERE id = ?');
    this.pages = new BatchPages(db);
    this.commit = db.transaction(() => this.writeBuffered());
  }

  /** Starts a session (flushing whatever the previous one buffered) and returns its id. */
  beginSession(info: SessionStart): number {
    this.checkOpen();
    this.flush();
    const r = this.db
      .prepare(
        `INSERT INTO sessions (name, started_wall_ns, started_mono_ns, command, mountpoint, snaplen, meta, origin, capture)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        info.name ?? null,
        info.startedWallNs,
        info.startedMonoNs,
        JSON.stringify(info.command),
        info.mountpoint ?? null,
        info.snaplen ?? null,
        info.meta === undefined ? null : JSON.stringify(info.meta),
        info.origin ?? 'record',
        info.capture ?? 'frames',
      );
    this.session = Number(r.lastInsertRowid);
    this.procsSeen.clear();
    this.indexer = this.mode === 'inline' ? new FrameIndexer(this.db, this.session) : null;
    return this.session;
  }

  /**
   * The last commit found the file locked by another writer for the whole busy timeout (SQLITE_BUSY),
   * and none has got through since. Meanwhile everything stays buffered, nothing commits on its own
   * (addFrames and addBatch only buffer: each attempt would wait for the lock), and flush() waits
   * only LOCKED_RETRY_MS for the lock; the first commit that gets through clears it.
   */
  get locked(): boolean {
    return this.lockedByOther;
  }

  /** Frames buffered and not committed yet. */
  get bufferedFrames(): number {
    return this.bufferedFrameCount;
  }

  /** The current session's id (0 before beginSession). */
  get sessionId(): number {
    return this.session;
  }

  /**
   * Buffers frames (in seq order); flushes past the size threshold. The array may be reused by the
   * caller afterwards, but the records and their `data` Buffers are kept until the next flush and
   * must not be changed. They are packed into batches (batch.ts encodeBatches) at flush time.
   */
  addFrames(frames: FrameRecord[]): void {
    this.checkSession();
    // Flush as soon as a threshold is crossed, not after the whole array: a busy recorder hands
    // over hundreds of MiB at once, and a transaction larger than the connection's page cache
    // (db.ts tune) spills to the WAL mid-transaction at several times the cost.
    let observerErrors: unknown[] = [];
    const n = frames.length;
    for (let i = 0; i < n; i++) {
      const f = frames[i];
      this.frames.push(f);
      this.bufferedFrameCount++;
      this.bufferedBytes += f.data.length;
      if (!this.full() || this.lockedByOther) continue;
      try {
        const errors = this.commitBuffered();
        if (observerErrors.length === 0) observerErrors = errors;
      } catch (err) {
        // The commit failed (disk full): keep every frame buffered for a retry, as flush() does.
        for (let j = i + 1; j < n; j++) {
          this.frames.push(frames[j]);
          this.bufferedFrameCount++;
          this.bufferedBytes += frames[j].data.length;
        }
        throw err;
      }
    }
    // An observer's error (its writes rolled back, the frames committed) after all frames are in.
    if (observerErrors.length > 0) throw observerErrors[0];
  }

  /**
   * Buffers a batch already packed (by the native pump: frames in seq order, after every frame
   * buffered before it, no patch records); `body` must stay unchanged until the next flush, which
   * writes it as one batches row. Flushes past the size threshold, like addFrames. `heads`: the
   * batch with the payloads the derivation skips cut off (native/batcher.h), stored beside it.
   */
  addBatch(body: Buffer, info: BatchInfo, heads: Buffer | null = null): void {
    this.checkSession();
    this.packFrames();
    this.batches.push({ body, info, heads });
    this.bufferedFrameCount += info.count;
    this.bufferedBytes += body.length;
    if (!this.full() || this.lockedByOther) return;
    const errors = this.commitBuffered();
    if (errors.length > 0) throw errors[0];
  }

  /**
   * Records the forwarding result of notification `seq` whose write to /dev/fuse returned after
   * its frame was handed over (native/pump.h FRAME_FLAG_PATCH): a patches row, committed with the
   * next flush; readers and the derivation apply it over the frame's fwd_ns and write_errno.
   */
  addPatch(seq: number, fwdNs: bigint | null, writeErrno: number): void {
    this.checkSession();
    this.patches.push([seq, fwdNs, writeErrno]);
  }

  /** The name addPatch had when it updated the frames row at once (format 3). */
  patchCommittedFrame(seq: number, fwdNs: bigint | null, writeErrno: number): void {
    this.addPatch(seq, fwdNs, writeErrno);
  }

  /** Records a pid's process name once per session (the first name seen wins). */
  addProc(pid: number, comm: string | null): void {
    this.checkSession();
    if (this.procsSeen.has(pid)) return;
    this.procsSeen.add(pid);
    this.procs.push([pid, comm]);
  }

  /**
   * Records the uniques of frames that were dropped (record --lossy): their requests are labelled
   * `lost` when the session ends (labelLost in ledger.ts). Committed with the next flush.
   */
  addLost(uniques: readonly bigint[]): void {
    this.checkSession();
    for (const u of uniques) this.lost.push(u);
  }

  /**
   * Forgets everything buffered and not committed (the store failed: disk full): returns how many
   * frames that was, so the recorder can count them as not kept.
   */
  discardBuffered(): number {
    const n = this.bufferedFrameCount;
    this.frames = [];
    this.batches = [];
    this.bufferedFrameCount = 0;
    this.bufferedBytes = 0;
    this.patches = [];
    this.procs = [];
    this.lost = [];
    return n;
  }

  /** Sets session columns; buffered frames are flushed first so that e.g. ended_mono_ns never precedes them. */
  updateSession(patch: SessionPatch): void {
    this.checkSession();
    this.flush();
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [key, value] of Object.entries(patch) as Array<[keyof SessionPatch, unknown]>) {
      if (value === undefined) continue;
      const col = PATCH_COLUMNS[key];
      if (!col) throw new TypeError(`updateSession: unknown field ${String(key)}`);
      sets.push(`${col[0]} = ?`);
      values.push(value === null ? null : col[1](value as never));
    }
    if (sets.length === 0) return;
    this.db.prepare(`UPDATE sessions SET ${sets.join(', ')} WHERE id = ?`).run(...values, this.session);
  }

  /** Merges `fields` into the session's meta JSON (json_patch: a null value removes a key). */
  mergeMeta(fields: Record<string, unknown>): void {
    this.checkSession();
    this.flush();
    this.db.prepare("UPDATE sessions SET meta = json_patch(coalesce(meta, '{}'), ?) WHERE id = ?").run(JSON.stringify(fields), this.session);
  }

  /**
   * Sets one key of the current session's meta JSON (e.g. `transport` once a server took /dev/fuse
   * over); buffered frames are flushed first, as with updateSession.
   */
  setSessionMeta(key: string, value: string | number): void {
    this.checkSession();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new TypeError(`setSessionMeta: bad key ${key}`);
    this.flush();
    this.db.prepare(`UPDATE sessions SET meta = json_set(meta, '$.${key}', ?) WHERE id = ?`).run(value, this.session);
  }

  /**
   * Registers an observer of each flushed batch of frames (the request ledger); inline mode only.
   * It runs inside the flush's transaction under its own savepoint, so its rows commit atomically
   * with the frames; if it throws, only its own writes are rolled back, the frames still commit,
   * and flush() rethrows.
   */
  onFrames(cb: FramesObserver): void {
    if (this.mode === 'deferred') throw new Error("TraceWriter.onFrames: a 'deferred' writer derives nothing; a Deriver (derive.ts) feeds the ledger");
    this.observers.push(this.db.transaction((session: number, frames: FrameRecord[]) => cb(session, frames)));
  }

  /** Commits everything buffered now, in one transaction. */
  flush(): void {
    this.checkOpen();
    const errors = this.commitBuffered();
    if (errors.length > 0) throw errors[0];
  }

  /**
   * Flushes and stops, and with it the checkpointer thread if one runs; the Database stays open
   * (its owner closes it, after this: only the last connection to close removes the WAL).
   */
  close(): void {
    if (this.closed) return;
    try {
      if (this.session !== 0) this.flush();
    } finally {
      this.closed = true;
      this.checkpointer?.stop();
      this.checkpointer = null;
      this.db.pragma(`temp_store = ${this.tempStore}`);
      if (this.cacheSize !== null) this.db.pragma(`cache_size = ${this.cacheSize}`);
      if (this.lockedByOther) this.db.pragma(`busy_timeout = ${this.busyTimeout}`);
    }
  }

  private full(): boolean {
    return this.bufferedFrameCount >= FLUSH_FRAMES || this.bufferedBytes >= FLUSH_BYTES;
  }

  /** Packs the frames given to addFrames into batches (batch boundaries change nothing read back). */
  private packFrames(): void {
    if (this.frames.length === 0) return;
    for (const b of encodeBatches(this.frames)) this.batches.push(b);
    this.frames = [];
  }

  /** Commits the buffer; throws if the commit fails, returns the observers' errors. */
  private commitBuffered(): unknown[] {
    this.packFrames();
    if (this.batches.length === 0 && this.patches.length === 0 && this.procs.length === 0 && this.lost.length === 0) return [];
    this.checkpointer?.catchUp();
    // Only forget the buffer once committed: a failed commit (disk full, a locked file) can be retried.
    const errors = this.commitOrNoteLock();
    const bytes = this.bufferedBytes;
    this.batches = [];
    this.bufferedFrameCount = 0;
    this.bufferedBytes = 0;
    this.patches = [];
    this.procs = [];
    this.lost = [];
    this.checkpoints(bytes);
    return errors;
  }

  /** The commit transaction; keeps `locked` current (see there). */
  private commitOrNoteLock(): unknown[] {
    let errors: unknown[];
    try {
      errors = this.commit();
    } catch (err) {
      if (isSqliteBusy(err) && !this.lockedByOther) {
        this.lockedByOther = true;
        this.db.pragma(`busy_timeout = ${LOCKED_RETRY_MS}`);
      }
      throw err;
    }
    if (this.lockedByOther) {
      this.lockedByOther = false;
      this.db.pragma(`busy_timeout = ${this.busyTimeout}`);
    }
    return errors;
  }

  /** After a commit: hands checkpoints to a worker thread once the recording is large. */
  private checkpoints(bytes: number): void {
    if (this.checkpointer) {
      if (!this.checkpointer.failed()) {
        this.checkpointer.committed(bytes);
        return;
      }
      // The worker could not run (see Checkpointer): SQLite's automatic checkpoints again.
      this.checkpointer.stop();
      this.checkpointer = null;
      this.committedBytes = -1;
      return;
    }
    if (this.committedBytes < 0) return;
    this.committedBytes += bytes;
    if (this.committedBytes < (this.checkpointBytes?.after ?? CHECKPOINTER_AFTER_BYTES)) return;
    this.committedBytes = -1;
    // A file on disk only (not ':memory:' or a temporary database: no second connection can open those).
    if (this.db.memory || this.db.name === '' || this.db.readonly) return;
    if (process.env.FUSETRACE_CHECKPOINTER === '0') return;
    try {
      this.checkpointer = new Checkpointer(this.db, this.db.name, this.checkpointBytes);
    } catch {
      // No thread to be had: the frames are committed, SQLite keeps checkpointing by itself.
    }
  }

  /** Runs inside the transaction; returns the observers' errors. */
  private writeBuffered(): unknown[] {
    const session = this.session;
    let frames = 0;
    let bytes = 0;
    for (const { body, info, heads } of this.batches) {
      this.insertBatch.run(session, info.firstSeq, info.lastSeq, info.count, info.firstNs, info.lastNs, info.bytes, heads ?? null, body);
      frames += info.count;
      bytes += info.bytes;
    }
    for (const [seq, fwdNs, writeErrno] of this.patches) this.insertPatch.run(session, seq, fwdNs, writeErrno);
    for (const [pid, comm] of this.procs) this.insertProc.run(session, pid, comm);
    for (const u of this.lost) this.insertLost.run(session, BigInt.asIntN(64, u));
    if (frames > 0) this.bumpCounters.run(frames, bytes, session);
    return this.indexer ? this.deriveBuffered(this.indexer) : [];
  }

  /** Inline mode, inside the transaction: derives the batches just written (derive.ts). */
  private deriveBuffered(indexer: FrameIndexer): unknown[] {
    const errors: unknown[] = [];
    if (this.batches.length > 0) {
      const decoded: DecodedBatch[] = this.batches.map(({ body, info }) => ({ firstSeq: info.firstSeq, lastSeq: info.lastSeq, frames: decodeBatch(body) }));
      this.pages.applyPatches(this.session, decoded);
      const frames = indexer.index(decoded);
      indexer.setDerived(decoded[decoded.length - 1].lastSeq + 1);
      for (const observe of this.observers) {
        try {
          observe(this.session, frames);
        } catch (err) {
          errors.push(err);
        }
      }
    }
    if (this.patches.length > 0) indexer.latePatches();
    return errors;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('TraceWriter is closed');
  }

  private checkSession(): void {
    this.checkOpen();
    if (this.session === 0) throw new Error('TraceWriter: beginSession() first');
  }
}
