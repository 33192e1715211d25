/**
 * The replay plan: what the recording says happened, in the order it happened.
 *
 * Frames are the ground truth (schema.ts): a dir-0 frame is a request (or INTERRUPT, FORGET,
 * NOTIFY_REPLY) the proxy forwarded to the server, a dir-1 frame is what the server wrote (a reply,
 * or a notification with unique 0). Their seq order is the order of events the replay walks.
 * Frames are recorded as delivered to their destination, so the INIT request here is what the
 * server saw (after the proxy masked capability bits): the replay sends exactly that.
 */
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { iterateRequests, parseRange } from '../store/query.js';
import { TraceReader } from '../store/reader.js';
import type { FrameRecord } from '../store/writer.js';
import { FUSE_INT_REQ_BIT, IN_HEADER, OP, isNoReply } from './ids.js';

/** One recorded frame (the store's FrameRecord: data is shorter than len when cut by --snaplen). */
export type PlanFrame = FrameRecord;

/** A request the replay sends. */
export interface SendEvent {
  kind: 'send';
  frame: PlanFrame;
  opcode: number;
  /** The recorded reply, if the recording saw one. */
  reply?: PlanFrame;
  /** For INTERRUPT: the unique it names, and the recorded delay after that request was forwarded. */
  target?: bigint;
  delayNs?: bigint;
  /** True when the request is compared and reported (--filter / RANGE); the rest only rebuild state. */
  selected: boolean;
}

/** A frame of the server the replay waits for at this point. */
export interface ExpectEvent {
  kind: 'expect';
  frame: PlanFrame;
  /** The request it answers (undefined for notifications and replies to nothing recorded). */
  request?: SendEvent;
}

export type PlanEvent = SendEvent | ExpectEvent;

/** What the replay needs to know about the session. */
export interface SessionInfo {
  id: number;
  name: string | null;
  command: string[];
  snaplen: number | null;
  /** The server's own max_write/max_pages before the proxy clamped them (sessions.init_changes). */
  serverMaxWrite?: number;
  serverMaxPages?: number;
  /** How the recorded session ended (sessions.end_reason) and how its server ended. */
  endReason: string | null;
  serverExitCode: number | null;
  serverSignal: string | null;
}

export interface ReplayPlan {
  session: SessionInfo;
  init: SendEvent;
  events: PlanEvent[];
  /** Largest recorded frame length. */
  maxLen: number;
}

/** Picks a session: an id, else a name (the newest of that name); none means the newest session. */
export function resolveSession(db: Database, spec: string | undefined): number {
  return new TraceReader(db).resolveSession(spec);
}

function loadSession(reader: TraceReader, id: number): SessionInfo {
  const row = reader.getSession(id);
  if (!row) throw new UserError(`no session ${id} in the trace file`);
  if (row.origin === 'attached') {
    // The replayer plays the kernel from FUSE_INIT on; an attached session has no INIT, and the
    // requests read before the attach (their nodeids, file handles, the server's state) are missing.
    throw new UserError(`session ${id} was recorded by fusetrace attach, from the middle of a running connection: it has no FUSE_INIT and no beginning, so it cannot be replayed`);
  }
  const info: SessionInfo = {
    id: row.id, name: row.name, command: row.command, snaplen: row.snaplen,
    endReason: row.endReason, serverExitCode: row.serverExitCode, serverSignal: row.serverSignal,
  };
  // What the proxy changed in INIT (src/proxy/init.ts initChanges): the server's own limits.
  const ch = row.initChanges as { maxWrite?: { server?: number }; maxPages?: { server?: number } | null } | null;
  if (typeof ch?.maxWrite?.server === 'number') info.serverMaxWrite = ch.maxWrite.server;
  if (typeof ch?.maxPages?.server === 'number') info.serverMaxPages = ch.maxPages.server;
  return info;
}

/** Which requests to compare: a filter expression (the request ledger), a RANGE of uniques, or all. */
export interface Selection {
  filter?: string;
  range?: string;
}

/** Builds the plan. Selection narrows what is compared; everything before the last selected request is replayed. */
export function buildPlan(db: Database, sessionId: number, sel: Selection = {}): ReplayPlan {
  const reader = new TraceReader(db);
  const session = loadSession(reader, sessionId);
  const selectedSeqs = selectSeqs(db, sessionId, sel);
  const events: PlanEvent[] = [];
  const open = new Map<bigint, SendEvent>();
  let init: SendEvent | undefined;
  let maxLen = 0;
  for (const f of reader.frames(sessionId)) {
    maxLen = Math.max(maxLen, f.len);
    if (f.dir === 0) {
      // Not forwarded (the socket write failed): the server never saw it, so neither does the replay.
      if (f.fwdNs === null || f.writeErrno !== 0) continue;
      const opcode = f.opcode ?? -1;
      const ev: SendEvent = { kind: 'send', frame: f, opcode, selected: selectedSeqs === null || selectedSeqs.has(f.seq) };
      if (opcode === OP.INIT && !init) {
        init = ev;
        open.set(f.unique, ev);
        continue;
      }
      if (opcode === OP.INTERRUPT && f.data.length >= IN_HEADER + 8) {
        ev.target = f.data.readBigUInt64LE(IN_HEADER);
        const target = open.get(ev.target);
        // The point of the interrupt: how long after the target reached the server it came.
        if (target?.frame.fwdNs != null && f.fwdNs !== null) {
          ev.delayNs = f.fwdNs > target.frame.fwdNs ? f.fwdNs - target.frame.fwdNs : 0n;
        }
        ev.selected = target ? target.selected : ev.selected;
      }
      // An INTERRUPT is answered only sometimes (EAGAIN: try again; ENOSYS), under its own unique.
      if (!isNoReply(opcode) || opcode === OP.INTERRUPT) open.set(f.unique, ev);
      events.push(ev);
    } else {
      if (!init) continue; // nothing is answered before INIT
      if (f.unique === 0n) {
        events.push({ kind: 'expect', frame: f });
        continue;
      }
      const req = open.get(f.unique);
      if (req === init) {
        init.reply = f;
        open.delete(f.unique);
        continue;
      }
      if (req) {
        req.reply = f;
        open.delete(f.unique);
      }
      events.push({ kind: 'expect', frame: f, request: req });
    }
  }
  if (!init) throw new UserError(`session ${sessionId} has no INIT request: nothing to replay`);
  // Replay stops after the last selected request's reply: later events cannot matter to it.
  let last = events.length - 1;
  if (selectedSeqs !== null) {
    last = -1;
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      const req = e.kind === 'send' ? e : e.request;
      if (req?.selected) last = i;
    }
    if (last < 0) throw new UserError('no recorded request matches the selection');
  }
  return { session, init, events: events.slice(0, last + 1), maxLen };
}

function selectSeqs(db: Database, session: number, sel: Selection): Set<number> | null {
  if (sel.filter === undefined && sel.range === undefined) return null;
  const ledgerRows = db.prepare('SELECT count(*) FROM requests WHERE session = ?').pluck().get(session) as number;
  if (ledgerRows > 0) {
    const seqs = new Set<number>();
    for (const r of iterateRequests(db, session, { filter: sel.filter ?? null, range: sel.range ?? null })) seqs.add(r.seq);
    return seqs;
  }
  if (sel.filter !== undefined) {
    throw new UserError(`session ${session} has no request ledger, so --filter cannot select; use a RANGE of uniques`);
  }
  // No ledger: a RANGE still works on the request frames' uniques.
  const range = parseRange(sel.range!);
  const rows = db
    .prepare('SELECT seq, unique_id FROM frames WHERE session = ? AND dir = 0 ORDER BY seq')
    .safeIntegers(true)
    .all(session) as Array<{ seq: bigint; unique_id: bigint }>;
  let maxUnique = -1n;
  for (const r of rows) if (r.unique_id > maxUnique) maxUnique = r.unique_id;
  const seqs = new Set<number>();
  for (const r of rows) {
    const u = r.unique_id;
    const inRange = range.last === 'end'
      ? range.first === undefined ? u === maxUnique : u >= range.first
      : u >= range.first! && u <= range.last;
    if (inRange) seqs.add(Number(r.seq));
  }
  return seqs;
}

/** The unique of an INTERRUPT for `target` (fs/fuse/dev.c: intr_unique = unique | FUSE_INT_REQ_BIT). */
export function interruptUnique(target: bigint): bigint {
  return target | FUSE_INT_REQ_BIT;
}
