/**
 * The trace file's schema: the one place where tables are declared. Every column has a doc line.
 * Raw frames are the ground truth; `requests` is derived from them (the ledger) and can be rebuilt.
 *
 * Times: frame timestamps are CLOCK_MONOTONIC nanoseconds as taken by the native pump.
 * Ledger times (`start_ns`, `fwd_ns`, `reply_ns`) are relative to the session's `started_mono_ns`.
 * 64-bit FUSE values (unique, nodeid, fh, flags) are stored as SQLite INTEGER (signed 64-bit);
 * read them with better-sqlite3's `safeIntegers()` where they may exceed 2^53. Values >= 2^63 are
 * stored bit for bit (BigInt.asIntN(64, v), so they read back negative in plain SQL): use
 * `toSqlU64`/`fromSqlU64` from writer.ts on both sides.
 *
 * `unique` is an SQL keyword, so the column is `unique_id` everywhere in SQL; the CLI, filter
 * language and JSON output call it `unique`.
 */

/** `PRAGMA application_id` of a fusetrace file: ASCII "FTRC". Any other non-zero id is a foreign file. */
export const APPLICATION_ID = 0x46545243;

/** `PRAGMA user_version`: bump on every schema change and add a line to FORMAT_CHANGELOG. */
export const FORMAT_VERSION = 6;

/**
 * The oldest format the read-only commands read in place. Older files are read through an upgraded
 * private copy (db.ts); format 6 only added batches.heads, which the derivation (a writer, so on an
 * upgraded file) reads, and the readers' pairing pass (frame-heads.ts) only where it exists.
 */
export const OLDEST_READ_IN_PLACE = 5;

/** What each format version changed; the reader and writer live together with it. */
export const FORMAT_CHANGELOG: Record<number, string> = {
  1: 'first format: sessions, frames, procs, requests',
  2: "lost table (uniques of dropped frames), sessions.lost, requests.state 'lost'; a version 1 file is upgraded when opened for writing",
  3: "sessions.origin ('record' | 'attached') and sessions.capture ('frames' | 'tracepoints'): sessions of `fusetrace attach` start in the middle of a connection; older files are upgraded in place when opened for writing (MIGRATIONS)",
  4: 'frames are stored in packed batches (table batches, the ground truth; patches for late notification results); frames becomes a derived per-frame index without data, like requests; sessions.derived: frames below it are in frames and requests. A version 3 file is repacked when opened for writing (db.ts repackFrames)',
  5: "the per-frame index (table frames) is gone: inserting a row per frame was a quarter of the derivation's CPU. A frame is found by seq in its batch (batches.first_seq <= seq), and by unique through the requests row that names it (seq, reply_seq, interrupt_seq) or, for the few frames no row names, through loose_frames. sessions.derived: frames below it are in requests and loose_frames. A version 4 file keeps its rows: loose_frames is filled from its frames table by the same rule (MIGRATIONS), which is then dropped",
  6: "batches.heads: the batch's frames with the payload of READ replies and WRITE requests cut off after their headers, NULL when no frame was cut. The derivation reads heads instead of body: re-reading every payload byte was nine tenths of its CPU on a full capture of 1 MiB reads (3.0 s against 0.29 s for a 4 s fio session). A version 5 file gets the column (NULL in its rows) when opened for writing; read-only commands read it in place",
};

/** Frame direction: read from /dev/fuse (a request, or INTERRUPT/FORGET) = 0; written to /dev/fuse (reply or notify) = 1. */
export const DIR_KERNEL_TO_SERVER = 0;
export const DIR_SERVER_TO_KERNEL = 1;

/**
 * The indexes on request durations. A reply gives its row a duration unrelated to its neighbours', so
 * while recording every ledger flush would move index entries to random places in these b-trees; on
 * 64 KiB pages that cost the ledger up to 5x its throughput as a session grew (66k -> 13k frames/s
 * over 3M frames, flat 140-200k without them). `record` drops them while it records and creates them
 * again when the session ends (dropDurationIndexes / createDurationIndexes in db.ts); queries are
 * correct without them, only slower on duration filters and sorts.
 */
export const DURATION_INDEX_SQL = `
CREATE INDEX IF NOT EXISTS requests_dur ON requests(session, dur_ns);
-- Per-opcode latency percentiles are index seeks on this (stats.ts), and "op==READ && dur>1ms" a range scan.
CREATE INDEX IF NOT EXISTS requests_op_dur ON requests(session, opcode, dur_ns);
`;

/** Format 2: the lost table (also created when a version 1 file is opened for writing). */
export const LOST_SQL = `
-- Frames fusetrace saw but could not keep (record --lossy drops them when the recorder falls behind):
-- one row per unique they carried, so that the ledger labels those requests 'lost' instead of guessing.
CREATE TABLE IF NOT EXISTS lost (
  session    INTEGER NOT NULL,           -- sessions.id
  unique_id  INTEGER NOT NULL,           -- the dropped frame's unique (an INTERRUPT's: the request's unique | 1)
  PRIMARY KEY (session, unique_id)
) WITHOUT ROWID;
`;

/** batches.heads' doc line (schema.ts keeps one per column). */
const HEADS_DOC = 'body with the data of READ replies and WRITE requests cut after their headers (native/batcher.h); NULL: none was cut, read body';

/**
 * Format 4: frames as the recorder writes them, packed. One row per batch of consecutive frames
 * (a few hundred, or up to BATCH_BYTES of them, or one large frame alone): the recorder's hot path
 * costs one INSERT per batch instead of one per frame, and a flight recorder can drop whole old
 * batches. Everything else about a frame (the ledger, loose_frames) is derived from these.
 */
export const BATCHES_SQL = batchesSql(false);

/**
 * The batches table and patches (BATCHES_SQL: as format 4 made it, for MIGRATIONS[4]). `heads`
 * (format 6) comes before body in a new file, so that reading it never walks body's overflow
 * pages; a migrated file has it after body (ALTER TABLE ADD COLUMN appends).
 */
function batchesSql(heads: boolean): string {
  return `
-- The ground truth: every recorded frame, in packed batches. body is batch.ts's layout (the pump's
-- queue layout, native/frame_queue.h): per frame a 56-byte header then cap_len bytes padded to 8.
CREATE TABLE IF NOT EXISTS batches (
  session    INTEGER NOT NULL,           -- sessions.id
  first_seq  INTEGER NOT NULL,           -- seq of its first frame; frames are in seq order (gaps: dropped frames)
  last_seq   INTEGER NOT NULL,           -- seq of its last frame
  count      INTEGER NOT NULL,           -- frames in body
  first_ns   INTEGER NOT NULL,           -- ts_ns of its first frame
  last_ns    INTEGER NOT NULL,           -- ts_ns of its last frame
  bytes      INTEGER NOT NULL,           -- full lengths of its frames (before snaplen)${heads ? `
  heads      BLOB,                       -- ${HEADS_DOC}` : ''}
  body       BLOB NOT NULL,              -- the packed frames
  PRIMARY KEY (session, first_seq)
);
-- The forwarding result of a notification whose write to /dev/fuse returned after its batch was
-- committed (the write may block: fs/fuse/dev.c NOTIFY_INVAL_* waits for inode locks). Readers
-- apply it over the frame's fwd_ns and write_errno in body.
CREATE TABLE IF NOT EXISTS patches (
  session     INTEGER NOT NULL,          -- sessions.id
  seq         INTEGER NOT NULL,          -- the notification frame's seq
  fwd_ns      INTEGER,                   -- CLOCK_MONOTONIC after the write returned
  write_errno INTEGER NOT NULL,          -- errno of that write, 0 on success
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
`;
}

/**
 * Format 5: the frames that no requests row names. Every frame is found by seq in its batch; a
 * frame's unique leads to it through the requests rows of that unique (or of unique & ~1: an
 * INTERRUPT's unique is its target's | FUSE_INT_REQ_BIT) and their seq, reply_seq and
 * interrupt_seq. The frames none of those name are listed here: INTERRUPTs after the first, the
 * server's answers to INTERRUPTs, duplicate and unforwarded replies, pieces of a split reply.
 * In ordinary traffic there are none, so the derivation inserts no row per frame.
 */
export const LOOSE_FRAMES_SQL = `
CREATE TABLE IF NOT EXISTS loose_frames (
  session    INTEGER NOT NULL,           -- sessions.id
  seq        INTEGER NOT NULL,           -- the frame's seq (its bytes: the batch with the largest first_seq <= seq)
  unique_id  INTEGER NOT NULL,           -- the frame's fuse_in_header.unique / fuse_out_header.unique
  len        INTEGER NOT NULL,           -- the frame's full length (replay sizes its buffers by the largest frame)
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS loose_frames_unique ON loose_frames(session, unique_id);
`;

/** SQL that brings a file of version N-1 to version N (run in one transaction with the new user_version). */
export const MIGRATIONS: Record<number, string> = {
  2: `${LOST_SQL}
      ALTER TABLE sessions ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;`,
  3: `ALTER TABLE sessions ADD COLUMN origin TEXT NOT NULL DEFAULT 'record';
      ALTER TABLE sessions ADD COLUMN capture TEXT NOT NULL DEFAULT 'frames';`,
  // The frames rows are moved into batches by db.ts repackFrames (JavaScript), in the same transaction.
  4: `${BATCHES_SQL}
      ALTER TABLE sessions ADD COLUMN derived INTEGER NOT NULL DEFAULT 0;`,
  // The same rule as the Deriver's (derive.ts looseFrames), over the format 4 index. unique_id is
  // stored signed: & -2 clears FUSE_INT_REQ_BIT (bit 0) whatever the sign.
  5: `${LOOSE_FRAMES_SQL}
      INSERT INTO loose_frames (session, seq, unique_id, len)
        SELECT f.session, f.seq, f.unique_id, f.len FROM frames f
         WHERE NOT EXISTS (SELECT 1 FROM requests r
                            WHERE r.session = f.session AND r.unique_id IN (f.unique_id, f.unique_id & -2)
                              AND (r.seq = f.seq OR r.reply_seq = f.seq OR r.interrupt_seq = f.seq));
      DROP TABLE frames;`,
  6: `ALTER TABLE batches ADD COLUMN heads BLOB; -- ${HEADS_DOC}`,
};

/** Format 4's frames index: made by db.ts repackFrames when a format 3 file is upgraded, dropped by the step to format 5. */
export const FRAMES_INDEX_SQL = `
-- Derived from batches (like requests): one row per frame, without its bytes, for lookups by seq
-- and unique; its bytes are in the batch starting at batch_seq, at byte off of its body.
CREATE TABLE frames (
  session     INTEGER NOT NULL,          -- sessions.id
  seq         INTEGER NOT NULL,          -- 0, 1, 2, ... in the order the pump saw the frames
  ts_ns       INTEGER NOT NULL,          -- CLOCK_MONOTONIC right after the read() that got the frame
  fwd_ns      INTEGER,                   -- CLOCK_MONOTONIC right after the forwarding write() returned
  dir         INTEGER NOT NULL,          -- 0 kernel->server, 1 server->kernel
  unique_id   INTEGER NOT NULL,          -- fuse_in_header.unique / fuse_out_header.unique
  opcode      INTEGER,                   -- fuse_in_header.opcode (dir 0)
  error       INTEGER,                   -- fuse_out_header.error (dir 1): 0, a negative errno, or the notify code when unique is 0
  len         INTEGER NOT NULL,          -- the frame's full length in bytes
  cap_len     INTEGER NOT NULL,          -- bytes kept (less than len when cut by --snaplen)
  write_errno INTEGER NOT NULL DEFAULT 0, -- errno of the forwarding write() (ENOENT: the kernel no longer knew the unique)
  batch_seq   INTEGER NOT NULL,          -- batches.first_seq of the batch holding its bytes
  off         INTEGER NOT NULL,          -- byte offset of its header in that batch's body
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
`;

/** Format 4's lookups of frames by unique (repackFrames). */
export const FRAMES_UNIQUE_INDEX_SQL = 'CREATE INDEX frames_unique ON frames(session, unique_id);';

export const SCHEMA_SQL = `
CREATE TABLE sessions (
  id               INTEGER PRIMARY KEY,  -- session id, 1, 2, ... within the file
  name             TEXT,                 -- --name given to record, or NULL
  started_wall_ns  INTEGER NOT NULL,     -- wall clock (ns since the Unix epoch) when recording started
  started_mono_ns  INTEGER NOT NULL,     -- CLOCK_MONOTONIC (ns) when recording started; frame times are on this clock
  ended_mono_ns    INTEGER,              -- CLOCK_MONOTONIC (ns) when the session ended; NULL while recording or if fusetrace was killed
  command          TEXT NOT NULL,        -- JSON array: the server's argv as the user gave it
  mountpoint       TEXT,                 -- absolute mountpoint
  kernel_major     INTEGER,              -- protocol version offered in the kernel's INIT request
  kernel_minor     INTEGER,
  server_major     INTEGER,              -- protocol version of the server's INIT reply
  server_minor     INTEGER,
  init_flags       INTEGER,              -- negotiated INIT flags as the kernel saw them: flags | flags2 << 32
  max_write        INTEGER,              -- max_write as forwarded to the kernel
  init_changes     TEXT,                 -- JSON: what the proxy changed in INIT (masked bits, clamped max_write/max_pages, originals)
  snaplen          INTEGER,              -- bytes kept per frame, NULL for full frames
  end_reason       TEXT,                 -- unmount | signal | server-exit | server-crash | error | detached (attach let go; the server runs on); NULL while recording or after SIGKILL
  server_exit_code INTEGER,              -- the server's exit code, if it exited
  server_signal    TEXT,                 -- the signal that killed the server, if any (e.g. SIGSEGV)
  exit_status      INTEGER,              -- fusetrace's own exit status
  frames           INTEGER NOT NULL DEFAULT 0,  -- frames recorded
  bytes            INTEGER NOT NULL DEFAULT 0,  -- frame bytes seen (full lengths, before snaplen)
  dropped          INTEGER NOT NULL DEFAULT 0,  -- frames passed through but not recorded (record --lossy, or a full queue); never silent
  lost             INTEGER NOT NULL DEFAULT 0,  -- requests whose record is incomplete because frames were dropped: rows in state lost plus those with no row (every frame dropped)
  meta             TEXT,                 -- JSON: anything else (fusetrace version, uid, kernel release, ...)
  origin           TEXT NOT NULL DEFAULT 'record',  -- record: fusetrace started the server and saw the connection from INIT on; attached: fusetrace attach joined a running server (no INIT, requests read before the attach missing; replay refuses it)
  capture          TEXT NOT NULL DEFAULT 'frames',  -- frames: the bytes of every frame (up to snaplen); tracepoints: only what the kernel's fuse tracepoints carry (unique, opcode, length, error, requester pid: frames hold synthesized headers, no payloads, nodeids or paths)
  derived          INTEGER NOT NULL DEFAULT 0       -- every frame with seq below this is in requests or loose_frames (derived from batches, possibly later than recorded)
);
${batchesSql(true)}
${LOOSE_FRAMES_SQL}

CREATE TABLE procs (
  session  INTEGER NOT NULL,             -- sessions.id
  pid      INTEGER NOT NULL,             -- fuse_in_header.pid
  comm     TEXT,                         -- /proc/PID/comm when the pump first saw the pid
  PRIMARY KEY (session, pid)
) WITHOUT ROWID;

CREATE TABLE requests (
  session     INTEGER NOT NULL,          -- sessions.id
  seq         INTEGER NOT NULL,          -- seq of the request frame
  unique_id   INTEGER NOT NULL,          -- the request's unique
  opcode      INTEGER NOT NULL,          -- fuse opcode; 0 for a server notification (state notify) or a reply whose request is not in the trace (state unknown)
  nodeid      INTEGER,                   -- fuse_in_header.nodeid
  fh          INTEGER,                   -- file handle the request names, if any
  path        TEXT,                      -- path of nodeid (and name) as of the request's time, if known
  pid         INTEGER,                   -- requesting pid (0 for kernel-internal requests)
  comm        TEXT,                      -- process name of pid
  uid         INTEGER,
  gid         INTEGER,
  start_ns    INTEGER NOT NULL,          -- read by the proxy, ns since session start
  fwd_ns      INTEGER,                   -- forwarded to the server, ns since session start
  reply_ns    INTEGER,                   -- reply read by the proxy, ns since session start
  dur_ns      INTEGER,                   -- reply_ns - start_ns
  errno       INTEGER,                   -- positive errno of the reply, 0 for success, NULL without a reply; for a notification the errno of its write to /dev/fuse
  len         INTEGER NOT NULL,          -- request length
  reply_len   INTEGER,                   -- reply length
  state       TEXT NOT NULL,             -- ok | error | interrupted | late | unanswered | aborted | noreply | notify | unknown | lost
  outcome     TEXT,                      -- sub-state (ledger.ts): interrupted eintr | answered | eagain; late not-waited | duplicate | interrupt-after-finish | interrupt-not-waited; aborted the session's end_reason; notify the notify code name; unknown what was odd; lost which frames are missing (reply-not-recorded | request-not-recorded | frames-not-recorded | unlisted); unknown before-attach: a reply to a request read before fusetrace attach joined
  background  INTEGER NOT NULL DEFAULT 0, -- 1 when no process waits on it (RELEASE, writeback, readahead, INIT)
  reply_seq   INTEGER,                   -- seq of the reply frame
  interrupt_seq INTEGER,                 -- seq of the first FUSE_INTERRUPT naming this request (INTERRUPTs have no row of their own; on kernels >= 5.0 all of them and their answers have unique_id = unique | 1)
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX requests_unique ON requests(session, unique_id);
${LOST_SQL}
CREATE INDEX requests_start ON requests(session, start_ns);
CREATE INDEX requests_state ON requests(session, state);
` + DURATION_INDEX_SQL;
