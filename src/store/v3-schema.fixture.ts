/**
 * The schema of format 3 (commit c262bf5, src/store/schema.ts SCHEMA_SQL), verbatim: frames held
 * their bytes in a `data` column, one row per frame. Tests build real format 3 files with it to
 * check the upgrade to format 4 (db.ts repackFrames).
 */
import { DURATION_INDEX_SQL, LOST_SQL } from './schema.js';

export const V3_SCHEMA_SQL = `
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
  capture          TEXT NOT NULL DEFAULT 'frames'   -- frames: the bytes of every frame (up to snaplen); tracepoints: only what the kernel's fuse tracepoints carry (unique, opcode, length, error, requester pid: frames hold synthesized headers, no payloads, nodeids or paths)
);

-- frames is a rowid table on purpose, although (session, seq) is its key: in a WITHOUT ROWID table
-- the rows live in an index b-tree, whose largest in-page payload is about a quarter of a page, so
-- every 4 KiB READ/WRITE frame spilled into an overflow page (2x the file size, half the insert rate;
-- bench/store.ts). A rowid table keeps rows up to a page inline; (session, seq) becomes a small index.
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
  cap_len     INTEGER NOT NULL,          -- bytes kept in data (less than len when cut by --snaplen)
  data        BLOB NOT NULL,             -- the frame as it crossed the proxy, headers included
  write_errno INTEGER NOT NULL DEFAULT 0, -- errno of the forwarding write() (ENOENT: the kernel no longer knew the unique)
  PRIMARY KEY (session, seq)
);
CREATE INDEX frames_unique ON frames(session, unique_id);

CREATE TABLE procs (
  session  INTEGER NOT NULL,             -- sessions.id
  pid      INTEGER NOT NULL,             -- fuse_in_header.pid
  comm     TEXT,                         -- /proc/PID/comm when the pump first saw the pid
  PRIMARY KEY (session, pid)
) WITHOUT ROWID;

CREATE TABLE requests (
  session     INTEGER NOT NULL,          -- sessions.id
  seq         INTEGER NOT NULL,          -- frames.seq of the request frame
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
  reply_seq   INTEGER,                   -- frames.seq of the reply
  interrupt_seq INTEGER,                 -- frames.seq of the first FUSE_INTERRUPT naming this request (INTERRUPTs have no row of their own; on kernels >= 5.0 all of them and their answers have unique_id = unique | 1)
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX requests_unique ON requests(session, unique_id);
${LOST_SQL}
CREATE INDEX requests_start ON requests(session, start_ns);
CREATE INDEX requests_state ON requests(session, state);
` + DURATION_INDEX_SQL;
