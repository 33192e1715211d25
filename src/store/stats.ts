/**
 * `fusetrace stats`: aggregates over the request ledger (a session can hold millions of requests;
 * no rows are loaded into JavaScript). Everything is one scan of the rows plus covering-index
 * passes: SQL aggregates where SQLite needs no sort, JS aggregates fed by that same scan where
 * SQLite would sort every row (GROUP BY path/pid, an in-flight sweep, percentiles without an index).
 */
import type { Database, Statement } from 'better-sqlite3';
import { errnoName, opcodeName, registerFilterFunctions, type CompiledFilter, type SqlParam } from './filter.js';
import { requestWhere } from './query.js';
import { OP, OUT_HEADER_SIZE, WRITE_HEADERS_SIZE } from '../protocol/index.js';

/** Latency percentiles (nearest rank: the smallest duration at least p% of requests do not exceed). */
export interface Latency {
  /** Requests with a reply (the ones that have a duration). */
  answered: number;
  p50_ns: number | null;
  p90_ns: number | null;
  p99_ns: number | null;
  max_ns: number | null;
}

export interface OpStats extends Latency {
  opcode: number;
  op: string;
  requests: number;
  /** Replies with errno > 0. */
  errors: number;
}

export interface SessionStats {
  requests: number;
  errors: number;
  /** Requests per lifecycle state. */
  states: Record<string, number>;
  /** Per opcode, most requests first. */
  ops: OpStats[];
  overall: Latency;
  /** Error replies by errno, most frequent first. */
  errnos: { errno: number; err: string; count: number }[];
  /** Payload of successful READ replies (reply length minus the 16-byte fuse_out_header). */
  bytes_read: number;
  /** Payload of successful WRITE requests (length minus fuse_in_header 40 + fuse_write_in 40). */
  bytes_written: number;
  /** Most requests outstanding at once (read from /dev/fuse, reply not yet seen), and when it first happened. */
  max_in_flight: { count: number; at_ns: number | null };
  /** Paths by total time spent in their requests. */
  top_paths: { path: string; requests: number; total_ns: number }[];
  /** Processes by total time spent in their requests. */
  top_procs: { pid: number; comm: string | null; requests: number; total_ns: number }[];
}

// fuse_out_header precedes the data of a READ reply; fuse_in_header + fuse_write_in (protocol >= 7.9)
// precede the data of a WRITE.
const OUT_HEADER = OUT_HEADER_SIZE;
const WRITE_HEADERS = WRITE_HEADERS_SIZE;
const { READ, WRITE } = OP;

/** The indexes that make unfiltered percentiles a few index seeks (schema.ts DURATION_INDEX_SQL). */
const DUR_INDEXES = ['requests_op_dur', 'requests_dur'];

/**
 * Statistics of the requests of `session` that match `filter`.
 * `top` bounds the top-paths and top-processes lists (default 10).
 */
export function stats(db: Database, session: number, filter?: string | CompiledFilter | null, opts: { top?: number } = {}): SessionStats {
  registerFilterFunctions(db);
  registerSweep(db);
  const top = opts.top ?? 10;
  if (!Number.isSafeInteger(top) || top < 0) throw new RangeError(`top must be a non-negative integer, not ${top}`);
  const { where, params } = requestWhere(session, { filter });
  if (where === 'session = ?') {
    const hasIndex = db.prepare(`SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN (?, ?)`).pluck().get(...DUR_INDEXES) === DUR_INDEXES.length;
    return aggregate(db, { table: 'requests', where, params, seek: hasIndex ? session : null }, top);
  }
  // A filter: evaluate it once into a temporary table (the planner picks the best access path for
  // the WHERE alone), then aggregate that. Run on the ledger itself, each GROUP BY below would be
  // free to walk an index in group order and look up every row of the session, evaluating the
  // filter (and its regexps) again each time.
  db.exec('DROP TABLE IF EXISTS temp.fusetrace_stats_sel');
  db.prepare(
    `CREATE TEMP TABLE fusetrace_stats_sel AS
       SELECT seq, opcode, start_ns, reply_ns, dur_ns, errno, len, reply_len, state, path, pid, comm
         FROM requests WHERE ${where} ORDER BY seq`,
  ).run(...params);
  try {
    return aggregate(db, { table: 'temp.fusetrace_stats_sel', where: '1', params: [], seek: null }, top);
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.fusetrace_stats_sel');
  }
}

/** The rows stats() aggregates: a table, a WHERE over it, and the order that is start order. */
interface Source {
  table: string;
  where: string;
  params: SqlParam[];
  /**
   * The session, when latency can be read by index seeks on requests_op_dur / requests_dur; null:
   * the scan hands the durations to fusetrace_durations, which sorts them in JavaScript.
   */
  seek: number | null;
}

function aggregate(db: Database, src: Source, top: number): SessionStats {
  const { table, where, params } = src;
  // Counts per opcode. On the whole session this is a covering scan of requests_op_dur (no sort).
  const counts = db
    .prepare(`SELECT opcode, count(*) AS requests, count(dur_ns) AS answered FROM ${table} WHERE ${where} GROUP BY opcode`)
    .all(...params) as { opcode: number; requests: number; answered: number }[];

  // One scan of the rows feeds every aggregate that needs columns no index covers: the JS sweep
  // (in-flight, top paths, top processes), the byte totals, and the error counts. Separate
  // statements each paid for a full table scan (bytes ~100 ms, errors ~65 ms per 1M rows). The
  // error aggregate runs only on the error rows (FILTER), so only those cross into JavaScript.
  // The scan runs in table order (the primary key (session, seq), or the selection's rowid), which
  // is start order; an ORDER BY here would make SQLite copy every row through a subquery. The sweep
  // checks the order and says when it was not, and then inflightUnordered computes the in-flight figure.
  // Its `reply` argument also says whether anybody waits: NULL for noreply/notify rows (they never
  // occupy the kernel's pending list), +Inf (1e999) for a request that never got a reply.
  sweepTop = top;
  const one = db
    .prepare(
      `SELECT fusetrace_sweep(start_ns, CASE WHEN state IN ('noreply', 'notify') THEN NULL ELSE coalesce(reply_ns, 1e999) END, path, pid, comm, dur_ns) AS sweep,
              fusetrace_errors(errno, opcode) FILTER (WHERE errno > 0) AS errors,
              ${src.seek === null ? 'fusetrace_durations(opcode, dur_ns) FILTER (WHERE dur_ns IS NOT NULL)' : 'NULL'} AS durations,
              coalesce(sum(CASE WHEN opcode = ${READ} AND errno = 0 THEN max(reply_len - ${OUT_HEADER}, 0) END), 0) AS rbytes,
              coalesce(sum(CASE WHEN opcode = ${WRITE} AND errno = 0 THEN max(len - ${WRITE_HEADERS}, 0) END), 0) AS wbytes
         FROM ${table} WHERE ${where}`,
    )
    .get(...params) as { sweep: string; errors: string | null; durations: string | null; rbytes: number; wbytes: number };
  const sweep = JSON.parse(one.sweep) as SweepResult;
  const errorRows = one.errors === null ? [] : (JSON.parse(one.errors) as [errno: number, opcode: number, n: number][]);
  const errorsByOp = new Map<number, number>();
  const byErrno = new Map<number, number>();
  for (const [errno, opcode, n] of errorRows) {
    errorsByOp.set(opcode, (errorsByOp.get(opcode) ?? 0) + n);
    byErrno.set(errno, (byErrno.get(errno) ?? 0) + n);
  }

  let latByOp: Map<number, Latency>;
  let overall: Latency;
  if (src.seek !== null) {
    latByOp = latencyBySeek(db, src.seek, counts);
    overall = latencyOverallBySeek(db, src.seek, counts.reduce((s, r) => s + r.answered, 0));
  } else {
    const d = one.durations === null ? { ops: [], overall: noLatency() } : (JSON.parse(one.durations) as DurationsResult);
    latByOp = new Map(d.ops);
    overall = d.overall;
  }

  const ops: OpStats[] = counts
    .map((r) => ({ opcode: r.opcode, op: opcodeName(r.opcode), requests: r.requests, errors: errorsByOp.get(r.opcode) ?? 0, ...(latByOp.get(r.opcode) ?? noLatency()) }))
    .sort((a, b) => b.requests - a.requests || a.opcode - b.opcode);

  const states: Record<string, number> = {};
  for (const r of db.prepare(`SELECT state, count(*) AS n FROM ${table} WHERE ${where} GROUP BY state ORDER BY n DESC, state`).all(...params) as { state: string; n: number }[]) {
    states[r.state] = r.n;
  }

  const errnos = [...byErrno]
    .map(([errno, count]) => ({ errno, err: errnoName(errno), count }))
    .sort((a, b) => b.count - a.count || a.errno - b.errno);

  const max_in_flight = sweep.ordered ? sweep.inflight : inflightUnordered(db, table, where, params);

  return {
    requests: counts.reduce((s, r) => s + r.requests, 0),
    errors: [...errorsByOp.values()].reduce((s, n) => s + n, 0),
    states,
    ops,
    overall,
    errnos,
    bytes_read: one.rbytes,
    bytes_written: one.wbytes,
    max_in_flight,
    top_paths: sweep.paths,
    top_procs: sweep.procs,
  };
}

function noLatency(): Latency {
  return { answered: 0, p50_ns: null, p90_ns: null, p99_ns: null, max_ns: null };
}

/** Nearest rank of percentile p among n values, 1-based: ceil(n * p / 100). */
function rank(n: number, p: number): number {
  return Math.max(1, Math.ceil((n * p) / 100));
}

/**
 * The rank-th smallest of n durations (1-based) by walking the index from its nearer end:
 * `LIMIT 1 OFFSET k` steps over k index entries (SQLite b-trees do not count), so p90 and p99 read
 * from the top cost 10% and 1% of the entries instead of 90% and 99%. The rank-th smallest is the
 * (n - rank + 1)-th largest, ties included.
 */
function nthDuration(asc: Statement, desc: Statement, key: SqlParam[], n: number, r: number): number {
  return (r - 1 <= n - r ? asc.get(...key, r - 1) : desc.get(...key, n - r)) as number;
}

/** Per-opcode percentiles as index seeks on requests_op_dur. */
function latencyBySeek(db: Database, session: number, counts: { opcode: number; answered: number }[]): Map<number, Latency> {
  const sql = (dir: string): Statement =>
    db.prepare(`SELECT dur_ns FROM requests WHERE session = ? AND opcode = ? AND dur_ns IS NOT NULL ORDER BY dur_ns ${dir} LIMIT 1 OFFSET ?`).pluck();
  const asc = sql('ASC');
  const desc = sql('DESC');
  const out = new Map<number, Latency>();
  for (const { opcode, answered: n } of counts) {
    if (n === 0) continue;
    const p = (q: number): number => nthDuration(asc, desc, [session, opcode], n, rank(n, q));
    out.set(opcode, { answered: n, p50_ns: p(50), p90_ns: p(90), p99_ns: p(99), max_ns: nthDuration(asc, desc, [session, opcode], n, n) });
  }
  return out;
}

/** Whole-session percentiles as seeks on requests_dur (session, dur_ns); `n` durations in all. */
function latencyOverallBySeek(db: Database, session: number, n: number): Latency {
  if (n === 0) return noLatency();
  const sql = (dir: string): Statement =>
    db.prepare(`SELECT dur_ns FROM requests WHERE session = ? AND dur_ns IS NOT NULL ORDER BY dur_ns ${dir} LIMIT 1 OFFSET ?`).pluck();
  const asc = sql('ASC');
  const desc = sql('DESC');
  const p = (q: number): number => nthDuration(asc, desc, [session], n, rank(n, q));
  return { answered: n, p50_ns: p(50), p90_ns: p(90), p99_ns: p(99), max_ns: nthDuration(asc, desc, [session], n, n) };
}

/**
 * Most requests in flight, for when the waited-for rows did not come in start order: their start
 * and reply times are collected (16 bytes a row) and swept in (start_ns, table order) order, the
 * order the one-pass sweep sees in a well-ordered session, so both give the same answer. The sort
 * is V8's TimSort, nearly linear on rows that are mostly in order (a few late-stamped rows).
 */
function inflightUnordered(db: Database, table: string, where: string, params: SqlParam[]): SessionStats['max_in_flight'] {
  const json = db
    .prepare(`SELECT fusetrace_inflight(start_ns, coalesce(reply_ns, 1e999)) FROM ${table} WHERE ${where} AND state NOT IN ('noreply', 'notify')`)
    .pluck()
    .get(...params) as string | null;
  return json === null ? { count: 0, at_ns: null } : (JSON.parse(json) as SessionStats['max_in_flight']);
}

/**
 * The most requests in flight at once, fed the waited-for requests in start order: a min-heap of
 * the reply times of those outstanding (Infinity: never answered), so memory is the number in
 * flight, not the number of rows. A reply at the same instant as a start ends first, so a request
 * that starts the instant another ends does not overlap it.
 */
class InFlight {
  private heap = new Float64Array(1024);
  private size = 0;
  max = 0;
  at: number | null = null;

  add(start: number, reply: number): void {
    let h = this.heap;
    while (this.size > 0 && h[0]! <= start) this.size = heapPop(h, this.size);
    if (this.size === h.length) {
      const bigger = new Float64Array(h.length * 2);
      bigger.set(h);
      this.heap = h = bigger;
    }
    this.size = heapPush(h, this.size, reply);
    if (this.size > this.max) {
      this.max = this.size;
      this.at = start;
    }
  }

  result(): SessionStats['max_in_flight'] {
    return { count: this.max, at_ns: this.at };
  }
}

interface SweepResult {
  /** False when start_ns went backwards between waited-for requests: the in-flight figure is then computed by inflightUnordered. */
  ordered: boolean;
  inflight: SessionStats['max_in_flight'];
  paths: SessionStats['top_paths'];
  procs: SessionStats['top_procs'];
}

/** A path's or process's running totals (mutated in place: one Map lookup per row). */
interface Totals {
  requests: number;
  total_ns: number;
  comm: string | null;
}

interface SweepState {
  ordered: boolean;
  last: number;
  inflight: InFlight;
  paths: Map<string, Totals>;
  procs: Map<number, Totals>;
}

/**
 * How many top paths / processes the next fusetrace_sweep result keeps. Set by aggregate() right
 * before its (synchronous) statement runs: as an SQL argument it was converted once per row.
 */
let sweepTop = 10;

const sweepRegistered = new WeakSet<Database>();

/**
 * `fusetrace_sweep(start_ns, reply, path, pid, comm, dur_ns)`: an aggregate fed rows in start
 * order. `reply` is the reply time of a request somebody waits for (+Inf: never answered), NULL
 * when nobody waits. It keeps the reply times of outstanding requests in a min-heap (so memory is
 * the number in flight, not the number of rows) and sums time per path and per pid; the result is
 * JSON. `fusetrace_errors(errno, opcode)`: counts per (errno, opcode) as JSON [[errno, opcode, n]].
 * `fusetrace_durations(opcode, dur_ns)`: nearest-rank percentiles per opcode and overall, for when
 * the duration indexes are absent (record drops them while recording) or a filter selected the
 * rows; it holds 8 bytes per duration and sorts them, where SQLite's window functions sorted every
 * row twice (4.7 s for 1M requests against ~0.3 s).
 */
function registerSweep(db: Database): void {
  if (sweepRegistered.has(db)) return;
  db.aggregate('fusetrace_sweep', {
    start: (): SweepState => ({ ordered: true, last: -Infinity, inflight: new InFlight(), paths: new Map(), procs: new Map() }),
    step: ((s: SweepState, start: number, reply: number | null, path: string | null, pid: number | null, comm: string | null, dur: number | null) => {
      if (reply !== null) {
        // Only the requests somebody waits for must come in start order: a notify row's seq and
        // start_ns are taken on the pump's writer thread, so it may sit out of order among them.
        if (start < s.last) s.ordered = false;
        s.last = start;
        s.inflight.add(start, reply);
      }
      const d = dur ?? 0;
      if (path !== null) {
        const e = s.paths.get(path);
        if (e) {
          e.requests++;
          e.total_ns += d;
        } else s.paths.set(path, { requests: 1, total_ns: d, comm: null });
      }
      if (pid !== null) {
        const e = s.procs.get(pid);
        if (e) {
          e.requests++;
          e.total_ns += d;
          if (e.comm === null) e.comm = comm;
        } else s.procs.set(pid, { comm, requests: 1, total_ns: d });
      }
      return s;
      // better-sqlite3 passes the SQL arguments after the accumulator; its typings only know one.
    }) as unknown as (s: SweepState, next: SweepState) => SweepState,
    result: (s: SweepState | undefined): string => {
      if (!s) return JSON.stringify({ ordered: true, inflight: { count: 0, at_ns: null }, paths: [], procs: [] });
      const paths = [...s.paths]
        .map(([path, e]) => ({ path, requests: e.requests, total_ns: e.total_ns }))
        .sort((a, b) => b.total_ns - a.total_ns || b.requests - a.requests || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
        .slice(0, sweepTop);
      const procs = [...s.procs]
        .map(([pid, e]) => ({ pid, comm: e.comm, requests: e.requests, total_ns: e.total_ns }))
        .sort((a, b) => b.total_ns - a.total_ns || b.requests - a.requests || a.pid - b.pid)
        .slice(0, sweepTop);
      return JSON.stringify({ ordered: s.ordered, inflight: s.inflight.result(), paths, procs });
    },
  });
  // errno comes from the server's fuse_out_header.error (any int32), opcode from the kernel (uint32):
  // a Map per errno rather than one packed numeric key, which could exceed 2^53.
  db.aggregate('fusetrace_errors', {
    start: (): Map<number, Map<number, number>> => new Map(),
    step: ((m: Map<number, Map<number, number>>, errno: number, opcode: number) => {
      let byOp = m.get(errno);
      if (!byOp) m.set(errno, (byOp = new Map()));
      byOp.set(opcode, (byOp.get(opcode) ?? 0) + 1);
      return m;
    }) as unknown as (m: Map<number, Map<number, number>>, next: Map<number, Map<number, number>>) => Map<number, Map<number, number>>,
    result: (m: Map<number, Map<number, number>> | undefined): string | null =>
      m ? JSON.stringify([...m].flatMap(([errno, byOp]) => [...byOp].map(([opcode, n]) => [errno, opcode, n]))) : null,
  });
  db.aggregate('fusetrace_inflight', {
    start: (): StartReply => ({ start: new Float64Array(1024), reply: new Float64Array(1024), n: 0 }),
    step: ((c: StartReply, start: number, reply: number) => {
      if (c.n === c.start.length) {
        const grow = (a: Float64Array): Float64Array => {
          const b = new Float64Array(a.length * 2);
          b.set(a);
          return b;
        };
        c.start = grow(c.start);
        c.reply = grow(c.reply);
      }
      c.start[c.n] = start;
      c.reply[c.n++] = reply;
      return c;
    }) as unknown as (c: StartReply, next: StartReply) => StartReply,
    result: (c: StartReply | undefined): string | null => {
      if (!c) return null;
      const { start, reply } = c;
      const order = Array.from({ length: c.n }, (_, i) => i).sort((a, b) => start[a]! - start[b]! || a - b);
      const f = new InFlight();
      for (const i of order) f.add(start[i]!, reply[i]!);
      return JSON.stringify(f.result());
    },
  });
  db.aggregate('fusetrace_durations', {
    start: (): Map<number, Durations> => new Map(),
    step: ((m: Map<number, Durations>, opcode: number, dur: number) => {
      let e = m.get(opcode);
      if (!e) m.set(opcode, (e = { a: new Float64Array(256), n: 0 }));
      if (e.n === e.a.length) {
        const bigger = new Float64Array(e.a.length * 2);
        bigger.set(e.a);
        e.a = bigger;
      }
      e.a[e.n++] = dur;
      return m;
    }) as unknown as (m: Map<number, Durations>, next: Map<number, Durations>) => Map<number, Durations>,
    result: (m: Map<number, Durations> | undefined): string | null => {
      if (!m) return null;
      const ops: DurationsResult['ops'] = [];
      let total = 0;
      for (const [opcode, e] of m) {
        const sorted = e.a.subarray(0, e.n).sort();
        ops.push([opcode, percentiles(sorted)]);
        total += e.n;
      }
      const all = new Float64Array(total);
      let at = 0;
      for (const e of m.values()) {
        all.set(e.a.subarray(0, e.n), at);
        at += e.n;
      }
      return JSON.stringify({ ops, overall: percentiles(all.sort()) } satisfies DurationsResult);
    },
  });
  sweepRegistered.add(db);
}

/** Start and reply times (+Inf: never answered) of waited-for requests, [0..n). */
interface StartReply {
  start: Float64Array;
  reply: Float64Array;
  n: number;
}

/** The durations of one opcode, a[0..n). */
interface Durations {
  a: Float64Array;
  n: number;
}

interface DurationsResult {
  ops: [opcode: number, latency: Latency][];
  overall: Latency;
}

/** Nearest-rank percentiles of durations sorted ascending (exact: ns below 2^53 are exact doubles). */
function percentiles(sorted: Float64Array): Latency {
  const n = sorted.length;
  if (n === 0) return noLatency();
  const p = (q: number): number => sorted[rank(n, q) - 1]!;
  return { answered: n, p50_ns: p(50), p90_ns: p(90), p99_ns: p(99), max_ns: sorted[n - 1]! };
}

/** Pushes v onto the min-heap h[0..size); returns the new size (h has room for it). */
function heapPush(h: Float64Array, size: number, v: number): number {
  let i = size;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p]! <= v) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = v;
  return size + 1;
}

/** Removes the smallest of h[0..size); returns the new size. */
function heapPop(h: Float64Array, size: number): number {
  const n = size - 1;
  const last = h[n]!;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const c = l + 1 < n && h[l + 1]! < h[l]! ? l + 1 : l;
    if (h[c]! >= last) break;
    h[i] = h[c]!;
    i = c;
  }
  h[i] = last;
  return n;
}
