/**
 * `fusetrace export [SESSION] --format jsonl|perfetto [-o FILE] [--filter EXPR]`
 *
 * jsonl: one JSON object per request (the ledger's rows, as `show --json` writes them, without the decoded frames).
 * perfetto: Chrome trace event JSON (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU),
 * which ui.perfetto.dev and chrome://tracing open: one track per requesting pid, named from its
 * comm, one complete slice per request, interrupts and notifications as instant events.
 *
 * pcapng: one packet per recorded frame, for Wireshark with the dissector `fusetrace wireshark`
 * names (src/export/pcap-session.ts writes it, src/export/wireshark.ts generates the dissector).
 *
 * All stream: rows come from an SQLite cursor and leave in 64 KiB chunks, so a session of a
 * million requests never sits in memory as one array or one string.
 */
import type { Command } from 'commander';
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { Output, exactJson, type Sink } from './output.js';
import { openTraceDb } from '../store/db.js';
import { TraceReader } from '../store/reader.js';
import { compileUserFilter, requestJson } from './show.js';
import { exportPcapng } from '../export/pcap-session.js';
import { iterateRequests, type RequestRow } from '../store/query.js';
import { FilterError, compileFilter, formatFilterError, type CompiledFilter } from '../store/filter.js';
import { errnoName, interruptTargetOf } from '../protocol/index.js';

const FORMATS = ['jsonl', 'perfetto', 'pcapng'] as const;
type Format = (typeof FORMATS)[number];
/** `jsonl, perfetto or pcapng`, for the help and the refusal. */
const FORMAT_LIST = `${FORMATS.slice(0, -1).join(', ')} or ${FORMATS[FORMATS.length - 1]}`;

interface ExportOptions {
  format?: string;
  output?: string;
  filter?: string;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('Export a session as JSON lines, a Perfetto (Chrome trace event) JSON file or pcapng for Wireshark')
    .argument('[session]', 'session id or name (default: the latest)')
    .requiredOption('--format <format>', `output format: ${FORMAT_LIST}`)
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .option('--filter <expr>', "only the requests matching a filter expression (e.g. 'op==READ && dur>1ms')")
    .action(async (session: string | undefined, opts: ExportOptions, cmd: Command) => {
      const format = opts.format as Format;
      if (!FORMATS.includes(format)) {
        throw new UserError(`unknown --format '${opts.format}' (expected ${FORMAT_LIST})`);
      }
      if (format === 'pcapng' && (opts.output === undefined || opts.output === '-') && process.stdout.isTTY) {
        throw new UserError('pcapng is binary: write it with -o FILE.pcapng or pipe it (e.g. | tshark -r -)');
      }
      const file = dbPath(cmd);
      const db = openTraceDb(file, { readonly: true, complete: true, streaming: true });
      try {
        const id = new TraceReader(db, file).resolveSession(session);
        const out = await Output.open(opts.output);
        try {
          if (format === 'jsonl') await exportJsonl(db, id, out, opts.filter);
          else if (format === 'perfetto') await exportPerfetto(db, id, out, opts.filter);
          else await exportPcapng(db, id, out, opts.filter === undefined ? null : compileUserFilter(opts.filter));
        } finally {
          await out.close();
        }
      } finally {
        db.close();
      }
    });
}

function requests(db: Database, session: number, filter: string | undefined): IterableIterator<RequestRow> {
  let compiled: CompiledFilter;
  try {
    compiled = compileFilter(filter ?? null);
  } catch (err) {
    if (err instanceof FilterError) throw new UserError(`bad --filter:\n${formatFilterError(err)}`);
    throw err;
  }
  return iterateRequests(db, session, { filter: compiled, sort: 'time' });
}

export async function exportJsonl(db: Database, session: number, out: Sink, filter?: string): Promise<void> {
  for (const r of requests(db, session, filter)) {
    const p = out.write(`${exactJson(requestJson(r))}\n`);
    if (p) await p;
  }
}

/** Synthetic thread ids start above pid_max (at most 2^22, kernel/pid.c PID_MAX_LIMIT): no clash with a real pid. */
const SYNTHETIC_TID = 0x40000000;

interface Lane {
  tid: number;
  /** Where the last slice placed on it ends, ns since session start. */
  endNs: number;
}

interface InterruptEvent {
  tsNs: number;
  name: string;
  args: Record<string, unknown>;
}

/**
 * INTERRUPT frames and the server's answers to them, by target unique (the kernel names the target
 * in fuse_interrupt_in.unique; answers carry the INTERRUPT's unique). INTERRUPTs are rare: loaded whole.
 */
function loadInterrupts(db: Database, session: number, startMono: bigint): Map<bigint, InterruptEvent[]> {
  const byTarget = new Map<bigint, InterruptEvent[]>();
  const intrUnique = new Map<bigint, bigint>();
  // In seq order: each INTERRUPT comes before the server's answer to it.
  for (const f of new TraceReader(db).interruptFrames(session)) {
    const tsNs = Number(f.tsNs - startMono);
    if (f.dir === 0) {
      const target = interruptTargetOf(f.data, f.unique);
      intrUnique.set(f.unique, target);
      const list = byTarget.get(target) ?? [];
      list.push({ tsNs, name: 'INTERRUPT', args: { unique: target, interrupt_unique: f.unique, seq: f.seq } });
      byTarget.set(target, list);
      continue;
    }
    const target = intrUnique.get(f.unique);
    if (target === undefined) continue;
    const err = f.error === null ? 0 : -f.error;
    byTarget.get(target)!.push({
      tsNs,
      name: `INTERRUPT answered ${err === 0 ? 'OK' : errnoName(err)}`,
      args: { unique: target, interrupt_unique: f.unique, seq: f.seq, errno: err, write_errno: f.writeErrno },
    });
  }
  return byTarget;
}

function micros(ns: number): number {
  return ns / 1000;
}

function sessionInfo(db: Database, session: number): { startMono: bigint; endNs: number; title: string } {
  const reader = new TraceReader(db);
  const s = reader.getSession(session);
  if (s === undefined) throw new UserError(`no session ${session}`);
  // Still recording, or the recorder died: the session ends at its last frame.
  const { ns } = reader.duration(s);
  return {
    startMono: s.startedMonoNs,
    endNs: Number(ns),
    title: `fusetrace session ${session}${s.name ? ` (${s.name})` : ''}: ${s.command.join(' ')}`,
  };
}

/**
 * Chrome trace event JSON. One "process" (pid = the session id) holds one thread track per
 * requesting pid (tid = that pid, named "comm pid" by an "M" thread_name event). Requests of one
 * pid that overlap (async readahead, writeback, a multi-threaded reader) would not nest, and the
 * format requires complete events on one thread to nest, so they go to extra lanes of the same
 * pid ("comm pid #2", synthetic tids). Requests without a reply (unanswered, aborted) run to the
 * session's end; INTERRUPTs, their answers, FORGETs and notifications are instant events.
 */
export async function exportPerfetto(db: Database, session: number, out: Sink, filter?: string): Promise<void> {
  const info = sessionInfo(db, session);
  const interrupts = loadInterrupts(db, session, info.startMono);
  const lanes = new Map<string, Lane[]>();
  let nextSynthetic = SYNTHETIC_TID;
  let first = true;
  const emit = (ev: Record<string, unknown>): Promise<void> | undefined => {
    const text = (first ? '\n' : ',\n') + exactJson(ev);
    first = false;
    return out.write(text);
  };
  const P = session;

  await out.write('{"displayTimeUnit":"ns","traceEvents":[');
  await emit({ name: 'process_name', ph: 'M', pid: P, tid: 0, args: { name: info.title } });

  /** The lane (tid) for a slice [start, end) of this track, opening a new lane when all overlap. */
  const laneFor = async (track: string, label: string, realTid: number | null, start: number, end: number): Promise<number> => {
    let list = lanes.get(track);
    if (!list) {
      list = [];
      lanes.set(track, list);
    }
    for (const lane of list) {
      if (lane.endNs <= start) {
        lane.endNs = end;
        return lane.tid;
      }
    }
    const tid = list.length === 0 && realTid !== null && realTid > 0 ? realTid : nextSynthetic++;
    const lane = { tid, endNs: end };
    list.push(lane);
    const p = emit({
      name: 'thread_name',
      ph: 'M',
      pid: P,
      tid,
      args: { name: list.length === 1 ? label : `${label} #${list.length}` },
    });
    if (p) await p;
    // Keep a pid's lanes together and in order in the UI.
    const q = emit({ name: 'thread_sort_index', ph: 'M', pid: P, tid, args: { sort_index: tid >= SYNTHETIC_TID ? tid : tid * 16 } });
    if (q) await q;
    return tid;
  };

  for (const r of requests(db, session, filter)) {
    const args: Record<string, unknown> = { unique: r.unique, seq: r.seq, path: r.path, err: r.err, state: r.state };
    if (r.outcome !== null) args.outcome = r.outcome;
    if (r.nodeid !== null) args.nodeid = r.nodeid;
    if (r.fh !== null) args.fh = r.fh;
    if (r.background) args.background = true;
    const isServer = r.state === 'notify' && r.opcode === 0;
    const track = isServer ? 'server' : r.pid === null ? 'unknown' : `pid:${r.pid}`;
    const label = isServer ? 'server notifications' : r.pid === null ? 'unknown' : r.pid === 0 ? 'kernel (pid 0)' : `${r.comm ?? 'pid'} ${r.pid}`;
    const realTid = isServer || r.pid === null ? null : r.pid;
    const name = isServer ? `NOTIFY ${r.outcome ?? ''}`.trim() : r.op;

    if (r.state === 'noreply' || r.state === 'notify' || (r.state === 'unknown' && r.dur_ns === null && r.opcode === 0)) {
      const tid = await laneFor(track, label, realTid, r.start_ns, r.start_ns);
      const p = emit({ name, cat: r.state, ph: 'i', s: 't', ts: micros(r.start_ns), pid: P, tid, args });
      if (p) await p;
      continue;
    }
    // No reply: the request was outstanding until the session ended.
    const end = r.dur_ns !== null ? r.start_ns + r.dur_ns : Math.max(info.endNs, r.start_ns);
    const tid = await laneFor(track, label, realTid, r.start_ns, end);
    const p = emit({ name, cat: r.state, ph: 'X', ts: micros(r.start_ns), dur: micros(end - r.start_ns), pid: P, tid, args });
    if (p) await p;
    const intr = interrupts.get(BigInt.asUintN(64, BigInt(r.unique)));
    if (intr && r.interrupt_seq !== null) {
      for (const e of intr) {
        const q = emit({ name: e.name, cat: 'interrupt', ph: 'i', s: 't', ts: micros(e.tsNs), pid: P, tid, args: e.args });
        if (q) await q;
      }
    }
  }
  await out.write('\n]}\n');
}
