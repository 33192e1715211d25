/**
 * The recorder writes packed batches; the request ledger (and loose_frames) are derived from
 * them on a lower-priority thread that may lag (issue 13). These tests make it lag behind a whole
 * recording (FUSETRACE_DERIVE_PAUSE=1: the thread derives nothing until the session ends) with the
 * real CLI in front of libfuse's passthrough_ll:
 *  - the trace that ends is complete and equal to a rebuild from the batches alone;
 *  - a recorder SIGKILLed while the derivation lags leaves every committed frame readable, and the
 *    next read command completes the derivation, again equal to a rebuild;
 *  - by default the thread defers derivation while requests keep coming (deriver.ts
 *    DEFAULT_DEFER_FRAMES and its siblings), bounded in time, and catches up in the quiet.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, unlinkSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry, unmount } from './helpers/mount.js';
import { buildCli, CLI, dbIn, expectCompletePairing, readTrace, recorder } from './helpers/record.js';
import { lsTree, populateTree } from './helpers/workloads.js';
import { openTraceDb } from '../src/store/db.js';
import { rebuildLedger } from '../src/store/ledger.js';
import { decodeBatch } from '../src/store/batch.js';
import { TraceReader } from '../src/store/reader.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
const startRecord = recorder(reg);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(() => {
  requireFuse();
  buildCli();
}, 120_000);

const PAUSED = { ...process.env, FUSETRACE_DERIVE_PAUSE: '1' };

/**
 * What the file holds of its last session: recorded (batches) and derived (loose_frames, requests),
 * and how many of its frames a lookup by unique finds (every derived one).
 */
function contents(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    const s = db.prepare('SELECT id, frames, derived FROM sessions ORDER BY id DESC LIMIT 1').get() as { id: number; frames: number; derived: number };
    const batched = db.prepare('SELECT coalesce(sum(count), 0) AS n, coalesce(max(last_seq), -1) AS last FROM batches WHERE session = ?').get(s.id) as {
      n: number;
      last: number;
    };
    const index = db.prepare('SELECT * FROM loose_frames WHERE session = ? ORDER BY seq').all(s.id);
    const requests = db.prepare('SELECT * FROM requests WHERE session = ? ORDER BY seq').all(s.id);
    const r = new TraceReader(db);
    const byUnique = new Map<bigint, number[]>();
    for (const f of r.frames(s.id)) byUnique.set(f.unique, [...(byUnique.get(f.unique) ?? []), f.seq]);
    let findable = 0;
    for (const [u, seqs] of byUnique) {
      const found = new Set(r.framesOfUnique(s.id, u).map((f) => f.seq));
      findable += seqs.filter((q) => found.has(q)).length;
    }
    return { session: s, batched, index, requests, findable };
  } finally {
    db.close();
  }
}

/** The derived tables after rebuildLedger recomputed them from the batches alone. */
function rebuilt(file: string) {
  const db = openTraceDb(file);
  try {
    const id = db.prepare('SELECT max(id) FROM sessions').pluck().get() as number;
    rebuildLedger(db, id);
  } finally {
    db.close();
  }
  return contents(file);
}

/** Every committed frame derived, at least `writes` WRITE requests, and the same rows as a rebuild from the batches. */
function expectDerivedAndRebuilt(file: string, writes: number): void {
  const done = contents(file);
  expect(done.session.derived).toBe(done.batched.last + 1);
  expect(done.findable).toBe(done.batched.n);
  expect(done.requests.filter((r) => (r as { opcode: number }).opcode === 16).length).toBeGreaterThanOrEqual(writes);
  const again = rebuilt(file);
  expect(again.index).toEqual(done.index);
  expect(again.requests).toEqual(done.requests);
}

/** A workload with lookups, readdirs, reads and writes: every kind of request the ledger pairs. */
function work(mnt: string, rounds: number): void {
  for (let i = 0; i < rounds; i++) {
    writeFileSync(join(mnt, `f${i}`), `content ${i}\n`.repeat(50));
    expect(readFileSync(join(mnt, `f${i}`), 'utf8')).toBe(`content ${i}\n`.repeat(50));
  }
}

describe('derivation lagging behind the recording', () => {
  it('a derivation paused for the whole session ends complete and equal to a rebuild', async () => {
    const dir = reg.tempDir();
    const src = reg.tempDir();
    populateTree(src, { depth: 2, dirs: 4, files: 20 });
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(dir), { env: PAUSED });
    const listing = await lsTree(mnt);
    expect(listing).toBe(await lsTree(src));
    work(mnt, 200);
    await sleep(400); // > the 100 ms commit period: the batches are committed, nothing is derived
    const during = contents(rec.db);
    expect(during.batched.n).toBeGreaterThan(1000);
    expect(during.session.derived).toBe(0);
    expect(during.requests).toEqual([]);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited).toEqual({ code: 0, signal: null });

    const end = contents(rec.db);
    expect(end.session.frames).toBe(end.batched.n);
    expect(end.session.derived).toBe(end.batched.last + 1);
    expect(end.findable).toBe(end.batched.n);
    expectCompletePairing(readTrace(rec.db).frames, { allowUnanswered: new Set([18]) });
    expect(end.requests.length).toBeGreaterThan(400);
    const again = rebuilt(rec.db);
    expect(again.index).toEqual(end.index);
    expect(again.requests).toEqual(end.requests);
  });

  it('defers the derivation while requests keep coming, derives at the latest after 2 s of them, and catches up in the quiet after', async () => {
    const dir = reg.tempDir();
    const src = reg.tempDir();
    populateTree(src, { depth: 1, dirs: 2, files: 10 });
    const mnt = reg.mountpoint();
    // Quiet is 1 s here, not 300 ms, so that a stall of this test's own loop on a busy machine
    // does not count as the quiet after the workload. The other bounds are the defaults.
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(dir), {
      env: { ...process.env, FUSETRACE_DERIVE_QUIET_MS: '1000' },
    });
    const db = new Database(rec.db, { readonly: true });
    try {
      const state = () =>
        db.prepare('SELECT s.derived, (SELECT coalesce(sum(count), 0) FROM batches b WHERE b.session = s.id) AS recorded FROM sessions s ORDER BY s.id DESC LIMIT 1').get() as {
          derived: number;
          recorded: number;
        };
      const t0 = Date.now();
      const early: Array<{ ms: number; derived: number; recorded: number }> = [];
      let derivedWhileBusy = 0;
      let gap = 0;
      let last = t0;
      while (Date.now() - t0 < 3500) {
        readdirSync(mnt); // OPENDIR, READDIRPLUS, RELEASEDIR: never cached here
        statSync(join(mnt, 'dir-0-1', 'file-1-0.txt'));
        await sleep(5); // a few thousand frames: enough to commit every 100 ms, few to rebuild below
        const now = Date.now();
        gap = Math.max(gap, now - last);
        last = now;
        const ms = now - t0;
        if (ms < 1500 && early.length < ms / 100) early.push({ ms, ...state() });
        if (ms >= 2500) derivedWhileBusy = Math.max(derivedWhileBusy, state().derived);
      }
      // The first 1.5 s: frames committed (every 100 ms), none derived.
      expect(gap, 'the request loop stalled').toBeLessThan(1000);
      expect(early.at(-1)!.recorded).toBeGreaterThan(500);
      expect(early.filter((e) => e.derived > 0)).toEqual([]);
      // Then the oldest frame has waited 2 s: derived while the requests go on.
      expect(derivedWhileBusy).toBeGreaterThan(early.at(-1)!.recorded);
      // Quiet: everything derived, with no commit after the last frame and the session still open.
      const quietAt = Date.now();
      let s = state();
      while (s.derived < s.recorded && Date.now() - quietAt < 10_000) {
        await sleep(100);
        s = state();
      }
      expect(s.derived).toBe(s.recorded);
      expect(rec.child.exitCode).toBeNull();
    } finally {
      db.close();
    }
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    expectDerivedAndRebuilt(rec.db, 0);
  }, 60_000);

  it('the derivation thread keeps its statement journals in memory: no temporary files while recording', async () => {
    // SQLite puts a connection's temporary files (statement journals, spilled sorts) in
    // SQLITE_TMPDIR; each is created and unlinked at once, which inotify still sees. The derivation
    // thread's steps (multi-row INSERTs into requests, each with a statement journal of 64 KiB pages)
    // created one every few steps there (/var/tmp by default) before it set temp_store = MEMORY.
    // The duration indexes built at the session's end still may (derive.ts: their sorts can be large).
    const dir = reg.tempDir();
    const src = reg.tempDir();
    const tmp = reg.tempDir();
    const mnt = reg.mountpoint();
    // Derived at every commit (no deferral), so that many steps run while the recorder commits.
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(dir), {
      env: { ...process.env, SQLITE_TMPDIR: tmp, FUSETRACE_DERIVE_DEFER: '0' },
    });
    const seen: string[] = [];
    const watcher = watch(tmp, (event, name) => seen.push(`${event} ${String(name)} ${Date.now()}`));
    try {
      for (let round = 0; round < 6; round++) {
        work(mnt, 100);
        await sleep(150); // > the 100 ms commit period: a commit, then derivation steps
      }
      await sleep(100); // inotify events of the last moments
      expect(seen).toEqual([]);
      expect(spawnSync('umount', [mnt]).status).toBe(0);
      expect(await rec.exited).toEqual({ code: 0, signal: null });
      expectDerivedAndRebuilt(rec.db, 600);
    } finally {
      watcher.close();
    }
  }, 60_000);

  it('a trace locked by another process past the busy timeout: the derivation waits for it, then ends complete', async () => {
    const dir = reg.tempDir();
    const src = reg.tempDir();
    populateTree(src, { depth: 1, dirs: 2, files: 10 });
    const mnt = reg.mountpoint();
    // The derivation is held (FUSETRACE_DERIVE_HOLD) until the lock below is taken, so that it
    // finds committed frames to derive and a locked file.
    const hold = join(dir, 'hold');
    writeFileSync(hold, '');
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(dir), {
      env: { ...process.env, FUSETRACE_DERIVE_HOLD: hold },
    });
    work(mnt, 100);
    await sleep(400); // committed, not derived
    expect(contents(rec.db).session.derived).toBe(0);
    const locker = new Database(rec.db);
    locker.pragma('busy_timeout = 10000');
    locker.exec('BEGIN IMMEDIATE');
    try {
      unlinkSync(hold);
      // Longer than the derivation's busy timeout (5 s): its write transaction fails with SQLITE_BUSY.
      await sleep(6500);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    work(mnt, 20);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    expect(rec.stderr()).not.toMatch(/request ledger (stopped|failed)/);
    expectDerivedAndRebuilt(rec.db, 120);
  }, 60_000);

  it('a recorder SIGKILLed while the derivation lags: the next read command completes it', async () => {
    const dir = reg.tempDir();
    const src = reg.tempDir();
    populateTree(src, { depth: 1, dirs: 2, files: 10 });
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(dir), { env: PAUSED });
    work(mnt, 100);
    await sleep(400);
    rec.child.kill('SIGKILL');
    expect((await rec.exited).signal).toBe('SIGKILL');
    await unmount(mnt);
    const killed = contents(rec.db);
    expect(killed.batched.n).toBeGreaterThan(500);
    expect(killed.session.derived).toBe(0);
    // Every committed frame is readable straight from the batches.
    const { frames } = readTrace(rec.db);
    expect(frames.length).toBe(killed.batched.n);

    const stats = spawnSync(process.execPath, [CLI, '--db', rec.db, 'stats'], { encoding: 'utf8', timeout: 60_000 });
    expect(stats.status, stats.stderr).toBe(0);
    expect(stats.stderr).toMatch(/completing the request index of session \d+ \(its recorder ended before deriving it\)/);
    expectDerivedAndRebuilt(rec.db, 100);
  });

  for (const relay of [false, true]) it(`the derivation reads batches.heads, READ replies and WRITE requests cut after their headers, and derives what the bodies give (${relay ? 'relay' : 'in-process'})`, async () => {
    const dir = reg.tempDir();
    const src = reg.tempDir();
    const FILES = 12;
    const SIZE = 64 * 1024;
    const content = (i: number) => Buffer.alloc(SIZE, `file ${i} `);
    for (let i = 0; i < FILES; i++) writeFileSync(join(src, `in${i}`), content(i));
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(dir), {
      env: PAUSED,
      extra: relay ? ['--relay'] : [],
    });
    for (let i = 0; i < FILES; i++) {
      expect(readFileSync(join(mnt, `in${i}`)).equals(content(i))).toBe(true);
      writeFileSync(join(mnt, `out${i}`), content(i + FILES));
    }
    work(mnt, 20);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    expect(rec.stderr()).toMatch(relay ? /; relayed; / : /; recorded in-process; /);

    const db = new Database(rec.db, { readonly: true });
    const rows = db.prepare('SELECT heads, body FROM batches ORDER BY session, first_seq').raw().all() as Array<[Buffer | null, Buffer]>;
    db.close();
    let cutReads = 0;
    let cutWrites = 0;
    let headBytes = 0;
    let bodyBytes = 0;
    for (const [heads, body] of rows) {
      bodyBytes += body.length;
      if (heads === null) continue;
      headBytes += heads.length;
      const whole = decodeBatch(body);
      const cut = decodeBatch(heads);
      expect(cut.length).toBe(whole.length);
      cut.forEach((h, k) => {
        const w = whole[k];
        // Everything but the bytes (and their offsets in the two blobs) is the same.
        expect({ ...h, data: null, off: 0 }).toEqual({ ...w, data: null, off: 0 });
        if (h.data.equals(w.data)) return;
        if (w.dir === 0) {
          expect(w.opcode).toBe(16); // FUSE_WRITE: fuse_in_header + fuse_write_in kept
          expect(h.data.equals(w.data.subarray(0, 80))).toBe(true);
          cutWrites++;
        } else {
          expect(h.data.equals(w.data.subarray(0, 16))).toBe(true); // a READ reply's fuse_out_header
          expect(w.data.length).toBeGreaterThan(512);
          cutReads++;
        }
      });
    }
    expect(cutReads).toBeGreaterThanOrEqual(FILES);
    expect(cutWrites).toBeGreaterThanOrEqual(FILES);
    expect(headBytes).toBeLessThan(bodyBytes / 10);

    // The same rows derived from the bodies alone (heads set to NULL): nothing the derivation
    // reads was cut off.
    const fromHeads = contents(rec.db);
    expect(fromHeads.session.derived).toBe(fromHeads.batched.last + 1);
    const w = openTraceDb(rec.db);
    w.prepare('UPDATE batches SET heads = NULL').run();
    w.close();
    const fromBodies = rebuilt(rec.db);
    expect(fromBodies.requests).toEqual(fromHeads.requests);
    expect(fromBodies.index).toEqual(fromHeads.index);
    expect(fromHeads.requests.filter((r) => (r as { opcode: number }).opcode === 15).length).toBeGreaterThanOrEqual(FILES);
  });
});
