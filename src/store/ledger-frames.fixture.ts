/**
 * Hand-made FUSE frame sequences for the ledger and export tests: the bytes the kernel and a
 * server would exchange (include/uapi/linux/fuse.h layouts), fed through a real TraceWriter into a
 * real SQLite trace file, so the rows come out of the same path `record` uses.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Database } from 'better-sqlite3';
import { openTraceDb } from './db.js';
import { TraceWriter, type FrameRecord } from './writer.js';
import { Ledger, type EndReason } from './ledger.js';

export const START_MONO = 5_000_000_000n;

export const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
export const u64 = (v: bigint | number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
export const name = (s: string): Buffer => Buffer.from(`${s}\0`);

/** fuse_entry_out (128 bytes) naming nodeid. */
export function entryOut(nodeid: bigint | number): Buffer {
  const b = Buffer.alloc(128);
  b.writeBigUInt64LE(BigInt(nodeid), 0);
  b.writeBigUInt64LE(1n, 8); // generation
  return b;
}
/** fuse_open_out { fh, open_flags, backing_id }. */
export function openOut(fh: bigint | number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(fh), 0);
  return b;
}
/** A READDIRPLUS reply body: fuse_direntplus entries padded to 8 bytes. */
export function direntplus(entries: Array<[string, bigint | number]>): Buffer {
  const parts: Buffer[] = [];
  let off = 0n;
  for (const [n, id] of entries) {
    const nm = Buffer.from(n);
    const size = (128 + 24 + nm.length + 7) & ~7;
    const b = Buffer.alloc(size);
    entryOut(id).copy(b, 0);
    b.writeBigUInt64LE(BigInt(id), 128); // ino
    b.writeBigUInt64LE(++off, 136);
    b.writeUInt32LE(nm.length, 144);
    b.writeUInt32LE(8, 148); // DT_REG
    nm.copy(b, 152);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

export interface ReqOpts {
  pid?: number;
  uid?: number;
  gid?: number;
  /** Time step before this frame, ns (default 1000). */
  dt?: number;
  /** errno of the forwarding send (e.g. EMSGSIZE: not forwarded, fwdNs null). */
  writeErrno?: number;
}
export interface ReplyOpts {
  writeErrno?: number;
  dt?: number;
  /** Not forwarded (fwdNs null). */
  unforwarded?: boolean;
}

/** Builds a frame sequence with increasing seq and time. */
export class Script {
  readonly frames: FrameRecord[] = [];
  private t = START_MONO;

  private push(f: Omit<FrameRecord, 'seq' | 'tsNs' | 'fwdNs'>, dt: number, forwarded = true): FrameRecord {
    this.t += BigInt(dt);
    const rec: FrameRecord = { seq: this.frames.length, tsNs: this.t, fwdNs: forwarded ? this.t + 100n : null, ...f };
    this.frames.push(rec);
    return rec;
  }

  /** A kernel->server request frame. */
  req(opcode: number, unique: bigint | number, nodeid: bigint | number, body: Buffer[] = [], o: ReqOpts = {}): FrameRecord {
    const args = Buffer.concat(body);
    const h = Buffer.alloc(40);
    h.writeUInt32LE(40 + args.length, 0);
    h.writeUInt32LE(opcode, 4);
    h.writeBigUInt64LE(BigInt(unique), 8);
    h.writeBigUInt64LE(BigInt(nodeid), 16);
    h.writeUInt32LE(o.uid ?? 1000, 24);
    h.writeUInt32LE(o.gid ?? 1000, 28);
    h.writeUInt32LE(o.pid ?? 4242, 32);
    const data = Buffer.concat([h, args]);
    return this.push(
      { dir: 0, unique: BigInt(unique), opcode, error: null, len: data.length, data, writeErrno: o.writeErrno ?? 0 },
      o.dt ?? 1000,
      !o.writeErrno,
    );
  }

  /** A server->kernel reply (or notify with unique 0 and error = notify code). */
  reply(unique: bigint | number, error: number, body: Buffer[] = [], o: ReplyOpts = {}): FrameRecord {
    const args = Buffer.concat(body);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(16 + args.length, 0);
    h.writeInt32LE(error, 4);
    h.writeBigUInt64LE(BigInt(unique), 8);
    const data = Buffer.concat([h, args]);
    return this.push(
      { dir: 1, unique: BigInt(unique), opcode: null, error, len: data.length, data, writeErrno: o.writeErrno ?? 0 },
      o.dt ?? 1000,
      !o.unforwarded,
    );
  }

  /** A piece of a split reply as native/pump.cc records it: not forwarded (EBADMSG), header fields zeroed. */
  piece(bytes: number): FrameRecord {
    const data = Buffer.alloc(bytes, 0x5a);
    return this.push({ dir: 1, unique: 0n, opcode: null, error: 0, len: bytes, data, writeErrno: 74 }, 10, false);
  }

  /** FUSE_INTERRUPT for target, with the modern unique (target | FUSE_INT_REQ_BIT). */
  interrupt(target: bigint | number, o: ReqOpts = {}): FrameRecord {
    return this.req(36, BigInt(target) | 1n, 0, [u64(target)], { pid: 0, uid: 0, gid: 0, ...o });
  }
}

/** A session exercising every state, paths, and late frames that reach back past the memory window. */
export function busyScript(): Script {
  const ENOENT = 2;
  const EINTR = 4;
  const EAGAIN = 11;
  const readIn = (fh: number) => [u64(fh), u64(0), u32(4096), u32(0), u64(0), u32(0), u32(0)];
  const s = new Script();
  s.req(26, 2, 0, [u32(7), u32(45), u32(0), u32(0)], { pid: 0 });
  s.reply(2, 0, [u32(7), u32(45), Buffer.alloc(56)]);
  let u = 4;
  for (let i = 0; i < 60; i++) {
    const lu = u;
    s.req(1, lu, 1, [name(`f${i % 7}`)]);
    s.reply(lu, i % 5 === 0 ? -ENOENT : 0, i % 5 === 0 ? [] : [entryOut(10 + (i % 7))]);
    u += 2;
    const ru = u;
    s.req(15, ru, 10 + (i % 7), readIn(3), { pid: i % 3 === 0 ? 0 : 300 });
    if (i % 4 === 1) s.interrupt(ru);
    if (i % 6 === 2) s.reply(ru, -EINTR);
    else if (i % 9 === 3) s.reply(ru, 0, [], { writeErrno: ENOENT });
    else if (i % 11 !== 4) s.reply(ru, 0, [Buffer.alloc(64)]);
    if (i % 4 === 1) s.reply(ru | 1, -EAGAIN, [], { writeErrno: i % 8 === 1 ? ENOENT : 0 });
    if (i % 10 === 7) s.req(2, u + 1000, 10 + (i % 7), [u64(1)]);
    if (i % 13 === 5) s.reply(0, 3, [u64(1), u32(2), u32(0), Buffer.from('f1\0')]);
    u += 2;
  }
  // A split reply the proxy answered EIO, with its pieces.
  s.req(15, 9000, 10, readIn(3));
  s.reply(9000, 0, [Buffer.alloc(84)], { writeErrno: 74, unforwarded: true });
  s.piece(1000);
  s.reply(9000, -5);
  // Late frames for requests finished long ago (beyond a small memory window).
  s.reply(6, 0, [Buffer.alloc(64)], { writeErrno: ENOENT });
  s.interrupt(8);
  s.reply(9, -EAGAIN, [], { writeErrno: ENOENT });
  s.reply(12345, 0, []);
  return s;
}

/** A fresh trace file in a temp dir; `close()` removes it. */
export function tempTrace(): { db: Database; file: string; dir: string; close: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-ledger-'));
  const file = path.join(dir, 'trace.db');
  const db = openTraceDb(file, { create: true });
  return {
    db,
    file,
    dir,
    close: () => {
      if (db.open) db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Records a script the way `record` does: TraceWriter with the ledger as its onFrames observer,
 * frames handed over in batches of `batch`, then the session end.
 */
export function recordScript(
  db: Database,
  script: Script,
  o: { batch?: number; endReason?: EndReason; procs?: Array<[number, string]>; recentMax?: number } = {},
): { session: number; ledger: Ledger } {
  const writer = new TraceWriter(db);
  const session = writer.beginSession({ command: ['testfs', '/mnt'], startedWallNs: 1n, startedMonoNs: START_MONO });
  const ledger = new Ledger(db, session, { recentMax: o.recentMax });
  writer.onFrames((_s, frames) => ledger.add(frames));
  for (const [pid, comm] of o.procs ?? []) writer.addProc(pid, comm);
  const batch = o.batch ?? 1_000_000;
  for (let i = 0; i < script.frames.length; i += batch) {
    writer.addFrames(script.frames.slice(i, i + batch));
    writer.flush();
  }
  if (o.endReason) {
    writer.updateSession({ endReason: o.endReason, endedMonoNs: script.frames.length ? script.frames[script.frames.length - 1].tsNs + 1000n : START_MONO });
    ledger.finish({ endReason: o.endReason });
  } else {
    ledger.finish({});
  }
  writer.close();
  return { session, ledger };
}

/** The requests rows of a session, by seq, with 64-bit columns as bigint. */
export function rows(db: Database, session: number): Array<Record<string, unknown>> {
  return db.prepare('SELECT * FROM requests WHERE session = ? ORDER BY seq').safeIntegers(true).all(session) as Array<
    Record<string, unknown>
  >;
}

/** The row of the request frame with this seq, numbers made plain for assertions. */
export function row(db: Database, session: number, seq: number): Record<string, unknown> {
  const r = db.prepare('SELECT * FROM requests WHERE session = ? AND seq = ?').get(session, seq) as Record<string, unknown> | undefined;
  if (!r) throw new Error(`no requests row for seq ${seq}`);
  return r;
}

let traces: Array<() => void> = [];
/** tempTrace() that closeTraces() (run it in afterEach) removes. */
export function trace(): ReturnType<typeof tempTrace> {
  const t = tempTrace();
  traces.push(t.close);
  return t;
}
export function closeTraces(): void {
  for (const c of traces) c();
  traces = [];
}
