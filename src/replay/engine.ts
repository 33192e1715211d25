/**
 * The fake kernel: plays a recorded session to a live FUSE server over a socketpair and compares
 * what the server answers with what it answered when recorded.
 *
 * The walk follows the recorded order of events (plan.ts): a request is sent once everything
 * before it in the recording has happened, and a recorded reply is awaited where the recording
 * saw it. Replies the live server sends earlier, or in another order among requests in flight
 * together, are held until their turn, so the result does not depend on thread scheduling in
 * the server: the same session against the same server gives the same report.
 */
import { UserError } from '../errors.js';
import { decodeReply, decodeRequest, errnoName, replyNeedsRequest, formatLine, negotiateInit, opcodeName, type DecodedFrame } from '../protocol/index.js';
import { compareTrees, direntsByName, flatten, readdirAsSet, show, type FieldDiff, type NormRule } from './compare.js';
import { FUSE_INT_REQ_BIT, IN_HEADER, OP, OUT_HEADER, isNoReply, uniqueKey, type UniqueKey } from './ids.js';
import { IdMap } from './idmap.js';
import { FixedReplies, type FixedLayout } from './fixed-reply.js';
import { ServerLink, type ServerEnd, type ServerExit } from './link.js';
import { prng } from '../util/prng.js';
import { RecentMap, RecentSet } from './recent.js';
import { bindsOf, mustFollow, orderTouch, type OrderTouch } from './pipeline.js';
import { interruptUnique, type ExpectEvent, type PlanEvent, type PlanFrame, type ReplayPlan, type SendEvent } from './plan.js';
import { readU64 } from '../util/u64.js';
import { native } from '../proxy/native.js';

/** --timing: `asap` sends as soon as the recorded order allows; `recorded` keeps recorded gaps, divided by `scale`. */
export type Timing = { mode: 'asap' } | { mode: 'recorded'; scale: number };

/** --interrupt UNIQUE[@POINT]: a FUSE_INTERRUPT for a request the recording did not interrupt. */
export interface InjectedInterrupt {
  unique: bigint;
  /** Delay after the request was sent; 0 = right after it. */
  delayMs: number;
}

export interface ReplayOptions {
  /** The server's command line (argv[0] is the program). */
  argv: string[];
  rules: readonly NormRule[];
  timing: Timing;
  interrupt?: InjectedInterrupt;
  /** Permute requests that were in flight together, reproducibly. */
  seed?: number;
  /** How long to wait for a recorded reply beyond its recorded duration before calling it a hang. */
  replyTimeoutMs: number;
  /**
   * Which results to keep in ReplayResult.results: `all` (default), or `failing`: only those a
   * report lists one by one (not matched, not `sent`); the others are only counted (`elided`), so
   * a million matching requests cost no memory.
   */
  keep?: 'all' | 'failing';
  /**
   * Send requests ahead of their place where they cannot depend on what is pending (pipeline.ts).
   * Off by default: a server that parks a request on a thread another one needs answers differently.
   */
  pipeline?: boolean;
}

/**
 * What became of one recorded request:
 * - matched: the live reply equals the recorded one under the rules;
 * - diverged: it differs (diffs say where);
 * - missing: the recording has a reply, the live server sent none in time (a hang) or died;
 * - skipped: not sent, because it names an identifier the live run never handed out
 *   (a consequence of an earlier divergence);
 * - uncomparable: the recorded request or reply was cut by --snaplen;
 * - injected: --interrupt changed it on purpose; both replies are shown, not counted as divergence;
 * - sent: no reply expected (FORGET, BATCH_FORGET, an INTERRUPT that got none) and none came.
 * - race: it differs, and in the recording it was in flight together with a request on the same
 *   node or handle that changes it (race.ts): the server may run the two in either order.
 */
export type Outcome = 'matched' | 'diverged' | 'race' | 'missing' | 'skipped' | 'uncomparable' | 'injected' | 'sent';

export interface RequestResult {
  seq: number;
  unique: bigint;
  opcode: number;
  op: string;
  /** The recorded request on one line. */
  request: string;
  outcome: Outcome;
  /** Recorded and live replies on one line each. */
  recordedReply?: string;
  liveReply?: string;
  /** Every field of both replies (for the side-by-side view of the first divergence). */
  recordedFields?: Array<[string, string]>;
  liveFields?: Array<[string, string]>;
  diffs: FieldDiff[];
  note?: string;
  /** INTERRUPTs sent for it, e.g. `INTERRUPT 100 ms after sending (as recorded)`. */
  interrupts?: string[];
  /** For a `race`: the uniques of the conflicting requests it was in flight with when recorded. */
  racedWith?: bigint[];
}

/** A frame the live server sent that the recording has no place for. */
export interface UnexpectedFrame {
  unique: bigint;
  /** The request it answers, if one was sent. */
  request?: string;
  reply: string;
}

export interface ReplayResult {
  results: RequestResult[];
  unexpected: UnexpectedFrame[];
  /** Uniques in the order they were sent, with --seed (after its permutation); empty without. */
  order: bigint[];
  /** Results not kept in `results` (ReplayOptions.keep), counted by outcome. */
  elided: Partial<Record<Outcome, number>>;
  server: ServerExit & {
    early: boolean;
    stderr: string;
    /** How the replay ended the server once the walk was over (link.ts ServerEnd; serverEnd()). */
    end?: ServerEnd;
    /** With end `enodev`: the server's reads went through the preload, so it read ENODEV, not end-of-file. */
    enodevReady?: boolean;
  };
  /** Requests sent to the server. */
  sent: number;
  /** How much later than its recorded point the latest INTERRUPT went out (timer lateness). */
  interruptLateMs: number;
  /** Notifications in the recording and how many the live server sent alike (the rest are in unexpected). */
  notifications: { total: number; matched: number };
}

export { prng };

/**
 * Permutes, with `seed`, each run of requests the recording sent back to back with nothing
 * answered in between: the server had all of them in flight together, so any order among them is
 * one the kernel could have produced. INTERRUPTs stay where they are (they follow their target).
 */
export function* permuteInFlight(events: Iterable<PlanEvent>, seed: number): Generator<PlanEvent> {
  const rand = prng(seed);
  const movable = (e: PlanEvent): boolean => e.kind === 'send' && e.opcode !== OP.INTERRUPT;
  // Streaming: only the current run of back-to-back requests is held.
  let run: PlanEvent[] = [];
  const shuffled = (): PlanEvent[] => {
    for (let k = run.length - 1; k > 0; k--) {
      const r = Math.floor(rand() * (k + 1));
      [run[k], run[r]] = [run[r], run[k]];
    }
    const out = run;
    run = [];
    return out;
  };
  for (const e of events) {
    if (movable(e)) {
      run.push(e);
      continue;
    }
    yield* shuffled();
    yield e;
  }
  yield* shuffled();
}

/** Replies that hand out identifiers (nodeid, fh, directory cookies). */
const HANDS_OUT_IDS = new Set([
  OP.LOOKUP, OP.MKNOD, OP.MKDIR, OP.SYMLINK, OP.LINK, OP.CREATE, OP.TMPFILE, OP.OPEN, OP.OPENDIR, OP.READDIR, OP.READDIRPLUS,
]);

/**
 * Why nothing could be replayed, as one line: the server never answered INIT (it exited, or it
 * did not answer in time); null when INIT was answered. For `fusetrace replay` and the TUI.
 */
export function initFailure(r: ReplayResult): string | null {
  const init = r.results[0];
  if (!init || init.opcode !== OP.INIT || init.outcome !== 'missing') return null;
  const why = r.server.stderr.trim().split('\n').slice(-1)[0] ?? '';
  const how = r.server.byReplayer ? init.note ?? 'no answer' : r.server.signal ?? `exit code ${r.server.code}`;
  return `the server never answered INIT (${how})${why ? `: ${why}` : ''}`;
}

/**
 * How many recent uniques the walk remembers (sent, answered, not sent). Entries go as soon as the
 * recorded reply is reached; the bound only matters for requests the recording never answered.
 */
const RECENT = 1 << 18;
/**
 * Settled results kept findable by unique, and live send times and answers kept: only INTERRUPTs
 * look them up, and an INTERRUPT follows its request closely. (At 1 << 18 these alone grew a
 * 500,000-request replay past 300 MB.)
 */
const RECENT_RESULTS = 1 << 14;

/** Events the walk looks ahead for requests to send early, and requests it lets be pending at once. */
const AHEAD_WINDOW = 128;
const AHEAD_MAX = 32;
/** Free slots in the window before sendAhead() picks again. */
const AHEAD_REFILL = 16;

/** What INTERRUPTs need to know of a recent request (Replayer.recent). */
interface RecentRequest {
  /** Live send time (ms, performance.now), for INTERRUPT points; undefined: not sent. */
  sentAt: number | undefined;
  /** The live server answered it. */
  answered: boolean;
  result: RequestResult | undefined;
}

/** Consecutive hangs after which the rest of the session is given up as missing. */
const MAX_HANGS = 3;

/**
 * How the replay ends the server: as the recording ended it. An unmount (and a signal to
 * `fusetrace record`, which unmounts) ended a server that read /dev/fuse itself (in-process) with
 * ENODEV and a relayed one with end-of-file; a session that does not say how its server read gets
 * what the kernel gives at an unmount, ENODEV. Any other end (the server's own exit, a crash, an
 * error, fusetrace killed) has no counterpart the replay could produce, and SIGTERM ends it.
 */
export function serverEnd(s: ReplayPlan['session']): ServerEnd {
  if (s.endReason !== 'unmount' && s.endReason !== 'signal') return 'sigterm';
  return s.transport === 'relay' ? 'eof' : 'enodev';
}

/** Runs one replay. Never throws for server misbehaviour; that is what the result reports. */
export async function runReplay(plan: ReplayPlan, opts: ReplayOptions): Promise<ReplayResult> {
  const replayer = new Replayer(plan, opts);
  return replayer.run();
}

class Replayer {
  private readonly ids = new IdMap();
  private link!: ServerLink;
  /**
   * Live frames that arrived before the walk asked for them, by unique (0: notifications): the
   * frame, or several in order (no array for the one reply nearly every unique gets).
   */
  private readonly arrived = new Map<UniqueKey, Buffer | Buffer[]>();
  private readonly waiters = new Map<UniqueKey, (f: Buffer | null) => void>();
  private gone = false;
  private results: RequestResult[] = [];
  /**
   * Results settled as matched or sent with keep `failing`: dropped from `results` at the next
   * compaction (a Set, emptied then: it holds nothing `results` does not, and a WeakSet of every
   * result cost the garbage collector an ephemeron per request).
   */
  private readonly droppable = new Set<RequestResult>();
  /** The event of each result whose request text is still to be made (keep `failing`). */
  private readonly eventOf = new WeakMap<RequestResult, SendEvent>();
  private droppableCount = 0;
  /** Results whose recorded reply the walk has not reached yet, by seq and by unique. */
  private readonly resultBySeq = new RecentMap<number, RequestResult>(RECENT);
  /**
   * What INTERRUPTs need to know of the recent requests, by unique: when each was sent, whether it
   * was answered, its result (also once settled: an INTERRUPT may come after the reply). One entry
   * a request, made once: three maps of these cost three insertions a request.
   */
  private readonly recent = new RecentMap<UniqueKey, RecentRequest>(RECENT_RESULTS);
  private readonly elided: Partial<Record<Outcome, number>> = {};
  private readonly unexpected: UnexpectedFrame[] = [];
  private readonly order: bigint[] = [];
  /** Requests not sent (skipped), by unique: their recorded replies are not awaited. */
  private readonly notSent = new RecentSet<bigint>(RECENT);
  /** The request each live unique stands for (to describe unexpected replies), until its recorded reply is reached. */
  private readonly sentRequests = new RecentMap<UniqueKey, SendEvent>(RECENT);
  private recCtx: { minor: number; flags?: bigint } = { minor: 45 };
  private liveCtx: { minor: number; flags?: bigint } = { minor: 45 };
  private sentCount = 0;
  private hangs = 0;
  private interruptLateMs = 0;
  /** Answers to each INTERRUPT (by its own unique), as errors: recorded, live, and live ones the walk consumed. */
  private readonly recIntrReplies = new Map<bigint, number[]>();
  private readonly liveIntrReplies = new Map<bigint, number[]>();
  private readonly intrTaken = new Map<bigint, number>();
  /** Notifications (unique 0) the recording has, and how many the live server sent alike. */
  private readonly notifications = { total: 0, matched: 0 };
  /** A recorded reply that hands out identifiers was cut by --snaplen: some may be unknown. */
  private idsCut = false;
  private injected?: { unique: bigint; intrUnique: bigint; sends: number; timer?: NodeJS.Timeout };
  private readonly pending: Array<Promise<unknown>> = [];
  private readonly decoded = new WeakMap<SendEvent, DecodedFrame | undefined>();

  /** The `readdir=set` rule is in effect (compare.ts). */
  private readonly readdirAsSet: boolean;
  /** Fixed-layout replies compared in place (fixed-reply.ts). */
  private readonly fixed: FixedReplies;
  /** Requests may be sent ahead of their place (pipeline.ts): asap, and no --seed or --interrupt to honour. */
  private readonly pipelining: boolean;
  /** Sent requests the walk has not passed the recorded reply of, by unique: what sendAhead must not overtake. */
  private readonly walking = new Map<UniqueKey, SendEvent>();
  /** pickAhead()'s list of what a request must not overtake (reused: it runs every few requests). */
  private readonly pendingTouches: OrderTouch[] = [];
  /** A recorded nodeid is bound to a live one (pipeline.ts mustFollow). */
  private readonly boundNode = (n: bigint): boolean => this.ids.liveNodeid(n) !== undefined;

  constructor(private readonly plan: ReplayPlan, private readonly opts: ReplayOptions) {
    this.readdirAsSet = readdirAsSet(opts.rules);
    this.fixed = new FixedReplies(opts.rules);
    this.pipelining = opts.timing.mode === 'asap' && opts.seed === undefined && opts.interrupt === undefined && opts.pipeline === true;
  }

  async run(): Promise<ReplayResult> {
    const maxFrame = Math.max(this.plan.maxLen, 256 * 4096 + 4096) + 4096;
    // As fast as the server answers: the replayer and the server it starts next (which inherits the
    // policy) run under SCHED_BATCH, so a woken server thread does not preempt the replayer in the
    // middle of a burst of sends. On this 2-core VM that was 0.6 involuntary context switches a
    // request; on two recorded 519k-request sessions, replayed alternately with and without it,
    // 36,102 against 30,152 and 34,627 against 29,268 requests/s (README, Benchmarks).
    if (this.opts.timing.mode === 'asap' && process.env.FUSETRACE_REPLAY_SCHED !== 'normal') native().batchScheduling();
    this.link = new ServerLink({
      argv: this.opts.argv,
      maxFrame,
      onFrame: (f) => this.onFrame(f),
      onEnd: () => this.onEnd(),
      end: serverEnd(this.plan.session),
    });
    // Without CAP_NET_ADMIN the buffer is capped by net.core.wmem_max, and a frame that does not
    // fit cannot cross the socket as one message (record clamps max_write for this; a replay
    // must send the recorded frames as they are).
    if (this.plan.maxLen + 32 > this.link.sndbuf) {
      await this.link.stop();
      throw new UserError(
        `the session has ${this.plan.maxLen}-byte frames but this user's socket buffer holds ${this.link.sndbuf - 32} bytes ` +
          '(raise net.core.wmem_max, or replay as root)',
      );
    }
    let early = false;
    this.link.exited.then(() => {
      if (!this.stopping && !this.link.daemonized) early = true;
    });
    try {
      // No INIT reply: nothing else can be replayed against this server (the walk gives up).
      if (!(await this.replayInit())) this.gone = true;
      const events = this.opts.seed === undefined ? this.plan.events : permuteInFlight(this.plan.events, this.opts.seed);
      const win = new Lookahead(events[Symbol.iterator]());
      const t0 = performance.now();
      const rec0 = this.plan.init.frame.fwdNs ?? this.plan.init.frame.tsNs;
      for (let ev = win.next(); ev !== undefined; ev = win.next()) {
        if (this.hangs >= MAX_HANGS || this.gone) {
          this.giveUp(ev);
          continue;
        }
        if (ev.kind === 'send') {
          if (this.opts.timing.mode === 'recorded' && ev.frame.fwdNs !== null) {
            const atMs = t0 + Number(ev.frame.fwdNs - rec0) / 1e6 / this.opts.timing.scale;
            await sleepUntil(atMs);
          }
          if (!this.placeEarly(ev)) await this.send(ev);
        } else {
          // While the reply is not there yet, what cannot depend on it goes out (pipeline.ts).
          if (this.pipelining && !this.arrived.has(uniqueKey(ev.frame.unique))) this.sendAhead(win);
          if (!this.expectArrived(ev)) await this.expect(ev);
        }
      }
      await Promise.all(this.pending);
      // Let replies to requests the recording never saw answered show up, then take stock.
      await sleep(50);
      this.settleInterrupts();
    } finally {
      this.stopping = true;
      if (this.injected?.timer) clearTimeout(this.injected.timer);
    }
    const exit = await this.link.stop();
    this.compact(true);
    for (const [key, frames] of this.arrived) {
      for (const f of Array.isArray(frames) ? frames : [frames]) this.noteUnexpected(BigInt(key), f);
    }
    this.arrived.clear();
    return {
      results: this.results,
      unexpected: this.unexpected,
      order: this.order,
      elided: { ...this.elided },
      server: { ...exit, early, stderr: this.link.stderr, end: serverEnd(this.plan.session), enodevReady: this.link.enodevReady },
      sent: this.sentCount,
      interruptLateMs: this.interruptLateMs,
      notifications: { ...this.notifications },
    };
  }

  private stopping = false;

  // ---- the live side ----

  private onFrame(f: Buffer): void {
    const unique = f.length >= OUT_HEADER ? readU64(f, 8) : 0n;
    if (this.injected && unique === this.injected.intrUnique) {
      this.onInjectedInterruptReply(f);
      return;
    }
    if ((unique & FUSE_INT_REQ_BIT) !== 0n) {
      // A reply to an INTERRUPT (EAGAIN: "not known yet", ENOSYS): accounted per INTERRUPT at the end.
      const errs = this.liveIntrReplies.get(unique) ?? [];
      errs.push(f.length >= OUT_HEADER ? f.readInt32LE(4) : 0);
      this.liveIntrReplies.set(unique, errs);
      const key = uniqueKey(unique);
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w(f);
      }
      return;
    }
    const key = uniqueKey(unique);
    if (unique !== 0n) {
      const r = this.recent.get(key);
      if (r) r.answered = true;
      else this.recent.set(key, { sentAt: undefined, answered: true, result: undefined });
    }
    // With --send-ahead most replies come before the walk waits for them: no waiter to look for.
    if (this.waiters.size > 0) {
      if (unique !== 0n) {
        // Whoever waits for an answer to this request's INTERRUPT stops: the request is answered.
        const intrKey = uniqueKey(unique | FUSE_INT_REQ_BIT);
        const wi = this.waiters.get(intrKey);
        if (wi) {
          this.waiters.delete(intrKey);
          wi(null);
        }
      }
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w(f);
        return;
      }
    }
    const q = this.arrived.get(key);
    if (q === undefined) this.arrived.set(key, f);
    else if (Array.isArray(q)) q.push(f);
    else this.arrived.set(key, [q, f]);
  }

  private onEnd(): void {
    this.gone = true;
    for (const [, w] of this.waiters) w(null);
    this.waiters.clear();
  }

  /** The next live frame with `unique` if it has arrived already (taken), else undefined. */
  private arrivedNow(unique: bigint): Buffer | undefined {
    const key = uniqueKey(unique);
    const q = this.arrived.get(key);
    if (q === undefined) return undefined;
    if (!Array.isArray(q)) {
      this.arrived.delete(key);
      return q;
    }
    const f = q.shift()!;
    if (q.length === 0) this.arrived.delete(key);
    return f;
  }

  /** The next live frame with `unique`, or null on timeout / server gone. */
  private next(unique: bigint, timeoutMs: number): Promise<Buffer | null> {
    const f = this.arrivedNow(unique);
    if (f) return Promise.resolve(f);
    if (this.gone) return Promise.resolve(null);
    const key = uniqueKey(unique);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        resolve(null);
      }, timeoutMs);
      this.waiters.set(key, (f) => {
        clearTimeout(timer);
        resolve(f);
      });
    });
  }

  // ---- INIT ----

  /** Sends INIT and compares the answer; false when the server did not answer it. */
  private async replayInit(): Promise<boolean> {
    const init = this.plan.init;
    const result = this.newResult(init);
    if (!(await this.rawSend(init.frame.data, init.frame.unique))) {
      this.missing(result, 'the server ended before INIT');
      return false;
    }
    this.sentCount++;
    if (!init.reply) {
      result.outcome = 'sent';
      return true;
    }
    const live = await this.next(init.frame.unique, this.opts.replyTimeoutMs);
    const recNeg = negotiateInit(init.frame.data, init.reply.data);
    if (recNeg) this.recCtx = { minor: recNeg.minor, flags: recNeg.flags };
    if (!live) {
      this.missing(result, this.gone ? 'the server ended before answering INIT' : 'no INIT reply: the server did not start');
      return false;
    }
    const liveNeg = negotiateInit(init.frame.data, live);
    if (liveNeg) this.liveCtx = { minor: liveNeg.minor, flags: liveNeg.flags };
    // The recorded reply is the one the kernel got; the server's own max_write/max_pages (before
    // the proxy clamped them to the socket) are in sessions.init_changes.
    const recTree = (d: DecodedFrame): Record<string, unknown> => {
      const t = replyTree(d);
      const out = t.init_out as Record<string, unknown> | undefined;
      if (out) {
        if (this.plan.session.serverMaxWrite !== undefined) out.max_write = this.plan.session.serverMaxWrite;
        if (this.plan.session.serverMaxPages !== undefined) out.max_pages = this.plan.session.serverMaxPages;
      }
      return t;
    };
    this.compare(result, init, init.reply.data, live, recTree);
    return true;
  }

  // ---- the walk ----

  /**
   * The walk reaches a request sendAhead() sent already: its result takes its place in the
   * recorded order now. False when it was not sent ahead (send() sends it). Synchronous: most
   * requests with --send-ahead, and no promise each.
   */
  private placeEarly(ev: SendEvent): boolean {
    if (!ev.early) return false;
    ev.early = false;
    const result = ev.selected && ev.opcode !== OP.INTERRUPT ? this.newResult(ev) : undefined;
    if (result) result.outcome = 'sent';
    if (result && isNoReply(ev.opcode)) this.settle(result);
    return true;
  }

  private async send(ev: SendEvent): Promise<void> {
    if (this.placeEarly(ev)) return;
    const f = ev.frame;
    const result = ev.selected && ev.opcode !== OP.INTERRUPT ? this.newResult(ev) : undefined;
    if (ev.opcode === OP.INTERRUPT) {
      // The server saw this INTERRUPT, so it gets it, whether or not the request is answered yet:
      // the kernel queues an INTERRUPT when the signal arrives and may deliver it after the reply
      // was written (libfuse then keeps it and answers EAGAIN on its next request, fuse_lowlevel.c
      // check_interrupt). Replies recorded before it are awaited first by the walk itself. Only an
      // INTERRUPT for a request the replay did not send is dropped: the server never knew it.
      const sentAt = ev.target === undefined ? undefined : this.recent.get(uniqueKey(ev.target))?.sentAt;
      if (ev.target === undefined || this.notSent.has(ev.target) || sentAt === undefined) {
        this.notSent.add(f.unique);
        return;
      }
      const pointMs = Number(ev.delayNs ?? 0n) / 1e6;
      const at = sentAt + pointMs;
      await sleepUntil(at);
      const r = this.resultOfUnique(ev.target);
      // Timers fire late on a busy machine; the point in the event order (after the request,
      // before its reply) holds regardless. Lateness goes to stderr, not into the report.
      this.interruptLateMs = Math.max(this.interruptLateMs, performance.now() - at);
      if (r) (r.interrupts ??= []).push(`INTERRUPT ${Math.round(pointMs)} ms after sending (as recorded)`);
    }
    let data = f.data;
    let cut = false;
    if (data.length < f.len) {
      // Cut by --snaplen: the server still needs a whole frame; the payload is zeros and the
      // request is not comparable.
      cut = true;
      data = Buffer.concat([data, Buffer.alloc(f.len - data.length)]);
    }
    const tr = this.ids.translateRequest(data, ev.opcode);
    if ('missing' in tr) {
      this.notSent.add(f.unique);
      if (result && this.idsCut) {
        // The identifier may have come in a reply --snaplen cut: the recording cannot say.
        result.outcome = 'uncomparable';
        result.note = `not sent: it names ${tr.missing.kind} ${tr.missing.recorded}, which no whole recorded reply handed out (replies were cut by --snaplen)`;
      } else if (result) {
        result.outcome = 'skipped';
        result.note = `not sent: it names ${tr.missing.kind} ${tr.missing.recorded} that the live server never handed out`;
      }
      return;
    }
    if (!(await this.rawSend(tr.frame, f.unique))) {
      this.notSent.add(f.unique);
      if (result) this.missing(result, 'the server is gone');
      return;
    }
    this.noteSent(ev, data);
    if (result) {
      if (cut) {
        result.outcome = 'uncomparable';
        result.note = `request cut by --snaplen (${f.data.length} of ${f.len} bytes recorded)`;
      } else {
        // `sent` until its recorded reply comes up in the walk (the plan may not have read it yet).
        result.outcome = 'sent';
      }
      if (isNoReply(ev.opcode)) this.settle(result);
    }
    if (this.opts.interrupt && this.opts.interrupt.unique === f.unique && ev.opcode !== OP.INTERRUPT) this.inject(f.unique);
  }

  /** Bookkeeping of a request the server now has (sent in its place, or ahead of it). */
  private noteSent(ev: SendEvent, data: Buffer): void {
    this.sentCount++;
    const key = uniqueKey(ev.frame.unique);
    if (!isNoReply(ev.opcode) || ev.opcode === OP.INTERRUPT) this.sentRequests.set(key, ev);
    if (this.pipelining && !isNoReply(ev.opcode) && ev.opcode !== OP.INTERRUPT) this.walking.set(key, ev);
    this.ids.noteSent(data, ev.opcode);
  }

  // ---- sending ahead (pipeline.ts) ----

  private orderOf(ev: SendEvent): OrderTouch {
    let t = ev.order;
    if (!t) {
      t = orderTouch(ev);
      ev.order = t;
    }
    // The recorded reply may have been read by the plan since.
    if (t.binds === null && ev.reply) t.binds = bindsOf(ev);
    return t;
  }

  /**
   * Sends the requests of the look-ahead window that cannot depend on anything sent and not yet
   * walked past, nor on the unsent requests before them (pipeline.ts mustFollow). Stops at a
   * barrier, at a notification the recording expects, and when the socket has no room.
   */
  private sendAhead(win: Lookahead<PlanEvent>): void {
    const outbox: Buffer[] = [];
    this.pickAhead(win, outbox);
    if (outbox.length === 0) return;
    // The requests picked go out together, in their order: one system call and one wake-up of
    // the server. What the socket has no room for follows through the ordered send().
    let sent = 0;
    try {
      sent = this.link.sendNowBatch(outbox);
    } catch {
      this.gone = true;
      return;
    }
    for (let i = sent; i < outbox.length; i++) {
      this.pending.push(this.link.send(outbox[i]).catch(() => {
        this.gone = true;
      }));
    }
  }

  /** The requests of the window sendAhead() sends now, their translated frames into `outbox`. */
  private pickAhead(win: Lookahead<PlanEvent>, outbox: Buffer[]): void {
    // Nothing can go while the window is full; and refilling a slot or two at a time costs a scan
    // of every pending request and one send per request (a wake-up of the server each): wait until
    // half the slots are free, then send a run.
    if (this.walking.size > AHEAD_MAX - AHEAD_REFILL) return;
    const pending = this.pendingTouches;
    pending.length = 0;
    for (const sent of this.walking.values()) {
      const t = this.orderOf(sent);
      // What comes after a barrier, or after a request whose hand-outs are unknown, follows it.
      if (t.barrier || t.binds === null) return;
      pending.push(t);
    }
    const n = win.ahead(AHEAD_WINDOW);
    for (let i = 0; i < n; i++) {
      const ev = win.at(i);
      if (this.walking.size >= AHEAD_MAX) return;
      if (ev.kind === 'expect') {
        if (!ev.request) return;
        continue;
      }
      if (ev.early) continue;
      if (ev.opcode === OP.INTERRUPT) return;
      const t = this.orderOf(ev);
      if (t.barrier) return;
      // Sent now or not, what comes after it in the window must not overtake it.
      if (!this.mustWait(t)) this.sendEarly(ev, outbox);
      if (t.binds === null) return;
      pending.push(t);
    }
  }

  /** True when `t` must follow one of pickAhead()'s pending requests (pipeline.ts mustFollow). */
  private mustWait(t: OrderTouch): boolean {
    const pending = this.pendingTouches;
    for (let i = 0; i < pending.length; i++) if (mustFollow(pending[i], t, this.boundNode)) return true;
    return false;
  }

  /**
   * Picks one request to go ahead of its place if its ids translate: its frame joins `outbox` and
   * it counts as sent from now (the outbox goes out before anything else is sent).
   */
  private sendEarly(ev: SendEvent, outbox: Buffer[]): boolean {
    const f = ev.frame;
    if (this.gone || f.data.length < f.len) return false;
    const tr = this.ids.translateRequest(f.data, ev.opcode);
    if ('missing' in tr) return false;
    outbox.push(tr.frame);
    ev.early = true;
    this.recentOf(f.unique).sentAt = performance.now();
    this.noteSent(ev, f.data);
    return true;
  }

  private async rawSend(frame: Buffer, unique: bigint): Promise<boolean> {
    try {
      if (!this.link.sendNow(frame)) await this.link.send(frame);
    } catch {
      this.gone = true;
      return false;
    }
    if (this.opts.seed !== undefined) this.order.push(unique);
    this.recentOf(unique).sentAt = performance.now();
    return true;
  }

  /**
   * expect() for a request whose live reply has arrived already (most of them with --send-ahead):
   * the same steps, synchronously, with no promise each. False, having done nothing, when there
   * is anything to wait for or to look at first (notifications, INTERRUPTs, requests not sent).
   */
  private expectArrived(ev: ExpectEvent): boolean {
    const req = ev.request;
    if (!req || req.opcode === OP.INTERRUPT) return false;
    const u = req.frame.unique;
    if (this.notSent.has(u)) return false;
    const live = this.arrivedNow(ev.frame.unique);
    if (!live) return false;
    const result = this.resultBySeq.get(req.frame.seq);
    this.takeReply(req, ev.frame, live, result);
    const key = uniqueKey(u);
    this.sentRequests.delete(key);
    this.walking.delete(key);
    if (result) this.settle(result);
    return true;
  }

  private async expect(ev: Extract<PlanEvent, { kind: 'expect' }>): Promise<void> {
    const req = ev.request;
    if (req && req.opcode !== OP.INTERRUPT) {
      // Its recorded reply is reached: nothing later refers to it but INTERRUPTs (`recent`).
      const u = req.frame.unique;
      const result = this.resultBySeq.get(req.frame.seq);
      if (this.notSent.delete(u)) return;
      await this.expectReply(ev, req);
      const key = uniqueKey(u);
      this.sentRequests.delete(key);
      this.walking.delete(key);
      if (result) this.settle(result);
      return;
    }
    await this.expectReply(ev, req);
  }

  private async expectReply(ev: Extract<PlanEvent, { kind: 'expect' }>, req: SendEvent | undefined): Promise<void> {
    const f = ev.frame;
    if (req && this.notSent.has(req.frame.unique)) return;
    if (req?.opcode === OP.INTERRUPT) {
      await this.expectInterruptReply(req, f);
      return;
    }
    const recordedDurMs = req?.frame.fwdNs != null && f.tsNs > req.frame.fwdNs ? Number(f.tsNs - req.frame.fwdNs) / 1e6 : 0;
    const timeout = this.opts.replyTimeoutMs + recordedDurMs;
    const live = await this.next(f.unique, timeout);
    if (!req) {
      // A notification (unique 0) or a reply to nothing recorded: compare what we can.
      if (!live) {
        this.unexpectedMissing(f);
        return;
      }
      const recD = decodeReply(f.data, { ...this.recCtx });
      const liveD = decodeReply(live, { ...this.liveCtx });
      // In notify structs `ino` (fuse_notify_inval_inode_out), `nodeid`, `parent`, `child` are nodeids.
      const check = (kind: string, rec: bigint, lv: bigint): string | null =>
        this.checkId(kind === 'ino' || kind === 'parent' || kind === 'child' ? 'nodeid' : kind, rec, lv, undefined);
      const diffs = recD.frame && liveD.frame ? compareTrees(replyTree(recD.frame), replyTree(liveD.frame), this.opts.rules, check) : [];
      if (f.unique === 0n) this.notifications.total++;
      if (diffs.length > 0 || !recD.frame || !liveD.frame) {
        const d = diffs.map((x) => `${x.field}: ${x.recorded} -> ${x.live}`).join('; ');
        this.unexpected.push({ unique: f.unique, reply: `${describeReply(liveD.frame)} (recorded: ${describeReply(recD.frame)}${d ? `; ${d}` : ''})` });
      } else if (f.unique === 0n) {
        this.notifications.matched++;
      }
      return;
    }
    if (!live) {
      const result = this.resultBySeq.get(req.frame.seq);
      this.hangs++;
      if (result) this.missing(result, this.gone ? 'the server ended before answering' : `no reply within ${Math.round(timeout)} ms (hang)`);
      return;
    }
    this.takeReply(req, f, live);
  }

  /** The live reply to `req` is here (`f` is its recorded one): compared, or only learned from when not selected. */
  private takeReply(req: SendEvent, f: PlanFrame, live: Buffer, result = this.resultBySeq.get(req.frame.seq)): void {
    this.hangs = 0;
    if (!result) {
      // Not selected: only learn the identifiers it hands out.
      this.learnOnly(req, f.data, live);
      return;
    }
    this.compare(result, req, f.data, live);
  }

  /**
   * The recording has the server answering an INTERRUPT here (EAGAIN, ENOSYS). While the
   * interrupted request is still unanswered live, the walk waits for that answer (the kernel's
   * next step depends on it: EAGAIN makes it queue the INTERRUPT again). Once the request is
   * answered, whether the server also answered its INTERRUPT is a race between the two (libfuse
   * answers EAGAIN for an INTERRUPT of a request it already finished, on its next request), so
   * the walk does not wait; the answers are compared at the end (settleInterrupts).
   */
  private async expectInterruptReply(req: SendEvent, f: PlanFrame): Promise<void> {
    const errs = this.recIntrReplies.get(f.unique) ?? [];
    errs.push(f.error ?? 0);
    this.recIntrReplies.set(f.unique, errs);
    const target = req.target;
    if (target === undefined || this.notSent.has(f.unique) || this.answeredLive(target)) return;
    const taken = this.intrTaken.get(f.unique) ?? 0;
    if ((this.liveIntrReplies.get(f.unique)?.length ?? 0) > taken) {
      this.intrTaken.set(f.unique, taken + 1);
      return;
    }
    const live = await this.next(f.unique, this.opts.replyTimeoutMs);
    if (live) this.intrTaken.set(f.unique, taken + 1);
  }

  /** Compares the answers to each INTERRUPT, recorded and live, once the walk is over. */
  private settleInterrupts(): void {
    const all = new Set([...this.recIntrReplies.keys(), ...this.liveIntrReplies.keys()]);
    for (const u of all) {
      if (this.injected && u === this.injected.intrUnique) continue;
      const rec = (this.recIntrReplies.get(u) ?? []).map(errnoText);
      const live = (this.liveIntrReplies.get(u) ?? []).map(errnoText);
      if (rec.join() === live.join()) continue;
      const target = u & ~FUSE_INT_REQ_BIT;
      const r = this.resultOfUnique(target);
      const text = `INTERRUPT answered ${rec.join(', ') || 'never'} when recorded, ${live.join(', ') || 'never'} now`;
      if (!r) continue;
      if (r.outcome === 'matched' || r.outcome === 'injected') {
        // The request itself ended the same way: its INTERRUPT raced with its reply.
        r.note = appendNote(r.note, `${text} (it raced with the reply)`);
      } else {
        r.diffs.push({ field: 'interrupt.replies', recorded: rec.join(', ') || '(none)', live: live.join(', ') || '(none)', mode: 'exact' });
      }
    }
  }

  // ---- comparison ----

  private compare(
    result: RequestResult, req: SendEvent, recorded: Buffer, live: Buffer,
    /** How the recorded reply becomes a tree (INIT puts back the server's own limits); the live one is always replyTree. */
    recordedTree: (d: DecodedFrame) => Record<string, unknown> = replyTree,
  ): void {
    const learned = recordedTree === replyTree ? this.compareFixed(result, req, recorded, live) : 'no';
    if (learned === 'matched') return;
    const reqD = this.replyRequest(req);
    const recD = decodeReply(recorded, { ...this.recCtx, opcode: req.opcode, request: reqD });
    const liveD = decodeReply(live, { ...this.liveCtx, opcode: req.opcode, request: reqD });
    // The one-line texts cost as much as the comparison: with keep `failing` a matching result is
    // dropped, so they are made only for the others.
    const describe = (): void => {
      result.recordedReply = describeReply(recD.frame);
      result.liveReply = describeReply(liveD.frame);
    };
    if (this.opts.keep !== 'failing') describe();
    if (!recD.frame || !liveD.frame) {
      result.outcome = recorded.equals(live) ? 'matched' : 'diverged';
      if (result.outcome === 'diverged') result.diffs.push({ field: 'frame', recorded: recorded.toString('hex'), live: live.toString('hex'), mode: 'exact' });
      this.classifyRace(result, req);
      if (result.outcome !== 'matched') describe();
      return;
    }
    if (learned === 'no') this.learn(req, recD.frame, liveD.frame);
    const recTree = recordedTree(recD.frame);
    const liveTree = replyTree(liveD.frame);
    if (this.readdirAsSet) {
      direntsByName(recTree);
      direntsByName(liveTree);
    }
    const recFh = requestFh(req);
    const diffs = compareTrees(recTree, liveTree, this.opts.rules, (kind, rec, lv) => this.checkId(kind, rec, lv, recFh));
    const replyCut = recorded.length < (req.reply?.len ?? recorded.length);
    if (result.outcome === 'injected') {
      describe();
      result.diffs = diffs;
      result.recordedFields = fieldList(recTree);
      result.liveFields = fieldList(liveTree);
      return;
    }
    if (result.outcome === 'uncomparable' || replyCut) {
      describe();
      result.outcome = 'uncomparable';
      if (replyCut) result.note = appendNote(result.note, `reply cut by --snaplen (${recorded.length} of ${req.reply?.len} bytes recorded)`);
      delete result.liveReply;
      return;
    }
    result.diffs.push(...diffs);
    result.outcome = result.diffs.length === 0 ? 'matched' : 'diverged';
    this.classifyRace(result, req);
    if (result.outcome === 'matched') {
      // A matching reply is the recorded one up to the rules; its live identifiers change from
      // run to run and would make two identical replays' reports differ.
      delete result.liveReply;
    } else {
      describe();
      result.recordedFields = fieldList(recTree);
      result.liveFields = fieldList(liveTree);
    }
  }

  /**
   * The common case without decoding: a fixed-layout reply (fixed-reply.ts) equal to the recorded
   * one under the rules is `matched`, its ids learned as learn() would. `learned`: the ids were
   * learned but a translated one differs, and the full comparison (which must not learn them
   * again: bindings count references) names it; `no`: nothing done. Only where a matching result
   * keeps nothing but its outcome (keep `failing`) and nothing else was noted on it.
   */
  private compareFixed(result: RequestResult, req: SendEvent, recorded: Buffer, live: Buffer): 'matched' | 'learned' | 'no' {
    if (this.opts.keep !== 'failing' || result.outcome !== 'sent' || result.diffs.length > 0) return 'no';
    if (!req.reply || recorded.length !== req.reply.len || this.recCtx.minor !== this.liveCtx.minor) return 'no';
    const l = this.fixed.sameExceptIds(req.opcode, this.recCtx.minor, recorded, live);
    if (!l) return 'no';
    this.learnFixed(req.opcode, l, recorded, live);
    const recFh = requestFh(req);
    if (!this.fixed.idsEqual(l, recorded, live, (kind, rec, lv) => this.checkId(kind, rec, lv, recFh))) return 'learned';
    result.outcome = 'matched';
    return 'matched';
  }

  /** learn() for a fixed-layout reply, read in place: the same bindings, in the same order. */
  private learnFixed(op: number, l: FixedLayout, rec: Buffer, live: Buffer): void {
    if (l.error) return;
    const u64 = (path: string, b: Buffer): bigint | undefined => {
      const at = l.offsets.get(path);
      return at === undefined ? undefined : readU64(b, at);
    };
    if (op === OP.LOOKUP || op === OP.MKNOD || op === OP.MKDIR || op === OP.SYMLINK || op === OP.LINK ||
        op === OP.CREATE || op === OP.TMPFILE) {
      const rn = u64('entry_out.nodeid', rec);
      const ln = u64('entry_out.nodeid', live);
      if (rn !== undefined && ln !== undefined && rn !== 0n) {
        this.ids.matchNodeid(rn, ln);
        const rg = u64('entry_out.generation', rec);
        const lg = u64('entry_out.generation', live);
        if (rg !== undefined && lg !== undefined) this.ids.matchGeneration(rg, lg);
        const ri = u64('entry_out.attr.ino', rec);
        const li = u64('entry_out.attr.ino', live);
        if (ri !== undefined && li !== undefined) this.ids.matchIno(ri, li, rn);
      }
    }
    if (op === OP.OPEN || op === OP.OPENDIR || op === OP.CREATE || op === OP.TMPFILE) {
      const rf = u64('open_out.fh', rec);
      const lf = u64('open_out.fh', live);
      if (rf !== undefined && lf !== undefined) this.ids.bindFh(rf, lf);
    }
    if (op === OP.GETATTR || op === OP.SETATTR) {
      const ri = u64('attr_out.attr.ino', rec);
      const li = u64('attr_out.attr.ino', live);
      if (ri !== undefined && li !== undefined) this.ids.matchIno(ri, li);
    }
  }

  /** A divergence of a request that raced in the recording with a conflicting one is a `race` (race.ts). */
  private classifyRace(result: RequestResult, req: SendEvent): void {
    if (result.outcome !== 'diverged' || !req.races?.length) return;
    result.outcome = 'race';
    const others = req.races.slice(0, 3).map((t) => `unique ${t.unique} ${opcodeName(t.opcode)}`).join(', ');
    const more = req.races.length > 3 ? ` and ${req.races.length - 3} more` : '';
    result.note = appendNote(result.note, `in flight together with ${others}${more} on the same node or handle when recorded`);
    result.racedWith = req.races.map((t) => t.unique);
  }

  private learnOnly(req: SendEvent, recorded: Buffer, live: Buffer): void {
    const reqD = this.replyRequest(req);
    const recD = decodeReply(recorded, { ...this.recCtx, opcode: req.opcode, request: reqD }).frame;
    const liveD = decodeReply(live, { ...this.liveCtx, opcode: req.opcode, request: reqD }).frame;
    if (recD && liveD) this.learn(req, recD, liveD);
  }

  /** Binds the identifiers a reply hands out (idmap.ts); conflicts show up in the comparison. */
  private learn(req: SendEvent, rec: DecodedFrame, live: DecodedFrame): void {
    if ((rec.error ?? 0) !== 0 || (live.error ?? 0) !== 0) return;
    const op = req.opcode;
    if (req.reply && req.reply.data.length < req.reply.len && HANDS_OUT_IDS.has(op)) this.idsCut = true;
    const entry = (e: unknown, l: unknown): void => {
      const re = e as Record<string, unknown> | undefined;
      const le = l as Record<string, unknown> | undefined;
      if (!re || !le || typeof re.nodeid !== 'bigint' || typeof le.nodeid !== 'bigint') return;
      if (re.nodeid === 0n) return; // "." / ".." in READDIRPLUS: no lookup reference
      this.ids.matchNodeid(re.nodeid, le.nodeid);
      if (typeof re.generation === 'bigint' && typeof le.generation === 'bigint') this.ids.matchGeneration(re.generation, le.generation);
      const ra = re.attr as Record<string, unknown> | undefined;
      const la = le.attr as Record<string, unknown> | undefined;
      if (typeof ra?.ino === 'bigint' && typeof la?.ino === 'bigint') this.ids.matchIno(ra.ino, la.ino, re.nodeid);
    };
    if (op === OP.LOOKUP || op === OP.MKNOD || op === OP.MKDIR || op === OP.SYMLINK || op === OP.LINK ||
        op === OP.CREATE || op === OP.TMPFILE) {
      entry(rec.args[0], live.args[0]);
    }
    const openAt = op === OP.OPEN || op === OP.OPENDIR ? 0 : op === OP.CREATE || op === OP.TMPFILE ? 1 : -1;
    if (openAt >= 0) {
      const rf = rec.args[openAt]?.fh;
      const lf = live.args[openAt]?.fh;
      if (typeof rf === 'bigint' && typeof lf === 'bigint') this.ids.bindFh(rf, lf);
    }
    if (op === OP.GETATTR || op === OP.SETATTR) {
      const ra = rec.args[0]?.attr as Record<string, unknown> | undefined;
      const la = live.args[0]?.attr as Record<string, unknown> | undefined;
      if (typeof ra?.ino === 'bigint' && typeof la?.ino === 'bigint') this.ids.matchIno(ra.ino, la.ino);
    }
    if (op === OP.STATX) {
      const ra = rec.args[0]?.stat as Record<string, unknown> | undefined;
      const la = live.args[0]?.stat as Record<string, unknown> | undefined;
      if (typeof ra?.ino === 'bigint' && typeof la?.ino === 'bigint') this.ids.matchIno(ra.ino, la.ino);
    }
    if ((op === OP.READDIR || op === OP.READDIRPLUS) && rec.dirents && live.dirents) {
      // Pair entries by name: a cookie stands for "after this name" in this open directory.
      const recFh = requestFh(req);
      if (recFh !== undefined && req.reply && req.reply.data.length < req.reply.len) {
        this.ids.noteCutDirReply(recFh, live.dirents[live.dirents.length - 1]?.off);
      }
      const liveByName = new Map(live.dirents.map((d) => [d.name, d]));
      for (const d of rec.dirents) {
        const l = liveByName.get(d.name);
        if (!l) continue;
        if (d.entry && l.entry) entry(d.entry, l.entry);
        this.ids.matchIno(d.ino, l.ino);
        this.ids.matchCookie(recFh, d.off, l.off);
      }
    }
  }

  private checkId(kind: string, rec: bigint, live: bigint, recFh: bigint | undefined): string | null {
    const bound = this.ids.lookup(kind, rec, recFh);
    if (bound === undefined) return rec === live ? null : `recorded ${kind} ${rec} has no live counterpart`;
    return bound === live ? null : `recorded ${kind} ${rec} stands for live ${bound}, the server answered ${live}`;
  }

  // ---- --interrupt ----

  private inject(unique: bigint): void {
    const delay = this.opts.interrupt!.delayMs;
    const intrUnique = interruptUnique(unique);
    this.injected = { unique, intrUnique, sends: 0 };
    const result = this.resultOfUnique(unique);
    if (result) result.outcome = 'injected';
    const fire = async (): Promise<void> => {
      if (this.answeredLive(unique) || this.gone) {
        if (result) result.note = appendNote(result.note, `no INTERRUPT sent: answered before ${delay} ms`);
        return;
      }
      this.injected!.sends++;
      await this.rawSend(interruptFrame(unique), intrUnique);
      if (result && this.injected!.sends === 1) {
        (result.interrupts ??= []).push(`INTERRUPT ${delay === 0 ? 'right after sending' : `${delay} ms after sending`} (--interrupt)`);
      }
    };
    if (delay === 0) this.pending.push(fire());
    else {
      this.pending.push(
        new Promise<void>((resolve) => {
          this.injected!.timer = setTimeout(() => void fire().then(resolve, resolve), delay);
        }),
      );
    }
  }

  /** The server answered our INTERRUPT itself: EAGAIN makes the kernel queue it again (fs/fuse/dev.c). */
  private onInjectedInterruptReply(f: Buffer): void {
    const inj = this.injected!;
    const err = f.length >= OUT_HEADER ? f.readInt32LE(4) : 0;
    const result = this.resultOfUnique(inj.unique);
    if (result) result.note = appendNote(result.note, `the server answered the INTERRUPT with ${errnoText(err)}`);
    if (err === -11 && !this.answeredLive(inj.unique) && inj.sends < 100 && !this.gone) {
      inj.sends++;
      this.pending.push(this.rawSend(interruptFrame(inj.unique), inj.intrUnique));
    }
  }

  // ---- bookkeeping ----

  /** The recorded request decoded once (for its one-line text and to pair its reply's layout). */
  private decodedRequest(ev: SendEvent): DecodedFrame | undefined {
    let d = this.decoded.get(ev);
    if (d === undefined && !this.decoded.has(ev)) {
      d = decodeRequest(ev.frame.data, this.recCtx).frame;
      this.decoded.set(ev, d);
    }
    return d;
  }

  /** The recorded request decoded, where decoding its reply needs it (GETXATTR, LISTXATTR); else undefined. */
  private replyRequest(ev: SendEvent): DecodedFrame | undefined {
    return replyNeedsRequest(ev.opcode) ? this.decodedRequest(ev) : undefined;
  }

  private newResult(ev: SendEvent): RequestResult {
    // With keep `failing` the request's text is made only for results that stay (settle, compact).
    const lazy = this.opts.keep === 'failing';
    const r: RequestResult = {
      seq: ev.frame.seq,
      unique: ev.frame.unique,
      opcode: ev.opcode,
      op: opcodeName(ev.opcode),
      request: lazy ? '' : describeRequest(this.decodedRequest(ev), ev),
      outcome: 'matched',
      diffs: [],
    };
    this.results.push(r);
    if (lazy) this.eventOf.set(r, ev);
    this.resultBySeq.set(ev.frame.seq, r);
    this.recentOf(ev.frame.unique).result = r;
    return r;
  }

  private resultOfUnique(unique: bigint): RequestResult | undefined {
    return this.recent.get(uniqueKey(unique))?.result;
  }

  /** The recent entry of a unique, made empty when there is none. */
  private recentOf(unique: bigint): RecentRequest {
    const key = uniqueKey(unique);
    let r = this.recent.get(key);
    if (!r) {
      r = { sentAt: undefined, answered: false, result: undefined };
      this.recent.set(key, r);
    }
    return r;
  }

  /** The live server answered this (recent) request. */
  private answeredLive(unique: bigint): boolean {
    return this.recent.get(uniqueKey(unique))?.answered === true;
  }

  /**
   * The walk is done with a result (its recorded reply was reached, or it expects none). With keep
   * `failing`, a matched or merely sent one leaves `results` at the next compaction and is counted.
   */
  private settle(r: RequestResult): void {
    this.resultBySeq.delete(r.seq);
    if (this.opts.keep !== 'failing') return;
    if (r.outcome !== 'matched' && r.outcome !== 'sent') this.describeRequestOf(r);
    // The event holds the recorded frames: a settled result must not keep them alive.
    this.eventOf.delete(r);
    if (r.outcome !== 'matched' && r.outcome !== 'sent') return;
    this.droppable.add(r);
    if (++this.droppableCount >= 4096) this.compact();
  }

  /** Fills in a result's request text (made lazily with keep `failing`). */
  private describeRequestOf(r: RequestResult): void {
    const ev = this.eventOf.get(r);
    if (ev && !r.request) r.request = describeRequest(this.decodedRequest(ev), ev);
  }

  /** Drops the droppable results from `results`, counting them by outcome (kept in send order). */
  private compact(final = false): void {
    if (final) for (const r of this.results) if (!this.droppable.has(r)) this.describeRequestOf(r);
    if (this.droppableCount === 0) return;
    this.results = this.results.filter((r) => {
      if (!this.droppable.has(r)) return true;
      this.elided[r.outcome] = (this.elided[r.outcome] ?? 0) + 1;
      return false;
    });
    this.droppable.clear();
    this.droppableCount = 0;
  }

  private missing(result: RequestResult, note: string): void {
    if (result.outcome === 'injected') {
      result.note = appendNote(result.note, note);
      return;
    }
    result.outcome = 'missing';
    result.note = note;
  }

  private giveUp(ev: PlanEvent): void {
    if (ev.kind !== 'send') return;
    this.notSent.add(ev.frame.unique);
    if (!ev.selected || ev.opcode === OP.INTERRUPT) return;
    const r = this.newResult(ev);
    // The plan may not have read its recorded reply yet: any request but FORGET expects one.
    if (ev.reply || !isNoReply(ev.opcode)) this.missing(r, this.gone ? 'not replayed: the server is gone' : `not replayed: ${MAX_HANGS} hangs in a row`);
    else r.outcome = 'skipped';
  }

  private unexpectedMissing(f: { unique: bigint; error: number | null; data: Buffer }): void {
    if (f.unique === 0n) this.notifications.total++;
    const d = decodeReply(f.data, { ...this.recCtx }).frame;
    this.unexpected.push({ unique: f.unique, reply: `recorded ${describeReply(d)} never came` });
  }

  private noteUnexpected(unique: bigint, f: Buffer): void {
    const req = this.sentRequests.get(uniqueKey(unique));
    const reqD = req ? this.decodedRequest(req) : undefined;
    const d = decodeReply(f, { ...this.liveCtx, opcode: req?.opcode, request: reqD }).frame;
    this.unexpected.push({ unique, request: req ? describeRequest(reqD, req) : undefined, reply: describeReply(d) });
  }
}

// ---- helpers ----

/** An iterator with a bounded look-ahead: ahead(n) reads up to n events ahead without consuming them, at(i) gives one. */
class Lookahead<T> {
  private buf: T[] = [];
  private head = 0;
  private done = false;

  constructor(private readonly it: Iterator<T>) {}

  next(): T | undefined {
    if (this.head < this.buf.length) {
      const v = this.buf[this.head];
      // Not kept until the next slice: a consumed event holds its frames.
      this.buf[this.head++] = undefined as T;
      // Drop what was consumed now and then (ahead() keeps the buffer from ever running empty).
      if (this.head >= 1024) {
        this.buf = this.buf.slice(this.head);
        this.head = 0;
      }
      return v;
    }
    if (this.done) return undefined;
    const r = this.it.next();
    if (r.done) this.done = true;
    return r.done ? undefined : r.value;
  }

  /** Reads up to n items ahead, not consumed; returns how many there are (at(0) .. at(count - 1)). */
  ahead(n: number): number {
    while (!this.done && this.buf.length - this.head < n) {
      const r = this.it.next();
      if (r.done) this.done = true;
      else this.buf.push(r.value);
    }
    return Math.min(n, this.buf.length - this.head);
  }

  /** The i-th item ahead (i < ahead()'s count). */
  at(i: number): T {
    return this.buf[this.head + i];
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function sleepUntil(atMs: number): Promise<void> {
  const left = atMs - performance.now();
  if (left > 0) await sleep(left);
}

function appendNote(note: string | undefined, more: string): string {
  return note ? `${note}; ${more}` : more;
}

/** A FUSE_INTERRUPT frame for `target`: fuse_in_header + fuse_interrupt_in, unique = target | FUSE_INT_REQ_BIT. */
export function interruptFrame(target: bigint): Buffer {
  const b = Buffer.alloc(IN_HEADER + 8);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt32LE(OP.INTERRUPT, 4);
  b.writeBigUInt64LE(interruptUnique(target), 8);
  b.writeBigUInt64LE(target, IN_HEADER);
  return b;
}

/** The recorded fh a request names in its body at offset 0 (READDIR's fuse_read_in.fh). */
function requestFh(req: SendEvent): bigint | undefined {
  const b = req.frame.data;
  return b.length >= IN_HEADER + 8 ? readU64(b, IN_HEADER) : undefined;
}

function errnoText(error: number): string {
  return error === 0 ? 'OK' : errnoName(-error);
}

/**
 * A decoded reply as the tree the comparison walks: `error`, then each fixed struct by its fuse.h
 * name without `fuse_` (`entry_out`, `attr_out`, `open_out`, `statfs_out`, `init_out`), `data`,
 * `names`, `items`, and `dirents[i].{entry_out, dirent}`; bytes the codec did not understand as `tail`.
 */
export function replyTree(d: DecodedFrame): Record<string, unknown> {
  const t: Record<string, unknown> = { error: d.error ?? 0 };
  let args = 0;
  const tails: Buffer[] = [];
  const data: Buffer[] = [];
  for (const p of d.parts) {
    if (p.kind === 'struct' && p.role === 'arg') {
      let key = treeKey(p.desc.name);
      if (key in t) key = `${key}_${args}`;
      t[key] = p.values;
      args++;
    } else if (p.kind === 'bytes' && p.role === 'data') data.push(p.bytes);
    else if (p.kind === 'bytes' && p.role === 'tail') tails.push(p.bytes);
  }
  if (data.length > 0) t.data = Buffer.concat(data);
  if (!d.dirents && d.names.length > 0) t.names = d.names;
  if (d.items.length > 0) t.items = d.items;
  if (d.dirents) {
    t.dirents = d.dirents.map((e) => ({
      ...(e.entry ? { entry_out: e.entry } : {}),
      dirent: { ino: e.ino, off: e.off, type: e.type, name: e.name },
    }));
  }
  if (tails.length > 0) t.tail = Buffer.concat(tails);
  return t;
}

/** A struct's key in a reply tree: its fuse.h name without `fuse_` (made once per struct). */
const treeKeys = new Map<string, string>();
function treeKey(name: string): string {
  let k = treeKeys.get(name);
  if (k === undefined) {
    k = name.replace(/^(fuse_|cuse_)/, '');
    treeKeys.set(name, k);
  }
  return k;
}

/** Every leaf of a tree as [path, text], for the side-by-side view. */
function fieldList(tree: Record<string, unknown>): Array<[string, string]> {
  return flatten(tree).map((l) => [l.path, show(l.value, l.segs)]);
}

/** A request on one line, as the codec prints it without its `rx <unique>` prefix: `LOOKUP n1 "foo" pid 42`. */
export function describeRequest(d: DecodedFrame | undefined, ev: SendEvent): string {
  if (!d) return `${opcodeName(ev.opcode)} (${ev.frame.data.length} bytes, undecodable)`;
  return withoutPrefix(formatLine(d));
}

/** A reply on one line, as the codec prints it without its `tx <unique>` prefix: `OK entry n5 gen 0 ...`, `ENOENT`. */
export function describeReply(d: DecodedFrame | undefined): string {
  if (!d) return '(undecodable)';
  return withoutPrefix(formatLine(d));
}

function withoutPrefix(line: string): string {
  const at = line.indexOf(' ', line.indexOf(' ') + 1);
  return at < 0 ? line : line.slice(at + 1);
}
