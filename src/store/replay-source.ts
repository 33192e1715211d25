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
import { DIR_KERNEL_TO_SERVER } from './schema.js';
import { fromSqlU64, toSqlU64, type FrameRecord } from './writer.js';

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

/** Rows per page of the selection scan of a session without a ledger. */
const PAGE = 4096;

/** Read access for replays to a trace file opened with openTraceDb. */
export class ReplaySource {
  private readonly reader: TraceReader;
  private readonly stmts: Record<'maxLen' | 'hasLedger' | 'hasUnique' | 'maxUnique' | 'framePage', Statement>;

  constructor(private readonly db: Database) {
    this.reader = new TraceReader(db);
    const p = (sql: string): Statement => db.prepare(sql).safeIntegers(true);
    this.stmts = {
      maxLen: p('SELECT max(len) FROM frames WHERE session = ?').pluck(),
      hasLedger: p('SELECT EXISTS (SELECT 1 FROM requests WHERE session = ?)').pluck(),
      // frames_unique (session, unique_id) answers both without a scan.
      hasUnique: p(`SELECT EXISTS (SELECT 1 FROM frames WHERE session = ? AND unique_id = ? AND dir = ${DIR_KERNEL_TO_SERVER})`).pluck(),
      maxUnique: p(`SELECT max(unique_id) FROM frames WHERE session = ? AND dir = ${DIR_KERNEL_TO_SERVER}`).pluck(),
      framePage: p(`SELECT seq, dir, unique_id FROM frames WHERE session = ? AND seq >= ? ORDER BY seq LIMIT ${PAGE}`).raw(true),
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
    return Number((this.stmts.maxLen.get(session) as bigint | null) ?? 0n);
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
    return Number(this.stmts.hasUnique.get(session, toSqlU64(unique))) !== 0;
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
    const maxRaw = this.stmts.maxUnique.get(session) as bigint | null;
    const maxUnique = maxRaw === null ? -1n : fromSqlU64(maxRaw);
    const inRange = (u: bigint): boolean =>
      range.last === 'end'
        ? range.first === undefined ? u === maxUnique : u >= range.first
        : u >= range.first! && u <= range.last;
    const seqs = new Grow();
    const picked = new Set<bigint>();
    let lastSeq = -1;
    let from = 0;
    for (;;) {
      const rows = this.stmts.framePage.all(session, from) as Array<[bigint, bigint, bigint]>;
      for (const [seqRaw, dir, uniqueRaw] of rows) {
        const seq = Number(seqRaw);
        const u = fromSqlU64(uniqueRaw);
        if (Number(dir) === DIR_KERNEL_TO_SERVER) {
          if (!inRange(u)) continue;
          seqs.push(seq);
          picked.add(u);
          lastSeq = seq;
        } else if (picked.has(u)) {
          lastSeq = seq;
        }
      }
      if (rows.length < PAGE) break;
      from = Number(rows[rows.length - 1][0]) + 1;
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
