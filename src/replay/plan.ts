/**
 * The replay plan: what the recording says happened, in the order it happened, read from the trace
 * as the replay advances (src/store/replay-source.ts pages the frames in), so a session of any size
 * replays in bounded memory: what the plan holds at any time is the requests in flight in the
 * recording at that point and one page of frames.
 *
 * Frames are the ground truth (schema.ts): a dir-0 frame is a request (or INTERRUPT, FORGET,
 * NOTIFY_REPLY) the proxy forwarded to the server, a dir-1 frame is what the server wrote (a reply,
 * or a notification with unique 0). Their seq order is the order of events the replay walks.
 * Frames are recorded as delivered to their destination, so the INIT request here is what the
 * server saw (after the proxy masked capability bits): the replay sends exactly that.
 */
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { ReplaySource, type ReplaySelection } from '../store/replay-source.js';
import type { FrameRecord } from '../store/writer.js';
import { FUSE_INT_REQ_BIT, IN_HEADER, OP, U64Map, isNoReply } from './ids.js';
import { OverlapTracker, touchOf, type Touch } from './race.js';
import type { OrderTouch } from './pipeline.js';

/** One recorded frame (the store's FrameRecord: data is shorter than len when cut by --snaplen). */
export type PlanFrame = FrameRecord;

/** A request the replay sends. */
export interface SendEvent {
  kind: 'send';
  frame: PlanFrame;
  opcode: number;
  /**
   * The recorded reply, once the plan has read it. The plan reads ahead only as far as the replay
   * has gone, so at the time a request is sent its reply may not be known yet; at the `expect`
   * event for it, it always is.
   */
  reply?: PlanFrame;
  /** For INTERRUPT: the unique it names, and the recorded delay after that request was forwarded. */
  target?: bigint;
  delayNs?: bigint;
  /** True when the request is compared and reported (--filter / RANGE); the rest only rebuild state. */
  selected: boolean;
  /**
   * Requests in flight together with this one in the recording that touch the same node or handle
   * where one of the two changes it (race.ts). Complete by the time its reply is expected.
   */
  races?: Touch[];
  /** What the request names (race.ts), read once by the plan for requests that expect a reply. */
  touch?: Touch;
  /** Its ordering view (pipeline.ts orderTouch), made once by the replay when it first looks at it to send it ahead. */
  order?: OrderTouch;
  /**
   * The replay sent it ahead of its place (pipeline.ts) and the walk has not reached that place
   * yet. A flag here rather than a set of events in the replay: the look-ahead asks it of every
   * event in its window, every few requests.
   */
  early?: boolean;
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
  /**
   * How the recorded server read its requests (sessions.meta.transport): `in-process` read
   * /dev/fuse itself (an unmount ended it with ENODEV), `relay` read the proxy's socket (an unmount
   * ended it with end-of-file); undefined when the session has no meta at all (a copy made by a
   * tool, a fixture).
   */
  transport?: 'in-process' | 'relay';
}

export interface ReplayPlan {
  session: SessionInfo;
  init: SendEvent;
  /**
   * The events after INIT in recorded order, read from the trace as they are consumed: iterate
   * once, with the trace file still open.
   */
  events: Iterable<PlanEvent>;
  /** Largest recorded frame length. */
  maxLen: number;
}

/** Picks a session: an id, else a name (the newest of that name); none means the newest session. */
export function resolveSession(db: Database, spec: string | undefined): number {
  return new ReplaySource(db).resolveSession(spec);
}

/** True when the session sends a request with this unique (for --interrupt). */
export function sessionHasRequest(db: Database, sessionId: number, unique: bigint): boolean {
  return new ReplaySource(db).hasRequest(sessionId, unique);
}

function loadSession(src: ReplaySource, id: number): SessionInfo {
  const row = src.session(id);
  if (row.origin === 'attached') {
    // The replayer plays the kernel from FUSE_INIT on; an attached session has no INIT, and the
    // requests read before the attach (their nodeids, file handles, the server's state) are missing.
    throw new UserError(`session ${id} was recorded by fusetrace attach, from the middle of a running connection: it has no FUSE_INIT and no beginning, so it cannot be replayed`);
  }
  const info: SessionInfo = {
    id: row.id, name: row.name, command: row.command, snaplen: row.snaplen,
    endReason: row.endReason, serverExitCode: row.serverExitCode, serverSignal: row.serverSignal,
    // The recorder notes only `in-process`; a relayed session has meta without it.
    transport: row.meta === null ? undefined : row.meta.transport === 'in-process' ? 'in-process' : 'relay',
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

/**
 * Builds the plan. Selection narrows what is compared; everything before the last selected request
 * is replayed. A session with nothing to replay (its server never answered INIT, or nothing came
 * after INIT) is a UserError: a replay of it would prove nothing.
 */
export function buildPlan(db: Database, sessionId: number, sel: Selection = {}): ReplayPlan {
  const src = new ReplaySource(db);
  const session = loadSession(src, sessionId);
  const selection = src.select(sessionId, sel);
  if (selection && selection.seqs.length === 0) throw new UserError('no recorded request matches the selection');
  const walk = new PlanWalk(src, sessionId, selection);
  const init = walk.readInit();
  const it = walk.events();
  const first = it.next();
  if (first.done) {
    const answer = init.reply!.error ? `answered INIT with error ${init.reply!.error}` : 'answered INIT';
    throw new UserError(`session ${sessionId}: nothing to replay (the server ${answer} and no request came after it)`);
  }
  return { session, init, events: prepend(first.value, it), maxLen: src.maxFrameLen(sessionId) };
}

function* prepend<T>(head: T, rest: Iterator<T>): Generator<T> {
  yield head;
  for (let r = rest.next(); !r.done; r = rest.next()) yield r.value;
}

/** Frames a session may hold between INIT and its reply before the plan calls INIT unanswered. */
const MAX_BEFORE_INIT_REPLY = 10_000;

/** Turns the session's frames, in seq order, into plan events. */
class PlanWalk {
  private readonly frames: Generator<FrameRecord>;
  /** Requests whose recorded reply has not been read yet, by unique. */
  private readonly open = new U64Map<SendEvent>();
  private readonly overlaps = new OverlapTracker();
  private init: SendEvent | undefined;
  /** Events read while looking for INIT's reply (none in a kernel's session), replayed first. */
  private readonly early: PlanEvent[] = [];
  /** Index into selection.seqs: the walk is in seq order, so one pointer decides `selected`. */
  private selAt = 0;

  constructor(src: ReplaySource, private readonly sessionId: number, private readonly selection: ReplaySelection | null) {
    this.frames = src.frames(sessionId);
  }

  /** Reads up to INIT's recorded reply and returns INIT with it. */
  readInit(): SendEvent & { reply: PlanFrame } {
    let after = 0;
    for (let r = this.frames.next(); !r.done; r = this.frames.next()) {
      const ev = this.take(r.value);
      if (ev) this.early.push(ev);
      if (this.init?.reply) return this.init as SendEvent & { reply: PlanFrame };
      if (this.init && ++after > MAX_BEFORE_INIT_REPLY) break;
    }
    if (!this.init) throw new UserError(`session ${this.sessionId} has no INIT request: nothing to replay`);
    throw new UserError(`session ${this.sessionId}: the server never answered INIT when it was recorded: nothing to replay`);
  }

  /** The events after INIT's reply, up to the last one a selection needs. */
  *events(): Generator<PlanEvent> {
    yield* this.early.splice(0);
    const last = this.selection?.lastSeq ?? Infinity;
    for (let r = this.frames.next(); !r.done; r = this.frames.next()) {
      if (r.value.seq > last) return;
      const ev = this.take(r.value);
      if (ev) yield ev;
    }
  }

  private selected(seq: number): boolean {
    const s = this.selection;
    if (!s) return true;
    while (this.selAt < s.seqs.length && s.seqs[this.selAt] < seq) this.selAt++;
    return s.seqs[this.selAt] === seq;
  }

  /** One frame: the event it is, if the replay has anything to do for it. */
  private take(f: FrameRecord): PlanEvent | undefined {
    if (f.dir === 0) return this.takeRequest(f);
    if (!this.init) return undefined; // nothing is answered before INIT
    if (f.unique === 0n) return { kind: 'expect', frame: f };
    const req = this.open.get(f.unique);
    if (req) {
      req.reply = f;
      this.open.delete(f.unique);
      this.overlaps.done(f.unique);
    }
    if (req && req === this.init) return undefined;
    return { kind: 'expect', frame: f, request: req };
  }

  private takeRequest(f: FrameRecord): SendEvent | undefined {
    // Not forwarded (the socket write failed): the server never saw it, so neither does the replay.
    if (f.fwdNs === null || f.writeErrno !== 0) return undefined;
    const opcode = f.opcode ?? -1;
    // Every field from the start, so that every event has one shape (V8 hidden class) as the replay fills them in.
    const ev: SendEvent = {
      kind: 'send', frame: f, opcode, reply: undefined, target: undefined, delayNs: undefined, selected: this.selected(f.seq),
      races: undefined, touch: undefined, order: undefined, early: false,
    };
    if (opcode === OP.INIT && !this.init) {
      this.init = ev;
      this.open.set(f.unique, ev);
      return undefined;
    }
    if (opcode === OP.INTERRUPT && f.data.length >= IN_HEADER + 8) {
      ev.target = f.data.readBigUInt64LE(IN_HEADER);
      const target = this.open.get(ev.target);
      // The point of the interrupt: how long after the target reached the server it came.
      if (target?.frame.fwdNs != null) {
        ev.delayNs = f.fwdNs > target.frame.fwdNs ? f.fwdNs - target.frame.fwdNs : 0n;
      }
      ev.selected = target ? target.selected : ev.selected;
    } else if (!isNoReply(opcode)) {
      ev.touch = touchOf(f.data, opcode, f.unique, f.seq);
      ev.races = this.overlaps.sent(ev.touch);
    }
    // An INTERRUPT is answered only sometimes (EAGAIN: try again; ENOSYS), under its own unique.
    if (!isNoReply(opcode) || opcode === OP.INTERRUPT) this.open.set(f.unique, ev);
    return ev;
  }
}

/** The unique of an INTERRUPT for `target` (fs/fuse/dev.c: intr_unique = unique | FUSE_INT_REQ_BIT). */
export function interruptUnique(target: bigint): bigint {
  return target | FUSE_INT_REQ_BIT;
}
