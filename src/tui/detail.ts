/**
 * The detail pane's text for one request: summary, timings, every frame of its lifetime decoded by
 * the protocol codec (every field named, flags and errnos by name), the INTERRUPT frames that
 * belong to it, then hex dumps of the raw bytes. Pure: RequestDetail in, lines out.
 */
import { OP, decodeReply, decodeRequest, errnoName, formatFields, formatLine, type DecodeContext, type DecodedFrame } from '../protocol/index.js';
import type { FrameRecord } from '../store/writer.js';
import type { RequestDetail } from './data.js';
import { formatDuration, formatResult, formatTime, hexDump, stateColor } from '../format.js';

/** One line of the pane with how to draw it. */
export interface DetailLine {
  text: string;
  color?: string;
  bold?: boolean;
  dim?: boolean;
}

const { INTERRUPT } = OP;

const heading = (text: string): DetailLine => ({ text: `── ${text} `.padEnd(72, '─'), bold: true, color: 'cyan' });

function rel(ns: number | null, base: number): string {
  if (ns === null) return '-';
  return `${formatTime(ns)}s (+${formatDuration(ns - base, 'us')})`;
}

/** A frame's time as the views show it: ns since the session's start (frames carry CLOCK_MONOTONIC). */
function sinceStart(f: FrameRecord, d: RequestDetail): number {
  return Number(f.tsNs - d.sessionStartNs);
}

function frameHeading(what: string, f: FrameRecord, d: RequestDetail): string {
  const dir = f.dir === 0 ? 'read from /dev/fuse' : 'written to /dev/fuse';
  const cut = f.data.length < f.len ? `, ${f.data.length} of ${f.len} bytes kept` : `, ${f.len} bytes`;
  return `${what}: frame ${f.seq}, ${dir} at ${rel(sinceStart(f, d), d.row.start_ns)}${cut}`;
}

function fieldLines(rows: Array<[string, string]>): DetailLine[] {
  const width = Math.min(44, Math.max(...rows.map(([k]) => k.length)));
  return rows.map(([k, v]) => ({ text: `  ${k.padEnd(width)}  ${v}`, color: k === 'error' ? 'red' : undefined }));
}

/** The write() of a forwarded frame failed: ENOENT means the kernel no longer waited for that unique. */
function writeNote(f: FrameRecord): DetailLine[] {
  if (f.writeErrno === 0) return [];
  const why = errnoName(f.writeErrno) === 'ENOENT' ? ' (the kernel no longer knew this unique: the request had been interrupted or aborted)' : '';
  return [{ text: `  forwarding write() failed: ${errnoName(f.writeErrno)}${why}`, color: 'yellow', bold: true }];
}

function decoded(f: FrameRecord, ctx: DecodeContext, request?: DecodedFrame, opcode?: number): { lines: DetailLine[]; frame?: DecodedFrame } {
  const r = f.dir === 0 ? decodeRequest(f.data, ctx) : decodeReply(f.data, { ...ctx, opcode, request });
  const lines: DetailLine[] = [];
  if (r.frame) lines.push({ text: `  ${formatLine(r.frame)}`, bold: true });
  lines.push(...fieldLines(formatFields(r)));
  lines.push(...writeNote(f));
  return { lines, frame: r.frame };
}

/** Every line of the pane. */
export function detailLines(d: RequestDetail): DetailLine[] {
  const r = d.row;
  const out: DetailLine[] = [];
  const st = stateColor(r.state);
  out.push({
    text: `unique ${r.unique}  ${r.op}  ${formatResult(r.errno)}  state ${r.state}${r.outcome ? ` (${r.outcome})` : ''}${r.background ? '  background' : ''}`,
    ...st,
    bold: true,
  });
  out.push({ text: `path ${r.path ?? '?'}   nodeid ${r.nodeid ?? '-'}   fh ${r.fh ?? '-'}   pid ${r.pid ?? '-'} ${r.comm ?? ''}   uid ${r.uid ?? '-'} gid ${r.gid ?? '-'}` });
  out.push(heading('timings'));
  out.push({ text: `  read       ${formatTime(r.start_ns)}s` });
  out.push({ text: `  forwarded  ${rel(r.fwd_ns, r.start_ns)}` });
  out.push({ text: `  replied    ${rel(r.reply_ns, r.start_ns)}` });
  out.push({ text: `  duration   ${formatDuration(r.dur_ns, 'us')}   request ${r.len} bytes, reply ${r.reply_len ?? '-'} bytes` });

  // The lifecycle at a glance: one line per frame, in the order the proxy saw them.
  const all: Array<[string, FrameRecord]> = [];
  if (d.request) all.push(['request', d.request]);
  for (const f of d.interrupts) all.push([f.dir === 0 ? 'INTERRUPT' : 'INTERRUPT reply', f]);
  if (d.reply) all.push(['reply', d.reply]);
  for (const f of d.others) all.push(['frame', f]);
  all.sort((a, b) => a[1].seq - b[1].seq);
  out.push(heading('frames of this request'));
  const reqFrame = d.request ? decodeRequest(d.request.data, d.protocol).frame : undefined;
  for (const [what, f] of all) {
    const ctx = { ...d.protocol, opcode: f.dir === 1 ? (what === 'INTERRUPT reply' ? INTERRUPT : r.opcode) : undefined, request: reqFrame };
    const x = f.dir === 0 ? decodeRequest(f.data, d.protocol) : decodeReply(f.data, ctx);
    const line = x.frame ? formatLine(x.frame) : `${f.len} bytes (undecodable)`;
    const failed = f.writeErrno !== 0 ? `  write ${errnoName(f.writeErrno)}` : '';
    out.push({
      text: `  +${formatDuration(sinceStart(f, d) - r.start_ns, 'us').padEnd(8)} frame ${String(f.seq).padEnd(6)} ${line}${failed}`,
      color: what.startsWith('INTERRUPT') ? 'magenta' : failed ? 'yellow' : undefined,
      bold: what.startsWith('INTERRUPT'),
    });
  }

  let request: DecodedFrame | undefined;
  if (d.request) {
    out.push(heading(frameHeading('request', d.request, d)));
    const x = decoded(d.request, d.protocol);
    request = x.frame;
    out.push(...x.lines);
  } else {
    out.push(heading('request frame not recorded'));
  }
  for (const f of d.interrupts) {
    const what = f.dir === 0 && f.opcode === INTERRUPT ? 'INTERRUPT' : 'reply to the INTERRUPT';
    out.push({ ...heading(frameHeading(what, f, d)), color: 'magenta' });
    out.push(...decoded(f, d.protocol, undefined, f.dir === 1 ? INTERRUPT : undefined).lines);
  }
  if (d.reply) {
    out.push(heading(frameHeading('reply', d.reply, d)));
    out.push(...decoded(d.reply, d.protocol, request, r.opcode).lines);
  } else if (r.state !== 'noreply' && r.state !== 'notify') {
    out.push({ ...heading('no reply recorded'), color: 'red' });
  }
  for (const f of d.others) {
    out.push({ ...heading(frameHeading('other frame on this unique', f, d)), color: 'yellow' });
    out.push(...decoded(f, d.protocol, request, f.dir === 1 ? r.opcode : undefined).lines);
  }
  for (const [what, f] of all) {
    out.push(heading(`hex: ${what} (frame ${f.seq})`));
    out.push(...hexDump(f.data, 1024).map((text) => ({ text: `  ${text}`, dim: false })));
  }
  return out;
}
