/**
 * The recorder's frame pipeline: from the pump's queue (native/frame_queue.h) to the trace file.
 *
 *   pump.drain() -> unpack -> split off patches -> SeqOrderer (seq order up to the watermark)
 *     -> counts (in flight, errors) -> TraceWriter (packed batches; the ledger observes each flush)
 *     -> drained regions handed back to the pump once no buffered record refers to them
 *
 * It also writes what the pump learns once per session (the INIT exchange, a takeover by the
 * server) into the session row. It decides nothing about how the session ends: the RecordSession
 * reads the pump status each drain returns.
 */
import { NO_REPLY_OPCODES } from '../protocol/opcodes.js';
import { storeEnvironmentError } from '../store/db.js';
import type { Ledger } from '../store/ledger.js';
import type { TraceWriter } from '../store/writer.js';
import { FRAME_FLAG_PARTIAL, FRAME_FLAG_PATCH, SeqOrderer, unpackFrames, type PumpFrame } from './frames.js';
import { initChanges } from './init.js';
import type { Pump, PumpStatus } from './native.js';

/** Drained bytes past which a drain flushes and recycles the pump's regions (see recycle()). */
const RECYCLE_BYTES = 16 << 20;

/** What the pipeline has seen so far, for the live line and the summary. */
export interface PipelineCounts {
  /** Totals since start (the pump's): frames recorded, frame bytes, frames dropped. */
  recorded: number;
  bytes: number;
  dropped: number;
  /** Error replies, failed forwards and failed notifications. */
  errors: number;
  /** Requests sent to the server and not answered yet. */
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
  private errors = 0;
  private readonly inFlight = new Set<bigint>();
  private lastDroppedWritten = 0;
  private readonly orderer = new SeqOrderer();
  /** Notifications not yet committed, by seq: their write result (a patch) may still change them. */
  private readonly unflushedNotifies = new Map<number, PumpFrame>();
  /**
   * Drained Buffers the writer may still refer to (its records' `data` slices them until its next
   * flush, see TraceWriter.addFrames; the orderer holds frames across drains). Handed back to the
   * pump after a flush, so a full capture refills a few regions instead of faulting in new ones.
   */
  private drained: Buffer[] = [];
  private drainedBytes = 0;
  private ledgerNoted = false;
  private inProcessNoted = false;
  /** The pump status after the last drain. */
  lastStatus: PumpStatus | undefined;
  /** The server's INIT reply has been seen (and written to the session row). */
  initRecorded = false;
  /** ... and it accepted the connection (no error). */
  initAnswered = false;

  constructor(
    private readonly pump: Pump,
    private readonly writer: TraceWriter,
    private readonly ledger: Ledger,
    private readonly maxFrame: number,
    private readonly log: (line: string) => void,
  ) {
    writer.onFrames((_s, frames) => {
      for (const f of frames) if (f.dir === 1 && f.unique === 0n) this.unflushedNotifies.delete(f.seq);
    });
  }

  get counts(): PipelineCounts {
    return {
      recorded: this.recorded,
      bytes: this.bytes,
      dropped: this.dropped,
      errors: this.errors,
      inFlight: this.inFlight.size,
      notKept: this.notKept,
      storeFailure: this.storeFailure,
      lostUnnamed: this.lostUnnamed,
    };
  }

  /**
   * Takes everything the pump queued and hands it to the writer in seq order. `final`: the pump
   * has stopped, so nothing held back can be completed any more; write it all, recycle nothing.
   * Returns the pump's status after the drain.
   */
  drain(final = false): PumpStatus {
    const d = this.pump.drain();
    if (this.storeFailure !== undefined) return this.discard(d);
    if (d.frames.length > 0 && !final) {
      this.drained.push(d.frames);
      this.drainedBytes += d.frames.length;
    }
    for (const [pid, comm] of d.procs) this.writer.addProc(pid, comm);
    // Uniques of dropped frames (record --lossy): their requests are labelled `lost` at the end.
    if (d.lost.length > 0) this.writer.addLost(d.lost);
    this.order(d.count > 0 ? unpackFrames(d.frames, d.count) : [], d.watermark, final);
    // A busy JS thread drains seldom and large (a full capture: tens to hundreds of MiB per
    // drain, while the commit timer waits behind it): commit and hand the regions back now
    // rather than at the next tick. The writer flushes past 16 MiB on its own anyway.
    if (this.drainedBytes >= RECYCLE_BYTES && !final) {
      this.flush();
      this.recycle();
    }
    this.recorded = d.recorded;
    this.bytes = d.bytes;
    this.dropped = d.dropped;
    this.lostUnnamed = d.lostUnnamed;
    const st = this.pump.status();
    this.lastStatus = st;
    this.noteOnce(st);
    return st;
  }

  /** The commit period's work: drain, commit, hand regions back, keep the session's drop count current. */
  commit(): PumpStatus {
    const st = this.drain();
    if (this.storeFailure !== undefined) return st;
    this.flush();
    this.recycle();
    if (this.dropped !== this.lastDroppedWritten) {
      this.lastDroppedWritten = this.dropped;
      this.writer.updateSession({ dropped: this.dropped });
    }
    this.noteUnnamed();
    return st;
  }

  /** Keeps sessions.meta.lostUnlisted current: labelLost (ledger.ts) then labels conservatively. */
  noteUnnamed(): void {
    if (this.lostUnnamed === this.lostUnnamedWritten || this.storeFailure !== undefined) return;
    this.lostUnnamedWritten = this.lostUnnamed;
    this.writer.setSessionMeta('lostUnlisted', this.lostUnnamed);
  }

  /** Runs a writer call; an error of the ledger observer (the frames still committed) stops only the ledger. */
  guarded(fn: () => void): void {
    if (this.storeFailure !== undefined) return;
    try {
      fn();
    } catch (err) {
      const env = storeEnvironmentError(err);
      if (env) return this.degrade(env.message);
      if (!this.ledger.failure) throw err;
      if (!this.ledgerNoted) {
        this.ledgerNoted = true;
        this.log(`fusetrace: the request ledger stopped (frames are still recorded; rebuild it later): ${String(err)}\n`);
      }
    }
  }

  /**
   * The trace cannot take more (disk full, I/O error, a read-only remount): recording stops, the
   * filesystem does not. Frames from now on are drained as before (the server never waits for a
   * store that cannot write) and counted as not kept, with what the writer and the orderer held
   * uncommitted; what is in the file stays readable, and the summary says how much that is.
   */
  private degrade(why: string): void {
    this.storeFailure = why;
    this.notKept += this.writer.discardBuffered() + this.orderer.rest().length;
    this.log(`\nfusetrace: ${why}: recording stops here, the filesystem keeps working; frames from now on are counted, not kept\n`);
  }

  /** After the store failed: takes the pump's frames, counts them as not kept, hands the region back. */
  private discard(d: ReturnType<Pump['drain']>): PumpStatus {
    const frames = d.count > 0 ? unpackFrames(d.frames, d.count) : [];
    for (const f of frames) if (!(f.flags & FRAME_FLAG_PATCH)) this.notKept++;
    if (d.frames.length > 0) this.pump.recycle(d.frames);
    this.recorded = d.recorded;
    this.bytes = d.bytes;
    this.dropped = d.dropped;
    const st = this.pump.status();
    this.lastStatus = st;
    return st;
  }

  /** Commits what the writer buffered (a ledger failure only stops the ledger). */
  flush(): void {
    this.guarded(() => this.writer.flush());
  }

  /** Patches apart, frames in seq order up to the watermark, to the writer. */
  private order(frames: PumpFrame[], watermark: number, final: boolean): void {
    let patches: PumpFrame[] = [];
    if (frames.some((f) => f.flags & FRAME_FLAG_PATCH)) {
      patches = frames.filter((f) => f.flags & FRAME_FLAG_PATCH);
      frames = frames.filter((f) => !(f.flags & FRAME_FLAG_PATCH));
    }
    let ready = this.orderer.push(frames, watermark);
    if (final) ready = ready.concat(this.orderer.rest());
    for (const f of ready) if (f.dir === 1 && f.unique === 0n && !(f.flags & FRAME_FLAG_PARTIAL)) this.unflushedNotifies.set(f.seq, f);
    // A patch always follows its notification in the queue: the frame is held, pending, or committed.
    for (const p of patches) this.patchNotify(p);
    if (ready.length > 0) {
      this.observe(ready);
      this.guarded(() => this.writer.addFrames(ready));
    }
  }

  /** Applies a notification's write result: to the frame if not yet committed, else to its row. */
  private patchNotify(p: PumpFrame): void {
    const f = this.unflushedNotifies.get(p.seq) ?? this.orderer.find(p.seq);
    if (f) {
      f.fwdNs = p.fwdNs;
      f.writeErrno = p.writeErrno;
    } else {
      this.writer.patchCommittedFrame(p.seq, p.fwdNs, p.writeErrno);
    }
    if (p.writeErrno !== 0) this.errors++;
  }

  /** Counts requests in flight and errors for the live line. */
  private observe(frames: PumpFrame[]): void {
    for (const f of frames) {
      if (f.dir === 0) {
        if (f.opcode !== null && !NO_REPLY_OPCODES.has(f.opcode) && f.writeErrno === 0) this.inFlight.add(f.unique);
        if (f.writeErrno !== 0) this.errors++;
      } else {
        if (f.unique !== 0n) this.inFlight.delete(f.unique);
        if ((f.error ?? 0) < 0 && f.unique !== 0n) this.errors++;
        else if (f.writeErrno !== 0) this.errors++;
      }
    }
  }

  /** Hands drained regions back to the pump once neither the writer nor the orderer refers to them. */
  private recycle(): void {
    const keep: Buffer[] = [];
    this.drainedBytes = 0;
    for (const b of this.drained) {
      if (this.orderer.holds(b)) {
        keep.push(b);
        this.drainedBytes += b.length;
      } else {
        this.pump.recycle(b);
      }
    }
    this.drained = keep;
  }

  /** Writes what the pump learns once per session: the takeover (in-process) and the INIT exchange. */
  private noteOnce(st: PumpStatus): void {
    if (this.storeFailure !== undefined) return;
    if (st.transport === 'in-process' && !this.inProcessNoted) {
      this.inProcessNoted = true;
      this.flush();
      this.writer.setSessionMeta('transport', 'in-process');
    }
    if (st.init.replySeen && !this.initRecorded) {
      this.initRecorded = true;
      this.initAnswered = st.init.replyError === 0;
      this.flush(); // updateSession flushes first; keep a ledger error out of it
      this.writer.updateSession({
        kernelMajor: st.init.kernelMajor,
        kernelMinor: st.init.kernelMinor,
        serverMajor: st.init.serverMajor,
        serverMinor: st.init.serverMinor,
        initFlags: st.init.serverFlags,
        maxWrite: st.init.maxWriteForwarded,
        initChanges: initChanges(st.init, this.maxFrame),
      });
    }
  }
}
