// Replay at CI scale (issue 16): bounded memory on a large session, concurrent writers and readers
// replayed without false divergences and a race told apart from a regression, a write-heavy
// session on a block-allocating file system (ext4 on a loop device) replayed twice with 0
// divergences. Real `fusetrace record` sessions of libfuse's passthrough_ll, replayed by the real
// CLI; every mount, loop device and process is registered for cleanup and removed by what we
// started, never by name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeFileSync, writeSync, ftruncateSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry, unmount, waitExit } from './helpers/mount.js';
import { buildCli, CLI, recorder } from './helpers/record.js';
import { runMeasured } from './helpers/measure.js';
import { openTraceDb } from '../src/store/db.js';
import { cloneSession } from '../src/store/requests.fixture.js';
import { TraceReader } from '../src/store/reader.js';
import type { FrameRecord } from '../src/store/writer.js';
import { Opcode, layout, structs } from '../src/protocol/index.js';

const reg = new CleanupRegistry();
afterAll(() => reg.cleanup());
const start = recorder(reg);
let passthrough = '';

beforeAll(() => {
  requireFuse();
  buildCli();
  passthrough = buildExample('passthrough_ll');
}, 120_000);

/** Records `passthrough_ll -f -o cache=never -o source=SRC` while `workload(mnt)` runs; returns the session's exit. */
async function record(db: string, src: string, workload: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = reg.mountpoint('fusetrace-rci-mnt-');
  const rec = await start(passthrough, ['-f', '-o', 'cache=never', '-o', `source=${src}`], mnt, db);
  await workload(mnt);
  spawnSync('sync');
  await new Promise((r) => setTimeout(r, 300)); // releases and forgets reach the server
  await unmount(mnt);
  const exit = await rec.exited;
  if (exit.code !== 0) throw new Error(`fusetrace record exited ${exit.code ?? exit.signal}:\n${rec.stderr()}`);
}

interface Counts {
  replayed: number;
  matched: number;
  diverged: number;
  race: number;
  missing: number;
  unexpected: number;
  skipped: number;
}

/** `fusetrace replay` with a text report; its counts, exit status, output and peak RSS. */
async function replay(db: string, args: string[]): Promise<{ code: number | null; out: string; counts: Counts; peakRss: number }> {
  const r = await runMeasured(process.execPath, [CLI, '--db', db, 'replay', ...args], 300_000, (pid) => reg.process(pid));
  const m = /requests replayed (\d+), compared \d+: matched (\d+), diverged (\d+), races (\d+).*missing replies (\d+), unexpected replies (\d+), skipped (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no counts in the report (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  const [replayed, matched, diverged, race, missing, unexpected, skipped] = m.slice(1).map(Number);
  return { code: r.code, out: r.stdout + r.stderr, counts: { replayed, matched, diverged, race, missing, unexpected, skipped }, peakRss: r.peakRss };
}

/** Offset of fuse_in_header.unique / fuse_out_header.unique, from the codec's layouts. */
const UNIQUE_AT = layout(structs.fuse_in_header).leaves.find((l) => l.path[0] === 'unique')!.offset;
const OUT_UNIQUE_AT = layout(structs.fuse_out_header).leaves.find((l) => l.path[0] === 'unique')!.offset;

/** A copy of a frame under another unique (the header field patched, nothing else). */
function withUnique(f: FrameRecord, unique: bigint): FrameRecord {
  const data = Buffer.from(f.data);
  data.writeBigUInt64LE(unique, f.dir === 0 ? UNIQUE_AT : OUT_UNIQUE_AT);
  return { ...f, unique, data };
}

describe('a large session replays in bounded memory', () => {
  /** Copies of the recorded 4 KiB READ (request and reply): a session of this many READs. */
  const REQUESTS = 200_000;

  it(`${REQUESTS} requests with 4 KiB payloads: peak RSS under 300 MB, every reply matched`, async () => {
    const work = reg.tempDir('fusetrace-rci-rss-');
    const src = join(work, 'src');
    mkdirSync(src);
    const block = Buffer.alloc(4096, 0x42);
    writeFileSync(join(src, 'data'), block);
    const db = join(work, 'trace.db');
    await record(db, src, async (mnt) => {
      // cache=never opens with direct_io: this read is one 4 KiB READ the server answers.
      const fd = openSync(join(mnt, 'data'), 'r');
      try {
        expect(readSync(fd, Buffer.alloc(4096), 0, 4096, 0)).toBe(4096);
      } finally {
        closeSync(fd);
      }
    });
    // The recorded READ and its reply, then copies of them under new uniques while the file is open.
    const t = openTraceDb(db);
    let big: number;
    try {
      const session = new TraceReader(t).latestSessionId()!;
      let read: FrameRecord | undefined;
      big = cloneSession(t, session, function* (f) {
        yield f;
        if (f.dir === 0 && f.opcode === Opcode.READ && !read) read = f;
        if (f.dir === 1 && read && f.unique === read.unique && f.data.length >= 4096) {
          for (let i = 1; i < REQUESTS; i++) {
            const u = (1n << 40n) + 2n * BigInt(i);
            yield withUnique(read, u);
            yield withUnique(f, u);
          }
        }
      });
    } finally {
      t.close();
    }
    const r = await replay(db, [String(big), '--send-ahead', '--', passthrough, '-f', '-o', 'cache=never', '-o', `source=${src}`]);
    expect(r.code, r.out).toBe(0);
    expect(r.counts.replayed).toBeGreaterThanOrEqual(REQUESTS);
    expect(r.counts.diverged + r.counts.missing + r.counts.unexpected + r.counts.skipped).toBe(0);
    expect(r.peakRss).toBeGreaterThan(0);
    expect(r.peakRss / 2 ** 20, `peak RSS ${Math.round(r.peakRss / 2 ** 20)} MB`).toBeLessThan(300);
  }, 300_000);
});

/** 64 KiB where block k (4 KiB) holds the byte k: any order of the workload's writes leaves the same bytes. */
function blocks(): Buffer {
  const b = Buffer.alloc(16 * 4096);
  for (let k = 0; k < 16; k++) b.fill(k, k * 4096, (k + 1) * 4096);
  return b;
}

/**
 * One process of the concurrent workload (node -e): writers rewrite random blocks of a and b with
 * their own content, readers read and fstat them, the churner creates, lists and removes files in
 * the same directory.
 */
const WORKER = `
const fs = require('node:fs'); const path = require('node:path');
const [dir, role, id] = process.argv.slice(1);
let x = Number(id) * 7919 + 1; const rand = (n) => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
const block = (k) => Buffer.alloc(4096, k);
if (role === 'writer') {
  const fds = ['a', 'b'].map((f) => fs.openSync(path.join(dir, f), 'r+'));
  for (let i = 0; i < 150; i++) { const k = rand(16); fs.writeSync(fds[i % 2], block(k), 0, 4096, k * 4096); if (i % 50 === 49) fs.fsyncSync(fds[i % 2]); }
  fds.forEach((fd) => fs.closeSync(fd));
} else if (role === 'reader') {
  const buf = Buffer.alloc(16384);
  for (let i = 0; i < 150; i++) { const fd = fs.openSync(path.join(dir, i % 2 ? 'a' : 'b'), 'r'); fs.readSync(fd, buf, 0, 16384, rand(13) * 4096); fs.fstatSync(fd); fs.closeSync(fd); }
} else {
  for (let i = 0; i < 50; i++) { const f = path.join(dir, 'tmp-' + id + '-' + i); fs.writeFileSync(f, 'x'.repeat(100)); fs.readdirSync(dir); fs.unlinkSync(f); }
}`;

/** Runs the workload's processes together and waits for all of them (each registered for cleanup). */
async function concurrently(dir: string, roles: string[]): Promise<void> {
  const exits = roles.map((role, i) => {
    const child = spawn(process.execPath, ['-e', WORKER, dir, role, String(i)], { stdio: ['ignore', 'ignore', 'pipe'] });
    reg.process(child);
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    return waitExit(child).then((e) => {
      if (e.code !== 0) throw new Error(`${role} ${i} exited ${e.code ?? e.signal}: ${err}`);
    });
  });
  await Promise.all(exits);
}

describe('concurrent writers and readers', () => {
  let work = '';
  let db = '';
  const initial = (dir: string): void => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeFileSync(join(dir, 'a'), blocks());
    writeFileSync(join(dir, 'b'), blocks());
  };

  beforeAll(async () => {
    work = reg.tempDir('fusetrace-rci-conc-');
    db = join(work, 'trace.db');
    initial(join(work, 'src'));
    await record(db, join(work, 'src'), async (mnt) => {
      await concurrently(mnt, ['writer', 'writer', 'reader', 'reader', 'churn']);
      // Then, one at a time: a file written, read whole, truncated (the race planted below).
      const fd = openSync(join(mnt, 'r'), 'w+');
      writeSync(fd, Buffer.alloc(8192, 0x72), 0, 8192, 0);
      fsyncSync(fd);
      expect(readSync(fd, Buffer.alloc(8192), 0, 8192, 0)).toBe(8192);
      ftruncateSync(fd, 0);
      closeSync(fd);
    });
  }, 120_000);

  it('replays with no divergence: requests in flight together go together, the replies are held to the recorded order', async () => {
    const copy = join(work, 'copy');
    initial(copy);
    const r = await replay(db, ['--', passthrough, '-f', '-o', 'cache=never', '-o', `source=${copy}`]);
    expect(r.code, r.out).toBe(0);
    expect(r.counts.replayed).toBeGreaterThan(1500);
    expect(r.counts.diverged + r.counts.missing + r.counts.unexpected + r.counts.skipped, r.out).toBe(0);
    expect(r.counts.matched).toBeGreaterThan(1500);
  }, 120_000);

  it('a planted race (the truncate answered while the READ was in flight) is a race naming both, and --strict fails on it', async () => {
    // The recording with the truncating SETATTR moved to just before the READ and its reply to
    // just after the READ's: the server had both in flight, and the READ won.
    const t = openTraceDb(db);
    let planted: number;
    let readUnique = 0n;
    let setattrUnique = 0n;
    try {
      const reader = new TraceReader(t);
      const session = reader.latestSessionId()!;
      const frames = [...reader.frames(session)];
      const setattr = frames.filter((f) => f.dir === 0 && f.opcode === Opcode.SETATTR).pop()!;
      const nodeid = setattr.data.readBigUInt64LE(NODEID_AT);
      const read = frames.filter((f) => f.dir === 0 && f.opcode === Opcode.READ && f.seq < setattr.seq && f.data.readBigUInt64LE(NODEID_AT) === nodeid).pop()!;
      const replyOf = (u: bigint) => frames.find((f) => f.dir === 1 && f.unique === u)!;
      const [readReply, setattrReply] = [replyOf(read.unique), replyOf(setattr.unique)];
      readUnique = read.unique;
      setattrUnique = setattr.unique;
      planted = cloneSession(t, session, (f) =>
        f.seq === read.seq ? [setattr, f]
          : f.seq === readReply.seq ? [f, setattrReply]
            : f.seq === setattr.seq || f.seq === setattrReply.seq ? [] : [f]);
    } finally {
      t.close();
    }
    const copy = join(work, 'copy');
    // -s: one server thread, which takes the SETATTR first, as the replay sends it first.
    const args = [String(planted), '--', passthrough, '-s', '-f', '-o', 'cache=never', '-o', `source=${copy}`];
    initial(copy);
    const r = await replay(db, args);
    expect(r.code, r.out).toBe(0);
    expect(r.counts.race).toBe(1);
    expect(r.counts.diverged + r.counts.missing + r.counts.unexpected + r.counts.skipped, r.out).toBe(0);
    expect(r.out).toMatch(new RegExp(`unique ${readUnique} READ .*: race \\(in flight together with unique ${setattrUnique} SETATTR`));
    initial(copy);
    const strict = await replay(db, ['--strict', ...args]);
    expect(strict.code, strict.out).toBe(1);
    expect(strict.out).toMatch(/result: DIVERGED/);
  }, 120_000);
});

/** Offset of fuse_in_header.nodeid, from the codec's layout. */
const NODEID_AT = layout(structs.fuse_in_header).leaves.find((l) => l.path[0] === 'nodeid')!.offset;

describe('a write-heavy session on ext4', () => {
  it('replays twice with 0 divergences (blocks of regular files are not compared by default)', async () => {
    const work = reg.tempDir('fusetrace-rci-ext4-');
    const img = join(work, 'ext4.img');
    const fsDir = join(work, 'fs');
    mkdirSync(fsDir);
    writeFileSync(img, '');
    expect(spawnSync('truncate', ['-s', '96M', img]).status).toBe(0);
    const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', img], { encoding: 'utf8' });
    expect(mkfs.status, mkfs.stderr).toBe(0);
    reg.mount(fsDir); // unmounted (and the loop device with it: mount -o loop sets autoclear) at cleanup
    const mnt = spawnSync('mount', ['-o', 'loop', img, fsDir], { encoding: 'utf8' });
    expect(mnt.status, mnt.stderr).toBe(0);
    const src = join(fsDir, 'src');
    mkdirSync(src);
    const db = join(work, 'trace.db');
    await record(db, src, async (m) => {
      mkdirSync(join(m, 'd'));
      for (let i = 0; i < 24; i++) {
        const f = join(m, 'd', `f${i}`);
        const fd = openSync(f, 'w+');
        // Sizes across ext4's allocation: sub-block, a few blocks, an extent's worth, a hole.
        writeSync(fd, Buffer.alloc(1 + i * 9000, 0x30 + (i % 10)), 0, 1 + i * 9000, 0);
        writeSync(fd, Buffer.from('appended'), 0, 8, (i % 3) * 70_000 + i * 9000);
        if (i % 4 === 0) ftruncateSync(fd, 5000);
        if (i % 5 === 0) fsyncSync(fd);
        closeSync(fd);
      }
      for (let i = 0; i < 24; i += 3) rmSync(join(m, 'd', `f${i}`));
    });
    for (let run = 0; run < 2; run++) {
      const copy = join(fsDir, 'copy');
      rmSync(copy, { recursive: true, force: true });
      mkdirSync(copy);
      const r = await replay(db, ['--', passthrough, '-f', '-o', 'cache=never', '-o', `source=${copy}`]);
      expect(r.code, r.out).toBe(0);
      expect(r.counts.diverged + r.counts.race + r.counts.missing + r.counts.unexpected + r.counts.skipped, r.out).toBe(0);
      expect(r.counts.matched).toBeGreaterThan(100);
    }
    rmSync(join(fsDir, 'copy'), { recursive: true, force: true });
  }, 180_000);
});
