/**
 * The checkpointer thread (started by Checkpointer in checkpointer.ts). It owns a second
 * connection to the trace file and runs PASSIVE checkpoints when asked: copying the WAL into the
 * database file and the two fsyncs of synchronous=NORMAL no longer happen on the recorder's event
 * loop. A PASSIVE checkpoint never blocks the writer or the readers
 * (https://sqlite.org/c3ref/wal_checkpoint_v2.html).
 */
import { workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CK_CAUGHT_UP, CK_DONE, CK_REQUEST, CK_STATE, CkState, type CheckpointerData } from './checkpointer.js';

/** One row of PRAGMA wal_checkpoint: busy (1 when it could not finish), WAL frames, frames copied. */
interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

const data = workerData as CheckpointerData;
const slots = new Int32Array(data.shared);
let db: Database.Database | undefined;
try {
  db = new Database(data.file, { fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  db.pragma('synchronous = NORMAL');
  Atomics.store(slots, CK_STATE, CkState.running);
  for (let seen = 0; ; ) {
    Atomics.wait(slots, CK_REQUEST, seen);
    const gen = Atomics.load(slots, CK_REQUEST);
    if (gen < 0) break;
    const r = (db.pragma('wal_checkpoint(PASSIVE)') as CheckpointResult[])[0]!;
    Atomics.store(slots, CK_CAUGHT_UP, r.busy === 0 && r.log === r.checkpointed ? 1 : 0);
    Atomics.store(slots, CK_DONE, gen);
    Atomics.notify(slots, CK_DONE);
    seen = gen;
  }
  db.close();
  Atomics.store(slots, CK_STATE, CkState.closed);
} catch (err) {
  try {
    db?.close();
  } catch {
    // Closing after a failure: the error that matters is the one rethrown below.
  }
  Atomics.store(slots, CK_STATE, CkState.failed);
  Atomics.store(slots, CK_DONE, -1);
  Atomics.notify(slots, CK_DONE);
  throw err;
} finally {
  Atomics.notify(slots, CK_STATE);
}
