/**
 * Synthetic ledger rows in a real trace file, for tests of the query layer, the CLI and the TUI
 * that need known requests without recording a session.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Database } from 'better-sqlite3';
import { decodeBatch, encodeBatches } from './batch.js';
import { FrameIndexer } from './derive.js';
import { openTraceDb } from './db.js';
import { TraceReader } from './reader.js';
import { TraceWriter, type FrameRecord } from './writer.js';

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

/**
 * Copies a recorded session's frames into a new session, each frame replaced by what `expand`
 * yields for it (the frame itself, plus e.g. clones with new uniques), seqs renumbered in order:
 * a large session made of real frames without recording one. Streams both ways, so the copy may
 * be far larger than memory. The session row (command, INIT changes, end) is copied too; the
 * ledger is not (rebuild it from the frames when a test needs it). Returns the new session's id.
 */
export function cloneSession(db: Database, from: number, expand: (f: FrameRecord) => Iterable<FrameRecord>): number {
  const reader = new TraceReader(db);
  const src = reader.getSession(from);
  if (!src) throw new Error(`cloneSession: no session ${from}`);
  const w = new TraceWriter(db);
  try {
    w.beginSession({ name: `${src.name ?? 'session'}-clone`, command: src.command, snaplen: src.snaplen ?? undefined,
      startedWallNs: src.startedWallNs, startedMonoNs: src.startedMonoNs });
    let seq = 0;
    let batch: FrameRecord[] = [];
    for (const f of reader.frames(from)) {
      for (const g of expand(f)) {
        batch.push({ ...g, seq: seq++ });
        if (batch.length >= 4096) {
          w.addFrames(batch);
          batch = [];
        }
      }
    }
    w.addFrames(batch);
    w.updateSession({
      initChanges: (src.initChanges ?? undefined) as object | undefined, endedMonoNs: src.endedMonoNs ?? undefined,
      endReason: (src.endReason ?? undefined) as never, serverExitCode: src.serverExitCode, serverSignal: src.serverSignal,
    });
    return w.sessionId;
  } finally {
    w.close();
  }
}

/** u64 values are stored bit for bit as SQLite's signed INTEGER (schema.ts). */
function i64(v: number | bigint | null): number | bigint | null {
  return typeof v === 'bigint' ? BigInt.asIntN(64, v) : v;
}

/**
 * A session of `n` answered GETATTRs with their real frames (request and reply, as the kernel and a
 * server would write them) and ledger rows, committed in chunks: a large trace for tests of bounded
 * memory (show --json, export) without recording one. Returns the session id.
 */
export function addFramedSession(db: Database, n: number): number {
  const { id } = db
    .prepare(
      `INSERT INTO sessions (name, started_wall_ns, started_mono_ns, ended_mono_ns, command, mountpoint, end_reason, kernel_major, kernel_minor, server_major, server_minor)
       VALUES ('framed', 1700000000000000000, 0, ?, '["fixture"]', '/mnt', 'unmount', 7, 45, 7, 45) RETURNING id`,
    )
    .get(n * 2000) as { id: number };
  const batch = db.prepare('INSERT INTO batches (session, first_seq, last_seq, count, first_ns, last_ns, bytes, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const indexer = new FrameIndexer(db, id);
  const row = db.prepare(
    `INSERT INTO requests (session, seq, unique_id, opcode, nodeid, path, pid, comm, uid, gid, start_ns, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, background, reply_seq)
     VALUES (?, ?, ?, 3, ?, ?, 4242, 'stat', 0, 0, ?, ?, ?, 1000, 0, 56, 120, 'ok', 0, ?)`,
  );
  // fuse_in_header (40) + fuse_getattr_in (16); fuse_out_header (16) + fuse_attr_out (104).
  const req = Buffer.alloc(56);
  const rep = Buffer.alloc(120);
  const CHUNK = 20_000;
  for (let from = 0; from < n; from += CHUNK) {
    db.transaction(() => {
      const frames: FrameRecord[] = [];
      const frame = (seq: number, tsNs: number, dir: 0 | 1, unique: bigint, opcode: number | null, error: number | null, data: Buffer): void => {
        frames.push({ seq, tsNs: BigInt(tsNs), fwdNs: BigInt(tsNs + 1), dir, unique, opcode, error, len: data.length, data: Buffer.from(data), writeErrno: 0 });
      };
      for (let i = from; i < Math.min(n, from + CHUNK); i++) {
        const unique = BigInt(2 * (i + 1));
        const nodeid = BigInt(1 + (i % 1000));
        const t = i * 2000;
        req.writeUInt32LE(56, 0);
        req.writeUInt32LE(3, 4);
        req.writeBigUInt64LE(unique, 8);
        req.writeBigUInt64LE(nodeid, 16);
        req.writeUInt32LE(4242, 32);
        rep.writeUInt32LE(120, 0);
        rep.writeInt32LE(0, 4);
        rep.writeBigUInt64LE(unique, 8);
        rep.writeBigUInt64LE(1n, 16); // attr_valid
        rep.writeBigUInt64LE(nodeid, 32); // attr.ino
        rep.writeUInt32LE(0o100644, 16 + 16 + 60); // attr.mode
        frame(2 * i, t, 0, unique, 3, null, req);
        frame(2 * i + 1, t + 1000, 1, unique, null, 0, rep);
        row.run(id, 2 * i, unique, nodeid, `/f${nodeid}`, t, t + 1, t + 1000, 2 * i + 1);
      }
      // The frames as the recorder stores them (batches) and their derived index rows.
      for (const { body, info } of encodeBatches(frames)) {
        batch.run(id, info.firstSeq, info.lastSeq, info.count, info.firstNs, info.lastNs, info.bytes, body);
        indexer.index([{ firstSeq: info.firstSeq, lastSeq: info.lastSeq, frames: decodeBatch(body) }]);
      }
      indexer.setDerived(frames[frames.length - 1].seq + 1);
    })();
  }
  return id;
}
