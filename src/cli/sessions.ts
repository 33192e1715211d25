import type { Command } from 'commander';
import { openTraceDb } from '../store/db.js';
import { TraceReader, type RequestCounts, type SessionInfo } from '../store/reader.js';
import { dbPath } from './options.js';
import { formatLocalTime, formatSessionLength } from '../format.js';

/** Width the command column is cut to in a terminal; pipes and --json get it whole. */
const COMMAND_WIDTH = 48;

export function registerSessions(program: Command): void {
  program
    .command('sessions')
    .description('List the sessions in the trace file')
    .option('--json', 'one JSON object per session and line')
    .action((opts: { json?: boolean }, cmd: Command) => {
      const path = dbPath(cmd);
      const db = openTraceDb(path, { readonly: true, complete: true });
      try {
        listSessions(new TraceReader(db, path), !!opts.json, process.stdout);
      } finally {
        db.close();
      }
    });
}

/** One listed session: the row plus what the ledger knows about its requests. */
interface Listed {
  s: SessionInfo;
  durationNs: bigint;
  ended: boolean;
  counts: RequestCounts;
}

function listSessions(reader: TraceReader, json: boolean, out: NodeJS.WriteStream): void {
  const listed: Listed[] = reader.listSessions().map((s) => {
    const d = reader.duration(s);
    return { s, durationNs: d.ns, ended: d.ended, counts: reader.requestCounts(s.id) };
  });
  if (json) {
    for (const l of listed) out.write(`${JSON.stringify(toJson(l))}\n`);
    if (listed.length === 0) process.stderr.write(`fusetrace: no sessions in ${reader.label} yet\n`);
    return;
  }
  if (listed.length === 0) {
    out.write(`no sessions in ${reader.label} yet; record one with: fusetrace record -- SERVER ARGS... MOUNTPOINT\n`);
    return;
  }
  const tty = out.isTTY === true;
  const header = ['ID', 'NAME', 'START', 'DURATION', 'COMMAND', 'REQUESTS', 'ERRORS', 'INTERRUPTED', 'UNANSWERED', 'LOST'];
  const rows = listed.map((l) => [
    String(l.s.id),
    l.s.name ?? '-',
    formatLocalTime(l.s.startedWallNs),
    // A session without an end was still recording or its recorder was killed: "+" = at least.
    formatSessionLength(l.durationNs) + (l.ended ? '' : '+'),
    truncate(shellJoin(l.s.command), tty ? COMMAND_WIDTH : Infinity),
    String(l.counts.requests),
    String(l.counts.errors),
    String(l.counts.interrupted),
    String(l.counts.unanswered),
    String(Math.max(l.s.lost, l.counts.lost)),
  ]);
  if (!tty) {
    // For pipes: tab-separated, whole values, no colour, so that cut/awk see one field per column.
    for (const r of [header, ...rows]) out.write(`${r.join('\t')}\n`);
    return;
  }
  const numeric = new Set([0, 5, 6, 7, 8, 9]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string =>
    r.map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd();
  const colour = !process.env.NO_COLOR;
  out.write(`${colour ? `\x1b[1m${line(header)}\x1b[0m` : line(header)}\n`);
  for (const r of rows) out.write(`${line(r)}\n`);
}

function toJson(l: Listed): Record<string, unknown> {
  const { s, counts } = l;
  return {
    id: s.id,
    name: s.name,
    start: new Date(Number(s.startedWallNs / 1_000_000n)).toISOString(),
    startedWallNs: s.startedWallNs.toString(),
    durationNs: l.durationNs.toString(),
    ended: l.ended,
    command: s.command,
    mountpoint: s.mountpoint,
    endReason: s.endReason,
    exitStatus: s.exitStatus,
    frames: s.frames,
    bytes: s.bytes,
    dropped: s.dropped,
    ...counts,
    // Requests whose record is incomplete: rows in state lost plus those of which nothing was kept.
    lost: Math.max(s.lost, counts.lost),
  };
}

/** argv as a shell would need it typed: words with specials in single quotes. */
function shellJoin(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function truncate(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, width - 3)}...`;
}
