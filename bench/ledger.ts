/**
 * Throughput of the request ledger, the way `record` drives it: TraceWriter batches with the ledger
 * as onFrames observer (frames + requests rows in one transaction per flush), and the ledger alone
 * (Ledger.add on batches inside a transaction), and rebuildLedger over the stored frames.
 * The workload is a metadata + data mix with paths: LOOKUP/GETATTR/OPEN/READ/WRITE/RELEASE, a few
 * RENAMEs and FORGETs, one request in 500 interrupted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDurationIndexes, dropDurationIndexes, openTraceDb } from '../src/store/db.js';
import { TraceWriter, type FrameRecord } from '../src/store/writer.js';
import { Ledger, rebuildLedger } from '../src/store/ledger.js';

/** Frames per flush: what 100 ms of a busy recording delivers. */
const BATCH = 8192;
const FRAMES = 1_000_000;

function reqFrame(seq: number, t: bigint, opcode: number, unique: bigint, nodeid: bigint, args: Buffer, pid = 4242): FrameRecord {
  const data = Buffer.alloc(40 + args.length);
  data.writeUInt32LE(data.length, 0);
  data.writeUInt32LE(opcode, 4);
  data.writeBigUInt64LE(unique, 8);
  data.writeBigUInt64LE(nodeid, 16);
  data.writeUInt32LE(pid, 32);
  args.copy(data, 40);
  return { seq, tsNs: t, fwdNs: t + 300n, dir: 0, unique, opcode, error: null, len: data.length, data, writeErrno: 0 };
}

function replyFrame(seq: number, t: bigint, unique: bigint, error: number, body: Buffer): FrameRecord {
  const data = Buffer.alloc(16 + body.length);
  data.writeUInt32LE(data.length, 0);
  data.writeInt32LE(error, 4);
  data.writeBigUInt64LE(unique, 8);
  body.copy(data, 16);
  return { seq, tsNs: t, fwdNs: t + 300n, dir: 1, unique, opcode: null, error, len: data.length, data, writeErrno: 0 };
}

/** About `count` frames of a plausible workload (requests and their replies interleaved 2 deep). */
export function workload(count: number): FrameRecord[] {
  const out: FrameRecord[] = [];
  let seq = 0;
  let t = 1_000_000n;
  let unique = 2n;
  const entry = (id: bigint) => {
    const b = Buffer.alloc(128);
    b.writeBigUInt64LE(id, 0);
    return b;
  };
  const name = (s: string) => Buffer.from(`${s}\0`);
  const readIn = Buffer.alloc(40);
  readIn.writeBigUInt64LE(7n, 0);
  const data4k = Buffer.alloc(4096);
  const getattrIn = Buffer.alloc(16);
  const attrOut = Buffer.alloc(104);
  // Latencies spread over two orders of magnitude (xorshift32, deterministic): real durations are
  // scattered, which is what the requests table's dur_ns indexes pay for.
  let x = 0x2545f491;
  const jitter = (base: number): bigint => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return BigInt(Math.round(base * (0.3 + ((x >>> 0) % 10_000) / 1000)));
  };
  let i = 0;
  while (out.length < count) {
    const dir = BigInt(2 + (i % 50));
    const file = BigInt(1000 + (i % 5000));
    const u = unique;
    unique += 2n;
    t += 2000n;
    switch (i % 10) {
      case 0:
      case 1:
        out.push(reqFrame(seq++, t, 1, u, dir === 2n ? 1n : dir, name(`file-${i % 5000}.dat`)));
        out.push(replyFrame(seq++, t + jitter(900), u, 0, entry(file)));
        break;
      case 2:
      case 3:
      case 4:
        out.push(reqFrame(seq++, t, 3, u, file, getattrIn));
        out.push(replyFrame(seq++, t + jitter(700), u, 0, attrOut));
        break;
      case 5:
      case 6:
      case 7:
        out.push(reqFrame(seq++, t, 15, u, file, readIn));
        if (i % 500 === 5) out.push(reqFrame(seq++, t + 100n, 36, u | 1n, 0n, Buffer.from(new BigUint64Array([u]).buffer), 0));
        out.push(replyFrame(seq++, t + jitter(20_000), u, i % 500 === 5 ? -4 : 0, data4k));
        break;
      case 8:
        out.push(reqFrame(seq++, t, 16, u, file, Buffer.concat([readIn, data4k])));
        out.push(replyFrame(seq++, t + jitter(5000), u, 0, Buffer.alloc(8)));
        break;
      case 9:
        if (i % 1000 === 9) {
          const rn = Buffer.concat([Buffer.from(new BigUint64Array([dir]).buffer), name(`file-${i % 5000}.dat`), name(`moved-${i}.dat`)]);
          out.push(reqFrame(seq++, t, 12, u, dir, rn));
          out.push(replyFrame(seq++, t + jitter(3000), u, 0, Buffer.alloc(0)));
        } else if (i % 1000 === 19) {
          out.push(reqFrame(seq++, t, 2, u, file, Buffer.from(new BigUint64Array([1n]).buffer), 0));
        } else {
          out.push(reqFrame(seq++, t, 18, u, file, readIn));
          out.push(replyFrame(seq++, t + jitter(800), u, 0, Buffer.alloc(0)));
        }
        break;
    }
    i++;
  }
  return out;
}

function rate(n: number, ns: bigint): string {
  const secs = Number(ns) / 1e9;
  return `${Math.round(n / secs).toLocaleString('en-US').padStart(9)} frames/s (${secs.toFixed(2)} s)`;
}

export async function benchLedger(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-bench-ledger-'));
  try {
    const frames = workload(FRAMES);
    const n = frames.length;

    // 1. The ledger alone: add() per batch inside a transaction (the frames are not stored).
    {
      const db = openTraceDb(path.join(dir, 'alone.db'), { create: true });
      dropDurationIndexes(db); // as record does while it records (schema.ts DURATION_INDEX_SQL)
      const writer = new TraceWriter(db);
      const session = writer.beginSession({ command: ['bench'], startedWallNs: 0n, startedMonoNs: 0n });
      const ledger = new Ledger(db, session);
      const add = db.transaction((batch: FrameRecord[]) => ledger.add(batch));
      const t = process.hrtime.bigint();
      for (let i = 0; i < n; i += BATCH) add(frames.slice(i, i + BATCH));
      const el = process.hrtime.bigint() - t;
      const rows = db.prepare('SELECT count(*) FROM requests').pluck().get() as number;
      process.stdout.write(`ledger.add alone          ${n.toString().padStart(8)} frames  ${rate(n, el)}  ${rows} rows\n`);
      writer.close();
      db.close();
    }

    // 2a. For comparison: the writer alone on the same frames.
    {
      const db = openTraceDb(path.join(dir, 'writer.db'), { create: true });
      const writer = new TraceWriter(db);
      writer.beginSession({ command: ['bench'], startedWallNs: 0n, startedMonoNs: 0n });
      const t = process.hrtime.bigint();
      for (let i = 0; i < n; i += BATCH) {
        writer.addFrames(frames.slice(i, i + BATCH));
        writer.flush();
      }
      const el = process.hrtime.bigint() - t;
      process.stdout.write(`writer alone              ${n.toString().padStart(8)} frames  ${rate(n, el)}\n`);
      writer.close();
      db.close();
    }

    // 2b. As `record` runs it: TraceWriter + ledger observer, one transaction per flush.
    const file = path.join(dir, 'record.db');
    let session = 0;
    {
      const db = openTraceDb(file, { create: true });
      dropDurationIndexes(db); // as record does while it records
      const writer = new TraceWriter(db);
      session = writer.beginSession({ command: ['bench'], startedWallNs: 0n, startedMonoNs: 0n });
      const ledger = new Ledger(db, session);
      writer.onFrames((_s, batch) => ledger.add(batch));
      // Per quarter too: a rate that falls as the table grows points at random-order index inserts.
      const quarters: string[] = [];
      const t = process.hrtime.bigint();
      let tq = t;
      for (let i = 0; i < n; i += BATCH) {
        writer.addFrames(frames.slice(i, i + BATCH));
        writer.flush();
        if (Math.floor((i + BATCH) / (n / 4)) > Math.floor(i / (n / 4)) || i + BATCH >= n) {
          const now = process.hrtime.bigint();
          quarters.push(Math.round((n / 4) / (Number(now - tq) / 1e9)).toLocaleString('en-US'));
          tq = now;
        }
      }
      const el = process.hrtime.bigint() - t;
      process.stdout.write(`writer + ledger           ${n.toString().padStart(8)} frames  ${rate(n, el)}  by quarter: ${quarters.slice(0, 4).join(' / ')}\n`);
      writer.updateSession({ endReason: 'unmount', endedMonoNs: frames[n - 1].tsNs + 1n });
      ledger.finish({ endReason: 'unmount' });
      writer.close();
      const ti = process.hrtime.bigint();
      createDurationIndexes(db);
      const idx = Number(process.hrtime.bigint() - ti) / 1e9;
      process.stdout.write(`duration indexes rebuilt at the end: ${idx.toFixed(2)} s\n`);
      db.close();
    }

    // 3. rebuildLedger from the stored frames.
    {
      const db = openTraceDb(file);
      const t = process.hrtime.bigint();
      const done = rebuildLedger(db, session);
      const el = process.hrtime.bigint() - t;
      process.stdout.write(`rebuildLedger             ${done.toString().padStart(8)} frames  ${rate(done, el)}\n`);
      db.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
