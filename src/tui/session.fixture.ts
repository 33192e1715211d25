/**
 * A small recorded-looking session for the TUI tests: real frames built with the protocol codec's
 * builders (buildRequest/buildReply), written through TraceWriter into a real SQLite trace file,
 * and the `requests` rows derived from them by the real ledger (rebuildLedger).
 *
 * What it holds (uniques): INIT (2); LOOKUP "data.txt" in the root -> nodeid 7 (4); OPEN 7 -> fh 3
 * (6); a READ on fh 3 (8) interrupted by FUSE_INTERRUPT (9 = 8 | FUSE_INT_REQ_BIT) and answered
 * EINTR; a GETATTR answered ENOENT (10); then LOOKUPs of file0..file{N-1} (one of them slow);
 * a FORGET; and a last READ on fh 3 never answered before the unmount (aborted).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildReply, buildRequest, Opcode } from '../protocol/index.js';
import { openTraceDb } from '../store/db.js';
import { rebuildLedger } from '../store/ledger.js';
import { TraceWriter, type FrameRecord } from '../store/writer.js';

export const START_MONO = 7_000_000_000n;
const EINTR = 4;
const ENOENT = 2;

export interface TuiFixture {
  file: string;
  dir: string;
  session: number;
  /** Uniques of the interesting requests. */
  uniques: { lookup: bigint; open: bigint; interruptedRead: bigint; getattr: bigint; abortedRead: bigint; slowLookup: bigint };
  remove: () => void;
}

/** Writes the fixture session into a fresh trace file in a temp dir (`remove()` deletes it). */
export function writeTuiFixture(opts: { lookups?: number; name?: string; readdirplus?: boolean } = {}): TuiFixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-tui-'));
  const file = path.join(dir, 'trace.db');
  const db = openTraceDb(file, { create: true });
  const frames: FrameRecord[] = [];
  let t = START_MONO;
  const push = (dir: 0 | 1, data: Buffer, dt: number, extra: { opcode?: number; error?: number; writeErrno?: number } = {}) => {
    t += BigInt(dt);
    frames.push({
      seq: frames.length,
      tsNs: t,
      fwdNs: t + 2_000n,
      dir,
      unique: data.readBigUInt64LE(8),
      opcode: dir === 0 ? (extra.opcode ?? null) : null,
      error: dir === 1 ? (extra.error ?? 0) : null,
      len: data.length,
      data,
      writeErrno: extra.writeErrno ?? 0,
    });
  };
  const req = (opcode: number, unique: bigint, spec: Partial<Parameters<typeof buildRequest>[0]>, dt = 10_000) =>
    push(0, buildRequest({ opcode, unique, uid: 1000, gid: 1000, pid: 4242, ...spec }), dt, { opcode });
  const rep = (unique: bigint, opcode: number, spec: Partial<Parameters<typeof buildReply>[0]>, dt = 20_000) =>
    push(1, buildReply({ unique, opcode, ...spec }), dt, { error: spec.error ?? 0 });

  req(Opcode.INIT!, 2n, { nodeid: 0n, pid: 0, arg: { major: 7, minor: 45, max_readahead: 131072, flags: 0 } }, 0);
  rep(2n, Opcode.INIT!, { args: [{ major: 7, minor: 45, max_readahead: 131072, max_write: 131072, max_background: 12, congestion_threshold: 9 }] });
  req(Opcode.LOOKUP!, 4n, { nodeid: 1n, names: ['data.txt'] });
  rep(4n, Opcode.LOOKUP!, { args: [{ nodeid: 7n, generation: 1n, attr: { ino: 7n, size: 4096n, mode: 0o100644, nlink: 1 } }] });
  req(Opcode.OPEN!, 6n, { nodeid: 7n, arg: { flags: 0x8000 } });
  rep(6n, Opcode.OPEN!, { args: [{ fh: 3n, open_flags: 0 }] });
  // The reader gets a signal 2 ms into the READ: the kernel queues FUSE_INTERRUPT (unique | 1),
  // the server gives up and answers the READ with EINTR.
  req(Opcode.READ!, 8n, { nodeid: 7n, arg: { fh: 3n, offset: 0n, size: 4096, flags: 0x8000 } }, 1_000_000);
  req(Opcode.INTERRUPT!, 9n, { nodeid: 0n, pid: 0, uid: 0, gid: 0, arg: { unique: 8n } }, 2_000_000);
  rep(8n, Opcode.READ!, { error: -EINTR }, 200_000);
  req(Opcode.GETATTR!, 10n, { nodeid: 7n, arg: { getattr_flags: 0, fh: 0n } });
  rep(10n, Opcode.GETATTR!, { error: -ENOENT });
  const n = opts.lookups ?? 40;
  let unique = 12n;
  let slowLookup = 0n;
  for (let i = 0; i < n; i++) {
    req(Opcode.LOOKUP!, unique, { nodeid: 1n, names: [`file${i}`], pid: 5000 + (i % 3) });
    const slow = i === Math.floor(n / 2);
    if (slow) slowLookup = unique;
    rep(unique, Opcode.LOOKUP!, { args: [{ nodeid: BigInt(100 + i), generation: 1n, attr: { ino: BigInt(100 + i), mode: 0o100644 } }] }, slow ? 25_000_000 : 30_000 + i * 1000);
    unique += 2n;
  }
  if (opts.readdirplus) {
    // `ls -l`: READDIRPLUS hands out nodeid 300 for "listed.txt"; a GETATTR on it follows.
    req(Opcode.READDIRPLUS!, unique, { nodeid: 1n, arg: { fh: 0n, offset: 0n, size: 4096 } });
    rep(unique, Opcode.READDIRPLUS!, {
      dirents: [{ ino: 300n, off: 1n, type: 8, name: 'listed.txt', entry: { nodeid: 300n, generation: 1n, attr: { ino: 300n, mode: 0o100644 } } }],
    });
    unique += 2n;
    req(Opcode.GETATTR!, unique, { nodeid: 300n, arg: { getattr_flags: 0, fh: 0n } });
    rep(unique, Opcode.GETATTR!, { args: [{ attr_valid: 1n, attr: { ino: 300n, mode: 0o100644 } }] });
    unique += 2n;
  }
  req(Opcode.FORGET!, unique, { nodeid: 7n, pid: 0, arg: { nlookup: 1n } });
  unique += 2n;
  const abortedRead = unique;
  req(Opcode.READ!, unique, { nodeid: 7n, arg: { fh: 3n, offset: 4096n, size: 4096 } });

  const writer = new TraceWriter(db);
  const session = writer.beginSession({ name: opts.name ?? 'fixture', command: ['interrupt_fs', '-f', '/mnt/fx'], mountpoint: '/mnt/fx', startedWallNs: 1_763_700_000_000_000_000n, startedMonoNs: START_MONO });
  writer.addProc(4242, 'cat');
  for (const pid of [5000, 5001, 5002]) writer.addProc(pid, 'find');
  writer.addFrames(frames);
  writer.updateSession({ kernelMajor: 7, kernelMinor: 45, serverMajor: 7, serverMinor: 45, maxWrite: 131072, endedMonoNs: t + 5_000_000n, endReason: 'unmount', exitStatus: 0 });
  writer.close();
  rebuildLedger(db, session);
  db.close();
  return {
    file,
    dir,
    session,
    uniques: { lookup: 4n, open: 6n, interruptedRead: 8n, getattr: 10n, abortedRead, slowLookup },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
