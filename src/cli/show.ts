/**
 * `fusetrace show [SESSION] [RANGE] [--filter EXPR] [--json] [--frames]`: the requests of a session
 * from the ledger (`requests`), as an aligned table on a terminal, tab-separated cells in a pipe,
 * one JSON object per line with --json, or their raw frames in the codec's one-line style with --frames.
 *
 * Rows stream from an SQLite cursor and leave in 64 KiB chunks that wait for the consumer, so a
 * session of a million requests is never held in memory and `| head` stops the query early.
 */
import type { Command } from 'commander';
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { Output, exactJson } from './output.js';
import { formatDuration, formatResult, formatTime, paintState } from '../format.js';
import { openTraceDb } from '../store/db.js';
import { TraceReader } from '../store/reader.js';
import { FilterError, compileFilter, formatFilterError, type CompiledFilter } from '../store/filter.js';
import { iterateRequests, parseRange, type RequestRow, type UniqueRange } from '../store/query.js';
import { OP, decodeReply, decodeRequest, errnoName, sessionContext, formatFields, formatLine, type DecodeContext, type DecodedFrame } from '../protocol/index.js';

interface ShowOptions {
  filter?: string;
  sort?: string;
  limit?: string;
  offset?: string;
  json?: boolean;
  frames?: boolean;
}

export function registerShow(program: Command): void {
  program
    .command('show')
    .description('Show the requests of a session')
    .argument('[session]', 'session id or name (default: the latest); a lone argument that names no session is taken as RANGE')
    .argument('[range]', 'uniques: 127, 1000-5000 (inclusive), end (the last request), 1000-end')
    .option('-f, --filter <expr>', "only requests matching a filter expression, e.g. 'op==READ && dur>1ms'")
    .option('--sort <key>', 'time (default) or dur (slowest first)')
    .option('-n, --limit <n>', 'at most N requests')
    .option('--offset <n>', 'skip the first N requests')
    .option('--json', 'one JSON object per request and line (64-bit values as exact numbers)')
    .option('--frames', "each request's frames (request, INTERRUPT, reply) in the one-line printer style")
    .addHelpText(
      'after',
      `
Filter fields: op unique nodeid fh path pid comm uid err state dur t len
  op==READ && dur>1ms     err==ENOENT     state in {interrupted late}     path ~ "/src/**.c"
  path ~ /\\.tmp$/i        !err            comm == make || pid == 1234     t >= 2s && t < 2.5s`,
    )
    .action(async (a: string | undefined, b: string | undefined, opts: ShowOptions, cmd: Command) => {
      const file = dbPath(cmd);
      const db = openTraceDb(file, { readonly: true, complete: true, streaming: opts.json === true || opts.frames === true });
      // A second connection for frames: better-sqlite3 refuses other statements on a connection
      // while one of its cursors is open, and the requests cursor stays open while we print.
      let framesDb: Database | undefined;
      try {
        const { session, range } = resolveArgs(new TraceReader(db, file), a, b);
        const filter = compileUserFilter(opts.filter);
        const sort = opts.sort ?? 'time';
        if (sort !== 'time' && sort !== 'dur') throw new UserError(`unknown --sort '${sort}' (expected time or dur)`);
        const limit = count('--limit', opts.limit);
        const offset = count('--offset', opts.offset);
        const rows = iterateRequests(db, session, { filter, range, sort, limit, offset });
        const out = await Output.open();
        let frames: FrameSource | undefined;
        if (opts.frames || opts.json) {
          framesDb = openTraceDb(file, { readonly: true, streaming: true });
          frames = new FrameSource(framesDb, session);
        }
        if (opts.frames) await printFrames(rows, frames!, out);
        else if (opts.json) await printJson(rows, frames!, out);
        else await printTable(rows, out, process.stdout.isTTY === true && !process.env.NO_COLOR, process.stdout.isTTY === true);
        await out.flush();
      } finally {
        framesDb?.close();
        db.close();
      }
    });
}

/**
 * SESSION and RANGE from the positional arguments: two are SESSION RANGE; a lone one is SESSION
 * when a session has that id or name, else RANGE in the latest session (so `show 1000-end` works;
 * `show 3` is session 3 when it exists: write `show 3 3` for unique 3 of session 3).
 */
function resolveArgs(reader: TraceReader, a: string | undefined, b: string | undefined): { session: number; range?: UniqueRange } {
  if (b !== undefined) return { session: reader.resolveSession(a), range: parseRange(b) };
  if (a === undefined) return { session: reader.resolveSession() };
  try {
    return { session: reader.resolveSession(a) };
  } catch (err) {
    if (!(err instanceof UserError) || !/^(0x[0-9a-f]+|\d+)(-(0x[0-9a-f]+|\d+|end))?$|^end$/i.test(a)) throw err;
    return { session: reader.resolveSession(), range: parseRange(a) };
  }
}

/** Compiles --filter; a mistake becomes a UserError showing the expression with a caret. */
export function compileUserFilter(expr: string | undefined): CompiledFilter {
  try {
    return compileFilter(expr ?? null);
  } catch (err) {
    if (err instanceof FilterError) throw new UserError(`bad --filter:\n  ${formatFilterError(err).replace('\n', '\n  ')}`);
    throw err;
  }
}

function count(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UserError(`${flag} needs a whole number, not '${v}'`);
  return Number(v);
}

const COLUMNS: [string, number, 'l' | 'r'][] = [
  ['UNIQUE', 8, 'r'],
  ['TIME', 12, 'r'],
  ['OP', 12, 'l'],
  ['DUR', 8, 'r'],
  ['RESULT', 9, 'l'],
  ['STATE', 11, 'l'],
  ['PID', 7, 'r'],
  ['COMM', 15, 'l'],
  ['NODEID', 7, 'r'],
  ['PATH', 0, 'l'],
];

function cells(r: RequestRow): string[] {
  return [
    String(r.unique),
    formatTime(r.start_ns),
    r.op,
    formatDuration(r.dur_ns),
    formatResult(r.errno),
    r.state + (r.outcome ? `:${r.outcome}` : ''),
    r.pid === null ? '-' : String(r.pid),
    r.comm ?? '-',
    r.nodeid === null ? '-' : String(r.nodeid),
    r.path ?? '?',
  ];
}

/**
 * The table: fixed-width columns on a terminal (rows stream, so widths cannot wait for the last
 * row; a longer cell pushes its line right), tab-separated cells in a pipe for cut/awk.
 */
async function printTable(rows: Iterable<RequestRow>, out: Output, colour: boolean, aligned: boolean): Promise<void> {
  const line = (c: string[], state?: string): string => {
    if (!aligned) return c.join('\t');
    return c
      .map((cell, i) => {
        const [, w, align] = COLUMNS[i]!;
        let text = align === 'r' ? cell.padStart(w) : cell.padEnd(w);
        if (colour && i === 5 && state) text = paintState(text, state);
        return text;
      })
      .join(' ')
      .trimEnd();
  };
  const head = line(COLUMNS.map(([h]) => h));
  let p = out.write(`${colour ? `\x1b[1m${head}\x1b[0m` : head}\n`);
  if (p) await p;
  for (const r of rows) {
    if (out.closed) return;
    p = out.write(`${line(cells(r), r.state)}\n`);
    if (p) await p;
  }
}

/** One request as `show --json` (and `export --format jsonl`) name its fields. */
export function requestJson(r: RequestRow): Record<string, unknown> {
  return {
    unique: r.unique,
    op: r.op,
    nodeid: r.nodeid,
    fh: r.fh,
    path: r.path,
    pid: r.pid,
    comm: r.comm,
    uid: r.uid,
    start_ns: r.start_ns,
    dur_ns: r.dur_ns,
    err: r.err,
    errno: r.errno,
    state: r.state,
    outcome: r.outcome,
    background: r.background,
    len: r.len,
    reply_len: r.reply_len,
  };
}

async function printJson(rows: Iterable<RequestRow>, frames: FrameSource, out: Output): Promise<void> {
  for (const r of rows) {
    if (out.closed) return;
    const obj = requestJson(r);
    // The decoded request and reply, field by field, when the frames were recorded.
    const d = frames.decoded(r);
    if (d.request || d.reply) obj.decoded = { request: d.request && fieldsJson(d.request), reply: d.reply && fieldsJson(d.reply) };
    const p = out.write(`${exactJson(obj)}\n`);
    if (p) await p;
  }
}

function fieldsJson(f: DecodedFrameWithFields): Record<string, unknown> {
  return { line: f.line, fields: Object.fromEntries(f.fields) };
}

async function printFrames(rows: Iterable<RequestRow>, frames: FrameSource, out: Output): Promise<void> {
  for (const r of rows) {
    if (out.closed) return;
    const d = frames.decoded(r);
    const lines: string[] = [];
    for (const f of d.all) {
      const write = f.writeErrno ? ` [write ${errnoName(f.writeErrno) === 'ENOENT' ? 'ENOENT: the kernel no longer knew this unique' : `errno ${f.writeErrno}`}]` : '';
      lines.push(`${formatTime(f.tsNs)} #${f.seq} ${f.line}${write}\n`);
    }
    if (lines.length === 0) lines.push(`${formatTime(r.start_ns)} unique ${r.unique} ${r.op}: no frames recorded for this request\n`);
    const p = out.write(lines.join(''));
    if (p) await p;
  }
}

// ---------------------------------------------------------------------------------------------
// Frames of a request, decoded by the codec
// ---------------------------------------------------------------------------------------------

interface DecodedFrameWithFields {
  seq: number;
  /** ns since session start. */
  tsNs: number;
  writeErrno: number;
  /** The codec's one-line form. */
  line: string;
  /** Every field, named as the codec's detail view names them. */
  fields: Array<[string, string]>;
}

/** A reply to FUSE_INTERRUPT (EAGAIN, ENOSYS) decodes as one: it carries the INTERRUPT's own unique. */
const { INTERRUPT } = OP;

class FrameSource {
  private readonly ctx: DecodeContext;
  private readonly startMono: bigint;
  private readonly reader: TraceReader;
  constructor(
    db: Database,
    private readonly session: number,
  ) {
    this.reader = new TraceReader(db);
    const s = this.reader.getSession(session)!;
    this.startMono = s.startedMonoNs;
    // Frames after INIT decode at the negotiated minor and flags.
    this.ctx = sessionContext(s);
  }

  /** The request's own frames: the request, the FUSE_INTERRUPT naming it, the reply (schema.ts requests.*_seq). */
  decoded(r: RequestRow): { request?: DecodedFrameWithFields; reply?: DecodedFrameWithFields; all: DecodedFrameWithFields[] } {
    const rows = this.reader.framesAt(this.session, [r.seq, r.interrupt_seq ?? -1, r.reply_seq ?? -1]);
    let reqFrame: DecodedFrame | undefined;
    const all: DecodedFrameWithFields[] = [];
    let request: DecodedFrameWithFields | undefined;
    let reply: DecodedFrameWithFields | undefined;
    for (const f of rows) {
      const seq = f.seq;
      const res =
        f.dir === 0
          ? decodeRequest(f.data, this.ctx)
          : decodeReply(f.data, { ...this.ctx, opcode: seq === r.reply_seq ? r.opcode : INTERRUPT, request: seq === r.reply_seq ? reqFrame : undefined });
      if (seq === r.seq) reqFrame = res.frame;
      const line = res.frame
        ? formatLine(res.frame, seq === r.reply_seq && r.dur_ns !== null ? { durNs: r.dur_ns } : {})
        : `${f.data.length} bytes, undecodable: ${res.error?.kind ?? 'short'}`;
      const d: DecodedFrameWithFields = { seq, tsNs: Number(f.tsNs - this.startMono), writeErrno: f.writeErrno, line, fields: formatFields(res) };
      all.push(d);
      if (seq === r.seq) request = d;
      if (seq === r.reply_seq) reply = d;
    }
    return { request, reply, all };
  }
}
