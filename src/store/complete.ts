/**
 * Sessions whose derivation lags behind their batches and whose recorder is gone (SIGKILL): the
 * read commands complete them before reading (openTraceDb's `complete` option), so `show`,
 * `stats` and the rest see every committed frame in the request index, as they would have had the
 * recorder ended. A live recorder's Deriver is never raced: its session is read as derived so far.
 */
import fs from 'node:fs';
import type { Database } from 'better-sqlite3';
import { Deriver } from './derive.js';

/** A session whose requests stop before its last committed frame. */
export interface LaggingSession {
  id: number;
  /** Frames committed in batches that are not derived yet. */
  missing: number;
  /** sessions.meta.recorderPid: the process whose Deriver derives it, if it said. */
  recorderPid: number | null;
}

/** The sessions of `db` whose derivation lags, whatever the reason. */
export function laggingSessions(db: Database): LaggingSession[] {
  const rows = db
    .prepare(
      `SELECT s.id, json_extract(s.meta, '$.recorderPid') AS pid,
              (SELECT coalesce(sum(b.count), 0) FROM batches b WHERE b.session = s.id AND b.first_seq >= s.derived) AS missing
         FROM sessions s ORDER BY s.id`,
    )
    .all() as Array<{ id: number; pid: number | null; missing: number }>;
  return rows.filter((r) => r.missing > 0).map((r) => ({ id: r.id, missing: r.missing, recorderPid: r.pid === null ? null : Number(r.pid) }));
}

/**
 * True when `pid` still runs fusetrace: its Deriver may still be working. A pid whose command line
 * cannot be read (hidepid) but which exists counts as live: never race a recorder.
 */
export function recorderAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('fusetrace');
  } catch {
    return true;
  }
}

/** The lagging sessions no live recorder derives: those a reader should complete. */
export function orphanedSessions(db: Database): LaggingSession[] {
  return laggingSessions(db).filter((s) => s.recorderPid === null || !recorderAlive(s.recorderPid));
}

/** Derives what a recorder that is gone left underived (killed, or stopped deriving on a full disk), on a writing connection; one stderr line per session. */
export function completeSessions(db: Database, sessions: readonly LaggingSession[]): void {
  for (const s of sessions) {
    process.stderr.write(`fusetrace: completing the request index of session ${s.id} (its recorder ended before deriving it): ${s.missing} frames\n`);
    // The Deriver starts the session over: the killed recorder's ledger state died with it.
    const d = new Deriver(db, s.id);
    d.finish();
  }
}

/**
 * One warning line per orphaned session a reader cannot complete: a read-only one, or (`why`) one
 * whose completion the file refused (a full disk under a trace whose recorder stopped deriving).
 */
export function warnIncomplete(file: string, sessions: readonly LaggingSession[], why?: string): void {
  for (const s of sessions) {
    process.stderr.write(
      why === undefined
        ? `fusetrace: session ${s.id}: its recorder ended before ${s.missing} frames reached the request index; showing what is indexed (open ${file} once with write access to complete it)\n`
        : `fusetrace: session ${s.id}: ${s.missing} frames are not in the request index and cannot be added now (${why}); showing what is indexed\n`,
    );
  }
}
