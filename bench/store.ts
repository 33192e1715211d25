/**
 * Insert throughput of TraceWriter into a fresh trace file, the way `record` drives it: batches of
 * BATCH frames handed to addFrames, which commits on its own size threshold; then the read-back rate.
 * Prints wall-clock and CPU rates: on a shared 2-core machine the CPU rate is the steadier number.
 * Then the JS side of `record` during a 1 GiB full-capture read (benchRecordPath): CPU per GiB.
 * BENCH_STORE_RECORD_ONLY=1 runs only that, BENCH_STORE_RUNS times (default 3).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDurationIndexes, dropDurationIndexes, openTraceDb } from '../src/store/db.js';
import { Ledger } from '../src/store/ledger.js';
import { TraceReader } from '../src/store/reader.js';
import { SeqOrderer, unpackFrames } from '../src/proxy/frames.js';
import { TraceWriter, type FrameRecord } from '../src/store/writer.js';

/** Frames handed to addFrames at once (what one wake-up of the pump's queue delivers). */
const BATCH = 256;

interface Mix {
  name: string;
  frames: number;
  /** Frame size for the i-th frame. */
  size: (i: number) => number;
}

const MIXES: Mix[] = [
  { name: 'metadata 80 B', frames: 1_000_000, size: () => 80 },
  // 70% 80-byte metadata frames (LOOKUP, GETATTR and their replies), 30% 4 KiB data frames (READ/WRITE).
  { name: '70% 80 B + 30% 4 KiB', frames: 500_000, size: (i) => (i % 10 < 7 ? 80 : 4096 + 80) },
  { name: '128 KiB data', frames: 20_000, size: () => 128 * 1024 + 80 },
];

function makeFrames(mix: Mix, count: number): FrameRecord[] {
  // A pool of distinct buffers per size, so SQLite does not see one buffer again and again.
  const out: FrameRecord[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const len = mix.size(i);
    const data = Buffer.allocUnsafe(len);
    data.fill(i & 0xff);
    data.writeUInt32LE(len, 0);
    const dir = (i & 1) as 0 | 1;
    out.push({
      seq: i,
      tsNs: t0 + BigInt(i * 1000),
      fwdNs: t0 + BigInt(i * 1000 + 300),
      dir,
      unique: BigInt(2 + (i >> 1) * 2),
      opcode: dir === 0 ? 1 : null,
      error: dir === 1 ? 0 : null,
      len,
      data,
      writeErrno: 0,
    });
  }
  return out;
}

export async function benchStore(): Promise<void> {
  if (process.env.BENCH_STORE_RECORD_ONLY !== '1') benchMixes();
  const runs = Number(process.env.BENCH_STORE_RUNS ?? 3);
  for (const chunk of [65536, 131072]) {
    const r = Array.from({ length: runs }, () => benchRecordPath({ chunk }));
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    process.stdout.write(
      `record path, 1 GiB read in ${chunk / 1024} KiB replies (unpack + orderer + writer + ledger): ` +
        `CPU median ${med(r.map((x) => x.cpuMs)).toFixed(0)} ms/GiB (runs ${r.map((x) => x.cpuMs.toFixed(0)).join(', ')}; ` +
        `JS thread ${med(r.map((x) => x.jsCpuMs)).toFixed(0)}, session end ${med(r.map((x) => x.endCpuMs)).toFixed(0)}), ` +
        `JS thread wall median ${med(r.map((x) => x.wallMs)).toFixed(0)} ms, session end ${med(r.map((x) => x.endMs)).toFixed(0)} ms, ` +
        `file ${(r[0].fileBytes / 1e6).toFixed(0)} MB\n`,
    );
  }
}

function benchMixes(): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-bench-'));
  try {
    for (const mix of MIXES) {
      const file = path.join(dir, `${mix.name.replace(/\W+/g, '_')}.db`);
      const db = openTraceDb(file, { create: true });
      const writer = new TraceWriter(db);
      writer.beginSession({ command: ['bench'], startedWallNs: 0n, startedMonoNs: 0n });
      // Frames are made in slices outside the timed region: building 1M Buffers costs more than storing them.
      const SLICE = 100_000;
      let elapsed = 0n;
      let cpuUs = 0;
      let bytes = 0;
      for (let done = 0; done < mix.frames; done += SLICE) {
        const frames = makeFrames(mix, Math.min(SLICE, mix.frames - done)).map((f) => ({ ...f, seq: f.seq + done }));
        for (const f of frames) bytes += f.len;
        const t = process.hrtime.bigint();
        const c = process.cpuUsage();
        for (let i = 0; i < frames.length; i += BATCH) writer.addFrames(frames.slice(i, i + BATCH));
        writer.flush();
        const dc = process.cpuUsage(c);
        cpuUs += dc.user + dc.system;
        elapsed += process.hrtime.bigint() - t;
      }
      writer.close();
      const t = process.hrtime.bigint();
      db.pragma('wal_checkpoint(TRUNCATE)');
      const checkpoint = Number(process.hrtime.bigint() - t) / 1e9;
      db.close();
      const secs = Number(elapsed) / 1e9;
      const size = fs.statSync(file).size;
      process.stdout.write(
        `write ${mix.name.padEnd(22)} ${mix.frames.toString().padStart(8)} frames  ` +
          `${Math.round(mix.frames / secs).toLocaleString('en-US').padStart(9)} frames/s  ` +
          `${(bytes / secs / 1e6).toFixed(1).padStart(7)} MB/s  ` +
          `(${secs.toFixed(2)} s wall, ${(cpuUs / 1e6).toFixed(2)} s CPU = ${Math.round(mix.frames / (cpuUs / 1e6)).toLocaleString('en-US')} frames/CPU-s; final checkpoint ${checkpoint.toFixed(2)} s, file ${(size / 1e6).toFixed(0)} MB)\n`,
      );

      // Reading back in seq order, as show/replay/export do (the page cache is warm: this is the CPU cost).
      const rdb = openTraceDb(file, { readonly: true });
      const reader = new TraceReader(rdb);
      const r0 = process.hrtime.bigint();
      let n = 0;
      for (const f of reader.frames(1)) n += f.data.length >= 0 ? 1 : 0;
      const rsecs = Number(process.hrtime.bigint() - r0) / 1e9;
      rdb.close();
      process.stdout.write(
        `read  ${mix.name.padEnd(22)} ${n.toString().padStart(8)} frames  ` +
          `${Math.round(n / rsecs).toLocaleString('en-US').padStart(9)} frames/s  ` +
          `${(bytes / rsecs / 1e6).toFixed(1).padStart(7)} MB/s\n`,
      );
      fs.rmSync(file, { force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** FUSE opcodes and sizes of the record-path workload (include/uapi/linux/fuse.h). */
const OP_READ = 15;
const IN_HEADER = 40;
const READ_IN = 40;
const OUT_HEADER = 16;
/** native/frame_queue.h FrameHeader, as src/proxy/frames.ts reads it. */
const PACKED_HEADER = 56;

/**
 * Fills `buf` with `pairs` READ requests and their `chunk`-byte replies packed the way the pump's
 * queue packs them (FrameHeader + frame padded to 8), starting at `seq`/`unique`. Returns the length.
 */
function packReadPairs(buf: Buffer, pairs: number, chunk: number, seq: number, unique: bigint, t: bigint, offset: bigint): number {
  let at = 0;
  const put = (dir: 0 | 1, s: number, u: bigint, code: number, frameLen: number, ts: bigint): number => {
    buf.writeBigUInt64LE(BigInt(s), at);
    buf.writeBigUInt64LE(ts, at + 8);
    buf.writeBigUInt64LE(ts + 2000n, at + 16);
    buf.writeBigUInt64LE(u, at + 24);
    buf.writeUInt32LE(frameLen, at + 32);
    buf.writeUInt32LE(frameLen, at + 36);
    buf.writeInt32LE(code, at + 40);
    buf.writeInt32LE(0, at + 44);
    buf[at + 48] = dir;
    buf[at + 49] = 0;
    const dataAt = at + PACKED_HEADER;
    at = dataAt + ((frameLen + 7) & ~7);
    return dataAt;
  };
  for (let i = 0; i < pairs; i++) {
    const u = unique + BigInt(2 * i);
    const ts = t + BigInt(i * 60_000);
    let d = put(0, seq + 2 * i, u, OP_READ, IN_HEADER + READ_IN, ts);
    buf.writeUInt32LE(IN_HEADER + READ_IN, d);
    buf.writeUInt32LE(OP_READ, d + 4);
    buf.writeBigUInt64LE(u, d + 8);
    buf.writeBigUInt64LE(2n, d + 16); // nodeid
    buf.writeUInt32LE(4242, d + 32); // pid
    buf.writeBigUInt64LE(1n, d + IN_HEADER); // fh
    buf.writeBigUInt64LE(offset + BigInt(i * chunk), d + IN_HEADER + 8);
    buf.writeUInt32LE(chunk, d + IN_HEADER + 16);
    d = put(1, seq + 2 * i + 1, u, 0, OUT_HEADER + chunk, ts + 50_000n);
    buf.writeUInt32LE(OUT_HEADER + chunk, d);
    buf.writeInt32LE(0, d + 4);
    buf.writeBigUInt64LE(u, d + 8);
  }
  return at;
}

/** CPU time of the calling thread, ns: the first field of /proc/thread-self/schedstat (then run-queue wait, timeslices). */
function threadCpuNs(): number {
  return Number(fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]);
}

/**
 * The JS side of `record` during a full-capture sequential read, without the mount: packed drains
 * of READ requests and `chunk`-byte replies go through what recorder.ts's drainOnce does
 * (unpackFrames, SeqOrderer, TraceWriter.addFrames with the Ledger observing each flush, a flush
 * per 16 MiB drained), then the session end (final flush, ledger finish, duration indexes).
 * Returns CPU ms per GiB of reply data, of the whole process (cpuMs) and of the calling thread
 * alone (jsCpuMs: the recorder's event loop), the session end's CPU and the wall times.
 * `pragmas` run on the writing connection first, to try a setting without editing db.ts.
 */
export function benchRecordPath(
  opts: { gib?: number; chunk?: number; pairsPerDrain?: number; dir?: string; pragmas?: string[] } = {},
): { cpuMs: number; jsCpuMs: number; endCpuMs: number; wallMs: number; endMs: number; fileBytes: number } {
  const gib = opts.gib ?? 1;
  const chunk = opts.chunk ?? 65536;
  const pairsPerDrain = opts.pairsPerDrain ?? 64;
  const totalPairs = Math.round((gib * 2 ** 30) / chunk);
  const dir = fs.mkdtempSync(path.join(opts.dir ?? os.tmpdir(), 'fusetrace-bench-'));
  try {
    const file = path.join(dir, 'record-path.db');
    const db = openTraceDb(file, { create: true });
    for (const p of opts.pragmas ?? []) db.pragma(p);
    dropDurationIndexes(db);
    const writer = new TraceWriter(db);
    const session = writer.beginSession({ command: ['bench'], startedWallNs: 0n, startedMonoNs: 1_000_000n });
    const ledger = new Ledger(db, session);
    writer.onFrames((_s, frames) => ledger.add(frames));
    const orderer = new SeqOrderer();
    // A few regions, reused like the pump's recycled ones; packing them is not timed.
    const regionBytes = pairsPerDrain * (2 * PACKED_HEADER + IN_HEADER + READ_IN + ((OUT_HEADER + chunk + 7) & ~7));
    const regions = Array.from({ length: 8 }, () => Buffer.alloc(regionBytes));
    let cpuUs = 0;
    let threadNs = 0;
    let wall = 0n;
    let drainedBytes = 0;
    let seq = 0;
    let unique = 2n;
    let t = 2_000_000n;
    for (let done = 0, r = 0; done < totalPairs; r++) {
      const pairs = Math.min(pairsPerDrain, totalPairs - done);
      const region = regions[r % regions.length];
      const n = packReadPairs(region, pairs, chunk, seq, unique, t, BigInt(done * chunk));
      const c = process.cpuUsage();
      const tc = threadCpuNs();
      const w = process.hrtime.bigint();
      // drainOnce
      const frames = unpackFrames(region.subarray(0, n), 2 * pairs);
      const ready = orderer.push(frames, seq + 2 * pairs);
      writer.addFrames(ready);
      drainedBytes += n;
      if (drainedBytes >= 16 << 20) {
        writer.flush();
        drainedBytes = 0;
      }
      const dc = process.cpuUsage(c);
      cpuUs += dc.user + dc.system;
      threadNs += threadCpuNs() - tc;
      wall += process.hrtime.bigint() - w;
      done += pairs;
      seq += 2 * pairs;
      unique += BigInt(2 * pairs);
      t += BigInt(pairs * 60_000);
    }
    // The session end, as recorder.ts's finish() does it.
    const c = process.cpuUsage();
    const tc = threadCpuNs();
    const w = process.hrtime.bigint();
    writer.flush();
    writer.updateSession({ endedMonoNs: t, endReason: 'unmount', exitStatus: 0 });
    writer.close();
    ledger.finish({ endReason: 'unmount' });
    createDurationIndexes(db);
    db.close();
    const dc = process.cpuUsage(c);
    const endUs = dc.user + dc.system;
    threadNs += threadCpuNs() - tc;
    const endWall = Number(process.hrtime.bigint() - w) / 1e6;
    let fileBytes = 0;
    for (const p of [file, `${file}-wal`]) fileBytes += fs.existsSync(p) ? fs.statSync(p).size : 0;
    return {
      cpuMs: (cpuUs + endUs) / 1000 / gib,
      jsCpuMs: threadNs / 1e6 / gib,
      endCpuMs: endUs / 1000,
      wallMs: Number(wall) / 1e6 + endWall,
      endMs: endWall,
      fileBytes,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
