/**
 * The request ledger: one `requests` row (schema.ts) per request, derived from the raw frames as
 * they are recorded (Ledger.add from TraceWriter.onFrames) and rebuildable from them alone
 * (rebuildLedger), with the same rows either way.
 *
 * Lifecycle states, named after what the kernel does in fs/fuse/dev.c:
 *
 *   ok / error   an accepted reply (fuse_dev_do_write returned the length), errno 0 or not.
 *   interrupted  a FUSE_INTERRUPT named it (request_wait_answer queued one because the waiter got
 *                a signal after the server had read the request) and it was then answered.
 *                outcome: `eagain`   the server answered the INTERRUPT with EAGAIN and the kernel
 *                                    accepted it (queue_interrupt: the INTERRUPT is sent again);
 *                         `eintr`    the request was answered EINTR;
 *                         `answered` it was answered normally anyway.
 *   late         a write for it was refused with ENOENT (request_find found no such unique).
 *                outcome: `not-waited`             its own reply: the kernel no longer waited
 *                                                  (connection aborted, or dropped after a signal);
 *                         `duplicate`              a second reply to an already answered unique;
 *                         `interrupt-after-finish` the answer to its INTERRUPT (libfuse: EAGAIN)
 *                                                  came after the request had been answered;
 *                         `interrupt-not-waited`   the answer to its INTERRUPT came when the kernel
 *                                                  no longer knew the request at all.
 *                On this kernel a request the server has read is waited for until it is answered
 *                (request_wait_answer ends in an uninterruptible wait), so `not-waited` on a live
 *                connection points at a server bug; `interrupt-after-finish` is a benign race.
 *   aborted      still outstanding when the session ended: fuse_abort_conn (unmount, fusectl abort,
 *                the server closing /dev/fuse by exiting or crashing, fusetrace ending on a signal
 *                or error) ended it with ECONNABORTED/ENOTCONN. outcome: the session's end_reason.
 *   unanswered   no reply in the trace and no recorded end: the session is still being recorded,
 *                or the recorder died before it could record the end.
 *   noreply      FORGET and BATCH_FORGET, which the server never answers.
 *   notify       a notification from the server (unique 0; opcode 0, outcome = the notify code
 *                name, errno = the errno of its write to /dev/fuse), and NOTIFY_REPLY (the
 *                kernel's answer to a NOTIFY_RETRIEVE; outcome `retrieve_reply`).
 *   unknown      anything else; outcome says what: `no-request` (a reply whose request is not in
 *                the trace; opcode 0), `not-forwarded` (a server frame the proxy did not forward
 *                and cannot attach to a request; opcode 0), `interrupt-target-unknown` (an
 *                INTERRUPT for a unique not in the trace), `unique-reused`, `duplicate-reply`,
 *                `reply-write-errno-<n>` (the kernel refused the reply for another reason).
 *   lost         some of its frames were dropped (record --lossy while the recorder was behind; the
 *                pump names every dropped frame's unique in the `lost` table), so what is recorded
 *                of it is incomplete and any other state would be a guess. Set when the session
 *                ends (labelLost). outcome: `reply-not-recorded` (the request is in the trace, its
 *                reply is not), `request-not-recorded` (only the reply is), `frames-not-recorded`
 *                (an INTERRUPT or another frame of it), `unlisted` (the list of dropped uniques
 *                overflowed: every request left without an end is labelled so).
 *
 * ok/error carry an outcome when the proxy stepped in: `request-not-forwarded` (the socket refused
 * the request) or `reply-not-forwarded` (the server's reply was split or truncated); the pump then
 * answered the kernel EIO itself, and that reply is the one recorded in reply_seq/errno.
 *
 * INTERRUPT frames are not rows of their own: they attach to their target (interrupt_seq = the
 * first INTERRUPT frame naming it; the kernel may send more after an EAGAIN answer). The TUI finds
 * all of them, and the server's answers to them, as the frames whose unique_id is the target's
 * unique | FUSE_INT_REQ_BIT (kernel >= 5.0), or the unique of the frame at interrupt_seq.
 *
 * An error reply the kernel found the request for but whose layout it refused (write EINVAL) ends
 * the request with EIO (fuse_dev_do_write: `req->out.h.error = -EIO`): state `error`, errno EIO,
 * outcome `reply-rejected`.
 *
 * `background` = 1 when no process waits on the request: INIT, RELEASE, RELEASEDIR (sent with
 * fuse_simple_background), WRITEs carrying FUSE_WRITE_CACHE (writeback), and READs issued by a
 * kernel thread (pid 0 or a `kworker` comm). Readahead cannot be told apart from a read a process
 * waits for on the wire (both come through fuse_readahead, usually in the reader's own context),
 * so this is a heuristic: only READs from kernel threads count as readahead.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { FrameRecord } from './writer.js';
import { PathResolver } from './paths.js';
import { TraceReader } from './reader.js';
import { dropDurationIndexes } from './db.js';
import { Deriver } from './derive.js';
import {
  EAGAIN,
  EINTR,
  EINVAL,
  EIO,
  ENOENT,
  FUSE_WRITE_CACHE,
  NOTIFY_DELETE,
  NOTIFY_INVAL_ENTRY,
  NOTIFY_INVAL_INODE,
  NOTIFY_NAMES,
  NOTIFY_RETRIEVE,
  NOTIFY_STORE,
  DIRENTPLUS_NAMELEN_OFFSET,
  DIRENTPLUS_NAME_OFFSET,
  NOTIFY_DELETE_NAME_OFFSET,
  NOTIFY_INVAL_ENTRY_NAME_OFFSET,
  argsEnd,
  cstr,
  wireSizes,
  type WireSizes,
  requestFhOffset,
  u32,
  u64,
} from './ledger-wire.js';
import { readU64, u64Key, type U64Key } from '../util/u64.js';
import { FUSE_INT_REQ_BIT, IN_HEADER_SIZE, OP, OUT_HEADER_SIZE } from '../protocol/index.js';

/** Why a session ended (sessions.end_reason); outstanding requests become `aborted` with it as outcome. */
export type EndReason = 'unmount' | 'signal' | 'server-exit' | 'server-crash' | 'error';

/** The state values of `requests.state`. */
export type LedgerState = 'ok' | 'error' | 'interrupted' | 'late' | 'unanswered' | 'aborted' | 'noreply' | 'notify' | 'unknown' | 'lost';

/**
 * Finished requests kept in memory for late replies and INTERRUPTs; older ones are read back from
 * the table (one requests_unique seek, the same facts: see fromRow). Ordinary traffic never looks a
 * finished request up, so the window only has to cover the races (an INTERRUPT or its answer just
 * after the reply). Kept small so that finished requests die young: with 16384 of them every Req
 * lived long enough to be copied out of V8's young generation twice (bench derive: scavenges
 * 289 -> 189 ms over 400k frames with 1024, about 0.25 us/frame).
 */
const RECENT_MAX = 1024;
/** Rows per multi-row INSERT, largest first (23 columns: 736 parameters). */
const INSERT_CHUNKS = [32, 8, 2, 1];
/** Columns of a requests row. */
const REQUEST_PARAMS = 23;

/** What an accepted reply does to the path resolver (and fh/minor bookkeeping). */
type Effect =
  | { kind: 'entry'; parent: bigint; name: string }
  | { kind: 'create'; parent: bigint; name: string }
  | { kind: 'tmpfile'; parent: bigint }
  | { kind: 'remove'; parent: bigint; name: string }
  | { kind: 'rename'; olddir: bigint; oldname: string; newdir: bigint; newname: string; flags: number }
  | { kind: 'readdirplus'; parent: bigint }
  | { kind: 'open' }
  | { kind: 'init' };

/** A requests row in the making, plus what its state is computed from. */
interface Req {
  seq: number;
  unique: bigint;
  opcode: number;
  nodeid: bigint | null;
  fh: bigint | null;
  path: string | null;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  gid: number | null;
  startNs: number;
  fwdNs: number | null;
  replyNs: number | null;
  errno: number | null;
  len: number;
  replyLen: number | null;
  background: 0 | 1;
  replySeq: number | null;
  interruptSeq: number | null;
  /** `request` expects a reply; the others are fixed states with `note` as outcome. */
  kind: 'request' | 'noreply' | 'notify' | 'unknown';
  note: string | null;
  /** An accepted reply ended it. */
  answered: boolean;
  /** An EAGAIN answer to its INTERRUPT was accepted. */
  eagain: boolean;
  late: string | null;
  /** Set for a request the classifier could not place (state unknown, outcome this). */
  odd: string | null;
  /**
   * A frame of this exchange never crossed the proxy (fwd_ns NULL): `request-not-forwarded` (the
   * socket refused the request, EMSGSIZE) or `reply-not-forwarded` (a split or truncated reply the
   * proxy would not forward). The pump then answers the kernel EIO itself; that reply decides the
   * state and this becomes the outcome.
   */
  undelivered: string | null;
  /** Forced state/outcome (reply-rejected). */
  forced: { state: LedgerState; outcome: string } | null;
  /** The session's end reason when it ended outstanding. */
  ended: string | null;
  effect: Effect | null;
  inserted: boolean;
  dirty: boolean;
}

/** A row's state and outcome. */
type Classified = readonly [LedgerState, string | null];

/**
 * classify()'s commonest answers, made once: it runs for every row written, and a new pair per row
 * was 31 of the 98 bytes a frame that writing the rows allocated (bench derive's sampling heap
 * profile of an 803,000-frame fio 4k trace; 850 bytes a frame in all, 821 after).
 */
const BARE = {
  ok: ['ok', null],
  error: ['error', null],
  noreply: ['noreply', null],
  unanswered: ['unanswered', null],
} as const satisfies Record<string, Classified>;

/** State and outcome of a row, from its facts. */
function classify(r: Req): Classified {
  switch (r.kind) {
    case 'noreply':
      return BARE.noreply;
    case 'notify':
      return ['notify', r.note];
    case 'unknown':
      return ['unknown', r.note];
  }
  if (r.odd !== null) return ['unknown', r.odd];
  if (r.late !== null) return ['late', r.late];
  if (r.forced !== null) return [r.forced.state, r.forced.outcome];
  if (r.answered) {
    if (r.interruptSeq !== null) return ['interrupted', r.eagain ? 'eagain' : r.errno === EINTR ? 'eintr' : 'answered'];
    if (r.undelivered === null) return r.errno === 0 ? BARE.ok : BARE.error;
    return [r.errno === 0 ? 'ok' : 'error', r.undelivered];
  }
  if (r.ended !== null) return ['aborted', r.ended];
  return r.eagain ? ['unanswered', 'eagain'] : BARE.unanswered;
}

/** Options of a Ledger. */
export interface LedgerOptions {
  /** Protocol minor to assume for struct sizes until the INIT reply says (default: 45). */
  minor?: number;
  /** Finished requests kept in memory (default RECENT_MAX, 1024); tests lower it to exercise the read-back path. */
  recentMax?: number;
  /**
   * The session joined a running connection (fusetrace attach): a reply whose request was read
   * before the attach is expected, and its row says so (state unknown, outcome before-attach)
   * instead of no-request.
   */
  attached?: boolean;
}

/**
 * Derives the `requests` rows of one session from its frames, incrementally. Not thread-safe
 * (neither is the recorder's JS side). All writes of one add() go to the database before it returns,
 * so calling it inside TraceWriter.onFrames commits the rows with their frames.
 */
export class Ledger {
  readonly session: number;
  private readonly db: Database;
  private readonly startMono: bigint;
  private readonly paths = new PathResolver();
  /** Struct sizes for the negotiated protocol minor (the INIT reply's). */
  private sizes: WireSizes;
  private readonly recentMax: number;
  private readonly attached: boolean;
  /**
   * Requests waiting for their reply, by unique; null for those that stopped waiting during this
   * add() (done() sets it, sweep() removes the entry at the end of the add()). A V8 Map that
   * delete() empties shrinks its table and the next set() grows it again: with one request
   * outstanding at a time (fio's 4k reads), two runtime calls and a fresh table per request,
   * a tenth of the derivation's CPU in a profile (bench derive, a 803,000-frame fio 4k trace).
   */
  private readonly pending = new Map<U64Key, Req | null>();
  /** Entries of `pending` that are not null. */
  private waiting = 0;
  /** Recently finished requests, by unique, oldest first. */
  private readonly recent = new Map<U64Key, Req>();
  /** INTERRUPT unique -> its target's unique (kernels before 5.0 gave INTERRUPT a unique of its own). */
  private readonly interrupts = new Map<bigint, bigint>();
  private readonly comms = new Map<number, string | null>();
  /** The request whose reply arrived split (its continuation pieces follow with unique 0). */
  private splitOwner: Req | null = null;
  private newRows: Req[] = [];
  private dirtyRows: Req[] = [];
  private finished = false;
  private failed: { error: unknown } | null = null;
  /** INSERT statements of INSERT_CHUNKS rows, with their parameter arrays. */
  private readonly inserts: Array<{ rows: number; stmt: Statement; params: unknown[] }>;
  private readonly update: Statement;
  private readonly insertLoose: Statement;
  /** Per frame of the current add() (index seq - its first seq): 1 once a row this add() writes names it. */
  private named = new Uint8Array(0);
  private readonly selectComm: Statement;
  private readonly selectByUnique: Statement;

  constructor(db: Database, session: number, opts: LedgerOptions = {}) {
    this.db = db;
    this.session = session;
    const start = db.prepare('SELECT started_mono_ns FROM sessions WHERE id = ?').safeIntegers(true).pluck().get(session) as
      | bigint
      | undefined;
    if (start === undefined) throw new Error(`Ledger: no session ${session}`);
    this.startMono = start;
    this.sizes = wireSizes(opts.minor ?? 45);
    this.recentMax = opts.recentMax ?? RECENT_MAX;
    this.attached = opts.attached ?? false;
    const cols =
      'session, seq, unique_id, opcode, nodeid, fh, path, pid, comm, uid, gid, start_ns, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, outcome, background, reply_seq, interrupt_seq';
    const one = `(${Array(REQUEST_PARAMS).fill('?').join(',')})`;
    // OR IGNORE, for speed: a multi-row INSERT that may abort half-way (the primary key, NOT NULL)
    // makes SQLite copy every page it first touches to a statement journal, so that the statement
    // alone can be undone: with 64 KiB pages, the last leaf of the table and of each index, 4 x 64
    // KiB copied per 32 rows, in 1 KiB chunks malloc()ed each time. With OR IGNORE nothing can abort
    // it (bench derive, fio 4k trace: about 10% of the derivation's CPU). A row the constraints
    // would refuse is a bug of the ledger's: write() counts the rows that went in and throws.
    this.inserts = INSERT_CHUNKS.map((rows) => ({
      rows,
      stmt: db.prepare(`INSERT OR IGNORE INTO requests (${cols}) VALUES ${Array(rows).fill(one).join(',')}`),
      params: new Array<unknown>(rows * REQUEST_PARAMS),
    }));
    this.update = db.prepare(
      `UPDATE requests SET fh = ?, reply_ns = ?, dur_ns = ?, errno = ?, reply_len = ?, state = ?, outcome = ?,
       reply_seq = ?, interrupt_seq = ? WHERE session = ? AND seq = ?`,
    );
    this.insertLoose = db.prepare('INSERT INTO loose_frames (session, seq, unique_id, len) VALUES (?, ?, ?, ?)');
    this.selectComm = db.prepare('SELECT comm FROM procs WHERE session = ? AND pid = ?').pluck();
    this.selectByUnique = db
      .prepare(
        `SELECT seq, opcode, nodeid, fh, path, pid, comm, uid, gid, start_ns, fwd_ns, reply_ns, errno, len, reply_len,
                state, outcome, background, reply_seq, interrupt_seq
         FROM requests WHERE session = ? AND unique_id = ? AND seq < ?
           AND state NOT IN ('noreply', 'notify') AND NOT (state = 'unknown' AND opcode IN (0, ${OP.INTERRUPT}))
         ORDER BY seq DESC LIMIT 1`,
      )
      .safeIntegers(true);
  }

  /** Requests still waiting for a reply (for tests and the live TUI). */
  get outstanding(): number {
    return this.waiting;
  }

  /**
   * Feeds frames in seq order (one flushed batch); writes new rows and updates changed ones.
   * If it ever throws (a bug, or SQLite failing), the ledger stops for the rest of the session and
   * later calls are no-ops: the writer rolls back this batch's rows while its frames still commit,
   * so the in-memory state no longer matches the table. `rebuildLedger` recomputes it afterwards.
   */
  add(frames: readonly FrameRecord[]): void {
    if (this.failed) return;
    if (this.finished) throw new Error('Ledger: add() after finish()');
    try {
      for (const f of frames) {
        if (f.dir === 0) this.request(f);
        else this.reply(f);
      }
      this.writeLoose(frames);
      this.write();
    } catch (err) {
      this.failed = { error: err };
      throw err;
    }
  }

  /** The error that stopped the ledger, if any (the session's rows then need rebuildLedger). */
  get failure(): { error: unknown } | null {
    return this.failed;
  }

  /**
   * The session ended: requests still outstanding become `aborted` (outcome: endReason). Without
   * an endReason (the end is unknown) they stay `unanswered`. No add() after this.
   */
  finish(opts: { endReason?: EndReason | string | null } = {}): void {
    if (this.finished || this.failed) return;
    this.finished = true;
    const reason = opts.endReason ?? null;
    if (reason !== null) {
      for (const r of this.pending.values()) {
        if (r === null) continue;
        r.ended = reason;
        this.touch(r);
      }
    }
    // One transaction for the updates (the recorder calls this after its last flush, outside one).
    const done = () => {
      this.write();
      labelLost(this.db, this.session);
    };
    if (this.db.inTransaction) done();
    else this.db.transaction(done)();
  }

  // ------------------------------------------------------------------------------------------
  // Kernel -> server frames
  // ------------------------------------------------------------------------------------------

  private request(f: FrameRecord): void {
    const b = f.data;
    const opcode = f.opcode ?? u32(b, 4) ?? 0;
    const nodeid = u64(b, 16);
    const r = this.newReq(f, opcode, nodeid);
    r.uid = u32(b, 24);
    r.gid = u32(b, 28);
    r.pid = u32(b, 32);
    if (r.pid !== null) r.comm = this.comm(r.pid);
    r.fwdNs = f.fwdNs === null ? null : Number(f.fwdNs - this.startMono);
    if (f.writeErrno !== 0) r.undelivered = 'request-not-forwarded';

    switch (opcode) {
      case OP.INTERRUPT:
        this.interrupt(f, r);
        return;
      case OP.FORGET: {
        r.kind = 'noreply';
        r.path = nodeid === null ? null : this.paths.path(nodeid);
        const n = u64(b, IN_HEADER_SIZE);
        if (nodeid !== null && n !== null) this.paths.forget(nodeid, n);
        this.newRows.push(r);
        return;
      }
      case OP.BATCH_FORGET: {
        r.kind = 'noreply';
        const count = u32(b, IN_HEADER_SIZE) ?? 0;
        // fuse_batch_forget_in { count, dummy }, then count * fuse_forget_one { nodeid, nlookup }.
        for (let i = 0, off = IN_HEADER_SIZE + 8; i < count; i++, off += 16) {
          const id = u64(b, off);
          const n = u64(b, off + 8);
          if (id === null || n === null) break;
          this.paths.forget(id, n);
        }
        this.newRows.push(r);
        return;
      }
      case OP.NOTIFY_REPLY:
        // The kernel's answer to a NOTIFY_RETRIEVE (unique = its notify_unique); never answered.
        r.kind = 'notify';
        r.note = 'retrieve_reply';
        r.path = nodeid === null ? null : this.paths.path(nodeid);
        this.newRows.push(r);
        return;
    }

    this.describe(r, b, opcode, nodeid);
    const key = u64Key(f.unique);
    const prev = this.waitingFor(key);
    if (prev) {
      // Linux never reuses a unique within a connection (fuse_get_unique counts up by 2).
      prev.odd = 'unique-reused';
      this.done(prev);
    }
    this.pending.set(key, r);
    this.waiting++;
    this.newRows.push(r);
  }

  /** Path, fh, background and the reply's path effect of an ordinary request. */
  private describe(r: Req, b: Buffer, opcode: number, nodeid: bigint | null): void {
    const fhOff = requestFhOffset(opcode, b);
    if (fhOff >= 0) r.fh = u64(b, fhOff);
    const nameOff = this.sizes.nameOffset.get(opcode);
    if (nameOff !== undefined && nodeid !== null) {
      const end = argsEnd(b);
      const first = cstr(b, IN_HEADER_SIZE + nameOff, end);
      if (first) {
        r.path = this.paths.childPath(nodeid, first.name);
        switch (opcode) {
          case OP.LOOKUP:
          case OP.MKNOD:
          case OP.MKDIR:
          case OP.SYMLINK:
          case OP.LINK:
            r.effect = { kind: 'entry', parent: nodeid, name: first.name };
            break;
          case OP.CREATE:
            r.effect = { kind: 'create', parent: nodeid, name: first.name };
            break;
          case OP.TMPFILE:
            r.path = this.paths.path(nodeid);
            r.effect = { kind: 'tmpfile', parent: nodeid };
            break;
          case OP.UNLINK:
          case OP.RMDIR:
            r.effect = { kind: 'remove', parent: nodeid, name: first.name };
            break;
          case OP.RENAME:
          case OP.RENAME2: {
            const newdir = u64(b, IN_HEADER_SIZE);
            const flags = opcode === OP.RENAME2 ? (u32(b, IN_HEADER_SIZE + 8) ?? 0) : 0;
            const second = cstr(b, first.next, end);
            if (newdir !== null && second) {
              r.effect = { kind: 'rename', olddir: nodeid, oldname: first.name, newdir, newname: second.name, flags };
            }
            break;
          }
        }
      } else {
        r.path = this.paths.path(nodeid); // the name was cut by snaplen: at least the directory
      }
    } else if (nodeid !== null) {
      r.path = this.paths.path(nodeid);
    }
    switch (opcode) {
      case OP.READDIRPLUS:
        if (nodeid !== null) r.effect = { kind: 'readdirplus', parent: nodeid };
        break;
      case OP.OPEN:
      case OP.OPENDIR:
        r.effect = { kind: 'open' };
        break;
      case OP.INIT:
        r.effect = { kind: 'init' };
        r.background = 1;
        break;
      case OP.RELEASE:
      case OP.RELEASEDIR:
        r.background = 1;
        break;
      case OP.WRITE: {
        // fuse_write_in { fh, offset, size, write_flags, ... }
        const wf = u32(b, IN_HEADER_SIZE + 20);
        if (wf !== null && (wf & FUSE_WRITE_CACHE) !== 0) r.background = 1;
        break;
      }
      case OP.READ:
        if (r.pid === 0 || (r.comm !== null && r.comm.startsWith('kworker'))) r.background = 1;
        break;
    }
  }

  private interrupt(f: FrameRecord, r: Req): void {
    // fuse_interrupt_in { unique }: the target. Fall back on the unique's FUSE_INT_REQ_BIT form.
    const target = u64(f.data, IN_HEADER_SIZE) ?? f.unique & ~FUSE_INT_REQ_BIT;
    const t = this.find(target, f.seq);
    if (!t) {
      r.kind = 'unknown';
      r.note = 'interrupt-target-unknown';
      r.path = r.nodeid === null ? null : this.paths.path(r.nodeid);
      this.newRows.push(r);
      return;
    }
    if (t.interruptSeq === null) {
      t.interruptSeq = f.seq;
      this.touch(t);
    }
    this.interrupts.set(f.unique, target);
  }

  // ------------------------------------------------------------------------------------------
  // Server -> kernel frames
  // ------------------------------------------------------------------------------------------

  private reply(f: FrameRecord): void {
    const b = f.data;
    const error = f.error ?? (b.length >= 8 ? b.readInt32LE(4) : 0);
    if (f.fwdNs === null && f.writeErrno !== 0) {
      this.unforwarded(f, error);
      return;
    }
    this.splitOwner = null;
    if (f.unique === 0n) {
      this.notify(f, error);
      return;
    }
    // An answer to an INTERRUPT: its unique (modern kernels: target | FUSE_INT_REQ_BIT).
    const named = this.interrupts.get(f.unique) ?? ((f.unique & FUSE_INT_REQ_BIT) !== 0n ? f.unique & ~FUSE_INT_REQ_BIT : undefined);
    const intrTarget = named === undefined ? undefined : this.find(named, f.seq);
    if (intrTarget) {
      const t = intrTarget;
      if (f.writeErrno === 0 && f.fwdNs !== null) {
        if (error === -EAGAIN && !t.eagain) {
          t.eagain = true;
          this.touch(t);
        }
      } else if (f.writeErrno === ENOENT) {
        if (t.late === null) {
          t.late = t.answered ? 'interrupt-after-finish' : 'interrupt-not-waited';
          this.touch(t);
        }
      }
      // Any other refusal (EINVAL: an INTERRUPT answer must be a bare header) changes nothing for the target.
      return;
    }

    const r = this.waitingFor(u64Key(f.unique));
    if (!r) {
      const old = this.find(f.unique, f.seq);
      if (old) {
        if (f.writeErrno === ENOENT) {
          if (old.late === null) old.late = 'duplicate';
        } else if (old.odd === null) {
          old.odd = 'duplicate-reply';
        }
        this.touch(old);
        return;
      }
      this.orphan(f, error);
      return;
    }

    r.replyNs = Number(f.tsNs - this.startMono);
    r.replySeq = f.seq;
    r.replyLen = f.len;
    r.errno = error <= 0 ? -error : error;
    if (f.writeErrno === 0 && f.fwdNs !== null) {
      r.answered = true;
      if (error === 0) this.applyEffect(r, b);
    } else if (f.writeErrno === ENOENT) {
      r.late = 'not-waited';
    } else if (f.writeErrno === EINVAL && this.kernelFoundRequest(f, error)) {
      // The kernel took the reply for this request but refused its layout: it ended it with EIO.
      r.errno = EIO;
      r.answered = true;
      r.forced = { state: 'error', outcome: 'reply-rejected' };
    } else if (f.writeErrno !== 0) {
      r.odd = `reply-write-errno-${f.writeErrno}`;
    } else {
      r.odd = 'reply-not-forwarded';
    }
    this.done(r);
  }

  /**
   * A server frame the proxy did not forward (native/pump.cc: a reply whose length disagrees with
   * its header, recorded with EBADMSG; the pieces that follow a split reply carry unique 0). The
   * request stays pending: the pump answers it EIO, and that frame follows.
   */
  private unforwarded(f: FrameRecord, error: number): void {
    if (f.unique !== 0n) {
      const r = this.waitingFor(u64Key(f.unique));
      if (r) {
        r.undelivered = 'reply-not-forwarded';
        this.splitOwner = r;
        return;
      }
    } else if (this.splitOwner) {
      return; // a continuation piece of the split reply just seen
    }
    this.splitOwner = null;
    this.orphan(f, error, 'not-forwarded');
  }

  /**
   * fuse_dev_do_write checks the header before looking the unique up: len must match the write
   * size and error must be a plausible -errno (> -512 on older kernels, > -1000 on newer ones).
   * Past those checks an EINVAL means the request was found and ended with EIO.
   */
  private kernelFoundRequest(f: FrameRecord, error: number): boolean {
    const hlen = u32(f.data, 0);
    return hlen === f.len && error <= 0 && error > -512;
  }

  private notify(f: FrameRecord, code: number): void {
    const b = f.data;
    const r = this.newReq(f, 0, null);
    r.kind = 'notify';
    r.note = NOTIFY_NAMES[code] ?? `notify-${code}`;
    r.errno = f.writeErrno;
    const body = OUT_HEADER_SIZE;
    switch (code) {
      case NOTIFY_INVAL_INODE: // fuse_notify_inval_inode_out { ino, off, len }
      case NOTIFY_STORE: // fuse_notify_store_out { nodeid, offset, size, padding }
        r.nodeid = u64(b, body);
        break;
      case NOTIFY_RETRIEVE: // fuse_notify_retrieve_out { notify_unique, nodeid, offset, size, padding }
        r.nodeid = u64(b, body + 8);
        break;
      case NOTIFY_INVAL_ENTRY: // fuse_notify_inval_entry_out { parent, namelen, flags }, name
      case NOTIFY_DELETE: {
        // fuse_notify_delete_out { parent, child, namelen, padding }, name
        const parent = u64(b, body);
        const nameOff = body + (code === NOTIFY_DELETE ? NOTIFY_DELETE_NAME_OFFSET : NOTIFY_INVAL_ENTRY_NAME_OFFSET);
        const nameLen = u32(b, code === NOTIFY_DELETE ? body + 16 : body + 8);
        r.nodeid = code === NOTIFY_DELETE ? u64(b, body + 8) : parent;
        if (parent !== null && nameLen !== null && nameOff + nameLen <= b.length) {
          const name = b.toString('utf8', nameOff, nameOff + nameLen);
          r.path = this.paths.childPath(parent, name);
          if (code === NOTIFY_DELETE && f.writeErrno === 0) this.paths.remove(parent, name);
        }
        break;
      }
    }
    if (r.path === null && r.nodeid !== null) r.path = this.paths.path(r.nodeid);
    this.newRows.push(r);
  }

  /** A reply whose request is not in the trace (dropped frames, or a server answering a unique it made up). */
  private orphan(f: FrameRecord, error: number, note = 'no-request'): void {
    const r = this.newReq(f, 0, null);
    r.kind = 'unknown';
    r.note = note === 'no-request' && this.attached ? 'before-attach' : note;
    r.replyNs = r.startNs;
    r.replySeq = f.seq;
    r.replyLen = f.len;
    r.errno = -error;
    this.newRows.push(r);
  }

  /** What an accepted successful reply teaches the resolver. */
  private applyEffect(r: Req, b: Buffer): void {
    const e = r.effect;
    if (!e) return;
    const body = OUT_HEADER_SIZE;
    switch (e.kind) {
      case 'entry': {
        const id = u64(b, body); // fuse_entry_out.nodeid
        if (id !== null) this.paths.entry(e.parent, e.name, id);
        break;
      }
      case 'create': {
        const id = u64(b, body);
        if (id !== null) this.paths.entry(e.parent, e.name, id);
        r.fh = u64(b, body + this.sizes.entryOut) ?? r.fh; // fuse_open_out.fh after the entry
        break;
      }
      case 'tmpfile': {
        const id = u64(b, body);
        if (id !== null) this.paths.tmpfile(e.parent, id);
        r.fh = u64(b, body + this.sizes.entryOut) ?? r.fh;
        break;
      }
      case 'remove':
        this.paths.remove(e.parent, e.name);
        break;
      case 'rename':
        this.paths.rename(e.olddir, e.oldname, e.newdir, e.newname, e.flags);
        break;
      case 'readdirplus':
        this.readdirplus(e.parent, b);
        break;
      case 'open':
        r.fh = u64(b, body) ?? r.fh; // fuse_open_out.fh
        break;
      case 'init': {
        const minor = u32(b, body + 4); // fuse_init_out { major, minor, ... }
        if (minor !== null) this.sizes = wireSizes(minor);
        break;
      }
    }
  }

  /**
   * READDIRPLUS reply: fuse_direntplus { fuse_entry_out, fuse_dirent { ino, off, namelen, type,
   * name } } each padded to 8 bytes (FUSE_DIRENTPLUS_SIZE). Each entry with a nodeid is a lookup
   * the kernel counts (fuse_direntplus_link), except "." and "..".
   */
  private readdirplus(parent: bigint, b: Buffer): void {
    const end = Math.min(b.length, u32(b, 0) ?? b.length);
    let off = OUT_HEADER_SIZE;
    while (off + DIRENTPLUS_NAME_OFFSET <= end) {
      const id = readU64(b, off); // entry_out.nodeid
      const namelen = b.readUInt32LE(off + DIRENTPLUS_NAMELEN_OFFSET);
      const nameOff = off + DIRENTPLUS_NAME_OFFSET;
      if (namelen === 0 || nameOff + namelen > end) break;
      const name = b.toString('utf8', nameOff, nameOff + namelen);
      // fuse_direntplus_link ignores "." and ".." (no lookup counted), and entries with nodeid 0.
      if (name !== '.' && name !== '..') this.paths.entry(parent, name, id);
      off += (DIRENTPLUS_NAME_OFFSET + namelen + 7) & ~7;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Bookkeeping
  // ------------------------------------------------------------------------------------------

  private newReq(f: FrameRecord, opcode: number, nodeid: bigint | null): Req {
    return {
      seq: f.seq,
      unique: f.unique,
      opcode,
      nodeid,
      fh: null,
      path: null,
      pid: null,
      comm: null,
      uid: null,
      gid: null,
      startNs: Number(f.tsNs - this.startMono),
      fwdNs: null,
      replyNs: null,
      errno: null,
      len: f.len,
      replyLen: null,
      background: 0,
      replySeq: null,
      interruptSeq: null,
      kind: 'request',
      note: null,
      answered: false,
      eagain: false,
      late: null,
      odd: null,
      undelivered: null,
      forced: null,
      ended: null,
      effect: null,
      inserted: false,
      dirty: false,
    };
  }

  /** The request's reply is in: it leaves `pending` and stays findable for late frames. */
  private done(r: Req): void {
    const key = u64Key(r.unique);
    this.pending.set(key, null);
    this.waiting--;
    r.effect = null;
    this.recent.delete(key);
    this.recent.set(key, r);
    this.touch(r);
  }

  /** Marks an already written row for an UPDATE at the end of this add(). */
  private touch(r: Req): void {
    if (r.inserted && !r.dirty) {
      r.dirty = true;
      this.dirtyRows.push(r);
    }
  }

  /** The request with this unique that waits for its reply. */
  private waitingFor(key: U64Key): Req | undefined {
    return this.pending.get(key) ?? undefined;
  }

  /** Removes the requests that left `pending` during this add() (see there). */
  private sweep(): void {
    if (this.pending.size === this.waiting) return;
    if (this.waiting === 0) {
      this.pending.clear();
      return;
    }
    // forEach rather than for-of over entries: no [key, value] array per entry.
    this.pending.forEach((r, key, map) => {
      if (r === null) map.delete(key);
    });
  }

  /** The request with this unique, pending or finished (read back from the table if evicted). */
  private find(unique: bigint, beforeSeq: number): Req | undefined {
    const key = u64Key(unique);
    const hit = this.pending.get(key) ?? this.recent.get(key);
    if (hit) return hit;
    const row = this.selectByUnique.get(this.session, BigInt.asIntN(64, unique), beforeSeq) as Record<string, bigint | string | null> | undefined;
    if (!row) return undefined;
    const r = fromRow(unique, row);
    if (r.kind !== 'request') return undefined;
    this.recent.set(key, r);
    return r;
  }

  private comm(pid: number): string | null {
    const c = this.comms.get(pid);
    if (c !== undefined) return c;
    const v = (this.selectComm.get(this.session, pid) as string | null | undefined) ?? null;
    // Cache only what was found: `record` may insert the pid's procs row in a later batch.
    if (v !== null) this.comms.set(pid, v);
    return v;
  }

  /**
   * Lists in loose_frames the frames of this add() that no requests row names (schema.ts
   * LOOSE_FRAMES_SQL), before write() forgets which rows changed. A frame of unique u is named by
   * a row of unique u or u & ~FUSE_INT_REQ_BIT through its seq, reply_seq or interrupt_seq: the
   * rule readers look frames up by (reader.ts framesOfUnique). Every row that names a frame of
   * this add() was made or changed by it, so only those rows are looked at.
   */
  private writeLoose(frames: readonly FrameRecord[]): void {
    const n = frames.length;
    if (n === 0) return;
    const lo = frames[0].seq;
    const span = frames[n - 1].seq - lo + 1;
    if (this.named.length < span) this.named = new Uint8Array(Math.max(span, this.named.length * 2));
    const named = this.named;
    named.fill(0, 0, span);
    // seq -> index in frames, only needed when seqs have gaps (dropped frames).
    const dense = span === n;
    const at = dense ? null : new Map<number, number>(frames.map((f, i) => [f.seq, i]));
    const mark = (seq: number | null, unique: bigint): void => {
      if (seq === null || seq < lo || seq - lo >= span) return;
      const i = dense ? seq - lo : at!.get(seq);
      if (i === undefined) return;
      const u = frames[i].unique;
      if (u === unique || (u & ~FUSE_INT_REQ_BIT) === unique) named[seq - lo] = 1;
    };
    for (const rows of [this.newRows, this.dirtyRows]) {
      for (const r of rows) {
        mark(r.seq, r.unique);
        mark(r.replySeq, r.unique);
        mark(r.interruptSeq, r.unique);
      }
    }
    for (const f of frames) {
      if (named[f.seq - lo] === 0) this.insertLoose.run(this.session, f.seq, BigInt.asIntN(64, f.unique), f.len);
    }
  }

  /** Inserts the rows made in this batch, updates the changed older ones, trims the memory. */
  private write(): void {
    const rows = this.newRows;
    const n = rows.length;
    let i = 0;
    for (const ins of this.inserts) {
      for (; i + ins.rows <= n; i += ins.rows) {
        let p = 0;
        for (let j = i; j < i + ins.rows; j++) p = this.rowParams(rows[j], ins.params, p);
        // Spread, not the array: better-sqlite3 reads an array's elements through the V8 API one
        // Get at a time, arguments directly (a 32-row INSERT of 23 columns: 0.68 against 1.1-1.9 us a row).
        const { changes } = ins.stmt.run(...ins.params);
        if (changes !== ins.rows) throw new Error(`ledger: ${ins.rows - changes} of ${ins.rows} requests rows refused (duplicate seq or missing value), first seq ${rows[i].seq}`);
      }
    }
    for (const r of rows) {
      r.inserted = true;
      r.dirty = false;
    }
    for (const r of this.dirtyRows) {
      const [state, outcome] = classify(r);
      this.update.run(
        r.fh === null ? null : BigInt.asIntN(64, r.fh),
        r.replyNs,
        r.replyNs === null ? null : r.replyNs - r.startNs,
        r.errno,
        r.replyLen,
        state,
        outcome,
        r.replySeq,
        r.interruptSeq,
        this.session,
        r.seq,
      );
      r.dirty = false;
    }
    this.newRows = [];
    this.dirtyRows = [];
    this.sweep();
    if (this.recent.size > this.recentMax) {
      let drop = this.recent.size - this.recentMax;
      for (const u of this.recent.keys()) {
        if (drop-- <= 0) break;
        this.recent.delete(u);
      }
    }
  }

  private rowParams(r: Req, params: unknown[], p: number): number {
    const [state, outcome] = classify(r);
    params[p++] = this.session;
    params[p++] = r.seq;
    params[p++] = BigInt.asIntN(64, r.unique);
    params[p++] = r.opcode;
    params[p++] = r.nodeid === null ? null : BigInt.asIntN(64, r.nodeid);
    params[p++] = r.fh === null ? null : BigInt.asIntN(64, r.fh);
    params[p++] = r.path;
    params[p++] = r.pid;
    params[p++] = r.comm;
    params[p++] = r.uid;
    params[p++] = r.gid;
    params[p++] = r.startNs;
    params[p++] = r.fwdNs;
    params[p++] = r.replyNs;
    params[p++] = r.replyNs === null ? null : r.replyNs - r.startNs;
    params[p++] = r.errno;
    params[p++] = r.len;
    params[p++] = r.replyLen;
    params[p++] = state;
    params[p++] = outcome;
    params[p++] = r.background;
    params[p++] = r.replySeq;
    params[p++] = r.interruptSeq;
    return p;
  }
}

/** A finished request read back from its row: the facts classify() needs, recovered from state/outcome. */
function fromRow(unique: bigint, row: Record<string, bigint | string | null>): Req {
  const n = (v: bigint | string | null): number | null => (v === null ? null : Number(v));
  const state = row.state as LedgerState;
  const outcome = row.outcome as string | null;
  const kind: Req['kind'] =
    state === 'noreply' ? 'noreply' : state === 'notify' ? 'notify' : state === 'unknown' && (n(row.opcode) === 0 || n(row.opcode) === OP.INTERRUPT) ? 'unknown' : 'request';
  return {
    seq: n(row.seq)!,
    unique,
    opcode: n(row.opcode)!,
    nodeid: row.nodeid === null ? null : BigInt.asUintN(64, row.nodeid as bigint),
    fh: row.fh === null ? null : BigInt.asUintN(64, row.fh as bigint),
    path: row.path as string | null,
    pid: n(row.pid),
    comm: row.comm as string | null,
    uid: n(row.uid),
    gid: n(row.gid),
    startNs: n(row.start_ns)!,
    fwdNs: n(row.fwd_ns),
    replyNs: n(row.reply_ns),
    errno: n(row.errno),
    len: n(row.len)!,
    replyLen: n(row.reply_len),
    background: n(row.background) ? 1 : 0,
    replySeq: n(row.reply_seq),
    interruptSeq: n(row.interrupt_seq),
    kind,
    note: kind === 'request' ? null : outcome,
    answered:
      row.reply_seq !== null &&
      (state === 'ok' || state === 'error' || state === 'interrupted' || (state === 'late' && outcome !== 'not-waited' && outcome !== 'interrupt-not-waited')),
    eagain: outcome === 'eagain',
    late: state === 'late' ? outcome : null,
    odd: state === 'unknown' && kind === 'request' ? outcome : null,
    undelivered: (state === 'ok' || state === 'error') && outcome !== null && outcome.endsWith('-not-forwarded') ? outcome : null,
    forced: state === 'error' && outcome === 'reply-rejected' ? { state, outcome } : null,
    ended: state === 'aborted' ? outcome : null,
    effect: null,
    inserted: true,
    dirty: false,
  };
}

/**
 * Labels the requests whose frames were dropped `lost` (see the header comment) and stores how many
 * requests are incomplete in sessions.lost: those rows plus the requests of which no frame at all
 * was kept (no row). Idempotent; runs at the end of Ledger.finish, so a rebuild labels the same.
 */
export function labelLost(db: Database, session: number): number {
  const anyLost = db.prepare('SELECT 1 FROM lost WHERE session = ? LIMIT 1').get(session) !== undefined;
  const unlisted = Number(
    db.prepare("SELECT coalesce(json_extract(meta, '$.lostUnlisted'), 0) FROM sessions WHERE id = ?").pluck().get(session) ?? 0,
  );
  if (!anyLost && unlisted === 0) return 0;
  // An INTERRUPT and its answer carry the request's unique | FUSE_INT_REQ_BIT (kernel >= 5.0).
  db.prepare(
    `UPDATE requests SET state = 'lost',
       outcome = CASE WHEN opcode = 0 AND state = 'unknown' THEN 'request-not-recorded'
                      WHEN reply_seq IS NULL THEN 'reply-not-recorded' ELSE 'frames-not-recorded' END
     WHERE session = @s AND state NOT IN ('noreply', 'notify', 'lost')
       AND (unique_id IN (SELECT unique_id FROM lost WHERE session = @s)
            OR (unique_id | ${Number(FUSE_INT_REQ_BIT)}) IN (SELECT unique_id FROM lost WHERE session = @s))`,
  ).run({ s: session });
  if (unlisted > 0) {
    db.prepare(
      `UPDATE requests SET state = 'lost', outcome = 'unlisted'
       WHERE session = ? AND (state IN ('aborted', 'unanswered') OR (state = 'unknown' AND outcome = 'no-request'))`,
    ).run(session);
  }
  const rows = Number(db.prepare("SELECT count(*) FROM requests WHERE session = ? AND state = 'lost'").pluck().get(session));
  const rowless = Number(
    db
      .prepare(
        `SELECT count(*) FROM (SELECT DISTINCT unique_id & ~${Number(FUSE_INT_REQ_BIT)} AS u FROM lost WHERE session = @s) l
         WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.session = @s AND r.unique_id = l.u)`,
      )
      .pluck()
      .get({ s: session }),
  );
  // With an overflowed list the unnamed drops' requests are among the rows labelled `unlisted`.
  const total = rows + rowless;
  db.prepare('UPDATE sessions SET lost = ? WHERE id = ?').run(total, session);
  return total;
}

/**
 * Recomputes the `requests` and `loose_frames` rows of a session from its batches alone
 * (and its end_reason), in one transaction, through a Deriver (derive.ts): the same rows the
 * incremental ledger wrote; sessions.derived ends past the last frame. `batch` only exists for
 * tests that prove batch boundaries do not matter. Returns the number of frames read.
 */
export function rebuildLedger(db: Database, session: number, opts: { batch?: number } & LedgerOptions = {}): number {
  const { batch, ...ledgerOpts } = opts;
  if (new TraceReader(db).getSession(session) === undefined) throw new Error(`rebuildLedger: no session ${session}`);
  let frames = 0;
  db.transaction(() => {
    // As while recording: without the duration indexes the rows go in several times faster
    // (schema.ts DURATION_INDEX_SQL); Deriver.finish builds them once at the end.
    dropDurationIndexes(db);
    db.prepare('DELETE FROM loose_frames WHERE session = ?').run(session);
    db.prepare('DELETE FROM requests WHERE session = ?').run(session);
    db.prepare('UPDATE sessions SET derived = 0 WHERE id = ?').run(session);
    const deriver = new Deriver(db, session, { ...ledgerOpts, feed: batch });
    for (let n = deriver.step(); n > 0; n = deriver.step()) frames += n;
    deriver.finish();
  })();
  return frames;
}
