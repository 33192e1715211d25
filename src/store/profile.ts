/**
 * The figures `fusetrace diff` compares, for one session: what `stats` computes (stats.ts), plus
 * the totals a comparison needs and `stats` does not keep: time per opcode, errors per
 * (opcode, errno), time per path and per process name (not per pid: pids differ between two runs
 * of the same workload), and the directory entries READDIR/READDIRPLUS replies handed out, read
 * from the reply frames (the ledger keeps lengths, not entry counts).
 */
import type { Database } from 'better-sqlite3';
import { TraceReader } from './reader.js';
import { decodeReply, Opcode } from '../protocol/index.js';
import { errnoName, opcodeName, registerFilterFunctions, type CompiledFilter } from './filter.js';
import { requestWhere } from './query.js';
import { stats, type SessionStats } from './stats.js';

/** Requests and the time spent in them (sum of dur_ns of those answered). */
export interface TimeTotal {
  requests: number;
  total_ns: number;
}

export interface SessionProfile {
  session: number;
  stats: SessionStats;
  /** Total time per opcode. */
  opTime: Map<number, number>;
  /** Error replies per opcode and errno. */
  errors: { opcode: number; op: string; errno: number; err: string; count: number }[];
  /** Per path (requests with a known path). */
  paths: Map<string, TimeTotal>;
  /** Per process name (`?` when unknown). */
  comms: Map<string, TimeTotal>;
  /** Entries in successful READDIR and READDIRPLUS replies. */
  dirents: { entries: number; replies: number; /** Replies cut by --snaplen: their entries are counted as far as captured. */ partial: number };
}

const READDIR_OPS = [Opcode.READDIR!, Opcode.READDIRPLUS!];

/** The profile of the requests of `session` that match `filter`. */
export function sessionProfile(db: Database, session: number, filter?: string | CompiledFilter | null): SessionProfile {
  registerFilterFunctions(db);
  // Every path and pid: stats' one scan already sums time per path and per pid (its sweep), where
  // a GROUP BY path here sorted every row again (2 s each for paths and processes on 1M requests).
  const s = stats(db, session, filter, { top: Number.MAX_SAFE_INTEGER });
  const paths = new Map(s.top_paths.map((p) => [p.path, { requests: p.requests, total_ns: p.total_ns }]));
  const comms = new Map<string, TimeTotal>();
  for (const p of s.top_procs) {
    const key = p.comm ?? '?';
    const t = comms.get(key) ?? { requests: 0, total_ns: 0 };
    comms.set(key, { requests: t.requests + p.requests, total_ns: t.total_ns + p.total_ns });
  }
  // The profile keeps them; the stats it hands on keep the usual top 10.
  const top = { top_paths: s.top_paths.slice(0, 10), top_procs: s.top_procs.slice(0, 10) };

  const { where, params } = requestWhere(session, { filter });
  const all = <T>(sql: string): T[] => db.prepare(sql).all(...params) as T[];
  // On the whole session a covering scan of requests_op_dur (session, opcode, dur_ns).
  const opTime = new Map<number, number>();
  for (const r of all<{ opcode: number; t: number }>(`SELECT opcode, coalesce(sum(dur_ns), 0) AS t FROM requests WHERE ${where} GROUP BY opcode`)) {
    opTime.set(r.opcode, r.t);
  }
  // `+opcode`: grouped by the index on opcode, SQLite looked every row up from requests_op_dur in
  // opcode order (9 s on 1M requests); scanned in table order and grouped in a temp b-tree, 0.5 s.
  const errors = all<{ opcode: number; errno: number; n: number }>(
    `SELECT opcode, errno, count(*) AS n FROM requests WHERE ${where} AND errno > 0 GROUP BY +opcode, +errno`,
  ).map((r) => ({ opcode: r.opcode, op: opcodeName(r.opcode), errno: r.errno, err: errnoName(r.errno), count: r.n }));
  return { session, stats: { ...s, ...top }, opTime, errors, paths, comms, dirents: countDirents(db, session, where, params) };
}

/** Replies read per query by countDirents. */
const DIRENT_PAGE = 1024;

/**
 * Entries of the successful READDIR/READDIRPLUS replies among the selected requests: each reply
 * frame is decoded with the session's negotiated minor (the decoder walks the 8-byte aligned
 * records). A frame cut by --snaplen decodes short: the entries it holds count, and it is counted
 * as partial so the report can say so.
 */
function countDirents(db: Database, session: number, where: string, params: unknown[]): SessionProfile['dirents'] {
  const minor = (db.prepare('SELECT min(kernel_minor, server_minor) FROM sessions WHERE id = ?').pluck().get(session) as number | null) ?? undefined;
  // Frames have no table (schema.ts format 5): the replies are read from their batches, in pages
  // by reply_seq (the connection cannot read a batch while a statement is being iterated).
  const page = db
    .prepare(
      `SELECT opcode, reply_seq FROM requests WHERE ${where} AND opcode IN (${READDIR_OPS.join(', ')}) AND errno = 0
          AND reply_seq > ? ORDER BY reply_seq LIMIT ${DIRENT_PAGE}`,
    )
    .raw(true);
  const reader = new TraceReader(db);
  const out = { entries: 0, replies: 0, partial: 0 };
  let after = -1;
  for (;;) {
    const rows = page.all(...params, after) as Array<[number, number]>;
    for (const [opcode, replySeq] of rows) {
      const [f] = reader.framesAt(session, [replySeq]);
      if (!f) continue;
      const d = decodeReply(f.data, { opcode, minor });
      out.replies++;
      out.entries += d.frame?.dirents?.length ?? 0;
      if (f.data.length < f.len) out.partial++;
    }
    if (rows.length < DIRENT_PAGE) return out;
    after = rows[rows.length - 1][1];
  }
}
