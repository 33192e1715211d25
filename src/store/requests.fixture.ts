/**
 * Synthetic ledger rows in a real trace file, for tests of the query layer, the CLI and the TUI
 * that need known requests without recording a session.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Database } from 'better-sqlite3';
import { openTraceDb } from './db.js';

/** A requests row; omitted fields get plausible defaults (a successful GETATTR). */
export interface FixtureRequest {
  seq?: number;
  unique?: number | bigint;
  opcode?: number;
  nodeid?: number | bigint | null;
  fh?: number | bigint | null;
  path?: string | null;
  pid?: number | null;
  comm?: string | null;
  uid?: number | null;
  gid?: number | null;
  start_ns?: number;
  dur_ns?: number | null;
  errno?: number | null;
  len?: number;
  reply_len?: number | null;
  state?: string;
  outcome?: string | null;
  background?: number;
  /** frames.seq of the reply (default seq + 1 when answered) and of the FUSE_INTERRUPT naming it. */
  reply_seq?: number | null;
  interrupt_seq?: number | null;
}

/** A trace file in a fresh temp directory; `cleanup()` closes it and removes the directory. */
export interface FixtureDb {
  db: Database;
  file: string;
  cleanup(): void;
}

/** Creates a trace file with an empty schema. */
export function createFixtureDb(): FixtureDb {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-fixture-'));
  const file = path.join(dir, 'trace.db');
  const db = openTraceDb(file, { create: true });
  return {
    db,
    file,
    cleanup() {
      if (db.open) db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Adds a session (id returned) and its requests. seq, unique and start_ns default to the row's position. */
export function addSession(db: Database, rows: FixtureRequest[], opts: { name?: string | null; startedWallNs?: bigint } = {}): number {
  const { id } = db
    .prepare(
      `INSERT INTO sessions (name, started_wall_ns, started_mono_ns, command, mountpoint) VALUES (?, ?, 0, '["fixture"]', '/mnt') RETURNING id`,
    )
    .get(opts.name ?? null, opts.startedWallNs ?? 1_700_000_000_000_000_000n) as { id: number };
  addRequests(db, id, rows);
  return id;
}

/** Adds requests to an existing session (e.g. one begun by TraceWriter with real frames). */
export function addRequests(db: Database, id: number, rows: FixtureRequest[]): void {
  const ins = db.prepare(
    `INSERT INTO requests (session, seq, unique_id, opcode, nodeid, fh, path, pid, comm, uid, gid, start_ns, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, outcome, background, reply_seq, interrupt_seq)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  db.transaction(() => {
    rows.forEach((r, i) => {
      const seq = r.seq ?? i * 2;
      const start = r.start_ns ?? i * 1000;
      const dur = r.dur_ns === undefined ? 100 : r.dur_ns;
      const errno = r.errno === undefined ? (dur === null ? null : 0) : r.errno;
      const state = r.state ?? (dur === null ? 'unanswered' : errno ? 'error' : 'ok');
      ins.run(
        id, seq, i64(r.unique ?? 2 * (i + 1)), r.opcode ?? 3, i64(r.nodeid === undefined ? 1 : r.nodeid), i64(r.fh ?? null),
        r.path === undefined ? '/' : r.path, r.pid === undefined ? 100 : r.pid, r.comm === undefined ? 'cat' : r.comm,
        r.uid === undefined ? 0 : r.uid, r.gid === undefined ? 0 : r.gid, start, start + 1,
        dur === null ? null : start + dur, dur, errno, r.len ?? 56, r.reply_len === undefined ? (dur === null ? null : 16) : r.reply_len,
        state, r.outcome ?? null, r.background ?? 0, r.reply_seq !== undefined ? r.reply_seq : dur === null ? null : seq + 1,
        r.interrupt_seq ?? null,
      );
    });
  })();
}

/** u64 values are stored bit for bit as SQLite's signed INTEGER (schema.ts). */
function i64(v: number | bigint | null): number | bigint | null {
  return typeof v === 'bigint' ? BigInt.asIntN(64, v) : v;
}
