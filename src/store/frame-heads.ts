/**
 * Frame metadata without the bytes, for exports that must pair frames before writing them
 * (pcapng: a request's packet names its reply's packet number). Reads the frame headers of the
 * session's batches (schema.ts), their ground truth.
 */
import type { Database } from 'better-sqlite3';
import { decodeBatch } from './batch.js';

/** One frame's identity: what pairing needs. */
export interface FrameHead {
  seq: number;
  dir: 0 | 1;
  unique: bigint;
  /** fuse_in_header.opcode for dir 0, else null. */
  opcode: number | null;
}

/** Batches read per query: bounded memory (at most BATCH_BYTES each, or one large frame). */
const PAGE = 4;

/**
 * The session's frames in seq order, without their data. Reads batches.heads where it is set
 * (format 6: READ replies and WRITE requests cut after their headers; see BatchPages), so that
 * pairing a full-capture session does not read its payload; a format 5 file read in place has no
 * such column and gives its bodies.
 */
export function* iterateFrameHeads(db: Database, session: number): Generator<FrameHead> {
  const hasHeads = db.prepare("SELECT 1 FROM pragma_table_info('batches') WHERE name = 'heads'").get() !== undefined;
  const bytes = hasHeads ? 'coalesce(heads, body)' : 'body';
  const page = db.prepare(`SELECT last_seq, ${bytes} FROM batches WHERE session = ? AND first_seq >= ? ORDER BY first_seq LIMIT ?`).raw(true);
  let from = 0;
  for (;;) {
    // all(), not iterate(): the caller may use the connection between two frames.
    const rows = page.all(session, from, PAGE) as Array<[number, Buffer]>;
    for (const [, body] of rows) {
      for (const f of decodeBatch(body)) yield { seq: f.seq, dir: f.dir, unique: f.unique, opcode: f.opcode };
    }
    if (rows.length < PAGE) return;
    from = rows[rows.length - 1][0] + 1;
  }
}

/** The highest seq of the session's frames, or -1 when it has none. */
export function lastFrameSeq(db: Database, session: number): number {
  const v = db.prepare('SELECT last_seq FROM batches WHERE session = ? ORDER BY first_seq DESC LIMIT 1').pluck().get(session) as number | undefined;
  return v ?? -1;
}
