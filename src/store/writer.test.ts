import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prng as rng } from '../util/prng.js';
import { openTraceDb } from './db.js';
import { TraceReader } from './reader.js';
import { Ledger } from './ledger.js';
import { TraceWriter, type FrameRecord } from './writer.js';
import { compileDist } from '../../test/helpers/dist.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-writer-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Compiles the sources once for the tests that run the writer in a child process, as `fusetrace record` does. */
let compiled: { db: string; writer: string; ledger: string } | undefined;
function compiledStore(): { db: string; writer: string; ledger: string } {
  if (compiled) return compiled;
  compileDist(['dist/src/store/writer.js']);
  const out = (name: string) => path.join(ROOT, 'dist', 'src', 'store', `${name}.js`);
  compiled = { db: out('db'), writer: out('writer'), ledger: out('ledger') };
  return compiled;
}

/** Uniques that break naive storage: above 2^53 (lost in a double) and at/above 2^63 (sign bit). */
const HARD_UNIQUES = [0n, 1n, 2n ** 53n + 1n, 2n ** 62n + 3n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 63n + 5n, 2n ** 64n - 1n];

/** A synthetic frame: mostly small, some 4 KiB, a few 128 KiB and 1 MiB + a page, some empty. */
function synthFrame(seq: number, next: () => number, base: bigint): FrameRecord {
  const r = next();
  const size = seq % 25_000 === 7 ? 1024 * 1024 + 4096 : seq % 997 === 3 ? 128 * 1024 : seq % 101 === 0 ? 0 : r < 0.7 ? 16 + Math.floor(next() * 120) : 4096 + 80;
  const data = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) data.writeUInt32LE((seq * 2654435761 + i) >>> 0, Math.min(i, size - 4));
  const dir = (seq & 1) as 0 | 1;
  const unique = seq % 13 === 0 ? HARD_UNIQUES[seq % HARD_UNIQUES.length] : BigInt(seq) * 2n + 2n ** 53n;
  return {
    seq,
    tsNs: base + BigInt(seq) * 1500n,
    fwdNs: seq % 7 === 0 ? null : base + BigInt(seq) * 1500n + 700n,
    dir,
    unique,
    opcode: dir === 0 ? 1 + (seq % 52) : null,
    error: dir === 1 ? (seq % 5 === 0 ? -2 : 0) : null,
    // Frames cut by --snaplen have len > data.length.
    len: seq % 11 === 0 ? size + 65536 : size,
    data,
    writeErrno: seq % 17 === 0 ? 2 : 0,
  };
}

/** Differences between two frames, field by field ([] when identical). */
function diff(a: FrameRecord, b: FrameRecord): string[] {
  const out: string[] = [];
  for (const k of ['seq', 'tsNs', 'fwdNs', 'dir', 'unique', 'opcode', 'error', 'len', 'writeErrno'] as const) {
    if (a[k] !== b[k]) out.push(`seq ${a.seq} ${k}: ${String(a[k])} != ${String(b[k])}`);
  }
  if (!a.data.equals(b.data)) out.push(`seq ${a.seq} data differs (${a.data.length} vs ${b.data.length} bytes)`);
  return out;
}

describe('TraceWriter + TraceReader', () => {
  it('writes 100,000 frames and reads them back identical from the reopened file', () => {
    const file = path.join(dir, 't.db');
    const base = 10n ** 15n;
    const next = rng(42);
    const written: FrameRecord[] = [];
    for (let seq = 0; seq < 100_000; seq++) written.push(synthFrame(seq, next, base));

    const db = openTraceDb(file, { create: true });
    const w = new TraceWriter(db);
    const id = w.beginSession({
      name: 'round-trip', command: ['./srv', '-f', '/mnt'], mountpoint: '/mnt', snaplen: 65536,
      startedWallNs: 1_700_000_000_000_000_000n, startedMonoNs: base, meta: { uid: 0 },
    });
    // Batches of irregular size, as the pump delivers them.
    for (let i = 0; i < written.length; ) {
      const n = 1 + Math.floor(next() * 700);
      w.addFrames(written.slice(i, i + n));
      i += n;
    }
    w.addProc(1234, 'cat');
    w.addProc(1234, 'ignored: first name wins');
    w.addProc(0, null);
    w.updateSession({
      kernelMajor: 7, kernelMinor: 45, serverMajor: 7, serverMinor: 38,
      initFlags: (1n << 63n) | 0x1234n, maxWrite: 131072, initChanges: { masked: ['PASSTHROUGH'] },
      endedMonoNs: base + 10n ** 9n, endReason: 'unmount', serverExitCode: 1, serverSignal: null, exitStatus: 0, dropped: 3,
    });
    w.close();
    db.close();

    const rdb = openTraceDb(file, { readonly: true });
    const reader = new TraceReader(rdb);
    expect(reader.frameCount(id)).toBe(written.length);
    const problems: string[] = [];
    let n = 0;
    for (const f of reader.frames(id)) {
      problems.push(...diff(f, written[n++]));
      if (problems.length > 10) break;
    }
    expect(problems).toEqual([]);
    expect(n).toBe(written.length);

    const s = reader.getSession(id)!;
    expect(s).toMatchObject({
      id, name: 'round-trip', command: ['./srv', '-f', '/mnt'], mountpoint: '/mnt', snaplen: 65536,
      startedWallNs: 1_700_000_000_000_000_000n, startedMonoNs: base, endedMonoNs: base + 10n ** 9n,
      kernelMajor: 7, kernelMinor: 45, serverMajor: 7, serverMinor: 38, initFlags: (1n << 63n) | 0x1234n,
      maxWrite: 131072, initChanges: { masked: ['PASSTHROUGH'] }, endReason: 'unmount', serverExitCode: 1,
      serverSignal: null, exitStatus: 0, dropped: 3, meta: { uid: 0 },
      frames: written.length, bytes: written.reduce((a, f) => a + f.len, 0),
    });
    expect(reader.procs(id)).toEqual(new Map([[0, null], [1234, 'cat']]));
    expect(reader.duration(s)).toEqual({ ns: 10n ** 9n, ended: true });

    // A range crossing the reader's page boundary, and a range past the end.
    const range = [...reader.frames(id, { fromSeq: 1000, toSeq: 3100 })];
    expect(range.map((f) => f.seq)).toEqual(Array.from({ length: 2101 }, (_, i) => 1000 + i));
    expect(range.flatMap((f) => diff(f, written[f.seq]))).toEqual([]);
    expect([...reader.frames(id, { fromSeq: 100_000 })]).toEqual([]);
    rdb.close();
  }, 120_000);

  it('keeps two sessions apart in one file', () => {
    const file = path.join(dir, 't.db');
    const next = rng(7);
    for (const [name, count] of [['one', 300], ['two', 50]] as const) {
      const db = openTraceDb(file, { create: true });
      const w = new TraceWriter(db);
      w.beginSession({ name, command: [name], startedWallNs: 1n, startedMonoNs: 1n });
      w.addFrames(Array.from({ length: count }, (_, i) => synthFrame(i, next, 1n)));
      w.addProc(count, name);
      w.close();
      db.close();
    }
    const db = openTraceDb(file, { readonly: true });
    const reader = new TraceReader(db);
    expect(reader.listSessions().map((s) => [s.id, s.name, s.frames])).toEqual([[1, 'one', 300], [2, 'two', 50]]);
    expect(reader.frameCount(1)).toBe(300);
    expect(reader.frameCount(2)).toBe(50);
    expect([...reader.frames(2)].map((f) => f.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(reader.procs(1)).toEqual(new Map([[300, 'one']]));
    expect(reader.procs(2)).toEqual(new Map([[50, 'two']]));
    expect(reader.latestSessionId()).toBe(2);
    expect(reader.resolveSession()).toBe(2);
    expect(reader.resolveSession('1')).toBe(1);
    expect(reader.resolveSession('one')).toBe(1);
    expect(() => reader.resolveSession('three')).toThrow(`no session "three" in ${file} (fusetrace sessions lists them)`);
    expect(() => reader.resolveSession('9')).toThrow(`no session "9" in ${file}`);
    db.close();
  });

  it("patches a committed frame's write result and sets a meta key, for the recorder; the reader finds frames by seq and by unique", () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    const w = new TraceWriter(db);
    w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n, meta: { transport: 'relay', pid: 7 } });
    // Frames are found by unique through what the ledger derived (schema.ts format 5).
    const ledger = new Ledger(db, 1);
    w.onFrames((_s, f) => ledger.add(f));
    const next = rng(3);
    const frames = Array.from({ length: 10 }, (_, i) => synthFrame(i, next, 1n));
    w.addFrames(frames);
    w.flush();
    w.patchCommittedFrame(4, 123456n, 2);
    w.setSessionMeta('transport', 'in-process');
    expect(() => w.setSessionMeta("x') --", 1)).toThrow(TypeError);
    w.close();
    const reader = new TraceReader(db);
    const [patched] = reader.framesAt(1, [4]);
    expect([patched!.fwdNs, patched!.writeErrno]).toEqual([123456n, 2]);
    expect(reader.getSession(1)!.meta).toEqual({ transport: 'in-process', pid: 7 });
    expect(reader.framesAt(1, [7, 2, 99, 5]).map((f) => f.seq)).toEqual([2, 5, 7]);
    const u = frames[6]!.unique;
    const sameUnique = frames.filter((f) => f.unique === u).map((f) => f.seq);
    expect(reader.framesOfUnique(1, u).map((f) => f.seq)).toEqual(sameUnique);
    expect(reader.framesOfUnique(1, u, { afterSeq: 6 }).map((f) => f.seq)).toEqual(sameUnique.filter((s) => s > 6));
    db.close();
  });

  it('resolving the latest session of an empty file is a user error', () => {
    const file = path.join(dir, 'empty.db');
    const db = openTraceDb(file, { create: true });
    expect(() => new TraceReader(db).resolveSession()).toThrow(`no sessions in ${file}`);
    db.close();
  });

  it('commits observer rows with the batch; a throwing observer loses only its own rows', () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    const w = new TraceWriter(db);
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    const seen: number[][] = [];
    const insert = db.prepare(
      "INSERT INTO requests (session, seq, unique_id, opcode, start_ns, len, state) VALUES (?, ?, ?, 1, 0, 40, 'ok')",
    );
    w.onFrames((session, frames) => {
      seen.push(frames.map((f) => f.seq));
      for (const f of frames) insert.run(session, f.seq, BigInt.asIntN(64, f.unique));
      if (frames.some((f) => f.seq === 5)) throw new Error('ledger bug');
    });
    const next = rng(1);
    w.addFrames([0, 1, 2].map((s) => synthFrame(s, next, 1n)));
    w.flush();
    w.addFrames([3, 4, 5].map((s) => synthFrame(s, next, 1n)));
    expect(() => w.flush()).toThrow('ledger bug');
    w.flush(); // nothing left buffered: the frames of the failed batch were committed
    expect(seen).toEqual([[0, 1, 2], [3, 4, 5]]);
    expect([...new TraceReader(db).frames(id)].map((f) => f.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(db.prepare('SELECT seq FROM requests ORDER BY seq').pluck().all()).toEqual([0, 1, 2]);
    expect(new TraceReader(db).getSession(id)!.frames).toBe(6);
    db.close();
  });

  it('flushes on its own past the size threshold', () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    const w = new TraceWriter(db);
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    const next = rng(3);
    const other = openTraceDb(file, { readonly: true });
    const reader = new TraceReader(other);
    w.addFrames([synthFrame(1, next, 1n)]);
    expect(reader.frameCount(id)).toBe(0); // buffered, not committed
    w.addFrames(Array.from({ length: 20_000 }, (_, i) => synthFrame(i + 2, next, 1n)));
    expect(reader.frameCount(id)).toBeGreaterThan(0); // another connection sees committed frames
    other.close();
    w.close();
    db.close();
  });

  it('a file locked by another writer: everything stays buffered, nothing commits on its own, retries wait briefly; the first commit that gets through writes it all', () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    db.pragma('busy_timeout = 200'); // the connection's own wait, for the first attempt
    const w = new TraceWriter(db, { derive: 'deferred' });
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    const next = rng(5);
    const locker = openTraceDb(file);
    try {
      locker.exec('BEGIN IMMEDIATE');
      w.addFrames([synthFrame(1, next, 1n)]);
      expect(() => w.flush()).toThrow(expect.objectContaining({ code: 'SQLITE_BUSY' }));
      expect(w.locked).toBe(true);
      expect(db.pragma('busy_timeout', { simple: true })).toBeLessThan(200);
      // Past the size threshold: while locked it only buffers (each attempt would wait for the lock).
      const more = Array.from({ length: 20_000 }, (_, i) => synthFrame(i + 2, next, 1n));
      expect(() => w.addFrames(more)).not.toThrow();
      expect(w.bufferedFrames).toBe(20_001);
      const t0 = Date.now();
      expect(() => w.flush()).toThrow(expect.objectContaining({ code: 'SQLITE_BUSY' }));
      expect(Date.now() - t0).toBeLessThan(2000); // a retry waits LOCKED_RETRY_MS, not the busy timeout
      locker.exec('ROLLBACK');
      w.flush();
      expect(w.locked).toBe(false);
      expect(w.bufferedFrames).toBe(0);
      expect(db.pragma('busy_timeout', { simple: true })).toBe(200);
      const reader = new TraceReader(locker);
      expect(reader.frameCount(id)).toBe(20_001);
      const back = [...reader.frames(id)];
      expect(back.map((f) => f.seq)).toEqual(Array.from({ length: 20_001 }, (_, i) => i + 1));
    } finally {
      locker.close();
      w.close();
      db.close();
    }
  });

  it('commits one large addFrames in bounded transactions; an observer error mid-array loses no frame', () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    const w = new TraceWriter(db);
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    const batches: Array<{ first: number; count: number; bytes: number }> = [];
    w.onFrames((_s, frames) => {
      batches.push({ first: frames[0].seq, count: frames.length, bytes: frames.reduce((n, f) => n + f.data.length, 0) });
      if (batches.length === 1) throw new Error('ledger bug');
    });
    // 600 frames of 64 KiB + a header (a full-capture READ reply): 37.5 MiB handed over at once.
    const frames = Array.from({ length: 600 }, (_, seq) => {
      const data = Buffer.alloc(65536 + 16, seq & 0xff);
      return { seq, tsNs: BigInt(seq), fwdNs: null, dir: 1 as const, unique: BigInt(seq), opcode: null, error: 0, len: data.length, data, writeErrno: 0 };
    });
    // The first transaction's observer throws: reported once the whole array is in.
    expect(() => w.addFrames(frames)).toThrow('ledger bug');
    expect(batches.length).toBe(2); // two 16 MiB transactions, not one of 37.5 MiB
    for (const b of batches) expect(b.bytes).toBeLessThan(16 * 1024 * 1024 + 65552);
    w.flush();
    expect(batches.map((b) => b.count).reduce((a, b) => a + b)).toBe(600);
    const reader = new TraceReader(db);
    expect(reader.frameCount(id)).toBe(600);
    let seq = 0;
    for (const f of reader.frames(id)) expect(f.seq === seq && f.data.length === 65552 && f.data[100] === (seq++ & 0xff)).toBe(true);
    db.close();
  });

  it('checkpoints a large recording on a worker thread, never on the writing connection, with the WAL bounded', () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    const w = new TraceWriter(db);
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    // 2,560 frames of 128 KiB (a full capture of READ replies): 320 MiB, past the 256 MiB at
    // which the writer waits for the checkpointer to let the WAL start over.
    const size = 128 * 1024 + 16;
    let maxWal = 0;
    let maxDb = 0;
    for (let c = 0; c < 20; c++) {
      const frames = Array.from({ length: 128 }, (_, k) => {
        const seq = c * 128 + k;
        const data = Buffer.alloc(size, seq & 0xff);
        return { seq, tsNs: BigInt(seq), fwdNs: null, dir: 1 as const, unique: BigInt(seq), opcode: null, error: 0, len: size, data, writeErrno: 0 };
      });
      w.addFrames(frames);
      w.flush();
      maxWal = Math.max(maxWal, fs.statSync(`${file}-wal`).size);
      maxDb = Math.max(maxDb, fs.statSync(file).size);
      // Once the checkpointer runs (64 MiB in), the writing connection does no checkpoint itself.
      if (c >= 6) expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    }
    // The pages reached the database file while recording, so someone else checkpointed them (the
    // writing connection stops checkpointing at 64 MiB; how far the worker gets past that depends on
    // the machine's load: 180 MiB of 320 was seen with the whole suite running, so ask for 96).
    expect(maxDb).toBeGreaterThan(96 * 1024 * 1024);
    expect(maxWal).toBeLessThan(320 * 1024 * 1024);
    w.close();
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    const reader = new TraceReader(db);
    expect(reader.frameCount(id)).toBe(2560);
    let seq = 0;
    let ok = 0;
    for (const f of reader.frames(id)) if (f.seq === seq && f.data.length === size && f.data[size - 1] === (seq++ & 0xff)) ok++;
    expect(ok).toBe(2560);
    db.close();
  }, 60_000);

  /** Size of the frames of cycleCapture: a READ reply of 128 KiB, a batch of its own (three 64 KiB pages). */
  const CYCLE_FRAME = 128 * 1024 + 16;
  const MIB = 1024 * 1024;

  /**
   * A full capture through a writer with the recorder's checkpoint thresholds scaled down 16 times
   * (the checkpointer asked every 3 MiB, the writer catching up every 16 MiB): 96 commits of 1 MiB,
   * six WAL cycles, most catch-ups a commit or two after the last request. Returns the WAL's
   * largest size after a commit; the writer is closed and every frame checked.
   */
  function cycleCapture(db: ReturnType<typeof openTraceDb>, file: string): number {
    const w = new TraceWriter(db, { checkpoints: { after: MIB, every: 3 * MIB, walMax: 16 * MIB } });
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    let maxWal = 0;
    for (let c = 0; c < 96; c++) {
      const frames = Array.from({ length: 8 }, (_, k) => {
        const seq = c * 8 + k;
        return { seq, tsNs: BigInt(seq), fwdNs: null, dir: 1 as const, unique: BigInt(seq), opcode: null, error: 0, len: CYCLE_FRAME, data: Buffer.alloc(CYCLE_FRAME, seq & 0xff), writeErrno: 0 };
      });
      w.addFrames(frames);
      w.flush();
      maxWal = Math.max(maxWal, fs.statSync(`${file}-wal`).size);
    }
    w.close();
    const reader = new TraceReader(db);
    expect(reader.frameCount(id)).toBe(768);
    let seq = 0;
    let ok = 0;
    for (const f of reader.frames(id)) if (f.seq === seq && f.data.length === CYCLE_FRAME && f.data[CYCLE_FRAME - 1] === (seq++ & 0xff)) ok++;
    expect(ok).toBe(768);
    return maxWal;
  }

  it('keeps starting the WAL over through a long full capture: each catch-up checkpoint covers the last commits', () => {
    const file = path.join(dir, 'cycles.db');
    const db = openTraceDb(file, { create: true });
    // 16 MiB of frames since the last start-over, up to 4 MiB more committed while the catch-up's
    // PASSIVE copy runs (checkpointer.ts catchUp), and the commit that starts it over, each 128 KiB
    // frame a batch of three 64 KiB pages: 31.3-33.2 MB measured, so under 36 MiB (25.6 MB when the
    // catch-up stopped the writer at once). Trusting a checkpoint that predates the last commits,
    // the WAL started over once and then held all the rest (95 MB).
    expect(cycleCapture(db, file)).toBeLessThan(36 * MIB);
    db.close();
  }, 60_000);

  it('starts the WAL over at each catch-up while another thread keeps reading the trace', async () => {
    const file = path.join(dir, 'readers.db');
    const db = openTraceDb(file, { create: true });
    // Like a live `tui` or the derivation thread between the recorder's commits: read transactions
    // of 20 ms every 50 ms, each holding a snapshot that keeps a PASSIVE checkpoint short of the
    // last commits and the WAL from starting over.
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const reader = new Worker(
      `const { workerData } = require('node:worker_threads');
       const Database = require('better-sqlite3');
       const db = new Database(workerData.file, { readonly: true });
       const stop = new Int32Array(workerData.stop);
       const nap = new Int32Array(new SharedArrayBuffer(4));
       const count = db.prepare('SELECT count(*) FROM batches');
       const begin = db.prepare('BEGIN'), commit = db.prepare('COMMIT');
       while (Atomics.load(stop, 0) === 0) {
         begin.run(); count.get(); Atomics.wait(nap, 0, 0, 20); commit.run(); Atomics.wait(nap, 0, 0, 30);
       }
       db.close();`,
      { eval: true, workerData: { file, stop: stop.buffer } },
    );
    const exited = new Promise((resolve) => reader.once('exit', resolve));
    let maxWal: number;
    try {
      maxWal = cycleCapture(db, file);
    } finally {
      Atomics.store(stop, 0, 1);
      await exited;
    }
    // As in the test above. With PASSIVE catch-ups the WAL started over only when a catch-up
    // happened to fall between two read transactions: 68-72 MB.
    expect(maxWal).toBeLessThan(36 * MIB);
    db.close();
  }, 60_000);

  it("a recording ('deferred') writes through a small page cache and gives the connection its own back at close; 'inline' keeps it", () => {
    const db = openTraceDb(path.join(dir, 'cache.db'), { create: true });
    const own = db.pragma('cache_size', { simple: true }) as number;
    expect(own).toBe(-32 * 1024); // db.ts: a writing connection's
    const inline = new TraceWriter(db);
    expect(db.pragma('cache_size', { simple: true })).toBe(own);
    inline.close();
    const w = new TraceWriter(db, { derive: 'deferred' });
    // Every commit after another connection's drops the whole cache: the smaller it is, the fewer
    // pages each commit gets fresh from the allocator (writer.ts RECORDING_CACHE_KIB).
    expect(db.pragma('cache_size', { simple: true })).toBe(-4 * 1024);
    const id = w.beginSession({ command: ['x'], startedWallNs: 1n, startedMonoNs: 1n });
    // One flush larger than the cache (24 frames of 1 MiB): its first pages go to the WAL early.
    w.addFrames(Array.from({ length: 24 }, (_, seq) => ({ seq, tsNs: BigInt(seq), fwdNs: null, dir: 1 as const, unique: BigInt(seq), opcode: null, error: 0, len: 1 << 20, data: Buffer.alloc(1 << 20, seq), writeErrno: 0 })));
    w.flush();
    w.close();
    expect(db.pragma('cache_size', { simple: true })).toBe(own);
    const reader = new TraceReader(db);
    let ok = 0;
    for (const f of reader.frames(id)) if (f.data.length === 1 << 20 && f.data[(1 << 20) - 1] === (f.seq & 0xff)) ok++;
    expect(ok).toBe(24);
    db.close();
  });

  it('a full capture with the ledger creates no temp files (statement journals stay in memory)', async () => {
    // SQLite reads SQLITE_TMPDIR when it starts, so the writer runs in a child told to use tmp/.
    const { db: dbJs, writer: writerJs, ledger: ledgerJs } = compiledStore();
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp);
    const script = path.join(dir, 'child.mjs');
    fs.writeFileSync(
      script,
      `import { openTraceDb } from ${JSON.stringify(dbJs)};
       import { TraceWriter } from ${JSON.stringify(writerJs)};
       import { Ledger } from ${JSON.stringify(ledgerJs)};
       const db = openTraceDb(process.argv[2], { create: true });
       const w = new TraceWriter(db);
       const session = w.beginSession({ command: ['srv'], startedWallNs: 1n, startedMonoNs: 1000n });
       const ledger = new Ledger(db, session);
       w.onFrames((_s, frames) => ledger.add(frames));
       // READ requests and 64 KiB replies, 16 MiB per flush, as recorder.ts commits a full capture.
       let seq = 0;
       for (let flush = 0; flush < 6; flush++) {
         for (let i = 0; i < 256; i++) {
           const unique = BigInt(2 + seq);
           const req = Buffer.alloc(80);
           req.writeUInt32LE(80, 0); req.writeUInt32LE(15, 4); req.writeBigUInt64LE(unique, 8); req.writeBigUInt64LE(1n, 16);
           const reply = Buffer.alloc(16 + 65536, i);
           reply.writeUInt32LE(reply.length, 0); reply.writeBigUInt64LE(unique, 8);
           w.addFrames([
             { seq, tsNs: 2000n + BigInt(seq), fwdNs: 2001n + BigInt(seq), dir: 0, unique, opcode: 15, error: null, len: 80, data: req, writeErrno: 0 },
             { seq: seq + 1, tsNs: 2002n + BigInt(seq), fwdNs: 2003n + BigInt(seq), dir: 1, unique, opcode: null, error: 0, len: reply.length, data: reply, writeErrno: 0 },
           ]);
           seq += 2;
         }
         w.flush();
       }
       w.close();
       db.close();`,
    );
    // The file exists first: creating its schema (before WAL mode) does use a temp file, once.
    openTraceDb(path.join(dir, 'full.db'), { create: true }).close();
    // SQLite unlinks a temp file right after creating it: watch the directory for any event.
    const created: string[] = [];
    const watcher = fs.watch(tmp, (_event, name) => created.push(String(name)));
    try {
      const child = spawn(process.execPath, [script, path.join(dir, 'full.db')], {
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, SQLITE_TMPDIR: tmp },
      });
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(code).toBe(0);
      await new Promise((r) => setTimeout(r, 50)); // let the last watch events arrive
    } finally {
      watcher.close();
    }
    expect(created).toEqual([]);
    const db = openTraceDb(path.join(dir, 'full.db'), { readonly: true });
    expect(db.prepare("SELECT count(*) FROM requests WHERE state = 'ok'").pluck().get()).toBe(6 * 256);
    db.close();
  }, 60_000);

  it('a writer SIGKILLed mid-recording leaves a readable file holding every committed batch', async () => {
    // The child runs the compiled writer, as `fusetrace record` would.
    const writerJs = compiledStore().writer;
    const file = path.join(dir, 'killed.db');
    const script = path.join(dir, 'child.mjs');
    fs.writeFileSync(
      script,
      `import { openTraceDb } from ${JSON.stringify(compiledStore().db)};
       import { TraceWriter } from ${JSON.stringify(writerJs)};
       const db = openTraceDb(process.argv[2], { create: true });
       const w = new TraceWriter(db);
       w.beginSession({ name: 'killed', command: ['srv'], startedWallNs: 1n, startedMonoNs: 1000n });
       let seq = 0;
       const tick = () => {
         const batch = [];
         for (let i = 0; i < 1000; i++, seq++) {
           const data = Buffer.alloc(seq % 3 === 0 ? 4096 : 80, seq & 0xff);
           batch.push({ seq, tsNs: 1000n + BigInt(seq), fwdNs: null, dir: seq & 1, unique: BigInt(seq) + 2n ** 60n,
             opcode: 15, error: null, len: data.length, data, writeErrno: 0 });
         }
         w.addFrames(batch);
         w.flush();
         process.stdout.write('committed ' + seq + '\\n');
         setImmediate(tick);
       };
       tick();`,
    );
    const child = spawn(process.execPath, [script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let committed = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        child.on('exit', (code, sig) => reject(new Error(`writer child exited early: ${code ?? sig}`)));
        child.stdout!.setEncoding('utf8');
        child.stdout!.on('data', (chunk: string) => {
          for (const m of chunk.matchAll(/committed (\d+)/g)) committed = Math.max(committed, Number(m[1]));
          if (committed >= 20_000) resolve();
        });
      });
    } finally {
      child.removeAllListeners('exit');
      const exited = new Promise((r) => child.once('exit', r));
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      await exited;
    }
    expect(child.signalCode).toBe('SIGKILL');
    expect(fs.existsSync(`${file}-wal`)).toBe(true); // killed before it could checkpoint and remove it

    const db = openTraceDb(file, { readonly: true });
    const reader = new TraceReader(db);
    const s = reader.getSession(reader.resolveSession('killed'))!;
    const count = reader.frameCount(s.id);
    expect(count).toBeGreaterThanOrEqual(committed);
    expect(count % 1000).toBe(0); // whole batches only
    expect(s.frames).toBe(count); // counters committed with their frames
    expect(s.endedMonoNs).toBeNull();
    let expected = 0;
    let bad = 0;
    for (const f of reader.frames(s.id)) {
      if (f.seq !== expected || f.unique !== BigInt(expected) + 2n ** 60n || f.data.length !== (expected % 3 === 0 ? 4096 : 80) || f.data[0] !== (expected & 0xff)) bad++;
      expected++;
    }
    expect(bad).toBe(0);
    expect(expected).toBe(count);
    expect(reader.duration(s)).toEqual({ ns: BigInt(count - 1), ended: false });
    db.close();
  }, 120_000);
});
