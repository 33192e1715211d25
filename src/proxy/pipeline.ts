/**
 * The recorder's frame pipeline: from the pump's queue (native/frame_queue.h) to the trace file.
 *
 *   pump.drainBatches() -> packed batches in seq order (native/batcher.h), patches, procs, lost
 *     -> TraceWriter.addBatch (one row per batch, no work per frame here) -> commit
 *     -> the derivation thread is told (deriver.ts: ledger, live counts)
 *     -> drained regions handed back to the pump after the commit
 *
 * It also writes what the pump learns once per session (the INIT exchange, a takeover by the
 * server) into the session row. It decides nothing about how the session ends: the RecordSession
 * reads the pump status each drain returns.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isSqliteBusy, storeEnvironmentError } from '../store/db.js';
import type { TraceWriter } from '../store/writer.js';
import type { DeriverThread } from './deriver.js';
import { initChanges } from './init.js';
import type { Pump, PumpBatchDrain, PumpStatus } from './native.js';

/** How long commits may fail on a locked file before the user is told. */
const BUSY_SAY_MS = 10_000;
/** How often the end of a session tries again to commit to a trace file another writer keeps locked. */
const LOCKED_END_RETRY_MS = 200;

/** Drained bytes past which a drain commits and recycles the pump's regions (see recycle()). */
const RECYCLE_BYTES = 16 << 20;

/** What the pipeline has seen so far, for the live line and the summary. */
export interface PipelineCounts {
  /** Totals since start (the pump's): frames recorded, frame bytes, frames dropped. */
  recorded: number;
  bytes: number;
  dropped: number;
  /** Error replies, failed forwards and failed notifications (as derived so far: it may lag). */
  errors: number;
  /** Requests sent to the server and not answered yet (as derived so far). */
  inFlight: number;
  /** Frames the trace could not keep after the store failed (disk full, I/O error): see degrade(). */
  notKept: number;
  /** Why the store failed, once it has. */
  storeFailure: string | undefined;
  /** Dropped frames whose unique the pump could not name (its list overflowed): see labelLost. */
  lostUnnamed: number;
}

export class FramePipeline {
  private recorded = 0;
  private bytes = 0;
  private dropped = 0;
  private lostUnnamed = 0;
  private notKept = 0;
  private storeFailure: string | undefined;
  private lostUnnamedWritten = 0;
  private lastDroppedWritten = 0;
  /** Batches handed to the writer and not yet committed. */
  private uncommitted = 0;
  /**
   * Drained regions the writer's buffered batches slice (TraceWriter.addBatch keeps them until its
   * flush). Handed back to the pump after a commit, so a full capture refills a few regions
   * instead of faulting in new ones.
   */
  private drained: Buffer[] = [];
  private drainedBytes = 0;
  private inProcessNoted = false;
  /** When commits started failing on a locked file (0: they do not). */
  private busySince = 0;
  private busyNoted = false;
  /** The pump status after the last drain. */
  lastStatus: PumpStatus | undefined;
  /** The pump queue's memory as of the last drain (PumpDrain.queueRegions, queueFaulted). */
  queueMemory = { regions: 0, faulted: 0 };
  /** The server's INIT reply has been seen (and written to the session row). */
  initRecorded = false;
  /** ... and it accepted the connection (no error). */
  initAnswered = false;

  constructor(
    private readonly pump: Pump,
    private readonly writer: TraceWriter,
    private readonly deriver: DeriverThread,
    private readonly maxFrame: number,
    private readonly log: (line: string) => void,
  ) {}

  get counts(): PipelineCounts {
    const d = this.deriver.counts;
    return {
      recorded: this.recorded,
      bytes: this.bytes,
      dropped: this.dropped,
      errors: d.errors,
      inFlight: d.outstanding,
      notKept: this.notKept,
      storeFailure: this.storeFailure,
      lostUnnamed: this.lostUnnamed,
    };
  }

  /**
   * Takes everything the pump queued and hands it to the writer as batches. `final`: the pump
   * has stopped, so nothing held back can be completed any more; write it all, recycle nothing.
   * Returns the pump's status after the drain.
   */
  drain(final = false): PumpStatus {
    // The file is locked by another writer (TraceWriter.locked): leave the frames in the pump's
    // queue, which is bounded, so that the server waits for room (backpressure) instead of this
    // process buffering without end. The pump's status still comes through (the unmount, the
    // server's end), and signals are handled: nothing here waits for the lock.
    if (!final && this.writer.locked && this.storeFailure === undefined) return this.statusOnly();
    const d = this.pump.drainBatches(final);
    this.recorded = d.recorded;
    this.bytes = d.bytes;
    this.dropped = d.dropped;
    this.lostUnnamed = d.lostUnnamed;
    this.queueMemory = { regions: d.queueRegions, faulted: d.queueFaulted };
    if (this.storeFailure !== undefined) return this.discard(d);
    this.store(d, final);
    // A busy JS thread drains seldom and large (a full capture: tens to hundreds of MiB per
    // drain, while the commit timer waits behind it): commit and hand the regions back now
    // rather than at the next tick. The writer flushes past 16 MiB on its own anyway.
    if (this.drainedBytes >= RECYCLE_BYTES && !final) this.flush();
    const st = this.pump.status();
    this.lastStatus = st;
    this.noteOnce(st);
    return st;
  }

  /** The commit period's work: drain, commit, hand regions back, keep the session's drop count current. */
  commit(): PumpStatus {
    if (this.writer.locked && this.storeFailure === undefined) {
      // One short attempt (TraceWriter.locked); the frames stay in the pump until it gets through.
      this.flush();
      if (this.writer.locked) return this.statusOnly();
    }
    const st = this.drain();
    if (this.storeFailure !== undefined) return st;
    this.flush();
    if (this.dropped !== this.lastDroppedWritten && this.guarded(() => this.writer.updateSession({ dropped: this.dropped }))) {
      this.lastDroppedWritten = this.dropped;
    }
    this.noteUnnamed();
    return st;
  }

  /** Keeps sessions.meta.lostUnlisted current: labelLost (ledger.ts) then labels conservatively. */
  noteUnnamed(): void {
    if (this.lostUnnamed === this.lostUnnamedWritten || this.storeFailure !== undefined) return;
    if (this.guarded(() => this.writer.setSessionMeta('lostUnlisted', this.lostUnnamed))) this.lostUnnamedWritten = this.lostUnnamed;
  }

  /**
   * The session's last commit (the pump has stopped and was drained): commits what the writer
   * buffered, waiting as long as another writer keeps the file locked, and says so once. `giveUp`
   * (the user's Ctrl-C) ends the wait: what was not committed is counted as not kept, and this
   * returns false.
   */
  async commitAtEnd(giveUp: AbortSignal): Promise<boolean> {
    this.flush();
    if (!this.writer.locked || this.storeFailure !== undefined) return true;
    const n = this.writer.bufferedFrames;
    this.log(`\nfusetrace: the trace file is locked by another writer: waiting to write the last ${n} frames (Ctrl-C gives up; they would not be kept)\n`);
    while (this.writer.locked && this.storeFailure === undefined && !giveUp.aborted) {
      await sleep(LOCKED_END_RETRY_MS, undefined, { signal: giveUp }).catch(() => undefined); // aborted: gives up below
      if (!giveUp.aborted) this.flush();
    }
    if (!this.writer.locked || this.storeFailure !== undefined) return this.storeFailure === undefined;
    this.degrade('gave up waiting for the lock of another writer on the trace file', false);
    return false;
  }

  /** Commits what the writer buffered, tells the derivation thread, hands the regions back. */
  flush(): void {
    const had = this.uncommitted;
    if (!this.guarded(() => this.deriver.writing(() => this.writer.flush()))) return;
    this.busySince = 0;
    this.uncommitted = 0;
    this.recycle();
    if (had > 0) this.deriver.committed();
  }

  /**
   * The write lock stayed taken for the whole busy timeout (another process writing the trace, or
   * the derivation thread starved on a saturated machine): the batches stay buffered, the next
   * commit tick tries again (TraceWriter.locked), and the pump's queue behind them, no longer
   * drained meanwhile, makes the server wait rather than lose frames. Said once, when it lasts.
   */
  private noteBusy(): void {
    const now = Date.now();
    if (this.busySince === 0) this.busySince = now;
    if (!this.busyNoted && now - this.busySince >= BUSY_SAY_MS) {
      this.busyNoted = true;
      this.log(
        `\nfusetrace: the trace file has been locked by another writer for ${Math.round((now - this.busySince) / 1000)} s; ` +
          'frames wait in the bounded queue, and the server for room in it, until it is free (nothing is lost)\n',
      );
    }
  }

  /**
   * Runs a writer call; true when it succeeded. A store that cannot take more (disk full, I/O
   * error) degrades the recording; a locked file leaves everything buffered in the writer for the
   * next commit (noteBusy).
   */
  private guarded(fn: () => void): boolean {
    if (this.storeFailure !== undefined) return false;
    try {
      fn();
      return true;
    } catch (err) {
      if (isSqliteBusy(err)) {
        this.noteBusy();
        return false;
      }
      const env = storeEnvironmentError(err);
      if (!env) throw err;
      this.degrade(env.message);
      return false;
    }
  }

  /**
   * The trace cannot take more (disk full, I/O error, a read-only remount): recording stops, the
   * filesystem does not. Frames from now on are drained as before (the server never waits for a
   * store that cannot write) and counted as not kept, with what the writer held uncommitted; what
   * is in the file stays readable, and the summary says how much that is.
   */
  private degrade(why: string, say = true): void {
    this.storeFailure = why;
    this.notKept += this.writer.discardBuffered();
    this.uncommitted = 0;
    for (const b of this.drained) this.pump.recycle(b);
    this.drained = [];
    this.drainedBytes = 0;
    if (say) this.log(`\nfusetrace: ${why}: recording stops here, the filesystem keeps working; frames from now on are counted, not kept\n`);
  }

  /** The pump's status without taking frames (see drain). */
  private statusOnly(): PumpStatus {
    const st = this.pump.status();
    this.lastStatus = st;
    this.noteOnce(st);
    return st;
  }

  /** After the store failed: counts the drain's frames as not kept, hands the region back. */
  private discard(d: PumpBatchDrain): PumpStatus {
    this.notKept += d.count;
    if (d.recyclable) this.pump.recycle(d.frames);
    const st = this.pump.status();
    this.lastStatus = st;
    return st;
  }

  /** Batches, patches, procs and lost uniques of one drain, to the writer. */
  private store(d: PumpBatchDrain, final: boolean): void {
    // One call at a time: a batch whose automatic flush found the file locked stays buffered, and
    // the rest of the drain must still reach the writer.
    for (const [pid, comm] of d.procs) this.guarded(() => this.writer.addProc(pid, comm));
    // Uniques of dropped frames (record --lossy): their requests are labelled `lost` at the end.
    if (d.lost.length > 0) this.guarded(() => this.writer.addLost(d.lost));
    // addBatch commits by itself past the writer's flush size: the derivation's turn is held as in flush().
    this.deriver.writing(() => {
      for (const b of d.batches) {
        // A batch after the one whose automatic flush found the disk full never reaches the writer:
        // counted here, as discardBuffered counted those it held, or the summary would claim them.
        if (this.storeFailure !== undefined) {
          this.notKept += b.count;
          continue;
        }
        this.uncommitted++;
        this.guarded(() => this.writer.addBatch(d.frames.subarray(b.off, b.off + b.size), b, b.heads));
      }
    });
    for (const [seq, fwdNs, writeErrno] of d.patches) this.guarded(() => this.writer.addPatch(seq, fwdNs === 0n ? null : fwdNs, writeErrno));
    if (this.storeFailure !== undefined) {
      // The writer failed in the middle of this drain: its region is not referenced any more.
      if (d.recyclable) this.pump.recycle(d.frames);
      return;
    }
    if (d.recyclable && d.frames.length > 0 && !final) {
      this.drained.push(d.frames);
      this.drainedBytes += d.frames.length;
    }
  }

  /** Hands drained regions back to the pump: call only after a commit (nothing buffered slices them). */
  private recycle(): void {
    for (const b of this.drained) this.pump.recycle(b);
    this.drained = [];
    this.drainedBytes = 0;
  }

  /** Writes what the pump learns once per session: the takeover (in-process) and the INIT exchange. */
  private noteOnce(st: PumpStatus): void {
    if (this.storeFailure !== undefined) return;
    if (st.transport === 'in-process' && !this.inProcessNoted) {
      this.inProcessNoted = this.guarded(() => this.writer.setSessionMeta('transport', 'in-process'));
    }
    if (st.init.replySeen && !this.initRecorded) {
      this.initAnswered = st.init.replyError === 0;
      this.initRecorded = this.guarded(() =>
        this.writer.updateSession({
          kernelMajor: st.init.kernelMajor,
          kernelMinor: st.init.kernelMinor,
          serverMajor: st.init.serverMajor,
          serverMinor: st.init.serverMinor,
          initFlags: st.init.serverFlags,
          maxWrite: st.init.maxWriteForwarded,
          initChanges: initChanges(st.init, this.maxFrame),
        }),
      );
    }
  }
}
