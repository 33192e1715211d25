import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileDist } from '../../test/helpers/dist.js';
import { Checkpointer } from './checkpointer.js';
import { openTraceDb } from './db.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-checkpointer-'));
  // The worker runs from the build (checkpointer.ts workerFile).
  compileDist(['dist/src/store/checkpointer-worker.js']);
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const MIB = 1024 * 1024;

/** Commits `mib` MiB into the WAL of `db` (one 1 MiB row a transaction). */
function commit(db: ReturnType<typeof openTraceDb>, mib: number): void {
  const ins = db.prepare('INSERT INTO fill (b) VALUES (?)');
  for (let i = 0; i < mib; i++) ins.run(Buffer.alloc(MIB, i & 0xff));
}

/**
 * Commits `mib` MiB and tells the checkpointer, as the writer does after a commit, then makes the
 * catch-up check the writer makes before its next one. Returns whether a catch-up is under way and
 * how many RESTARTs were asked for so far.
 */
function commitThrough(cp: Checkpointer, db: ReturnType<typeof openTraceDb>, mib: number): { catchingUp: boolean; restarts: number } {
  commit(db, mib);
  cp.committed(mib * MIB);
  cp.catchUp();
  return { catchingUp: cp.catchingUp, restarts: cp.restarts };
}

/** Waits (polling) until the worker has done every checkpoint asked for. */
async function settle(cp: Checkpointer): Promise<void> {
  for (let i = 0; i < 500 && !cp.copied(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cp.copied()).toBe(true);
}

describe('Checkpointer', () => {
  it("a catch-up copies the WAL with PASSIVE checkpoints first and stops the writer only for the RESTART of what they left", async () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    db.exec('CREATE TABLE fill (b BLOB)');
    const cp = new Checkpointer(db, file, { every: 4 * MIB, walMax: 16 * MIB });
    // While it runs the WAL keeps its size when it starts over (no truncation to the limit).
    expect(db.pragma('journal_size_limit', { simple: true })).toBe(-1);
    // The interval is reached: the first phase asks for a copy and returns without waiting.
    expect(commitThrough(cp, db, 16)).toEqual({ catchingUp: true, restarts: 0 });
    await settle(cp);
    // Meanwhile more than the RESTART may copy (half an interval between requests, here 2 MiB)
    // was committed: one more PASSIVE copy, still no RESTART.
    expect(commitThrough(cp, db, 3)).toEqual({ catchingUp: true, restarts: 0 });
    await settle(cp);
    // Little left: the RESTART, waited for; the next commit starts the WAL over.
    expect(commitThrough(cp, db, 1)).toEqual({ catchingUp: false, restarts: 1 });
    const before = fs.statSync(`${file}-wal`).size;
    commit(db, 1);
    expect(fs.statSync(`${file}-wal`).size).toBe(before); // written from its start, not appended
    cp.stop();
    expect(db.pragma('journal_size_limit', { simple: true })).toBe(64 * MIB);
    db.close();
  }, 30_000);
});
