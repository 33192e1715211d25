/**
 * A trace file another writer keeps locked while `record` runs (a sqlite3 shell with a transaction
 * open, a script holding it): the recorder cannot commit. It must stay in the user's hands (Ctrl-C
 * ends the session and unmounts while the lock lasts), keep what waits in memory bounded (the pump's
 * queue is no longer drained, so the server waits for room), and at the end wait for the lock to
 * write everything, saying so, unless a second Ctrl-C gives up. Before, every batch's commit slept
 * the 5 s busy timeout on the JS thread: Ctrl-C, the unmount and the end waited for the lock, and a
 * lock that outlasted the end lost the frames still buffered.
 */
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildExample } from './helpers/build.js';
import { isMounted } from './helpers/mount.js';
import { OP } from '../src/protocol/index.js';
import { CLI, dbIn, expectCompletePairing, readTrace, recordDirs, recordingTests, type Recording } from './helpers/record.js';

const { reg, startRecord } = recordingTests();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Bytes read through the mount while the trace is locked: they fit the ring and the queue (64 MiB each). */
const READ_BYTES = 40 * 1024 * 1024;
/**
 * How long the recorder may take to act on Ctrl-C while the file is locked: the first commit that
 * finds the lock waits the connection's busy timeout (5 s) before the recorder knows; after that
 * it waits 50 ms per attempt.
 */
const SIGNAL_HANDLED_MS = 15_000;

/** Polls `cond` every 50 ms until it holds or `ms` pass; returns whether it held. */
async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) return false;
    await sleep(50);
  }
  return true;
}

/** A process's resident set (VmRSS), KiB. */
function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** dd of the whole file with O_DIRECT in 1 MiB reads (so every byte is a READ through the mount). */
function readThrough(path: string): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve) => {
    const p = spawn('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M', 'iflag=direct', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
    reg.process(p);
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => resolve({ code, err }));
  });
}

/**
 * Records passthrough_ll, locks the trace from this process, reads READ_BYTES through the mount,
 * sends Ctrl-C and checks that the session ends and unmounts while the lock is held, the recorder
 * then waiting for it. Returns the recording and the lock (BEGIN IMMEDIATE, still open).
 */
async function lockedEnd(): Promise<{ rec: Recording; locker: Database.Database }> {
  const { work, src, mnt } = recordDirs(reg, 'fusetrace-locked-');
  writeFileSync(join(src, 'big'), Buffer.alloc(READ_BYTES, 0x5a));
  const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work));
  const locker = new Database(rec.db);
  reg.defer(() => {
    if (locker.open) locker.close(); // rolls back: the recorder never waits for a failed test
  });
  locker.exec('BEGIN IMMEDIATE');
  const r = await readThrough(join(mnt, 'big'));
  expect(r.code, r.err).toBe(0);
  rec.child.kill('SIGINT');
  const unmounted = await waitFor(() => !isMounted(mnt), SIGNAL_HANDLED_MS);
  expect(unmounted, `still mounted ${SIGNAL_HANDLED_MS} ms after SIGINT while the trace was locked:\n${rec.stderr()}`).toBe(true);
  const waiting = await waitFor(() => /waiting to write the last \d+ frames/.test(rec.stderr()), 5000);
  expect(waiting, rec.stderr()).toBe(true);
  expect(rec.child.exitCode).toBe(null);
  return { rec, locker };
}

describe('record while another writer keeps the trace file locked', () => {
  it('Ctrl-C ends the session and unmounts during the lock; the recorder waits for it and then writes every frame', async () => {
    const { rec, locker } = await lockedEnd();
    await sleep(1000); // still waiting, and still locked
    expect(rec.child.exitCode).toBe(null);
    locker.exec('ROLLBACK');
    locker.close();
    const ex = await rec.exited;
    expect(ex, rec.stderr()).toEqual({ code: 0, signal: null });
    expect(rec.stderr()).not.toMatch(/not kept|cannot commit/);
    expect(rec.stderr()).toMatch(/, 0 dropped[,;]/);
    const { session, frames } = readTrace(rec.db);
    expect(session.end_reason).toBe('signal');
    expect(frames.length).toBe(session.frames);
    expectCompletePairing(frames);
    // Every byte dd read is in the trace, in READ replies.
    const d = new Database(rec.db, { readonly: true });
    try {
      const read = d.prepare("SELECT coalesce(sum(reply_len - 16), 0) FROM requests WHERE session = ? AND opcode = ? AND state = 'ok'").pluck().get(session.id, OP.READ) as number;
      expect(read).toBeGreaterThanOrEqual(READ_BYTES);
    } finally {
      d.close();
    }
  }, 90_000);

  it('what waits in memory while the writer cannot commit is bounded: the server waits for room, then every frame is written', async () => {
    const BIG = 256 * 1024 * 1024; // four times the pump's queue, twice queue and ring together
    const { work, src, mnt } = recordDirs(reg, 'fusetrace-locked-');
    writeFileSync(join(src, 'big'), Buffer.alloc(BIG, 0x5a));
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work));
    const before = rssKiB(rec.pid);
    const locker = new Database(rec.db);
    reg.defer(() => {
      if (locker.open) locker.close();
    });
    locker.exec('BEGIN IMMEDIATE');
    let read: Promise<{ code: number | null; err: string }>;
    try {
      read = readThrough(join(mnt, 'big'));
      let done = false;
      void read.then(() => (done = true));
      await sleep(5000);
      // Without a commit nothing leaves memory: the ring and the queue fill (64 MiB each, the ring
      // mapped from the start), and then the server waits for room and the reader with it.
      expect(done, 'the read finished while the trace was locked: frames went somewhere unbounded').toBe(false);
      const grown = (rssKiB(rec.pid) - before) / 1024;
      console.log(`recorder RSS ${Math.round(before / 1024)} MiB before the lock, +${Math.round(grown)} MiB while it lasted`);
      expect(grown, `the recorder grew by ${grown} MiB`).toBeLessThan(160);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    const r = await read;
    expect(r.code, r.err).toBe(0);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited, rec.stderr()).toEqual({ code: 0, signal: null });
    expect(rec.stderr()).toMatch(/, 0 dropped, the server waited [\d.]+ s for the recorder/);
    const d = new Database(rec.db, { readonly: true });
    try {
      const got = d.prepare("SELECT coalesce(sum(reply_len - 16), 0) FROM requests WHERE opcode = ? AND state = 'ok'").pluck().get(OP.READ) as number;
      expect(got).toBeGreaterThanOrEqual(BIG);
    } finally {
      d.close();
    }
  }, 90_000);

  it('a second Ctrl-C gives up on the lock: exit status 1, the frames not written counted, the trace readable', async () => {
    const { rec, locker } = await lockedEnd();
    rec.child.kill('SIGINT');
    const gaveUp = await waitFor(() => rec.child.exitCode !== null, SIGNAL_HANDLED_MS);
    expect(gaveUp, `still running ${SIGNAL_HANDLED_MS} ms after the second SIGINT:\n${rec.stderr()}`).toBe(true);
    expect(await rec.exited, rec.stderr()).toEqual({ code: 1, signal: null });
    const notKept = /(\d+) frames not kept \(gave up waiting for the lock of another writer on the trace file\)/.exec(rec.stderr());
    expect(notKept, rec.stderr()).not.toBe(null);
    expect(Number(notKept![1])).toBeGreaterThan(0);
    locker.exec('ROLLBACK');
    locker.close();
    // What was committed before the lock is readable; the read command completes the session.
    const s = spawnSync(process.execPath, [CLI, '--db', rec.db, 'sessions', '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(s.status, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout.trim().split('\n').pop()!).id).toBe(1);
  }, 90_000);
});
