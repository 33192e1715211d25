/**
 * Browsing the request ledger a screen at a time, for the TUI (src/tui/data.ts is its view model).
 * Synchronous (better-sqlite3), and it reads only what is on screen: a page of rows at a time,
 * counts in bounded chunks, aggregates grouped inside SQLite. Which index serves a page is decided
 * here, because only the store knows the indexes (schema.ts). The filter language and the row shape
 * are the CLI's (filter.ts, query.ts), so `/` in the TUI and `fusetrace show -f` select the same requests.
 */
import type { Database } from 'better-sqlite3';
import { TraceReader } from './reader.js';
import { compileFilter, parseFilter, type CompiledFilter, type FilterNode, type SqlParam } from './filter.js';
import { countRequests, queryRequests, type RequestRow } from './query.js';

/** What selects and orders a list of requests. */
export interface BrowseQuery {
  /** A filter expression (filter.ts). */
  filter: string;
  /** `time`: in the order the proxy read them; `dur`: slowest first, unanswered last. */
  sort: 'time' | 'dur';
  /** Only the requests in flight at `atNs` (ns since session start): not sayable in the filter language. */
  scope: { atNs: number } | null;
}

/** Where a reply hands out an identifier: replies to `opcode` carry it at byte `offset`. */
export interface HandoutPlace {
  opcode: number;
  offset: number;
}

/** Answered requests per latency bucket: durations with `digits` decimal digits whose first digit is >= lead (1, 2 or 5). */
export interface LatencyDigits {
  digits: number;
  lead: 1 | 2 | 5;
  count: number;
}

/** Requests per interval of a session's timeline. */
export interface TimelineCounts {
  /** ns since session start of the first interval, and each interval's width. */
  startNs: number;
  widthNs: number;
  /** Per interval: requests read, of which wait for a reply, and replies seen. */
  started: number[];
  waiting: number[];
  replied: number[];
}

/**
 * Most random table lookups a walk of requests_dur may cost before a primary-key scan is cheaper:
 * measured ~3-5 us a lookup against ~0.15-0.4 us a row for a scan (bench/tui.ts), so about what a
 * scan of a million rows costs.
 */
const WALK_MAX_LOOKUPS = 50_000;
/** Seqs sampled to estimate a filter's density (~8k requests: a few ms even with a JS regexp). */
const DENSITY_SAMPLE = 16384;
/** Seqs per counting step (see countSteps): ~65k requests, a few ms to ~60 ms each. */
const COUNT_CHUNK = 131072;

/** Requests that never wait for a reply (FORGET/BATCH_FORGET and notifications): never in flight, as SQL. */
const WAITS_FOR_REPLY = "state NOT IN ('noreply', 'notify')";

/** Requests read per query when looking through replies (lastReplyCarrying). */
const REPLY_PAGE = 256;

/** Pages, counts and aggregates of a session's requests for a browsing UI. */
export class RequestBrowser {
  readonly db: Database;
  private readonly plans = new Map<string, { index: string; density: number | null }>();
  /** Most random lookups a walk of requests_dur may cost (see WALK_MAX_LOOKUPS); tests lower it. */
  private readonly walkMaxLookups: number;

  /** Reads reply frames out of their batches (made on first use). */
  private frameReader: TraceReader | null = null;

  constructor(db: Database, opts: { walkMaxLookups?: number } = {}) {
    this.db = db;
    this.walkMaxLookups = opts.walkMaxLookups ?? WALK_MAX_LOOKUPS;
  }

  /** The compiled filter for a list query: the expression, plus the in-flight scope. */
  private compiled(q: BrowseQuery): CompiledFilter {
    const f = compileFilter(q.filter);
    if (!q.scope) return f;
    // In flight at T: read at or before T and not yet answered at T.
    const where = `(${f.where}) AND start_ns <= ? AND (reply_ns IS NULL OR reply_ns >= ?) AND ${WAITS_FOR_REPLY}`;
    const params: SqlParam[] = [...f.params, q.scope.atNs, q.scope.atNs];
    return { where, params };
  }

  /** How many requests the list holds (all chunks of countSteps at once). Throws FilterError for a bad expression. */
  count(session: number, q: BrowseQuery): number {
    let total = 0;
    for (const step of this.countSteps(session, q)) total = step.total;
    return total;
  }

  /**
   * Counts the list in ranges of COUNT_CHUNK seqs, yielding the running total after each range, so
   * the UI can draw between chunks (a filter with a JS regexp costs ~0.6 us a row: 600 ms on a
   * million rows). A bounded seq range also keeps SQLite on the primary key: for `dur>1ms` it would
   * otherwise walk requests_dur and look every row up at random (seconds on a million rows).
   */
  *countSteps(session: number, q: BrowseQuery): Generator<{ total: number; done: boolean }> {
    const f = this.compiled(q);
    const maxSeq = this.db.prepare('SELECT max(seq) FROM requests WHERE session = ?').pluck().get(session) as number | null;
    if (maxSeq === null) {
      yield { total: 0, done: true };
      return;
    }
    const stmt = this.db.prepare(`SELECT count(*) FROM requests WHERE session = ? AND seq >= ? AND seq < ? AND (${f.where})`).pluck();
    let total = 0;
    for (let lo = 0; lo <= maxSeq; lo += COUNT_CHUNK) {
      total += stmt.get(session, lo, lo + COUNT_CHUNK, ...f.params) as number;
      yield { total, done: lo + COUNT_CHUNK > maxSeq };
    }
  }

  /**
   * `limit` rows starting at `offset` of the list. The seqs of the page are picked on the index that
   * gives the order (requests_start or requests_dur, which carry seq: a covering scan when there is
   * no filter); past the middle of a list of known length the scan runs from the other end. Then
   * only those rows are read, through query.ts so the row shape is the CLI's.
   */
  page(session: number, q: BrowseQuery, offset: number, limit: number, total?: number): RequestRow[] {
    if (limit <= 0) return [];
    offset = Math.max(0, offset);
    const f = this.compiled(q);
    const plan = this.pagePlan(session, q);
    if (total !== undefined && offset >= total) return [];
    const fromEnd = total !== undefined && offset > total / 2;
    let index = plan.index;
    let bound = '';
    let fwd = q.sort === 'time' ? 'start_ns, seq' : 'dur_ns DESC, seq DESC';
    let rev = q.sort === 'time' ? 'start_ns DESC, seq DESC' : 'dur_ns, seq';
    // Rows a walk of the index passes before the page ends, over the share of rows that match:
    // the random table lookups a walk of requests_dur costs.
    const depth = fromEnd ? total! - offset : offset + limit;
    if (plan.density !== null && depth / plan.density > this.walkMaxLookups) {
      // Cheaper to scan the primary key in order (the bounded seq range keeps SQLite on it) and
      // sort the matches: `+dur_ns` is not the indexed column, so no index can serve the order.
      index = '';
      bound = 'seq >= 0 AND ';
      fwd = '+dur_ns DESC, seq DESC';
      rev = '+dur_ns, seq';
    }
    const seqs = (order: string, n: number, skip: number): number[] =>
      this.db
        .prepare(`SELECT seq FROM requests ${index} WHERE session = ? AND ${bound}(${f.where}) ORDER BY ${order} LIMIT ? OFFSET ?`)
        .pluck()
        .all(session, ...f.params, n, skip) as number[];
    let picked: number[];
    if (fromEnd) {
      const end = Math.min(total!, offset + limit);
      picked = seqs(rev, end - offset, total! - end).reverse();
    } else {
      picked = seqs(fwd, limit, offset);
    }
    // One primary-key lookup per row: with `seq IN (...)` and query.ts's ORDER BY, SQLite walks
    // requests_start over the whole session instead (no statistics tell it the list is short).
    return picked.map((seq) => this.request(session, seq)).filter((r): r is RequestRow => r !== null);
  }

  /**
   * Which index finds a list's pages, chosen once per list. SQLite has no statistics here (the file
   * is opened read-only, nobody ran ANALYZE), and on its own it takes requests_dur for `dur>1ms`
   * (assuming a range is selective) and looks up most of the table at random: seconds on a
   * million rows.
   * - the filter pins an indexed column (`unique==`, `state==`, `state in {}`): that index finds
   *   the few rows and SQLite sorts them;
   * - by time: walk requests_start; LIMIT stops the walk early, and table lookups in start order
   *   are nearly sequential (seq grows with time);
   * - by duration: walk requests_dur, unless the filter is so sparse that the walk would look up
   *   more than WALK_MAX_LOOKUPS rows at random before the page is full (page() then scans the
   *   primary key instead). `density` is the share of matches among the first DENSITY_SAMPLE seqs.
   */
  private pagePlan(session: number, q: BrowseQuery): { index: string; density: number | null } {
    const key = `${session}\u0000${q.sort}\u0000${q.filter}\u0000${q.scope?.atNs ?? ''}`;
    let plan = this.plans.get(key);
    if (plan) return plan;
    const pinned = pinnedIndex(q.filter);
    if (pinned) plan = { index: `INDEXED BY ${pinned}`, density: null };
    else if (q.sort === 'time') plan = { index: 'INDEXED BY requests_start', density: null };
    else if (!q.filter && !q.scope) plan = { index: 'INDEXED BY requests_dur', density: null };
    else {
      const f = this.compiled(q);
      const sample = (where: string, params: SqlParam[]) =>
        this.db.prepare(`SELECT count(*) FROM requests WHERE session = ? AND seq < ? AND (${where})`).pluck().get(session, DENSITY_SAMPLE, ...params) as number;
      const rows = sample('1', []);
      plan = { index: 'INDEXED BY requests_dur', density: rows > 0 ? sample(f.where, f.params) / rows : 0 };
    }
    // `record` drops the duration indexes while it records (schema.ts DURATION_INDEX_SQL), and
    // INDEXED BY a missing index is an error: plan without it then.
    const named = /^INDEXED BY (\w+)$/.exec(plan.index)?.[1];
    if (named && !this.db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?").get(named)) {
      plan = { index: '', density: plan.density };
    }
    if (this.plans.size > 64) this.plans.clear();
    this.plans.set(key, plan);
    return plan;
  }

  /** The request with frames.seq `seq`, or null. */
  request(session: number, seq: number): RequestRow | null {
    return queryRequests(this.db, session, { filter: { where: 'seq = ?', params: [seq] }, limit: 1 })[0] ?? null;
  }

  /** Position of request `seq` in the list (the order of page()), or null if the list does not hold it. */
  indexOf(session: number, q: BrowseQuery, seq: number): number | null {
    const row = this.request(session, seq);
    if (!row) return null;
    const f = this.compiled(q);
    const inList = countRequests(this.db, session, { filter: { where: `(${f.where}) AND seq = ?`, params: [...f.params, seq] } });
    if (inList === 0) return null;
    let before: CompiledFilter;
    if (q.sort === 'time') {
      before = { where: `(${f.where}) AND (start_ns < ? OR (start_ns = ? AND seq < ?))`, params: [...f.params, row.start_ns, row.start_ns, seq] };
    } else if (row.dur_ns === null) {
      // dur_ns DESC puts NULL (no reply) last.
      before = { where: `(${f.where}) AND (dur_ns IS NOT NULL OR seq > ?)`, params: [...f.params, seq] };
    } else {
      before = { where: `(${f.where}) AND (dur_ns > ? OR (dur_ns = ? AND seq > ?))`, params: [...f.params, row.dur_ns, row.dur_ns, seq] };
    }
    return countRequests(this.db, session, { filter: before });
  }

  /**
   * The seq of the last successful request before `beforeSeq` whose reply holds the 8 bytes `key`
   * at one of `places`, or undefined.
   */
  lastReplyCarrying(session: number, beforeSeq: number, places: readonly HandoutPlace[], key: Buffer): number | undefined {
    if (places.length === 0) return undefined;
    const opcodes = [...new Set(places.map((h) => Number(h.opcode)))];
    // Frames have no table (schema.ts format 5): the replies are read from their batches, latest
    // first, in pages (the connection cannot read a batch while a statement is being iterated).
    for (const { seq, opcode, data } of this.replies(session, beforeSeq, opcodes, Infinity)) {
      for (const h of places) {
        const at = Number(h.offset);
        if (Number(h.opcode) === opcode && data.length >= at + key.length && data.subarray(at, at + key.length).equals(key)) return seq;
      }
    }
    return undefined;
  }

  /** Successful requests of `opcode` before `beforeSeq` with their reply bytes, latest first, at most `limit`. */
  repliesBefore(session: number, beforeSeq: number, opcode: number, limit: number): IterableIterator<{ seq: number; data: Buffer }> {
    return this.replies(session, beforeSeq, [opcode], limit);
  }

  /** Successful requests of these opcodes before `beforeSeq`, latest first, with their reply frames' bytes. */
  private *replies(session: number, beforeSeq: number, opcodes: readonly number[], limit: number): Generator<{ seq: number; opcode: number; data: Buffer }> {
    const page = this.db
      .prepare(
        `SELECT seq, opcode, reply_seq FROM requests WHERE session = ? AND seq < ? AND errno = 0 AND opcode IN (${opcodes.map(Number).join(', ')})
          ORDER BY seq DESC LIMIT ${REPLY_PAGE}`,
      )
      .raw(true);
    const reader = (this.frameReader ??= new TraceReader(this.db));
    let before = beforeSeq;
    let n = 0;
    for (;;) {
      const rows = page.all(session, before) as Array<[number, number, number | null]>;
      for (const [seq, opcode, replySeq] of rows) {
        if (n >= limit) return;
        if (replySeq === null) continue;
        const [reply] = reader.framesAt(session, [replySeq]);
        if (!reply) continue;
        n++;
        yield { seq, opcode, data: reply.data };
      }
      if (rows.length < REPLY_PAGE) return;
      before = rows[rows.length - 1][0];
    }
  }

  /**
   * Answered requests (duration > 0) that match `filter`, by the number of decimal digits of their
   * duration and its leading digit rounded down to 1, 2 or 5: a 1-2-5 histogram grouped inside SQLite.
   */
  latencyDigits(session: number, filter: string): LatencyDigits[] {
    const f = compileFilter(filter);
    return (
      this.db
        .prepare(
          `SELECT length(dur_ns) AS digits, CASE WHEN substr(dur_ns, 1, 1) < '2' THEN 1 WHEN substr(dur_ns, 1, 1) < '5' THEN 2 ELSE 5 END AS lead, count(*) AS n
             FROM requests WHERE session = ? AND dur_ns IS NOT NULL AND dur_ns > 0 AND (${f.where})
            GROUP BY digits, lead ORDER BY digits, lead`,
        )
        .all(session, ...f.params) as Array<{ digits: number; lead: 1 | 2 | 5; n: number }>
    ).map((r) => ({ digits: r.digits, lead: r.lead, count: r.n }));
  }

  /** Requests read, waiting and answered per interval, over the span of the requests that match, in `columns` equal intervals; null when none match. */
  timelineCounts(session: number, filter: string, columns: number): TimelineCounts | null {
    const f = compileFilter(filter);
    const span = this.db
      .prepare(`SELECT min(start_ns) AS lo, max(coalesce(reply_ns, start_ns)) AS hi FROM requests WHERE session = ? AND (${f.where})`)
      .get(session, ...f.params) as { lo: number | null; hi: number | null };
    if (span.lo === null || span.hi === null || columns <= 0) return null;
    const width = Math.max(1, Math.ceil((span.hi - span.lo + 1) / columns));
    const out: TimelineCounts = {
      startNs: span.lo,
      widthNs: width,
      started: new Array<number>(columns).fill(0),
      waiting: new Array<number>(columns).fill(0),
      replied: new Array<number>(columns).fill(0),
    };
    const col = (b: number): number => Math.min(columns - 1, b);
    for (const r of this.db
      .prepare(`SELECT (start_ns - ?) / ? AS b, count(*) AS n, sum(${WAITS_FOR_REPLY}) AS w FROM requests WHERE session = ? AND (${f.where}) GROUP BY b`)
      // BigInt binds as INTEGER: with a JS number SQLite would divide as REAL.
      .all(BigInt(span.lo), BigInt(width), session, ...f.params) as Array<{ b: number; n: number; w: number }>) {
      out.started[col(r.b)]! += r.n;
      out.waiting[col(r.b)]! += r.w;
    }
    for (const r of this.db
      .prepare(
        `SELECT (reply_ns - ?) / ? AS b, count(*) AS n FROM requests WHERE session = ? AND reply_ns IS NOT NULL AND ${WAITS_FOR_REPLY} AND (${f.where}) GROUP BY b`,
      )
      .all(BigInt(span.lo), BigInt(width), session, ...f.params) as Array<{ b: number; n: number }>) {
      out.replied[col(r.b)]! += r.n;
    }
    return out;
  }
}

/** Filter fields with an index of their own after `session` (schema.ts). */
const PINNED: Record<string, string> = { unique: 'requests_unique', state: 'requests_state' };

/** The index to use when the filter ANDs in an equality (or `in`) on an indexed field, else null. */
export function pinnedIndex(filter: string): string | null {
  let tree: FilterNode | null;
  try {
    tree = parseFilter(filter);
  } catch {
    return null;
  }
  const pins = (n: FilterNode | null): string | null => {
    if (!n) return null;
    if (n.type === 'and') return pins(n.left) ?? pins(n.right);
    if (n.type === 'cmp' && n.op === '==') return PINNED[n.field] ?? null;
    if (n.type === 'in') return PINNED[n.field] ?? null;
    return null;
  };
  return pins(tree);
}
