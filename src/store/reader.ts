import type { Database, Statement } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { OP } from '../protocol/index.js';
import { BatchPages } from './batch-read.js';
import { FUSE_INT_REQ_BIT } from '../protocol/index.js';
import { decodeBatch, FRAME_HEADER_BYTES, frameCopyAt, nextFrameAt, type BatchFrame } from './batch.js';
import { fromSqlU64, type FrameRecord } from './writer.js';

/** One row of `sessions`, in TypeScript terms (see schema.ts for what each column means). */
export interface SessionInfo {
  id: number;
  name: string | null;
  startedWallNs: bigint;
  startedMonoNs: bigint;
  /** null while recording, or when the recorder was killed before it could end the session. */
  endedMonoNs: bigint | null;
  command: string[];
  mountpoint: string | null;
  kernelMajor: number | null;
  kernelMinor: number | null;
  serverMajor: number | null;
  serverMinor: number | null;
  initFlags: bigint | null;
  maxWrite: number | null;
  initChanges: unknown;
  snaplen: number | null;
  endReason: string | null;
  serverExitCode: number | null;
  serverSignal: string | null;
  exitStatus: number | null;
  frames: number;
  bytes: number;
  dropped: number;
  /** Requests whose record is incomplete because frames were dropped (0 in a format 1 file). */
  lost: number;
  meta: Record<string, unknown> | null;
  /** 'record' or 'attached' (joined a running server: no beginning); 'record' in format 1 files. */
  origin: string;
  /** 'frames' or 'tracepoints' (headers from the kernel's tracepoints only). */
  capture: string;
}

/** Per-session counts from the `requests` table (0 until the ledger has filled it). */
export interface RequestCounts {
  requests: number;
  /** state = 'error': answered with a non-zero errno. */
  errors: number;
  /** state = 'interrupted'. */
  interrupted: number;
  /** state = 'unanswered': no reply by the end of the session. */
  unanswered: number;
  /** state = 'aborted': outstanding when the session ended. */
  aborted: number;
  /** state = 'lost': frames of the request were dropped (record --lossy), so its record is incomplete. */
  lost: number;
}

/** A range of frames.seq, both ends included. */
export interface FrameRange {
  fromSeq?: number;
  toSeq?: number;
}

/** Batches fetched per query by frames() (at most BATCH_BYTES each, or one large frame): bounded memory. */
const BATCH_PAGE = 4;
/** Decoded batches a reader keeps for lookups by seq: `show --json` asks for frames in seq order, mostly from the same batch. */
const BATCH_CACHE = 8;

/** A batch decoded for lookups by seq (patches not applied: framesAt looks each one up). */
interface CachedBatch {
  session: number;
  firstSeq: number;
  lastSeq: number;
  frames: BatchFrame[];
}

type Row = Record<string, bigint | string | Buffer | null>;

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null ? null : Number(v));
const jsonOrNull = (v: unknown): unknown => (v === null ? null : JSON.parse(v as string));

/** Read access to a trace file opened with openTraceDb (read-only or not). */
export class TraceReader {
  private readonly db: Database;
  private readonly pages: BatchPages;
  private readonly batchAt: Statement;
  /** Recently decoded batches, oldest first. */
  private readonly cache: CachedBatch[] = [];
  /** The file name used in error messages. */
  readonly label: string;
  private readonly stmts: Record<
    'sessions' | 'session' | 'latest' | 'byName' | 'patch' | 'count' | 'procs' | 'counts' | 'outcomes' | 'lastFrame' | 'namedBy' | 'loose' | 'interrupts',
    Statement
  >;

  constructor(db: Database, label: string = db.name) {
    this.db = db;
    this.label = label;
    this.pages = new BatchPages(db);
    // The batch holding `seq` is the one with the largest first_seq <= seq (batches never overlap).
    this.batchAt = db
      .prepare('SELECT first_seq, last_seq, body FROM batches WHERE session = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1')
      .safeIntegers(false)
      .raw(true);
    const p = (sql: string): Statement => db.prepare(sql).safeIntegers(true);
    this.stmts = {
      sessions: p('SELECT * FROM sessions ORDER BY id'),
      session: p('SELECT * FROM sessions WHERE id = ?'),
      latest: p('SELECT max(id) FROM sessions').pluck(),
      byName: p('SELECT max(id) FROM sessions WHERE name = ?').pluck(),
      patch: p('SELECT fwd_ns, write_errno FROM patches WHERE session = ? AND seq = ?').raw(true),
      count: p('SELECT coalesce(sum(count), 0) FROM batches WHERE session = ?').pluck(),
      procs: p('SELECT pid, comm FROM procs WHERE session = ? ORDER BY pid'),
      // GROUP BY state reads only the requests_state index (session, state), not the rows.
      counts: p('SELECT state, count(*) AS n FROM requests WHERE session = ? GROUP BY state'),
      outcomes: p('SELECT state, outcome, count(*) AS n FROM requests WHERE session = ? GROUP BY state, outcome ORDER BY state, outcome'),
      lastFrame: p('SELECT last_ns FROM batches WHERE session = ? ORDER BY first_seq DESC LIMIT 1').pluck(),
      // The frames a unique's rows name (schema.ts LOOSE_FRAMES_SQL): requests_unique seeks.
      namedBy: p('SELECT seq, reply_seq, interrupt_seq FROM requests WHERE session = ? AND unique_id IN (?, ?)').raw(true),
      loose: p('SELECT seq FROM loose_frames WHERE session = ? AND unique_id = ? AND seq > ? AND seq < ?').pluck(),
      // Where INTERRUPTs and the server's answers to them can be: the first INTERRUPT naming a
      // request (interrupt_seq), an INTERRUPT whose target is not in the trace (a row of opcode
      // INTERRUPT), an answer no INTERRUPT was found for (a row of opcode 0), and loose frames.
      interrupts: p(
        `SELECT seq FROM requests WHERE session = @s AND (opcode = ${OP.INTERRUPT} OR (opcode = 0 AND state <> 'notify'))
         UNION SELECT interrupt_seq FROM requests WHERE session = @s AND interrupt_seq IS NOT NULL
         UNION SELECT seq FROM loose_frames WHERE session = @s`,
      ).pluck(),
    };
  }

  /** All sessions, oldest first. */
  listSessions(): SessionInfo[] {
    return (this.stmts.sessions.all() as Row[]).map(toSession);
  }

  /** One session, or undefined. */
  getSession(id: number): SessionInfo | undefined {
    const row = this.stmts.session.get(id) as Row | undefined;
    return row === undefined ? undefined : toSession(row);
  }

  /** The newest session's id, or undefined in an empty file. */
  latestSessionId(): number | undefined {
    const id = this.stmts.latest.get() as bigint | null;
    return id === null ? undefined : Number(id);
  }

  /**
   * Resolves a SESSION argument: a session id, else a session name (the newest session of that
   * name), or the newest session when omitted. Throws a one-line UserError when there is none.
   */
  resolveSession(arg?: string): number {
    if (arg === undefined || arg === '') {
      const id = this.latestSessionId();
      if (id === undefined) throw new UserError(`no sessions in ${this.label} (record one first: fusetrace record -- SERVER ARGS... MOUNTPOINT)`);
      return id;
    }
    if (/^\d+$/.test(arg) && this.getSession(Number(arg)) !== undefined) return Number(arg);
    const byName = this.stmts.byName.get(arg) as bigint | null;
    if (byName !== null) return Number(byName);
    throw new UserError(`no session ${JSON.stringify(arg)} in ${this.label} (fusetrace sessions lists them)`);
  }

  /**
   * The session's frames in seq order, from their ground truth (batches and patches, not the
   * derived index: a recording whose derivation lags still shows every committed frame), fetched
   * a few batches at a time so that a 1M-frame session is never held in memory and the connection
   * stays usable between pages (better-sqlite3 refuses other statements while an iterate() is open).
   */
  *frames(session: number, range: FrameRange = {}): Generator<FrameRecord> {
    const from = range.fromSeq ?? 0;
    const to = range.toSeq ?? Number.MAX_SAFE_INTEGER;
    let first = this.pages.startSeq(session, from);
    for (;;) {
      const { batches, patches } = this.pages.bodies(session, first, to, BATCH_PAGE);
      // Each frame is decoded as it is asked for, so only the frames the caller keeps live longer.
      for (const { body } of batches) {
        for (let off = 0; off + FRAME_HEADER_BYTES <= body.length; off = nextFrameAt(body, off)) {
          const f = frameCopyAt(body, off);
          if (f.seq < from) continue;
          if (f.seq > to) return;
          const p = patches?.get(f.seq);
          if (p) {
            f.fwdNs = p.fwdNs;
            f.writeErrno = p.writeErrno;
          }
          yield f;
        }
      }
      if (batches.length < BATCH_PAGE) return;
      first = batches[batches.length - 1].lastSeq + 1;
    }
  }

  /** The frames with these seqs (those that exist), in seq order. */
  framesAt(session: number, seqs: readonly number[]): FrameRecord[] {
    const wanted = [...new Set(seqs)].filter((s) => Number.isSafeInteger(s) && s >= 0).sort((a, b) => a - b);
    const out: FrameRecord[] = [];
    for (const seq of wanted) {
      const f = this.frameAt(session, seq);
      if (f) out.push(f);
    }
    return out;
  }

  /**
   * The frames carrying fuse_in_header/fuse_out_header.unique `unique` (a u64), in seq order,
   * optionally only between two seqs (both excluded) and at most `limit` of them. Found through
   * the requests rows that name them and loose_frames (schema.ts LOOSE_FRAMES_SQL), so only the
   * derived part of a session is searched.
   */
  framesOfUnique(session: number, unique: bigint, opts: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}): FrameRecord[] {
    const after = opts.afterSeq ?? -1;
    const before = opts.beforeSeq ?? Number.MAX_SAFE_INTEGER;
    const u = BigInt.asUintN(64, unique);
    const seqs: number[] = [];
    const keep = (v: unknown): void => {
      if (v === null) return;
      const s = Number(v);
      if (s > after && s < before) seqs.push(s);
    };
    const rows = this.stmts.namedBy.all(session, BigInt.asIntN(64, u), BigInt.asIntN(64, u & ~FUSE_INT_REQ_BIT)) as unknown[][];
    for (const r of rows) for (const v of r) keep(v);
    for (const s of this.stmts.loose.all(session, BigInt.asIntN(64, u), after, before) as bigint[]) keep(s);
    // A row of u & ~1 also names frames of other uniques (its request and reply).
    const mine = this.framesAt(session, seqs).filter((f) => f.unique === u);
    return opts.limit !== undefined && opts.limit >= 0 ? mine.slice(0, opts.limit) : mine;
  }

  /** FUSE_INTERRUPT requests and the server's answers to them, in seq order (INTERRUPTs are rare: loaded whole). */
  interruptFrames(session: number): FrameRecord[] {
    const candidates = this.framesAt(session, (this.stmts.interrupts.all({ s: session }) as bigint[]).map(Number));
    const intr = new Set<bigint>();
    for (const f of candidates) if (f.dir === 0 && f.opcode === OP.INTERRUPT) intr.add(f.unique);
    return candidates.filter((f) => (f.dir === 0 && f.opcode === OP.INTERRUPT) || (f.dir === 1 && intr.has(f.unique)));
  }

  /** Frames stored for the session (counted in its batches, not the sessions.frames counter). */
  frameCount(session: number): number {
    return Number(this.stmts.count.get(session));
  }

  /** pid -> process name as first seen in the session. */
  procs(session: number): Map<number, string | null> {
    const out = new Map<number, string | null>();
    for (const r of this.stmts.procs.all(session) as Row[]) out.set(Number(r.pid), r.comm as string | null);
    return out;
  }

  /** Requests per lifecycle state (requests.state) from the ledger. */
  stateCounts(session: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.stmts.counts.all(session) as Row[]) out[r.state as string] = num(r.n);
    return out;
  }

  /** Requests per lifecycle state and outcome (requests.outcome, null for most states), ordered by both. */
  stateOutcomeCounts(session: number): Array<{ state: string; outcome: string | null; count: number }> {
    return (this.stmts.outcomes.all(session) as Row[]).map((r) => ({ state: r.state as string, outcome: r.outcome as string | null, count: num(r.n) }));
  }

  /** Request counts by lifecycle state from the ledger's `requests` table. */
  requestCounts(session: number): RequestCounts {
    const by = this.stateCounts(session);
    let requests = 0;
    for (const n of Object.values(by)) requests += n;
    return {
      requests,
      errors: by.error ?? 0,
      interrupted: by.interrupted ?? 0,
      unanswered: by.unanswered ?? 0,
      aborted: by.aborted ?? 0,
      lost: by.lost ?? 0,
    };
  }

  /**
   * How long the session lasted, in ns: to its end, or, when it has none (still recording, or the
   * recorder was killed), to its last frame, with `ended` false.
   */
  duration(s: SessionInfo): { ns: bigint; ended: boolean } {
    if (s.endedMonoNs !== null) return { ns: s.endedMonoNs - s.startedMonoNs, ended: true };
    const last = this.stmts.lastFrame.get(s.id) as bigint | undefined;
    return { ns: last === undefined ? 0n : last - s.startedMonoNs, ended: false };
  }

  /** The frame `seq` with its patch applied, its bytes copied out of its batch; undefined when there is none. */
  private frameAt(session: number, seq: number): FrameRecord | undefined {
    const b = this.batchOf(session, seq);
    if (!b) return undefined;
    // Frames are in seq order within a batch, with gaps where frames were dropped.
    let lo = 0;
    let hi = b.frames.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = b.frames[mid].seq;
      if (s === seq) {
        const f = plainFrame(b.frames[mid]);
        const patch = this.stmts.patch.get(session, seq) as [bigint | null, bigint] | undefined;
        if (patch) {
          f.fwdNs = patch[0];
          f.writeErrno = Number(patch[1]);
        }
        return f;
      }
      if (s < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** The decoded batch holding `seq`, through a small cache. */
  private batchOf(session: number, seq: number): CachedBatch | undefined {
    const i = this.cache.findIndex((c) => c.session === session && c.firstSeq <= seq && seq <= c.lastSeq);
    if (i >= 0) {
      const hit = this.cache[i];
      this.cache.splice(i, 1);
      this.cache.push(hit);
      return hit;
    }
    const row = this.batchAt.get(session, seq) as [number, number, Buffer] | undefined;
    if (!row || row[1] < seq) return undefined;
    const b: CachedBatch = { session, firstSeq: row[0], lastSeq: row[1], frames: decodeBatch(row[2]) };
    if (this.cache.length >= BATCH_CACHE) this.cache.shift();
    this.cache.push(b);
    return b;
  }
}

/**
 * A decoded batch frame as the FrameRecord readers have always yielded (without off and flags),
 * its bytes copied out of the body: a caller that keeps a few frames (replay's pending requests)
 * must not keep their whole 256 KiB batches alive with them.
 */
function plainFrame(f: FrameRecord): FrameRecord {
  const data = Buffer.from(f.data);
  return { seq: f.seq, tsNs: f.tsNs, fwdNs: f.fwdNs, dir: f.dir, unique: f.unique, opcode: f.opcode, error: f.error, len: f.len, data, writeErrno: f.writeErrno };
}

/** sessions.command is the argv as JSON (writer.ts); anything else is shown as one word, as stored. */
function argv(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v)) return v.map(String);
  } catch {
    // Not JSON.
  }
  return [text];
}

function toSession(r: Row): SessionInfo {
  return {
    id: num(r.id),
    name: r.name as string | null,
    startedWallNs: r.started_wall_ns as bigint,
    startedMonoNs: r.started_mono_ns as bigint,
    endedMonoNs: r.ended_mono_ns as bigint | null,
    command: argv(r.command as string),
    mountpoint: r.mountpoint as string | null,
    kernelMajor: numOrNull(r.kernel_major),
    kernelMinor: numOrNull(r.kernel_minor),
    serverMajor: numOrNull(r.server_major),
    serverMinor: numOrNull(r.server_minor),
    initFlags: r.init_flags === null ? null : fromSqlU64(r.init_flags as bigint),
    maxWrite: numOrNull(r.max_write),
    initChanges: jsonOrNull(r.init_changes),
    snaplen: numOrNull(r.snaplen),
    endReason: r.end_reason as string | null,
    serverExitCode: numOrNull(r.server_exit_code),
    serverSignal: r.server_signal as string | null,
    exitStatus: numOrNull(r.exit_status),
    frames: num(r.frames),
    bytes: num(r.bytes),
    dropped: num(r.dropped),
    lost: r.lost === undefined ? 0 : num(r.lost),
    meta: jsonOrNull(r.meta) as Record<string, unknown> | null,
    origin: typeof r.origin === 'string' ? r.origin : 'record',
    capture: typeof r.capture === 'string' ? r.capture : 'frames',
  };
}
