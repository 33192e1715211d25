/**
 * The TUI's view model: what its views show, made from the store's answers. Paging, counts and
 * the SQL behind every figure are src/store's (browse.ts, reader.ts, stats.ts), which TuiSource
 * extends; this file adds what the views need on top: session summaries, a request's frames sorted
 * into its lifecycle, where a nodeid or fh came from, the histogram's buckets and the timeline's
 * in-flight curve.
 */
import type { Database } from 'better-sqlite3';
import { RequestBrowser, type BrowseQuery, type HandoutPlace } from '../store/browse.js';
import type { RequestRow } from '../store/query.js';
import { TraceReader } from '../store/reader.js';
import { stats, type SessionStats } from '../store/stats.js';
import { sessionProfile } from '../store/profile.js';
import { diffProfiles, type SessionDiff } from '../diff/diff.js';
import type { FrameRecord } from '../store/writer.js';
import { FUSE_INT_REQ_BIT, OP, OPCODE_TABLE, OUT_HEADER_SIZE, decodeReply, sessionContext, structs, type DecodeContext, type StructDesc } from '../protocol/index.js';
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

/** What selects and orders the requests list: the store's query, with the TUI's own scope and sort types. */
export interface ListQuery extends BrowseQuery {
  /** The effective filter expression (user filter and toggles). */
  filter: string;
  sort: SortOrder;
  scope: InFlightScope | null;
}

/** The detail pane's content for one request. */
export interface RequestDetail {
  row: RequestRow;
  request: FrameRecord | null;
  reply: FrameRecord | null;
  /** FUSE_INTERRUPT frames naming this request's unique, and the replies to them (EAGAIN). */
  interrupts: FrameRecord[];
  /** Every other frame with the same unique in the session (e.g. a second reply written late). */
  others: FrameRecord[];
  /** What the codec needs to decode the session's frames. */
  protocol: DecodeContext;
  /** CLOCK_MONOTONIC ns of the session's start: a frame's tsNs minus this is the time the views show. */
  sessionStartNs: bigint;
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
function handoutOffsets(desc: StructDesc): HandoutPlace[] {
  const out: HandoutPlace[] = [];
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
/** READDIRPLUS replies searched, latest first, for a nodeid no other reply handed out. */
const READDIRPLUS_SEARCH = 5000;

export class TuiSource extends RequestBrowser {
  private readonly reader: TraceReader;
  /** CLOCK_MONOTONIC start of each session seen (it never changes; INIT's outcome may, while recording). */
  private readonly startMono = new Map<number, bigint>();

  constructor(db: Database, opts: { walkMaxLookups?: number } = {}) {
    super(db, opts);
    this.reader = new TraceReader(db);
  }

  /** Session `a` against session `b` (the requests matching `filter` in each), as `fusetrace diff` computes it. */
  diff(a: number, b: number, filter: string): SessionDiff {
    const f = filter || null;
    const label = (id: number): string => {
      const name = this.sessions().find((x) => x.id === id)?.name;
      return name ? `${id} ${JSON.stringify(name)}` : String(id);
    };
    return diffProfiles(sessionProfile(this.db, a, f), sessionProfile(this.db, b, f), { a: label(a), b: label(b) }, { top: 10 });
  }

  /** The sessions with their headline numbers (per-state counts come from the requests_state index). */
  sessions(): SessionSummary[] {
    return this.reader.listSessions().map((s) => {
      this.startMono.set(s.id, s.startedMonoNs);
      const states = this.reader.stateCounts(s.id);
      return {
        id: s.id,
        name: s.name,
        startedWallNs: s.startedWallNs,
        startedMonoNs: s.startedMonoNs,
        durationNs: s.endedMonoNs === null ? null : Number(s.endedMonoNs - s.startedMonoNs),
        command: s.command.join(' '),
        mountpoint: s.mountpoint,
        endReason: s.endReason,
        frames: s.frames,
        dropped: s.dropped,
        requests: Object.values(states).reduce((a, b) => a + b, 0),
        states,
      };
    });
  }

  private sessionStart(session: number): bigint {
    let s = this.startMono.get(session);
    if (s === undefined) {
      s = this.reader.getSession(session)?.startedMonoNs ?? 0n;
      this.startMono.set(session, s);
    }
    return s;
  }

  /** Negotiated protocol minor and INIT flags of a session (the codec's DecodeContext). */
  protocol(session: number): DecodeContext {
    const info = this.reader.getSession(session);
    return info ? sessionContext(info) : {};
  }

  /** The request with all its frames: request, reply, INTERRUPTs naming it, anything else on its unique. */
  detail(session: number, seq: number): RequestDetail | null {
    const row = this.request(session, seq);
    if (!row) return null;
    const unique = BigInt(row.unique);
    // A unique is reused by the kernel once its request ended; keep the frames of this request's
    // lifetime: from its request frame to the next request frame with the same unique.
    const mine = this.reader.framesOfUnique(session, unique, { afterSeq: seq - 1 });
    const nextReuse = mine.find((f) => f.seq > seq && f.dir === 0 && f.opcode !== OP.INTERRUPT);
    const lifetime = nextReuse ? mine.filter((f) => f.seq < nextReuse.seq) : mine;
    const request = lifetime.find((f) => f.seq === seq) ?? null;
    const reply = (row.reply_seq !== null ? lifetime.find((f) => f.seq === row.reply_seq) : lifetime.find((f) => f.dir === 1)) ?? null;
    // A FUSE_INTERRUPT's own unique is the interrupted request's unique | FUSE_INT_REQ_BIT
    // (fs/fuse/fuse_i.h); the server's answer to it (EAGAIN, ENOSYS) carries the same unique.
    const interrupts = this.reader.framesOfUnique(session, unique | FUSE_INT_REQ_BIT, {
      afterSeq: seq,
      beforeSeq: nextReuse ? nextReuse.seq : Number.MAX_SAFE_INTEGER,
      limit: 64,
    });
    const others = lifetime.filter((f) => f !== request && f !== reply);
    return { row, request, reply, interrupts, others, protocol: this.protocol(session), sessionStartNs: this.sessionStart(session) };
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
    const seq = this.lastReplyCarrying(session, row.seq, which === 'nodeid' ? NODEID_HANDOUTS : FH_HANDOUTS, key);
    if (seq !== undefined) return { seq };
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
    const { READDIRPLUS } = OP;
    for (const r of this.repliesBefore(session, before, READDIRPLUS, READDIRPLUS_SEARCH)) {
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
    const rows = this.latencyDigits(session, filter);
    if (rows.length === 0) return [];
    const out: HistogramBucket[] = [];
    const next = { 1: 2, 2: 5, 5: 10 } as const;
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    // Fill the empty buckets in between so the histogram's x axis is even.
    const byKey = new Map(rows.map((r) => [`${r.digits}:${r.lead}`, r.count]));
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
    const c = this.timelineCounts(session, filter, columns);
    if (!c) return [];
    const out: TimelineBucket[] = [];
    let inFlight = 0;
    for (let i = 0; i < columns; i++) {
      inFlight += c.waiting[i]! - c.replied[i]!;
      out.push({ startNs: c.startNs + i * c.widthNs, started: c.started[i]!, inFlight });
    }
    return out;
  }
}

/** A u64 as 8 little-endian bytes: how FUSE puts it on the wire (x86-64, arm64). */
function u64le(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return b;
}
