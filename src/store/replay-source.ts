/**
 * What a replay reads from a trace (src/replay/plan.ts walks it): the session, its frames in seq
 * order a page at a time, and which requests a selection (--filter, RANGE) picks. Nothing here
 * holds a whole session: frames come from TraceReader.frames() in pages, and a selection is a
 * sorted array of seqs (8 bytes a request).
 */
import type { Database, Statement } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { iterateRequests, parseRange } from './query.js';
import { TraceReader, type SessionInfo } from './reader.js';
import { iterateFrameHeads } from './frame-heads.js';
import { DIR_KERNEL_TO_SERVER } from './schema.js';
import type { FrameRecord } from './writer.js';

/** The requests a selection picks: their frames.seq in ascending order, and where the replay may stop. */
export interface ReplaySelection {
  /** seqs of the selected request frames, ascending. */
  seqs: Float64Array;
  /** The last frame (request, reply or INTERRUPT) of any selected request: nothing later can matter to them. */
  lastSeq: number;
}

/**
 * Sets a connection up for one pass over a whole session: no memory map. openTraceDb maps the file
 * for readers (random lookups), but a replay reads every frame once, and mapped pages of a 1 GB
 * trace stay resident and count in the process's RSS; read() through SQLite's small page cache
 * keeps a replay's memory independent of the trace's size.
 */
export function streamOnce(db: Database): void {
  db.pragma('mmap_size = 0');
}

/** Read access for replays to a trace file opened with openTraceDb. */
export class ReplaySource {
  private readonly reader: TraceReader;
  private readonly stmts: Record<'maxLen' | 'hasLedger', Statement>;

  constructor(private readonly db: Database) {
    this.reader = new TraceReader(db);
    const p = (sql: string): Statement => db.prepare(sql).safeIntegers(true);
    this.stmts = {
      // Every frame's length is a requests row's len or reply_len, except the INTERRUPTs named by
      // interrupt_seq (48 bytes: never the largest, a session starts with INIT) and loose frames.
      maxLen: p(
        `SELECT max((SELECT max(max(len), coalesce(max(reply_len), 0)) FROM requests WHERE session = @s),
                    (SELECT coalesce(max(len), 0) FROM loose_frames WHERE session = @s))`,
      ).pluck(),
      hasLedger: p('SELECT EXISTS (SELECT 1 FROM requests WHERE session = ?)').pluck(),
    };
  }

  /** Resolves a SESSION argument (TraceReader.resolveSession). */
  resolveSession(spec: string | undefined): number {
    return this.reader.resolveSession(spec);
  }

  /** The session row; a UserError when there is none. */
  session(id: number): SessionInfo {
    const s = this.reader.getSession(id);
    if (!s) throw new UserError(`no session ${id} in the trace file`);
    return s;
  }

  /** Largest recorded frame length (0 for a session without frames). */
  maxFrameLen(session: number): number {
    if (this.hasLedger(session)) return Number((this.stmts.maxLen.get({ s: session }) as bigint | null) ?? 0n);
    let max = 0;
    for (const f of this.reader.frames(session)) max = Math.max(max, f.len);
    return max;
  }

  /** The session's frames in seq order from `fromSeq` on, a page at a time. */
  frames(session: number, fromSeq = 0): Generator<FrameRecord> {
    return this.reader.frames(session, { fromSeq });
  }

  /** True when the request ledger has rows for the session. */
  hasLedger(session: number): boolean {
    return Number(this.stmts.hasLedger.get(session)) !== 0;
  }

  /** True when the session has a request (a kernel->server frame) with this unique. */
  hasRequest(session: number, unique: bigint): boolean {
    if (this.hasLedger(session)) return this.reader.framesOfUnique(session, unique).some((f) => f.dir === DIR_KERNEL_TO_SERVER);
    for (const h of iterateFrameHeads(this.db, session)) if (h.dir === DIR_KERNEL_TO_SERVER && h.unique === unique) return true;
    return false;
  }

  /**
   * The requests a --filter (through the ledger) or a RANGE of uniques picks; null when neither is
   * given (everything is compared). A RANGE works without a ledger, on the request frames' uniques.
   */
  select(session: number, sel: { filter?: string; range?: string }): ReplaySelection | null {
    if (sel.filter === undefined && sel.range === undefined) return null;
    if (this.hasLedger(session)) return this.selectFromLedger(session, sel);
    if (sel.filter !== undefined) {
      throw new UserError(`session ${session} has no request ledger, so --filter cannot select; use a RANGE of uniques`);
    }
    return this.selectByRange(session, sel.range!);
  }

  private selectFromLedger(session: number, sel: { filter?: string; range?: string }): ReplaySelection {
    const seqs = new Grow();
    let lastSeq = -1;
    for (const r of iterateRequests(this.db, session, { filter: sel.filter ?? null, range: sel.range ?? null })) {
      seqs.push(r.seq);
      lastSeq = Math.max(lastSeq, r.seq, r.reply_seq ?? -1, r.interrupt_seq ?? -1);
    }
    return { seqs: seqs.sorted(), lastSeq };
  }

  private selectByRange(session: number, spec: string): ReplaySelection {
    const range = parseRange(spec);
    let maxUnique = -1n;
    if (range.last === 'end' && range.first === undefined) {
      for (const h of iterateFrameHeads(this.db, session)) if (h.dir === DIR_KERNEL_TO_SERVER && h.unique > maxUnique) maxUnique = h.unique;
    }
    const inRange = (u: bigint): boolean =>
      range.last === 'end'
        ? range.first === undefined ? u === maxUnique : u >= range.first
        : u >= range.first! && u <= range.last;
    const seqs = new Grow();
    const picked = new Set<bigint>();
    let lastSeq = -1;
    for (const { seq, dir, unique: u } of iterateFrameHeads(this.db, session)) {
      if (dir === DIR_KERNEL_TO_SERVER) {
        if (!inRange(u)) continue;
        seqs.push(seq);
        picked.add(u);
        lastSeq = seq;
      } else if (picked.has(u)) {
        lastSeq = seq;
      }
    }
    return { seqs: seqs.sorted(), lastSeq };
  }
}

/** A growable Float64Array (a selection of a million requests is 8 MB, not a Set of a million numbers). */
class Grow {
  private buf = new Float64Array(1024);
  private n = 0;
  push(v: number): void {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = v;
  }
  sorted(): Float64Array {
    return this.buf.slice(0, this.n).sort();
  }
}
