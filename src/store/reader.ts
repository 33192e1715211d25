import type { Database, Statement } from 'better-sqlite3';
import { UserError } from '../errors.js';
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
}

/** A range of frames.seq, both ends included. */
export interface FrameRange {
  fromSeq?: number;
  toSeq?: number;
}

/** Rows fetched per query by frames(): bounded memory, and the connection is free between pages. */
const FRAME_PAGE = 1024;

type Row = Record<string, bigint | string | Buffer | null>;

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null ? null : Number(v));
const jsonOrNull = (v: unknown): unknown => (v === null ? null : JSON.parse(v as string));

/** Read access to a trace file opened with openTraceDb (read-only or not). */
export class TraceReader {
  private readonly db: Database;
  /** The file name used in error messages. */
  readonly label: string;
  private readonly stmts: Record<'sessions' | 'session' | 'latest' | 'byName' | 'frames' | 'count' | 'procs' | 'counts' | 'lastFrame', Statement>;

  constructor(db: Database, label: string = db.name) {
    this.db = db;
    this.label = label;
    const p = (sql: string): Statement => db.prepare(sql).safeIntegers(true);
    this.stmts = {
      sessions: p('SELECT * FROM sessions ORDER BY id'),
      session: p('SELECT * FROM sessions WHERE id = ?'),
      latest: p('SELECT max(id) FROM sessions').pluck(),
      byName: p('SELECT max(id) FROM sessions WHERE name = ?').pluck(),
      frames: p(
        `SELECT seq, ts_ns, fwd_ns, dir, unique_id, opcode, error, len, data, write_errno FROM frames
         WHERE session = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ${FRAME_PAGE}`,
      ).raw(true),
      count: p('SELECT count(*) FROM frames WHERE session = ?').pluck(),
      procs: p('SELECT pid, comm FROM procs WHERE session = ? ORDER BY pid'),
      // GROUP BY state reads only the requests_state index (session, state), not the rows.
      counts: p('SELECT state, count(*) AS n FROM requests WHERE session = ? GROUP BY state'),
      lastFrame: p('SELECT ts_ns FROM frames WHERE session = ? ORDER BY seq DESC LIMIT 1').pluck(),
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
   * The session's frames in seq order, fetched a page at a time so that a 1M-frame session is never
   * held in memory and the connection stays usable between pages (better-sqlite3 refuses other
   * statements while an iterate() is open).
   */
  *frames(session: number, range: FrameRange = {}): Generator<FrameRecord> {
    let from = range.fromSeq ?? 0;
    const to = range.toSeq ?? Number.MAX_SAFE_INTEGER;
    while (from <= to) {
      const rows = this.stmts.frames.all(session, from, to) as unknown[][];
      for (const r of rows) {
        yield {
          seq: Number(r[0]),
          tsNs: r[1] as bigint,
          fwdNs: r[2] as bigint | null,
          dir: Number(r[3]) as 0 | 1,
          unique: fromSqlU64(r[4] as bigint),
          opcode: numOrNull(r[5]),
          error: numOrNull(r[6]),
          len: Number(r[7]),
          data: r[8] as Buffer,
          writeErrno: Number(r[9]),
        };
      }
      if (rows.length < FRAME_PAGE) return;
      from = Number(rows[rows.length - 1][0]) + 1;
    }
  }

  /** Frames stored for the session (counted, not the sessions.frames counter). */
  frameCount(session: number): number {
    return Number(this.stmts.count.get(session));
  }

  /** pid -> process name as first seen in the session. */
  procs(session: number): Map<number, string | null> {
    const out = new Map<number, string | null>();
    for (const r of this.stmts.procs.all(session) as Row[]) out.set(Number(r.pid), r.comm as string | null);
    return out;
  }

  /** Request counts by lifecycle state from the ledger's `requests` table. */
  requestCounts(session: number): RequestCounts {
    const by = new Map((this.stmts.counts.all(session) as Row[]).map((r) => [r.state as string, num(r.n)]));
    let requests = 0;
    for (const n of by.values()) requests += n;
    return { requests, errors: by.get('error') ?? 0, interrupted: by.get('interrupted') ?? 0, unanswered: by.get('unanswered') ?? 0 };
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
}

function toSession(r: Row): SessionInfo {
  return {
    id: num(r.id),
    name: r.name as string | null,
    startedWallNs: r.started_wall_ns as bigint,
    startedMonoNs: r.started_mono_ns as bigint,
    endedMonoNs: r.ended_mono_ns as bigint | null,
    command: JSON.parse(r.command as string) as string[],
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
    meta: jsonOrNull(r.meta) as Record<string, unknown> | null,
    origin: typeof r.origin === 'string' ? r.origin : 'record',
    capture: typeof r.capture === 'string' ? r.capture : 'frames',
  };
}
