/**
 * Everything the TUI reads from a trace file, in one place. It is synchronous (better-sqlite3) and
 * reads only what is on screen: a page of rows at a time, counts from the (session, ...) indexes
 * of schema.ts. The filter language and the row shape come from src/store (filter.ts, query.ts),
 * so `/` in the TUI and `fusetrace show -f` select the same requests.
 */
import type { Database } from 'better-sqlite3';
import { compileFilter, parseFilter, type CompiledFilter, type FilterNode, type SqlParam } from '../store/filter.js';
import { countRequests, queryRequests, type RequestRow } from '../store/query.js';
import { stats, type SessionStats } from '../store/stats.js';
import { decodeReply, FUSE_INT_REQ_BIT, OPCODE_TABLE, OUT_HEADER_SIZE, structs, type DecodeContext, type StructDesc } from '../protocol/index.js';
const { fuse_entry_out, fuse_open_out } = structs;
import type { InFlightScope, SortOrder } from './state.js';

/** The sessions view's row: a session and its headline numbers. */
export interface SessionSummary {
  id: number;
  name: string | null;
  /** ns since the Unix epoch. */
  startedWallNs: bigint;
  /** CLOCK_MONOTONIC ns at the start: frame times, and a live session's "now", are on this clock. */
  startedMonoNs: bigint;
  /** ns; null while recording (or after the recorder was killed). */
  durationNs: number | null;
  command: string;
  mountpoint: string | null;
  endReason: string | null;
  frames: number;
  dropped: number;
  requests: number;
  /** Requests per lifecycle state (requests.state). */
  states: Record<string, number>;
}

/** What selects and orders the requests list. */
export interface ListQuery {
  /** The effective filter expression (user filter and toggles). */
  filter: string;
  sort: SortOrder;
  scope: InFlightScope | null;
}

/** One frame of the `frames` table (the raw bytes as they crossed the proxy). */
export interface FrameRow {
  seq: number;
  /** ns since session start (frames carry CLOCK_MONOTONIC; the session's start is subtracted). */
  tsNs: number;
  fwdNs: number | null;
  dir: 0 | 1;
  unique: bigint;
  opcode: number | null;
  error: number | null;
  len: number;
  data: Buffer;
  writeErrno: number;
}

/** The detail pane's content for one request. */
export interface RequestDetail {
  row: RequestRow;
  request: FrameRow | null;
  reply: FrameRow | null;
  /** FUSE_INTERRUPT frames naming this request's unique, and the replies to them (EAGAIN). */
  interrupts: FrameRow[];
  /** Every other frame with the same unique in the session (e.g. a second reply written late). */
  others: FrameRow[];
  /** What the codec needs to decode the session's frames. */
  protocol: DecodeContext;
}

/** A 1-2-5 bucket of the latency histogram: durations in [loNs, hiNs). */
export interface HistogramBucket {
  loNs: number;
  hiNs: number;
  count: number;
}

/** One column of the timeline. */
export interface TimelineBucket {
  startNs: number;
  /** Requests read from /dev/fuse in this interval. */
  started: number;
  /** Requests outstanding at the end of the interval. */
  inFlight: number;
}

/**
 * Where a reply hands out a nodeid or an fh, read off the opcode table: every opcode whose reply
 * carries fuse_entry_out (its first field is nodeid) or fuse_open_out (first field fh), with the
 * byte offset of that struct in the reply (CREATE: fuse_entry_out, then fuse_open_out).
 */
function handoutOffsets(desc: StructDesc): Array<{ opcode: number; offset: number }> {
  const out: Array<{ opcode: number; offset: number }> = [];
  for (const info of OPCODE_TABLE) {
    if (info.reply.kind !== 'structs') continue;
    let offset = OUT_HEADER_SIZE;
    for (const st of info.reply.structs) {
      if (st === desc) out.push({ opcode: info.opcode, offset });
      offset += st.size;
    }
  }
  return out;
}
const NODEID_HANDOUTS = handoutOffsets(fuse_entry_out);
const FH_HANDOUTS = handoutOffsets(fuse_open_out);
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

export class TuiSource {
  readonly db: Database;
  private readonly startMono = new Map<number, bigint>();
  private readonly plans = new Map<string, { index: string; density: number | null }>();

  /** Most random lookups a walk of requests_dur may cost (see WALK_MAX_LOOKUPS); tests lower it. */
  private readonly walkMaxLookups: number;

  constructor(db: Database, opts: { walkMaxLookups?: number } = {}) {
    this.db = db;
    this.walkMaxLookups = opts.walkMaxLookups ?? WALK_MAX_LOOKUPS;
  }

  /** The sessions with their headline numbers (per-state counts come from the requests_state index). */
  sessions(): SessionSummary[] {
    const rows = this.db
      .prepare(
        `SELECT id, name, started_wall_ns, started_mono_ns, ended_mono_ns, command, mountpoint, end_reason, frames, dropped
           FROM sessions ORDER BY id`,
      )
      .safeIntegers(true)
      .all() as Array<Record<string, bigint | string | null>>;
    const perState = this.db.prepare('SELECT state, count(*) AS n FROM requests WHERE session = ? GROUP BY state');
    return rows.map((r) => {
      const id = Number(r.id);
      this.startMono.set(id, r.started_mono_ns as bigint);
      const states: Record<string, number> = {};
      let requests = 0;
      for (const s of perState.all(id) as Array<{ state: string; n: number }>) {
        states[s.state] = s.n;
        requests += s.n;
      }
      let command = String(r.command);
      try {
        const argv = JSON.parse(command) as unknown;
        if (Array.isArray(argv)) command = argv.map(String).join(' ');
      } catch {
        // Not JSON: show it as stored.
      }
      return {
        id,
        name: r.name as string | null,
        startedWallNs: r.started_wall_ns as bigint,
        startedMonoNs: r.started_mono_ns as bigint,
        durationNs: r.ended_mono_ns === null ? null : Number((r.ended_mono_ns as bigint) - (r.started_mono_ns as bigint)),
        command,
        mountpoint: r.mountpoint as string | null,
        endReason: r.end_reason as string | null,
        frames: Number(r.frames),
        dropped: Number(r.dropped),
        requests,
        states,
      };
    });
  }

  /** The compiled filter for a list query: the expression, plus the in-flight scope (not sayable in the language). */
  private compiled(q: ListQuery): CompiledFilter {
    const f = compileFilter(q.filter);
    if (!q.scope) return f;
    // In flight at T: read at or before T and not yet answered at T. FORGET/BATCH_FORGET (noreply)
    // and notifications never wait for a reply, so they are never in flight.
    const where = `(${f.where}) AND start_ns <= ? AND (reply_ns IS NULL OR reply_ns >= ?) AND state NOT IN ('noreply', 'notify')`;
    const params: SqlParam[] = [...f.params, q.scope.atNs, q.scope.atNs];
    return { where, params };
  }

  /** How many requests the list holds (all chunks of countSteps at once). Throws FilterError for a bad expression. */
  count(session: number, q: ListQuery): number {
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
  *countSteps(session: number, q: ListQuery): Generator<{ total: number; done: boolean }> {
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
   * only those rows are read, through store/query.ts so the row shape is the CLI's.
   */
  page(session: number, q: ListQuery, offset: number, limit: number, total?: number): RequestRow[] {
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
    let seqs: number[];
    if (fromEnd) {
      const end = Math.min(total!, offset + limit);
      const revOffset = total! - end;
      seqs = (
        this.db
          .prepare(`SELECT seq FROM requests ${index} WHERE session = ? AND ${bound}(${f.where}) ORDER BY ${rev} LIMIT ? OFFSET ?`)
          .pluck()
          .all(session, ...f.params, end - offset, revOffset) as number[]
      ).reverse();
    } else {
      seqs = this.db
        .prepare(`SELECT seq FROM requests ${index} WHERE session = ? AND ${bound}(${f.where}) ORDER BY ${fwd} LIMIT ? OFFSET ?`)
        .pluck()
        .all(session, ...f.params, limit, offset) as number[];
    }
    // One primary-key lookup per row: with `seq IN (...)` and query.ts's ORDER BY, SQLite walks
    // requests_start over the whole session instead (no statistics tell it the list is short).
    return seqs.map((seq) => this.request(session, seq)).filter((r): r is RequestRow => r !== null);
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
  private pagePlan(session: number, q: ListQuery): { index: string; density: number | null } {
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
  indexOf(session: number, q: ListQuery, seq: number): number | null {
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

  /** Negotiated protocol minor and INIT flags of a session (the codec's DecodeContext). */
  protocol(session: number): DecodeContext {
    const r = this.db
      .prepare('SELECT kernel_minor, server_minor, init_flags FROM sessions WHERE id = ?')
      .safeIntegers(true)
      .get(session) as { kernel_minor: bigint | null; server_minor: bigint | null; init_flags: bigint | null } | undefined;
    const ctx: DecodeContext = {};
    if (r?.kernel_minor != null && r.server_minor != null) ctx.minor = Number(r.kernel_minor < r.server_minor ? r.kernel_minor : r.server_minor);
    if (r?.init_flags != null) ctx.flags = BigInt.asUintN(64, r.init_flags);
    return ctx;
  }

  private sessionStart(session: number): bigint {
    let s = this.startMono.get(session);
    if (s === undefined) {
      const v = this.db.prepare('SELECT started_mono_ns FROM sessions WHERE id = ?').safeIntegers(true).pluck().get(session) as bigint | undefined;
      s = v ?? 0n;
      this.startMono.set(session, s);
    }
    return s;
  }

  private toFrame(session: number, r: Record<string, bigint | Buffer | null>): FrameRow {
    const start = this.sessionStart(session);
    return {
      seq: Number(r.seq),
      tsNs: Number((r.ts_ns as bigint) - start),
      fwdNs: r.fwd_ns === null ? null : Number((r.fwd_ns as bigint) - start),
      dir: Number(r.dir) as 0 | 1,
      unique: BigInt.asUintN(64, r.unique_id as bigint),
      opcode: r.opcode === null ? null : Number(r.opcode),
      error: r.error === null ? null : Number(r.error),
      len: Number(r.len),
      data: r.data as Buffer,
      writeErrno: Number(r.write_errno),
    };
  }

  /** The request with all its frames: request, reply, INTERRUPTs naming it, anything else on its unique. */
  detail(session: number, seq: number): RequestDetail | null {
    const row = this.request(session, seq);
    if (!row) return null;
    const cols = 'seq, ts_ns, fwd_ns, dir, unique_id, opcode, error, len, data, write_errno';
    const frames = (
      this.db
        .prepare(`SELECT ${cols} FROM frames WHERE session = ? AND unique_id = ? ORDER BY seq`)
        .safeIntegers(true)
        .all(session, BigInt(row.unique)) as Array<Record<string, bigint | Buffer | null>>
    ).map((r) => this.toFrame(session, r));
    // A unique is reused by the kernel once its request ended; keep the frames of this request's
    // lifetime: from its request frame to the next request frame with the same unique.
    const mine = frames.filter((f) => f.seq >= seq);
    const nextReuse = mine.find((f) => f.seq > seq && f.dir === 0 && f.opcode !== 36);
    const lifetime = nextReuse ? mine.filter((f) => f.seq < nextReuse.seq) : mine;
    const request = lifetime.find((f) => f.seq === seq) ?? null;
    const reply = (row.reply_seq !== null ? lifetime.find((f) => f.seq === row.reply_seq) : lifetime.find((f) => f.dir === 1)) ?? null;
    // A FUSE_INTERRUPT's own unique is the interrupted request's unique | FUSE_INT_REQ_BIT
    // (fs/fuse/fuse_i.h); the server's answer to it (EAGAIN, ENOSYS) carries the same unique.
    const end = nextReuse ? nextReuse.seq : Number.MAX_SAFE_INTEGER;
    const interrupts = (
      this.db
        .prepare(`SELECT ${cols} FROM frames WHERE session = ? AND unique_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT 64`)
        .safeIntegers(true)
        .all(session, BigInt.asIntN(64, BigInt(row.unique) | FUSE_INT_REQ_BIT), seq, end) as Array<Record<string, bigint | Buffer | null>>
    ).map((r) => this.toFrame(session, r));
    const others = lifetime.filter((f) => f !== request && f !== reply);
    return { row, request, reply, interrupts, others, protocol: this.protocol(session) };
  }

  /**
   * Where the request's nodeid (or fh) came from: the last successful reply before it that handed
   * it out (LOOKUP/MKNOD/MKDIR/SYMLINK/LINK/CREATE/TMPFILE for a nodeid, OPEN/OPENDIR/CREATE for an fh).
   * Returns the seq of that request, or a reason why there is none.
   */
  origin(session: number, row: RequestRow, which: 'nodeid' | 'fh'): { seq: number } | { reason: string } {
    const value = which === 'nodeid' ? row.nodeid : row.fh;
    if (value === null || value === undefined) return { reason: `this request names no ${which}` };
    if (which === 'nodeid' && BigInt(value) === 1n) return { reason: 'nodeid 1 is the root: it comes from the mount, not from a reply' };
    if (which === 'nodeid' && BigInt(value) === 0n) return { reason: 'nodeid 0 names no inode' };
    const key = u64le(BigInt(value));
    const handouts = which === 'nodeid' ? NODEID_HANDOUTS : FH_HANDOUTS;
    // One OR arm per (opcode, offset); SQLite substr() on a blob is 1-based.
    const arms = handouts.map((h) => `(r.opcode = ${h.opcode} AND substr(f.data, ${h.offset + 1}, 8) = ?)`);
    const sql = `SELECT r.seq FROM requests r JOIN frames f ON f.session = r.session AND f.seq = r.reply_seq
              WHERE r.session = ? AND r.seq < ? AND r.errno = 0 AND (${arms.join(' OR ')})
              ORDER BY r.seq DESC LIMIT 1`;
    const params = [session, row.seq, ...handouts.map(() => key)];
    const seq = this.db.prepare(sql).pluck().get(...params) as number | undefined;
    if (seq !== undefined) return { seq: Number(seq) };
    if (which === 'nodeid') {
      const fromDir = this.readdirplusOrigin(session, row.seq, BigInt(value));
      if (fromDir !== null) return { seq: fromDir };
    }
    return { reason: `no reply before this request handed out ${which} ${value} (was it recorded?)` };
  }

  /**
   * READDIRPLUS replies hand out nodeids too, one fuse_entry_out per fuse_direntplus, at offsets
   * only a walk of the buffer finds: decode the replies (latest first, a bounded number) with the codec.
   */
  private readdirplusOrigin(session: number, before: number, nodeid: bigint): number | null {
    const READDIRPLUS = OPCODE_TABLE.find((o) => o.reply.kind === 'dirents' && o.reply.plus)?.opcode;
    if (READDIRPLUS === undefined) return null;
    const rows = this.db
      .prepare(
        `SELECT r.seq, f.data FROM requests r JOIN frames f ON f.session = r.session AND f.seq = r.reply_seq
          WHERE r.session = ? AND r.seq < ? AND r.errno = 0 AND r.opcode = ? ORDER BY r.seq DESC LIMIT 5000`,
      )
      .iterate(session, before, READDIRPLUS) as IterableIterator<{ seq: number; data: Buffer }>;
    for (const r of rows) {
      const d = decodeReply(r.data, { ...this.protocol(session), opcode: READDIRPLUS });
      if (d.frame?.dirents?.some((e) => e.entry !== undefined && BigInt(e.entry.nodeid as bigint | number) === nodeid)) return Number(r.seq);
    }
    return null;
  }

  /** Per-opcode counts and percentiles, states, errnos (store/stats.ts). */
  stats(session: number, filter: string): SessionStats {
    return stats(this.db, session, filter, { top: 5 });
  }

  /** Latency histogram in 1-2-5 buckets (1us, 2us, 5us, 10us, ...), grouped by digits inside SQLite. */
  histogram(session: number, filter: string): HistogramBucket[] {
    const f = compileFilter(filter);
    const rows = this.db
      .prepare(
        `SELECT length(dur_ns) AS digits, CASE WHEN substr(dur_ns, 1, 1) < '2' THEN 1 WHEN substr(dur_ns, 1, 1) < '5' THEN 2 ELSE 5 END AS lead, count(*) AS n
           FROM requests WHERE session = ? AND dur_ns IS NOT NULL AND dur_ns > 0 AND (${f.where})
          GROUP BY digits, lead ORDER BY digits, lead`,
      )
      .all(session, ...f.params) as Array<{ digits: number; lead: number; n: number }>;
    if (rows.length === 0) return [];
    const out: HistogramBucket[] = [];
    const next = { 1: 2, 2: 5, 5: 10 } as const;
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    // Fill the empty buckets in between so the histogram's x axis is even.
    const byKey = new Map(rows.map((r) => [`${r.digits}:${r.lead}`, r.n]));
    for (let d = first.digits; d <= last.digits; d++) {
      for (const lead of [1, 2, 5] as const) {
        if (d === first.digits && lead < first.lead) continue;
        if (d === last.digits && lead > last.lead) continue;
        const lo = lead * 10 ** (d - 1);
        out.push({ loNs: lo, hiNs: next[lead] * 10 ** (d - 1), count: byKey.get(`${d}:${lead}`) ?? 0 });
      }
    }
    return out;
  }

  /** Request rate and in-flight count over the session in `columns` equal intervals. */
  timeline(session: number, filter: string, columns: number): TimelineBucket[] {
    const f = compileFilter(filter);
    const span = this.db
      .prepare(`SELECT min(start_ns) AS lo, max(coalesce(reply_ns, start_ns)) AS hi FROM requests WHERE session = ? AND (${f.where})`)
      .get(session, ...f.params) as { lo: number | null; hi: number | null };
    if (span.lo === null || span.hi === null || columns <= 0) return [];
    const width = Math.max(1, Math.ceil((span.hi - span.lo + 1) / columns));
    const starts = new Array<number>(columns).fill(0);
    const waiting = new Array<number>(columns).fill(0);
    const replies = new Array<number>(columns).fill(0);
    for (const r of this.db
      .prepare(`SELECT (start_ns - ?) / ? AS b, count(*) AS n, sum(state NOT IN ('noreply', 'notify')) AS w FROM requests WHERE session = ? AND (${f.where}) GROUP BY b`)
      // BigInt binds as INTEGER: with a JS number SQLite would divide as REAL.
      .all(BigInt(span.lo), BigInt(width), session, ...f.params) as Array<{ b: number; n: number; w: number }>) {
      starts[Math.min(columns - 1, r.b)]! += r.n;
      waiting[Math.min(columns - 1, r.b)]! += r.w;
    }
    for (const r of this.db
      .prepare(
        `SELECT (reply_ns - ?) / ? AS b, count(*) AS n FROM requests WHERE session = ? AND reply_ns IS NOT NULL AND state NOT IN ('noreply', 'notify') AND (${f.where}) GROUP BY b`,
      )
      .all(BigInt(span.lo), BigInt(width), session, ...f.params) as Array<{ b: number; n: number }>) {
      replies[Math.min(columns - 1, r.b)]! += r.n;
    }
    const out: TimelineBucket[] = [];
    let inFlight = 0;
    for (let i = 0; i < columns; i++) {
      inFlight += waiting[i]! - replies[i]!;
      out.push({ startNs: span.lo + i * width, started: starts[i]!, inFlight });
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

/** A u64 as 8 little-endian bytes: how FUSE puts it on the wire (x86-64, arm64). */
function u64le(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return b;
}
