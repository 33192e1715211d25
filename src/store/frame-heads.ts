/**
 * Frame metadata without the bytes, for exports that must pair frames before writing them
 * (pcapng: a request's packet names its reply's packet number). Reads `frames` (schema.ts).
 */
import type { Database } from 'better-sqlite3';
import { fromSqlU64 } from './writer.js';

/** One frame's identity: what pairing needs. */
export interface FrameHead {
  seq: number;
  dir: 0 | 1;
  unique: bigint;
  /** fuse_in_header.opcode for dir 0, else null. */
  opcode: number | null;
}

/** The session's frames in seq order, without their data (the cursor reads only the row headers' columns). */
export function* iterateFrameHeads(db: Database, session: number): Generator<FrameHead> {
  const stmt = db.prepare('SELECT seq, dir, unique_id, opcode FROM frames WHERE session = ? ORDER BY seq').safeIntegers(true).raw(true);
  for (const r of stmt.iterate(session) as IterableIterator<[bigint, bigint, bigint, bigint | null]>) {
    yield { seq: Number(r[0]), dir: Number(r[1]) as 0 | 1, unique: fromSqlU64(r[2]), opcode: r[3] === null ? null : Number(r[3]) };
  }
}

/** The highest frames.seq of the session, or -1 when it has none. */
export function lastFrameSeq(db: Database, session: number): number {
  const v = db.prepare('SELECT max(seq) FROM frames WHERE session = ?').pluck().get(session) as number | null;
  return v ?? -1;
}
