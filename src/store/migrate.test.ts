// Format 3 -> 4 on a real format 3 file (its schema verbatim, v3-schema.fixture.ts): frames rows
// with their bytes are repacked into batches, the frames index and sessions.derived are made, the
// requests rows stay; a reader of a format 3 file reads an upgraded private copy and leaves it alone.
import fs from 'node:fs';
import Database from 'better-sqlite3';
import type { Database as DatabaseT } from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openTraceDb } from './db.js';
import { START_MONO, busyScript, closeTraces, rows, trace } from './ledger-frames.fixture.js';
import { Ledger, rebuildLedger } from './ledger.js';
import { TraceReader } from './reader.js';
import { APPLICATION_ID, FORMAT_VERSION } from './schema.js';
import { V3_SCHEMA_SQL } from './v3-schema.fixture.js';
import type { FrameRecord } from './writer.js';

afterEach(() => {
  closeTraces();
  vi.restoreAllMocks();
});

/** A format 3 file at `file`: session 1 holds `frames` and the ledger's rows, session 2 is empty. */
function writeV3(file: string, frames: FrameRecord[]): void {
  fs.rmSync(file, { force: true });
  const db = new Database(file);
  db.pragma('page_size = 65536');
  db.pragma('journal_mode = WAL');
  db.exec(V3_SCHEMA_SQL);
  db.pragma(`application_id = ${APPLICATION_ID}`);
  db.pragma('user_version = 3');
  const session = `INSERT INTO sessions (started_wall_ns, started_mono_ns, command, end_reason, frames) VALUES (1, ${START_MONO}, '["testfs"]', ?, ?)`;
  db.prepare(session).run('unmount', frames.length);
  db.prepare(session).run(null, 0);
  const insert = db.prepare(
    'INSERT INTO frames (session, seq, ts_ns, fwd_ns, dir, unique_id, opcode, error, len, cap_len, data, write_errno) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  db.transaction(() => {
    for (const f of frames) insert.run(f.seq, f.tsNs, f.fwdNs, f.dir, BigInt.asIntN(64, f.unique), f.opcode, f.error, f.len, f.data.length, f.data, f.writeErrno);
    const ledger = new Ledger(db, 1);
    ledger.add(frames);
    ledger.finish({ endReason: 'unmount' });
  })();
  db.close();
}

function requestsOf(db: DatabaseT): unknown[] {
  return rows(db, 1);
}

describe('format 3 -> 4', () => {
  it('a writer upgrades in place: frames read back identical, requests unchanged, the index equals a rebuild', () => {
    const { file } = trace();
    const frames = busyScript().frames;
    // Frames of every size, so that the repack makes several batches (256 KiB each at most).
    for (const f of frames) if (f.seq % 10 === 3) f.data = Buffer.concat([f.data, Buffer.alloc(40_000, f.seq & 0xff)]);
    writeV3(file, frames);
    const v3 = new Database(file, { readonly: true });
    const before = requestsOf(v3);
    v3.close();
    expect(before.length).toBeGreaterThan(100);

    const db = openTraceDb(file);
    expect(db.pragma('user_version', { simple: true })).toBe(FORMAT_VERSION);
    expect(db.prepare('SELECT count(*) FROM batches WHERE session = 1').pluck().get()).toBeGreaterThan(3);
    const r = new TraceReader(db);
    expect([...r.frames(1)]).toEqual(frames);
    expect(r.framesAt(1, [3, 4, 5])).toEqual(frames.slice(3, 6));
    expect(requestsOf(db)).toEqual(before);
    expect(db.prepare('SELECT id, derived FROM sessions ORDER BY id').raw().all()).toEqual([[1, frames.length], [2, 0]]);
    const index = db.prepare('SELECT * FROM frames ORDER BY session, seq').all();
    rebuildLedger(db, 1);
    expect(db.prepare('SELECT * FROM frames ORDER BY session, seq').all()).toEqual(index);
    expect(requestsOf(db)).toEqual(before);
    expect(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'frames'").pluck().all()).toContain('frames_unique');
    db.close();
  });

  it('a reader reads an upgraded private copy and leaves the format 3 file as it was', () => {
    const { file } = trace();
    const frames = busyScript().frames;
    writeV3(file, frames);
    const bytes = fs.readFileSync(file);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const db = openTraceDb(file, { readonly: true });
    expect(stderr.mock.calls.map((c) => String(c[0]))).toEqual([expect.stringMatching(/format 3 file .*upgraded private copy.*\n$/)]);
    const r = new TraceReader(db);
    expect([...r.frames(1)]).toEqual(frames);
    expect(requestsOf(db).length).toBeGreaterThan(100);
    db.close();
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('user_version', { simple: true })).toBe(3);
    raw.close();
  });
});
