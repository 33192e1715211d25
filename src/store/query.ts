/**
 * Reading the request ledger (`requests`, schema.ts) for `show`, `export` and the TUI: a filter
 * (filter.ts), a range of uniques, a sort order and a page. Every query is bounded by
 * `session = ?` first, so it runs on the (session, ...) indexes of schema.ts.
 */
import type { Database, Statement } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { compileFilter, errnoName, opcodeName, registerFilterFunctions, type CompiledFilter, type SqlParam } from './filter.js';

/** A u64 FUSE value (unique, nodeid, fh): a number when it is a safe integer, else a bigint. */
export type Int64 = number | bigint;

/** One request of the ledger, as `show`, `export` and the TUI see it. */
export interface RequestRow {
  /** frames.seq of the request frame: the row's identity within the session. */
  seq: number;
  /** fuse_in_header.unique (0 for notifications). */
  unique: Int64;
  opcode: number;
  /** Opcode name without FUSE_ (`READ`), `OPCODE-<n>` when unknown. */
  op: string;
  nodeid: Int64 | null;
  fh: Int64 | null;
  path: string | null;
  pid: number | null;
  comm: string | null;
  uid: number | null;
  gid: number | null;
  /** ns since session start: read by the proxy, forwarded, reply read. */
  start_ns: number;
  fwd_ns: number | null;
  reply_ns: number | null;
  dur_ns: number | null;
  /** Positive errno of the reply, 0 for success, null without a reply. */
  errno: number | null;
  /** Errno name (`ENOENT`) when errno > 0, else null. */
  err: string | null;
  len: number;
  reply_len: number | null;
  state: string;
  outcome: string | null;
  background: boolean;
  reply_seq: number | null;
  interrupt_seq: number | null;
}

/** Uniques `first..last` inclusive; `last: 'end'` runs to the session's last request. */
export interface UniqueRange {
  /** undefined with last 'end': only the last request (the highest unique). */
  first?: bigint;
  last: bigint | 'end';
}

/** How to select and order requests. */
export interface RequestQuery {
  /** A filter expression (filter.ts) or an already compiled one. */
  filter?: string | CompiledFilter | null;
  /** `127`, `1000-5000`, `end`, `1000-end`, or a parsed range. */
  range?: string | UniqueRange | null;
  /**
   * `time` (default): the order the proxy read the requests from /dev/fuse (frames.seq, which
   * start_ns follows); `dur`: slowest first, unanswered last, ties in time order.
   */
  sort?: 'time' | 'dur';
  limit?: number;
  offset?: number;
}

/**
 * Parses RANGE the way rr does for events: `127` (one unique), `1000-5000` (inclusive), `end`
 * (the last request, i.e. the highest unique of the session), `1000-end`. Numbers may be hex.
 */
export function parseRange(text: string): UniqueRange {
  const t = text.trim();
  const num = (s: string): bigint => {
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(s)) {
      throw new UserError(`bad range '${text}': expected a unique, FIRST-LAST, end or FIRST-end (e.g. 127, 1000-5000, 1000-end)`);
    }
    const v = BigInt(s);
    if (v >= 1n << 64n) throw new UserError(`bad range '${text}': ${s} does not fit in 64 bits`);
    return BigInt.asIntN(64, v);
  };
  if (t.toLowerCase() === 'end') return { last: 'end' };
  const dash = t.indexOf('-');
  if (dash < 0) {
    const v = num(t);
    return { first: v, last: v };
  }
  const first = num(t.slice(0, dash));
  const rest = t.slice(dash + 1);
  if (rest.toLowerCase() === 'end') return { first, last: 'end' };
  const last = num(rest);
  if (last < first) throw new UserError(`bad range '${text}': ${last} is before ${first}`);
  return { first, last };
}

/** The WHERE clause (starting with `session = ?`) and its parameters for a query. */
export function requestWhere(session: number, q: Pick<RequestQuery, 'filter' | 'range'>): { where: string; params: SqlParam[] } {
  const f = typeof q.filter === 'object' && q.filter !== null ? q.filter : compileFilter(q.filter);
  const parts = ['session = ?'];
  const params: SqlParam[] = [session];
  const range = typeof q.range === 'string' ? parseRange(q.range) : q.range;
  if (range) {
    if (range.last === 'end' && range.first === undefined) {
      parts.push('unique_id = (SELECT max(unique_id) FROM requests WHERE session = ?)');
      params.push(session);
    } else if (range.last === 'end') {
      parts.push('unique_id >= ?');
      params.push(range.first!);
    } else {
      parts.push('unique_id BETWEEN ? AND ?');
      params.push(range.first!, range.last);
    }
  }
  if (f.where !== '1') {
    parts.push(f.where);
    params.push(...f.params);
  }
  return { where: parts.join(' AND '), params };
}

const COLUMNS =
  'seq, unique_id, opcode, nodeid, fh, path, pid, comm, uid, gid, start_ns, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, outcome, background, reply_seq, interrupt_seq';

function orderBy(sort: RequestQuery['sort'], table = ''): string {
  switch (sort ?? 'time') {
    case 'time':
      // seq, not start_ns: the same order (start_ns is the timestamp of the read that got seq),
      // but it is the primary key, so a page in time order needs no sort and no second index.
      return `ORDER BY ${table}seq`;
    case 'dur':
      return `ORDER BY ${table}dur_ns DESC NULLS LAST, ${table}seq`;
    default:
      throw new TypeError(`sort must be 'time' or 'dur', not ${JSON.stringify(sort)}`);
  }
}

function pageSql(q: RequestQuery, params: SqlParam[]): string {
  for (const [k, v] of [['limit', q.limit], ['offset', q.offset]] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new RangeError(`${k} must be a non-negative integer, not ${v}`);
  }
  if (q.limit === undefined && !q.offset) return '';
  params.push(q.limit ?? -1, q.offset ?? 0);
  return ' LIMIT ? OFFSET ?';
}

function prepare(db: Database, session: number, q: RequestQuery): { stmt: Statement; params: SqlParam[] } {
  registerFilterFunctions(db);
  const { where, params } = requestWhere(session, q);
  const order = orderBy(q.sort);
  const page = pageSql(q, params);
  let sql: string;
  if (page) {
    // A page: pick its keys first, then fetch those rows. The key query is answered from an index
    // alone when the filter only names indexed columns (op, dur, state, unique), so a page of
    // "op==READ && dur>1ms" costs one primary-key lookup per shown row, not one per matching row.
    // CROSS JOIN keeps the page as the outer loop: ordered by an indexed column, SQLite would
    // otherwise walk that index over the whole session looking for the page's rows.
    sql =
      `SELECT ${COLUMNS.split(', ').map((c) => `r.${c}`).join(', ')}
         FROM (SELECT seq${q.sort === 'dur' ? ', dur_ns' : ''} FROM requests WHERE ${where} ${order}${page}) AS page
         CROSS JOIN requests AS r ON r.session = ? AND r.seq = page.seq ` + orderBy(q.sort, 'page.');
    params.push(session);
  } else {
    sql = `SELECT ${COLUMNS} FROM requests WHERE ${where} ${order}`;
  }
  // safeIntegers: unique, nodeid and fh are 64-bit values the server or kernel chose.
  return { stmt: db.prepare(sql).safeIntegers(true), params };
}

/** The requests of a session that match, in order, as an array (use a limit) . */
export function queryRequests(db: Database, session: number, q: RequestQuery = {}): RequestRow[] {
  return [...iterateRequests(db, session, q)];
}

/** Like queryRequests, streaming: for `show` and `export` over a whole session. */
export function* iterateRequests(db: Database, session: number, q: RequestQuery = {}): IterableIterator<RequestRow> {
  const { stmt, params } = prepare(db, session, q);
  for (const r of stmt.iterate(...params)) yield toRow(r as Record<string, bigint | string | null>);
}

/** How many requests match (ignores sort, limit and offset). */
export function countRequests(db: Database, session: number, q: Pick<RequestQuery, 'filter' | 'range'> = {}): number {
  registerFilterFunctions(db);
  const { where, params } = requestWhere(session, q);
  return db.prepare(`SELECT count(*) FROM requests WHERE ${where}`).pluck().get(...params) as number;
}

/** A u64 column read with safeIntegers: values >= 2^63 are stored bit for bit as negative i64 (schema.ts). */
function u64(v: bigint | null): Int64 | null {
  if (v === null) return null;
  const u = BigInt.asUintN(64, v);
  return u <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(u) : u;
}
function num(v: bigint | string | null): number | null {
  return v === null ? null : Number(v);
}

function toRow(r: Record<string, bigint | string | null>): RequestRow {
  const opcode = Number(r.opcode);
  const errno = num(r.errno);
  return {
    seq: Number(r.seq),
    unique: u64(r.unique_id as bigint)!,
    opcode,
    op: opcodeName(opcode),
    nodeid: u64(r.nodeid as bigint | null),
    fh: u64(r.fh as bigint | null),
    path: r.path as string | null,
    pid: num(r.pid),
    comm: r.comm as string | null,
    uid: num(r.uid),
    gid: num(r.gid),
    start_ns: Number(r.start_ns),
    fwd_ns: num(r.fwd_ns),
    reply_ns: num(r.reply_ns),
    dur_ns: num(r.dur_ns),
    errno,
    err: errno !== null && errno > 0 ? errnoName(errno) : null,
    len: Number(r.len),
    reply_len: num(r.reply_len),
    state: r.state as string,
    outcome: r.outcome as string | null,
    background: Number(r.background) !== 0,
    reply_seq: num(r.reply_seq),
    interrupt_seq: num(r.interrupt_seq),
  };
}
