import type { Database, Statement } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { OP } from '../protocol/index.js';
import { BatchPages } from './batch-read.js';
import { FRAME_HEADER_BYTES, frameCopyAt, nextFrameAt } from './batch.js';
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
/**
 * The frames index columns a FrameRecord is made of, in toFrame()'s order, with the bytes sliced
 * out of the batch body and a late patch applied (derive.ts applies them too; this covers a patch
 * committed after the frame was derived and not yet applied).
 */
const FRAME_COLS = `f.seq, f.ts_ns, CASE WHEN p.seq IS NULL THEN f.fwd_ns ELSE p.fwd_ns END, f.dir, f.unique_id, f.opcode, f.error, f.len,
  f.batch_seq, coalesce(p.write_errno, f.write_errno), f.off, f.cap_len`;
/** Batch bodies a reader keeps for lookups by seq: `show --json` asks for frames in seq order, mostly from the same batch. */
const BODY_CACHE = 8;
/** frames (alias f) with their patch, if any. */
const FRAMES_PATCHED = 'frames f LEFT JOIN patches p ON p.session = f.session AND p.seq = f.seq';

type Row = Record<string, bigint | string | Buffer | null>;

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null ? null : Number(v));
const jsonOrNull = (v: unknown): unknown => (v === null ? null : JSON.parse(v as string));

/** Read access to a trace file opened with openTraceDb (read-only or not). */
export class TraceReader {
  private readonly db: Database;
  private readonly pages: BatchPages;
  private readonly body: Statement;
  /** Recently read batch bodies by session and first_seq, oldest first. */
  private readonly bodies = new Map<string, Buffer>();
  /** The file name used in error messages. */
  readonly label: string;
  private readonly stmts: Record<
    'sessions' | 'session' | 'latest' | 'byName' | 'at3' | 'count' | 'procs' | 'counts' | 'outcomes' | 'lastFrame' | 'ofUnique' | 'interrupts',
    Statement
  >;

  constructor(db: Database, label: string = db.name) {
    this.db = db;
    this.label = label;
    this.pages = new BatchPages(db);
    this.body = db.prepare('SELECT body FROM batches WHERE session = ? AND first_seq = ?').pluck();
    const p = (sql: string): Statement => db.prepare(sql).safeIntegers(true);
    this.stmts = {
      sessions: p('SELECT * FROM sessions ORDER BY id'),
      session: p('SELECT * FROM sessions WHERE id = ?'),
      latest: p('SELECT max(id) FROM sessions').pluck(),
      byName: p('SELECT max(id) FROM sessions WHERE name = ?').pluck(),
      at3: p(`SELECT ${FRAME_COLS} FROM ${FRAMES_PATCHED} WHERE f.session = ? AND f.seq IN (?, ?, ?) ORDER BY f.seq`).raw(true),
      count: p('SELECT coalesce(sum(count), 0) FROM batches WHERE session = ?').pluck(),
      procs: p('SELECT pid, comm FROM procs WHERE session = ? ORDER BY pid'),
      // GROUP BY state reads only the requests_state index (session, state), not the rows.
      counts: p('SELECT state, count(*) AS n FROM requests WHERE session = ? GROUP BY state'),
      outcomes: p('SELECT state, outcome, count(*) AS n FROM requests WHERE session = ? GROUP BY state, outcome ORDER BY state, outcome'),
      lastFrame: p('SELECT last_ns FROM batches WHERE session = ? ORDER BY first_seq DESC LIMIT 1').pluck(),
      ofUnique: p(
        `SELECT ${FRAME_COLS} FROM ${FRAMES_PATCHED} WHERE f.session = ? AND f.unique_id = ? AND f.seq > ? AND f.seq < ? ORDER BY f.seq LIMIT ?`,
      ).raw(true),
      // INTERRUPT requests, and the server's answers to them (EAGAIN, ENOSYS), which carry the INTERRUPT's unique.
      interrupts: p(
        `SELECT ${FRAME_COLS} FROM ${FRAMES_PATCHED} WHERE f.session = ? AND ((f.dir = 0 AND f.opcode = ${OP.INTERRUPT}) OR (f.dir = 1 AND f.unique_id IN
           (SELECT unique_id FROM frames WHERE session = ? AND dir = 0 AND opcode = ${OP.INTERRUPT}))) ORDER BY f.seq`,
      ).raw(true),
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
    // Three at a time through one prepared statement (-1 pads: no such seq): `show --json` asks
    // for a request's request, INTERRUPT and reply frames once per row.
    const out: FrameRecord[] = [];
    for (let i = 0; i < seqs.length; i += 3) {
      const three = [seqs[i], seqs[i + 1] ?? -1, seqs[i + 2] ?? -1];
      out.push(...(this.stmts.at3.all(session, ...three) as unknown[][]).map((r) => this.toFrame(session, r)));
    }
    return seqs.length > 3 ? out.sort((a, b) => a.seq - b.seq) : out;
  }

  /**
   * The frames carrying fuse_in_header/fuse_out_header.unique `unique` (a u64), in seq order,
   * optionally only between two seqs (both excluded) and at most `limit` of them.
   */
  framesOfUnique(session: number, unique: bigint, opts: { afterSeq?: number; beforeSeq?: number; limit?: number } = {}): FrameRecord[] {
    const rows = this.stmts.ofUnique.all(
      session,
      BigInt.asIntN(64, unique),
      opts.afterSeq ?? -1,
      opts.beforeSeq ?? Number.MAX_SAFE_INTEGER,
      opts.limit ?? -1,
    ) as unknown[][];
    return rows.map((r) => this.toFrame(session, r));
  }

  /** FUSE_INTERRUPT requests and the server's answers to them, in seq order (INTERRUPTs are rare: loaded whole). */
  interruptFrames(session: number): FrameRecord[] {
    return (this.stmts.interrupts.all(session, session) as unknown[][]).map((r) => this.toFrame(session, r));
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

  /** A raw row of FRAME_COLS (read with safeIntegers) as a FrameRecord, its bytes sliced out of its batch. */
  private toFrame(session: number, r: unknown[]): FrameRecord {
    const at = Number(r[10]) + FRAME_HEADER_BYTES;
    return {
      seq: Number(r[0]),
      tsNs: r[1] as bigint,
      fwdNs: r[2] as bigint | null,
      dir: Number(r[3]) as 0 | 1,
      unique: fromSqlU64(r[4] as bigint),
      opcode: numOrNull(r[5]),
      error: numOrNull(r[6]),
      len: Number(r[7]),
      // A copy, as frames() makes (batch.ts frameCopyAt): the body stays in the cache, not with the caller.
      data: Buffer.from(this.batchBody(session, Number(r[8])).subarray(at, at + Number(r[11]))),
      writeErrno: Number(r[9]),
    };
  }

  /** The body of the batch starting at `firstSeq`, through a small cache. */
  private batchBody(session: number, firstSeq: number): Buffer {
    const key = `${session}:${firstSeq}`;
    let body = this.bodies.get(key);
    if (body === undefined) {
      body = (this.body.get(session, firstSeq) as Buffer | undefined) ?? Buffer.alloc(0);
      if (this.bodies.size >= BODY_CACHE) this.bodies.delete(this.bodies.keys().next().value as string);
    } else {
      this.bodies.delete(key);
    }
    this.bodies.set(key, body);
    return body;
  }
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
