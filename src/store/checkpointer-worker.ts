/**
 * The checkpointer thread (started by Checkpointer in checkpointer.ts). It owns a second
 * connection to the trace file and runs PASSIVE checkpoints when asked: copying the WAL into the
 * database file and the two fsyncs of synchronous=NORMAL no longer happen on the recorder's event
 * loop. A PASSIVE checkpoint never blocks the writer or the readers
 * (https://sqlite.org/c3ref/wal_checkpoint_v2.html). The writer's catch-up (CK_RESTART) is a
 * RESTART checkpoint instead, which waits a little for what is in its way so that the WAL can
 * start over.
 */
import { workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CK_CAUGHT_UP, CK_DONE, CK_REQUEST, CK_RESTART, CK_STATE, CkState, type CheckpointerData } from './checkpointer.js';

/** One row of PRAGMA wal_checkpoint: busy (1 when it could not finish), WAL frames, frames copied. */
interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

/**
 * How long a RESTART checkpoint (the writer's catch-up) waits for another connection's checkpoint,
 * a write transaction or a reader's snapshot: the recorder's JS thread waits for it meanwhile, and
 * the pump's queue holds about half a second of a 100 MB/s capture.
 */
const RESTART_WAIT_MS = 200;
/** The connection's busy timeout otherwise. */
const BUSY_TIMEOUT_MS = 5000;

/** One checkpoint; RESTART with a short wait for what is in its way. */
function checkpoint(conn: Database.Database, restart: boolean): CheckpointResult {
  if (!restart) return (conn.pragma('wal_checkpoint(PASSIVE)') as CheckpointResult[])[0]!;
  conn.pragma(`busy_timeout = ${RESTART_WAIT_MS}`);
  try {
    return (conn.pragma('wal_checkpoint(RESTART)') as CheckpointResult[])[0]!;
  } finally {
    conn.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  }
}

const data = workerData as CheckpointerData;
const slots = new Int32Array(data.shared);
let db: Database.Database | undefined;
try {
  db = new Database(data.file, { fileMustExist: true });
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('synchronous = NORMAL');
  Atomics.store(slots, CK_STATE, CkState.running);
  for (let seen = 0; ; ) {
    Atomics.wait(slots, CK_REQUEST, seen);
    const gen = Atomics.load(slots, CK_REQUEST);
    if (gen < 0) break;
    const r = checkpoint(db, Atomics.load(slots, CK_RESTART) === gen);
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
