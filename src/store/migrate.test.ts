// Format 3 -> 4 -> 5 -> 6 on a real format 3 file (its schema verbatim, v3-schema.fixture.ts): frames
// rows with their bytes are repacked into batches, sessions.derived is set, the requests rows stay,
// and the format 4 frames index becomes loose_frames; a reader of an older file reads an upgraded
// private copy and leaves it alone, except a format 5 file, which it reads in place (format 6 only
// added batches.heads, which the derivation alone reads).
import fs from 'node:fs';
import Database from 'better-sqlite3';
import type { Database as DatabaseT } from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { migrate, openTraceDb } from './db.js';
import { iterateFrameHeads, type FrameHead } from './frame-heads.js';
import { Deriver } from './derive.js';
import { START_MONO, busyScript, closeTraces, rows, trace } from './ledger-frames.fixture.js';
import { Ledger, rebuildLedger } from './ledger.js';
import { TraceReader } from './reader.js';
import { APPLICATION_ID, FORMAT_VERSION, LOOSE_FRAMES_SQL } from './schema.js';
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
    // Today's Ledger also lists loose frames, which format 3 has no table for: one for its time.
    db.exec(LOOSE_FRAMES_SQL);
    const ledger = new Ledger(db, 1);
    ledger.add(frames);
    ledger.finish({ endReason: 'unmount' });
    db.exec('DROP TABLE loose_frames');
  })();
  db.close();
}

/** What iterateFrameHeads gives of these frames. */
function headsOf(frames: FrameRecord[]): FrameHead[] {
  return frames.map((f) => ({ seq: f.seq, dir: f.dir, unique: f.unique, opcode: f.opcode }));
}

function requestsOf(db: DatabaseT): unknown[] {
  return rows(db, 1);
}

/** The loose_frames rows of session 1. */
function looseOf(db: DatabaseT): unknown[] {
  return db.prepare('SELECT * FROM loose_frames WHERE session = 1 ORDER BY seq').all();
}

describe('format 3 -> 4 -> 5 -> 6', () => {
  it('a writer upgrades in place: frames read back identical, requests unchanged, loose_frames equals a rebuild', () => {
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
    const loose = looseOf(db);
    expect(loose.length).toBeGreaterThan(0);
    rebuildLedger(db, 1);
    expect(looseOf(db)).toEqual(loose);
    expect(requestsOf(db)).toEqual(before);
    expect(db.prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'frames'").pluck().all()).toEqual([]);
    db.close();
  });

  it('a format 4 file: its frames index becomes loose_frames, as deriving it again makes them, and every frame is found by unique', () => {
    const { file } = trace();
    const frames = busyScript().frames;
    writeV3(file, frames);
    const v4 = new Database(file);
    migrate(v4, 3, 4);
    expect(v4.pragma('user_version', { simple: true })).toBe(4);
    expect(v4.prepare('SELECT count(*) FROM frames').pluck().get()).toBe(frames.length);
    v4.close();
    const db = openTraceDb(file);
    expect(db.pragma('user_version', { simple: true })).toBe(FORMAT_VERSION);
    const loose = looseOf(db);
    expect(loose.length).toBeGreaterThan(0);
    expect(loose.length).toBeLessThan(frames.length / 4);
    const r = new TraceReader(db);
    for (const u of new Set(frames.map((f) => f.unique))) expect(r.framesOfUnique(1, u)).toEqual(frames.filter((f) => f.unique === u));
    rebuildLedger(db, 1);
    expect(looseOf(db)).toEqual(loose);
    db.close();
  });

  it('a format 5 file: readers read it in place; a writer adds batches.heads (NULL: the derivation reads body)', () => {
    const { file } = trace();
    const frames = busyScript().frames;
    writeV3(file, frames);
    const v5 = new Database(file);
    migrate(v5, 3, 5);
    const before = requestsOf(v5);
    v5.close();
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const ro = openTraceDb(file, { readonly: true });
    expect(ro.pragma('user_version', { simple: true })).toBe(5);
    expect([...new TraceReader(ro).frames(1)]).toEqual(frames);
    // Pairing for exports and replay (frame-heads.ts) reads body where there is no heads column.
    expect([...iterateFrameHeads(ro, 1)]).toEqual(headsOf(frames));
    ro.close();
    expect(stderr.mock.calls).toEqual([]);
    const db = openTraceDb(file);
    expect(db.pragma('user_version', { simple: true })).toBe(6);
    const cols = db.prepare("SELECT name FROM pragma_table_info('batches')").pluck().all();
    expect(cols).toContain('heads');
    expect(db.prepare('SELECT count(*) FROM batches WHERE heads IS NOT NULL').pluck().get()).toBe(0);
    // Derived again from the migrated file (heads NULL everywhere): the same rows.
    db.prepare('UPDATE sessions SET derived = 0').run();
    db.prepare('DELETE FROM requests').run();
    db.prepare('DELETE FROM loose_frames').run();
    new Deriver(db, 1).finish('unmount');
    expect(requestsOf(db)).toEqual(before);
    db.close();
  });

  it('pairing for exports and replay reads batches.heads where it is set, not the payload in body', () => {
    const { file } = trace();
    const frames = busyScript().frames;
    writeV3(file, frames);
    const db = openTraceDb(file);
    // heads as the batcher writes them would differ from body only in cut payloads, which
    // iterateFrameHeads does not give: so heads = body, and body made unreadable.
    db.exec('UPDATE batches SET heads = body');
    db.exec('UPDATE batches SET body = zeroblob(length(body))');
    expect([...iterateFrameHeads(db, 1)]).toEqual(headsOf(frames));
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
