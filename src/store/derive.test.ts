// The batch codec, and deriving the ledger and loose_frames from committed batches later
// (TraceWriter 'deferred' + Deriver) gives the rows deriving them in each flush gives; frames are
// found by unique through those rows exactly as by scanning every frame.
import type { Database } from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { BATCH_BYTES, BATCH_FRAMES, decodeBatch, encodeBatches } from './batch.js';
import { Deriver } from './derive.js';
import { START_MONO, Script, busyScript, closeTraces, recordScript, rows, trace, u32, u64 } from './ledger-frames.fixture.js';
import { rebuildLedger } from './ledger.js';
import { TraceReader } from './reader.js';
import { TraceWriter, type FrameRecord } from './writer.js';

afterEach(closeTraces);

/** The loose_frames rows of a session (schema.ts format 5), 64-bit columns as bigint. */
function indexRows(db: Database, session: number): unknown[] {
  return db.prepare('SELECT * FROM loose_frames WHERE session = ? ORDER BY seq').safeIntegers(true).all(session);
}

function derived(db: Database, session: number): number {
  return db.prepare('SELECT derived FROM sessions WHERE id = ?').pluck().get(session) as number;
}

/** Writes a script as `record` will: a deferred writer flushing every `batch` frames, and nothing derived. */
function writeDeferred(db: Database, script: Script, batch: number, procs: Array<[number, string]> = []): { writer: TraceWriter; session: number } {
  const writer = new TraceWriter(db, { derive: 'deferred' });
  const session = writer.beginSession({ command: ['testfs', '/mnt'], startedWallNs: 1n, startedMonoNs: START_MONO });
  for (const [pid, comm] of procs) writer.addProc(pid, comm);
  for (let i = 0; i < script.frames.length; i += batch) {
    writer.addFrames(script.frames.slice(i, i + batch));
    writer.flush();
  }
  return { writer, session };
}

function endSession(writer: TraceWriter, script: Script): void {
  writer.updateSession({ endReason: 'server-exit', endedMonoNs: script.frames[script.frames.length - 1].tsNs + 1000n });
  writer.close();
}

/** The session's derived rows (loose_frames, requests) as they are now. */
function derivedRows(db: Database, session: number): { index: unknown[]; requests: unknown[] } {
  return { index: indexRows(db, session), requests: rows(db, session) };
}

/** Rebuilds the session's ledger from its batches and expects the same rows as `got`. */
function expectRebuildEquals(db: Database, session: number, got: { index: unknown[]; requests: unknown[] }): void {
  rebuildLedger(db, session);
  expect(derivedRows(db, session)).toEqual(got);
}

describe('batch codec', () => {
  it('round-trips every field, u64 uniques past 2^63, snapped frames, and splits at BATCH_BYTES and BATCH_FRAMES', () => {
    const frames: FrameRecord[] = [];
    const add = (data: Buffer, o: Partial<FrameRecord> = {}) =>
      frames.push({ seq: frames.length * 2, tsNs: 10n ** 18n + BigInt(frames.length), fwdNs: 5n, dir: 0, unique: 2n ** 64n - 2n, opcode: 15, error: null, len: data.length + 7, data, writeErrno: 0, ...o });
    add(Buffer.from('abc'));
    add(Buffer.alloc(0), { dir: 1, opcode: null, error: -2, fwdNs: null, writeErrno: 2, unique: 0n });
    add(Buffer.alloc(BATCH_BYTES + 1, 7));
    for (let i = 0; i < BATCH_FRAMES + 5; i++) add(Buffer.alloc(i % 9, i & 0xff));
    const batches = encodeBatches(frames);
    expect(batches.length).toBeGreaterThanOrEqual(3);
    const back = batches.flatMap((b) => decodeBatch(b.body).map(({ off: _o, flags: _f, ...f }) => f));
    expect(back).toEqual(frames);
    for (const b of batches) {
      const d = decodeBatch(b.body);
      expect(d.length).toBe(b.info.count);
      expect(b.info.count).toBeLessThanOrEqual(BATCH_FRAMES);
      expect([b.info.firstSeq, b.info.lastSeq, b.info.firstNs, b.info.lastNs]).toEqual([d[0].seq, d[d.length - 1].seq, d[0].tsNs, d[d.length - 1].tsNs]);
      expect(b.info.bytes).toBe(d.reduce((n, f) => n + f.len, 0));
      if (d.length > 1) expect(b.body.length).toBeLessThanOrEqual(BATCH_BYTES);
    }
    // A short body (a damaged row) decodes to its whole headers, never throws.
    expect(decodeBatch(batches[0].body.subarray(0, 60)).length).toBe(1);
  });
});

describe('Deriver', () => {
  it('deferred writing then a Deriver gives the loose_frames and requests rows of inline writing', () => {
    const s = busyScript();
    const inline = trace();
    const a = recordScript(inline.db, s, { batch: 7, endReason: 'server-exit', procs: [[300, 'cat']] });
    const deferred = trace();
    const { writer, session } = writeDeferred(deferred.db, s, 7, [[300, 'cat']]);
    expect(indexRows(deferred.db, session)).toEqual([]);
    expect(derived(deferred.db, session)).toBe(0);
    endSession(writer, s);
    const tempStore = () => deferred.db.pragma('temp_store', { simple: true });
    const cacheSize = () => deferred.db.pragma('cache_size', { simple: true });
    expect(tempStore()).toBe(0); // the default: temporary files
    expect(cacheSize()).toBe(-32768); // a writing connection's (db.ts tune)
    const d = new Deriver(deferred.db, session, { feed: 5 });
    // Statement journals in memory while it steps (no file per step in /var/tmp), and a small page
    // cache (derive.ts STEP_CACHE_KIB); both restored before finish() sorts the duration indexes.
    expect(tempStore()).toBe(2);
    expect(cacheSize()).toBe(-4096);
    let steps = 0;
    while (d.step(20) > 0) steps++;
    expect(steps).toBeGreaterThan(3);
    d.finish();
    expect(tempStore()).toBe(0);
    expect(cacheSize()).toBe(-32768);
    expect(d.lag()).toEqual({ derived: s.frames.length, recorded: s.frames.length });
    // The live line's errors: error replies, failed forwards and failed notifications.
    const errors = s.frames.filter((f) => (f.dir === 1 && f.unique !== 0n && (f.error ?? 0) < 0) || f.writeErrno !== 0).length;
    expect(errors).toBeGreaterThan(10);
    expect(d.counts().errors).toBe(errors);
    expect(d.lost()).toBe(0);
    expect(derived(deferred.db, session)).toBe(s.frames.length);
    expect(indexRows(deferred.db, session)).toEqual(indexRows(inline.db, a.session));
    // The busy script has INTERRUPTs, their answers, duplicate and split replies: some frames are loose.
    expect(indexRows(inline.db, a.session).length).toBeGreaterThan(0);
    expect(rows(deferred.db, session)).toEqual(rows(inline.db, a.session));
    expect(derived(inline.db, a.session)).toBe(s.frames.length);
  });

  it('finds every frame of a unique, and every INTERRUPT and answer, as a scan of all frames does', () => {
    const s = busyScript();
    // A unique named by no request of the session, and a duplicate reply to an answered one.
    const u = 999_000n;
    s.reply(Number(u), 0, []);
    s.reply(Number(u), 0, [], { writeErrno: 2 });
    const { db } = trace();
    const { writer, session } = writeDeferred(db, s, 50);
    endSession(writer, s);
    new Deriver(db, session, { feed: 3 }).finish();
    const r = new TraceReader(db);
    const all = [...r.frames(session)];
    const uniques = [...new Set(all.map((f) => f.unique))];
    expect(uniques.length).toBeGreaterThan(100);
    for (const unique of uniques) {
      const scan = all.filter((f) => f.unique === unique);
      expect(r.framesOfUnique(session, unique)).toEqual(scan);
      const mid = scan[scan.length >> 1].seq;
      expect(r.framesOfUnique(session, unique, { afterSeq: mid - 1, beforeSeq: mid + 1, limit: 1 })).toEqual([scan[scan.length >> 1]]);
    }
    const intr = new Set(all.filter((f) => f.dir === 0 && f.opcode === 36).map((f) => f.unique));
    expect(intr.size).toBeGreaterThan(3);
    expect(r.interruptFrames(session)).toEqual(all.filter((f) => (f.dir === 0 && f.opcode === 36) || (f.dir === 1 && intr.has(f.unique))));
  });

  it('a Deriver that starts after 5 flushes, on its own connection, ends equal to rebuildLedger', () => {
    const s = busyScript();
    const { db, file } = trace();
    const writer = new TraceWriter(db, { derive: 'deferred' });
    const session = writer.beginSession({ command: ['testfs', '/mnt'], startedWallNs: 1n, startedMonoNs: START_MONO });
    const chunk = Math.ceil(s.frames.length / 10);
    let d: Deriver | undefined;
    for (let i = 0, flushes = 0; i < s.frames.length; i += chunk) {
      writer.addFrames(s.frames.slice(i, i + chunk));
      writer.flush();
      if (++flushes === 5) {
        d = new Deriver(file, session);
        expect(d.lag()).toEqual({ derived: 0, recorded: i + chunk });
        expect(d.step(10)).toBeGreaterThan(0);
      }
      // The Deriver runs behind the writer, interleaved, as its thread would.
      if (d && flushes % 2 === 0) d.step(50);
    }
    endSession(writer, s);
    d!.finish();
    d!.close();
    const got = derivedRows(db, session);
    expect(got.requests.length).toBeGreaterThan(100);
    expectRebuildEquals(db, session, got);
  });

  it('a new Deriver of a partly derived session starts it over (the ledger cannot resume mid-way)', () => {
    const s = busyScript();
    const { db } = trace();
    const { writer, session } = writeDeferred(db, s, 50);
    endSession(writer, s);
    new Deriver(db, session).step(100);
    expect(derived(db, session)).toBeGreaterThan(0);
    // As after a SIGKILLed recorder: another process's Deriver, without the first one's memory.
    new Deriver(db, session).finish();
    expectRebuildEquals(db, session, derivedRows(db, session));
  });

  it('a step that yields (the recorder wants the lock) commits the batches it derived and the next goes on from there', () => {
    const s = busyScript();
    const { db } = trace();
    const { writer, session } = writeDeferred(db, s, 30);
    endSession(writer, s);
    const batches = db.prepare('SELECT first_seq, last_seq, count FROM batches WHERE session = ? ORDER BY first_seq').raw().all(session) as number[][];
    expect(batches.length).toBeGreaterThan(4);
    const d = new Deriver(db, session);
    // Asked after each batch: yes from the first on, so the step ends after one batch.
    let asked = 0;
    const n = d.step(1_000_000, () => ++asked > 0);
    expect(n).toBe(batches[0][2]);
    expect(asked).toBe(1);
    expect(derived(db, session)).toBe(batches[0][1] + 1);
    expect(d.lag().derived).toBe(batches[0][1] + 1);
    // Yielding after the second batch of the next step.
    asked = 0;
    expect(d.step(1_000_000, () => ++asked > 1)).toBe(batches[1][2] + batches[2][2]);
    expect(derived(db, session)).toBe(batches[2][1] + 1);
    // The rest without yielding: one step.
    expect(d.step(1_000_000, () => false)).toBe(s.frames.length - batches[0][2] - batches[1][2] - batches[2][2]);
    d.finish();
    expectRebuildEquals(db, session, derivedRows(db, session));
  });

  it('a requests row the table refuses fails the step loudly and leaves nothing of it (INSERT OR IGNORE is checked)', () => {
    const s = busyScript();
    const { db } = trace();
    const { writer, session } = writeDeferred(db, s, 1000);
    endSession(writer, s);
    // A row already at the seq of a LOOKUP the ledger will insert (a ledger bug would look like this).
    const lookup = s.frames.find((f) => f.dir === 0 && f.opcode === 1)!.seq;
    db.prepare("INSERT INTO requests (session, seq, unique_id, opcode, start_ns, len, state) VALUES (?, ?, 1, 0, 0, 0, 'unknown')").run(session, lookup);
    const d = new Deriver(db, session);
    expect(() => d.step(100_000)).toThrow(/requests rows refused.*first seq/);
    expect(derived(db, session)).toBe(0);
    expect(db.prepare('SELECT count(*) FROM requests WHERE session = ?').pluck().get(session)).toBe(1);
  });

  it('a patch committed after its notification was derived reaches requests.errno and the reader', () => {
    const s = new Script();
    s.req(26, 2, 0, [u32(7), u32(45), u32(0), u32(0)], { pid: 0 });
    s.reply(2, 0, [u32(7), u32(45), Buffer.alloc(56)]);
    // FUSE_NOTIFY_INVAL_INODE (2) whose write had not returned when its batch was committed.
    const note = s.reply(0, 2, [u64(5), u64(0), u64(0)], { unforwarded: true });
    const { db } = trace();
    const { writer, session } = writeDeferred(db, s, 100);
    const d = new Deriver(db, session);
    expect(d.step()).toBe(3);
    expect(db.prepare('SELECT errno FROM requests WHERE session = ? AND seq = ?').pluck().get(session, note.seq)).toBe(0);
    writer.addPatch(note.seq, START_MONO + 99_999n, 2);
    writer.flush();
    expect(d.step()).toBe(0);
    expect(db.prepare('SELECT state, errno FROM requests WHERE session = ? AND seq = ?').get(session, note.seq)).toEqual({ state: 'notify', errno: 2 });
    const r = new TraceReader(db);
    const [viaBatches] = [...r.frames(session, { fromSeq: note.seq, toSeq: note.seq })];
    const [viaIndex] = r.framesAt(session, [note.seq]);
    const [viaUnique] = r.framesOfUnique(session, 0n, { afterSeq: note.seq - 1 });
    for (const f of [viaBatches, viaIndex, viaUnique]) expect([f.fwdNs, f.writeErrno, f.data]).toEqual([START_MONO + 99_999n, 2, note.data]);
    // A rebuild, which sees the patch before the frame, agrees.
    endSession(writer, s);
    d.finish();
    expectRebuildEquals(db, session, derivedRows(db, session));
  });

  it('inline writing applies a patch of an already derived notification in the next flush', () => {
    const s = new Script();
    const note = s.reply(0, 2, [u64(5), u64(0), u64(0)], { unforwarded: true });
    const { db } = trace();
    const w = new TraceWriter(db);
    const session = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: START_MONO });
    w.addFrames(s.frames);
    w.flush();
    w.patchCommittedFrame(note.seq, START_MONO + 5n, 0);
    w.close();
    const [f] = new TraceReader(db).framesAt(session, [note.seq]);
    expect([f.fwdNs, f.writeErrno]).toEqual([START_MONO + 5n, 0]);
  });

  it('a deferred writer refuses observers, and readers see every committed frame before any derivation', () => {
    const s = busyScript();
    const { db } = trace();
    const { writer, session } = writeDeferred(db, s, 13);
    expect(() => writer.onFrames(() => undefined)).toThrow(/deferred/);
    const r = new TraceReader(db);
    expect([...r.frames(session)]).toEqual(s.frames);
    expect(r.frameCount(session)).toBe(s.frames.length);
    expect([...r.frames(session, { fromSeq: 20, toSeq: 30 })]).toEqual(s.frames.slice(20, 31));
    writer.close();
  });

  it('addBatch writes a packed batch as one row, and flushes on its own past the byte threshold', () => {
    const { db } = trace();
    const w = new TraceWriter(db);
    const session = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: START_MONO });
    const big = Buffer.alloc(BATCH_BYTES - 100);
    let seq = 0;
    for (let i = 0; i < 70; i++) {
      const frames = [0, 1].map(() => ({ seq: seq++, tsNs: START_MONO + BigInt(seq), fwdNs: null, dir: 1 as const, unique: 0n, opcode: null, error: 0, len: big.length, data: big, writeErrno: 74 }));
      for (const b of encodeBatches(frames)) w.addBatch(b.body, b.info);
    }
    // 16 MiB (FLUSH_BYTES) is crossed after about 64 batches: committed without a flush() call.
    const committed = db.prepare('SELECT count(*) FROM batches WHERE session = ?').pluck().get(session) as number;
    expect(committed).toBeGreaterThan(60);
    expect(committed).toBeLessThan(140);
    w.close();
    expect(db.prepare('SELECT count(*), sum(count) FROM batches WHERE session = ?').raw().get(session)).toEqual([140, 140]);
    expect(db.prepare('SELECT frames, derived FROM sessions WHERE id = ?').raw().get(session)).toEqual([140, 140]);
  });
});
