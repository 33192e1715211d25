/**
 * Insert throughput of TraceWriter into a fresh trace file, the way `record` drives it: batches of
 * BATCH frames handed to addFrames, which commits on its own size threshold; then the read-back rate.
 * Prints wall-clock and CPU rates: on a shared 2-core machine the CPU rate is the steadier number.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openTraceDb } from '../src/store/db.js';
import { TraceReader } from '../src/store/reader.js';
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
