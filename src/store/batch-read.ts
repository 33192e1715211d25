/**
 * Reading frames back from their ground truth, the `batches` table (schema.ts), with the `patches`
 * rows applied: what TraceReader.frames() yields and what the Deriver derives from. One home for
 * the page queries, so both read a session the same way.
 */
import type { Database, Statement } from 'better-sqlite3';
import { decodeBatch, type BatchFrame } from './batch.js';

/** A notification's forwarding result that arrived after its batch was committed (patches row). */
export interface Patch {
  fwdNs: bigint | null;
  writeErrno: number;
}

/** One batches row, decoded: its frames with patches applied. */
export interface DecodedBatch {
  /** batches.first_seq. */
  firstSeq: number;
  lastSeq: number;
  frames: BatchFrame[];
}

/** One batches row as read: its packed frames (batch.ts), not decoded. */
export interface RawBatch {
  firstSeq: number;
  lastSeq: number;
  body: Buffer;
}

/** A batch's frames, those outside [minSeq, toSeq] left out (only the first and last batch of a page can hold any); no patches applied. */
export function decodeRaw(b: RawBatch, minSeq: number, toSeq: number): DecodedBatch {
  const frames = decodeBatch(b.body);
  const inside = frames.length === 0 || (frames[0].seq >= minSeq && frames[frames.length - 1].seq <= toSeq);
  return { firstSeq: b.firstSeq, lastSeq: b.lastSeq, frames: inside ? frames : frames.filter((f) => f.seq >= minSeq && f.seq <= toSeq) };
}

/** Puts `patches` (patchesOver) over the frames' fwd_ns and write_errno. */
export function patchFrames(frames: readonly BatchFrame[], patches: Map<number, Patch>): void {
  for (const f of frames) {
    const p = patches.get(f.seq);
    if (p) {
      f.fwdNs = p.fwdNs;
      f.writeErrno = p.writeErrno;
    }
  }
}

/** Pages through a session's batches in seq order (bounded memory: a few batches per page). */
export class BatchPages {
  private readonly startOf: Statement;
  private readonly page: Statement;
  private readonly patches: Statement;

  /**
   * `heads`: read batches.heads where it is set (schema.ts format 6): the frames whose payload the
   * derivation never reads (READ replies, WRITE requests) keep only their headers there, like a
   * frame cut by a snaplen (data shorter than len); everything else is as in body. Only for the derivation.
   */
  constructor(db: Database, opts: { heads?: boolean } = {}) {
    const p = (sql: string): Statement => db.prepare(sql).safeIntegers(true);
    // The batch holding `seq` starts at the largest first_seq <= seq; batches never overlap.
    this.startOf = p('SELECT max(first_seq) FROM batches WHERE session = ? AND first_seq <= ?').pluck();
    // coalesce() reads body only where heads is NULL.
    const bytes = opts.heads ? 'coalesce(heads, body)' : 'body';
    this.page = p(`SELECT first_seq, last_seq, ${bytes} FROM batches WHERE session = ? AND first_seq >= ? AND first_seq <= ? ORDER BY first_seq LIMIT ?`).raw(true);
    this.patches = p('SELECT seq, fwd_ns, write_errno FROM patches WHERE session = ? AND seq >= ? AND seq <= ?').raw(true);
  }

  /** first_seq of the batch that holds (or would hold) `seq`: where a page starting at `seq` begins. */
  startSeq(session: number, seq: number): number {
    const v = this.startOf.get(session, seq) as bigint | null;
    return v === null ? seq : Number(v);
  }

  /**
   * Up to `limit` batches whose first_seq is in [fromFirst, toSeq], decoded, frames outside
   * [minSeq, toSeq] left out, patches applied.
   */
  read(session: number, fromFirst: number, minSeq: number, toSeq: number, limit: number): DecodedBatch[] {
    const rows = this.raw(session, fromFirst, toSeq, limit);
    if (rows.length === 0) return [];
    const out = rows.map((b) => decodeRaw(b, minSeq, toSeq));
    this.applyPatches(session, out);
    return out;
  }

  /** The bodies of up to `limit` batches whose first_seq is in [fromFirst, toSeq], neither decoded nor patched. */
  raw(session: number, fromFirst: number, toSeq: number, limit: number): RawBatch[] {
    const rows = this.page.all(session, fromFirst, toSeq, limit) as Array<[bigint, bigint, Buffer]>;
    return rows.map(([first, last, body]) => ({ firstSeq: Number(first), lastSeq: Number(last), body }));
  }

  /**
   * read() without decoding: the bodies of up to `limit` batches whose first_seq is in
   * [fromFirst, toSeq], and the patches over them (null when none, the rule). A reader that walks
   * frames one at a time decodes each as it needs it (TraceReader.frames): a page of 16,000
   * decoded frames held at once outlived the young generation of V8's heap, and copying it into
   * the old one was most of what a replay spent collecting garbage.
   */
  bodies(session: number, fromFirst: number, toSeq: number, limit: number): { batches: RawBatch[]; patches: Map<number, Patch> | null } {
    const batches = this.raw(session, fromFirst, toSeq, limit);
    if (batches.length === 0) return { batches, patches: null };
    return { batches, patches: this.patchesOver(session, batches[0].firstSeq, batches[batches.length - 1].lastSeq) };
  }

  /** The patches rows of seqs in [first, last] by seq, or null when there are none. */
  patchesOver(session: number, first: number, last: number): Map<number, Patch> | null {
    const rows = this.patches.all(session, first, last) as Array<[bigint, bigint | null, bigint]>;
    if (rows.length === 0) return null;
    return new Map<number, Patch>(rows.map(([s, fwd, e]) => [Number(s), { fwdNs: fwd, writeErrno: Number(e) }]));
  }

  /** Puts the patches rows of these batches' seq range over their frames' fwd_ns and write_errno. */
  applyPatches(session: number, batches: DecodedBatch[]): void {
    const bySeq = this.patchesOver(session, batches[0].firstSeq, batches[batches.length - 1].lastSeq);
    if (!bySeq) return;
    for (const b of batches) patchFrames(b.frames, bySeq);
  }
}
