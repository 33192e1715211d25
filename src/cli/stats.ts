/**
 * `fusetrace stats [SESSION] [--filter EXPR] [--json]`: per-opcode counts, errors and latency
 * percentiles, errors by errno, bytes moved, the most requests in flight at once, and where the
 * time went (paths, processes). The figures come from src/store/stats.ts.
 */
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { compileUserFilter } from './show.js';
import { formatBytes, formatDuration, formatTime } from '../format.js';
import { openTraceDb } from '../store/db.js';
import { TraceReader } from '../store/reader.js';
import { stats, type SessionStats } from '../store/stats.js';

interface StatsOptions {
  filter?: string;
  json?: boolean;
  top?: string;
}

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('Per-opcode counts, errors and latency of a session')
    .argument('[session]', 'session id or name (default: the latest)')
    .option('-f, --filter <expr>', "only requests matching a filter expression, e.g. 'path ~ \"/src/**\"'")
    .option('--top <n>', 'how many paths and processes to list', '10')
    .option('--json', 'one JSON object with every figure (durations in ns, bytes in bytes)')
    .action((session: string | undefined, opts: StatsOptions, cmd: Command) => {
      const file = dbPath(cmd);
      const top = Number(opts.top);
      if (!/^\d+$/.test(opts.top ?? '') || !Number.isSafeInteger(top)) {
        throw new UserError(`--top needs a whole number, not '${opts.top}'`);
      }
      const db = openTraceDb(file, { readonly: true, complete: true });
      try {
        const reader = new TraceReader(db, file);
        const id = reader.resolveSession(session);
        const s = stats(db, id, compileUserFilter(opts.filter), { top });
        const info = reader.getSession(id);
        const loss = { dropped: info?.dropped ?? 0, lost: info?.lost ?? 0 };
        if (opts.json) process.stdout.write(`${JSON.stringify({ session: id, filter: opts.filter ?? null, ...s, ...loss })}\n`);
        else {
          process.stdout.write(render(id, opts.filter, s, process.stdout.isTTY === true && !process.env.NO_COLOR));
          // Never silent: a session that dropped frames says how many requests it cannot tell whole.
          if (loss.dropped > 0) {
            process.stdout.write(`  lost: ${loss.lost} requests whose record is incomplete (${loss.dropped} frames dropped)\n`);
          }
        }
      } finally {
        db.close();
      }
    });
}

/** Right-aligned columns after a left-aligned first one; widths from the cells (all rows are known here). */
function table(header: string[], rows: string[][], bold: (s: string) => string): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [bold(line(header)), ...rows.map(line)].map((l) => `  ${l}\n`).join('');
}

/** The human report: sections of aligned tables; bold headings only on a colour terminal. */
export function render(session: number, filter: string | undefined, s: SessionStats, colour: boolean): string {
  const bold = (t: string): string => (colour ? `\x1b[1m${t}\x1b[0m` : t);
  const pct = (n: number): string => (s.requests ? `${((100 * n) / s.requests).toFixed(1)}%` : '-');
  let out = bold(`session ${session}${filter ? `, filter ${filter}` : ''}: ${s.requests} requests, ${s.errors} errors`) + '\n';
  if (s.requests === 0) return out;
  out += `  states: ${Object.entries(s.states).map(([k, v]) => `${k} ${v}`).join(', ')}\n`;
  out += `  read ${formatBytes(s.bytes_read)}, written ${formatBytes(s.bytes_written)}; `;
  out += `most in flight: ${s.max_in_flight.count}${s.max_in_flight.at_ns !== null ? ` at ${formatTime(s.max_in_flight.at_ns)}s` : ''}\n\n`;

  const lat = (l: { answered: number; p50_ns: number | null; p90_ns: number | null; p99_ns: number | null; max_ns: number | null }): string[] => [
    String(l.answered),
    formatDuration(l.p50_ns),
    formatDuration(l.p90_ns),
    formatDuration(l.p99_ns),
    formatDuration(l.max_ns),
  ];
  const opRows = s.ops.map((o) => [o.op, String(o.requests), pct(o.requests), String(o.errors), ...lat(o)]);
  opRows.push(['(all)', String(s.requests), pct(s.requests), String(s.errors), ...lat(s.overall)]);
  out += table(['OP', 'COUNT', '%', 'ERRORS', 'ANSWERED', 'P50', 'P90', 'P99', 'MAX'], opRows, bold) + '\n';

  if (s.errnos.length > 0) {
    out += table(['ERRNO', 'COUNT'], s.errnos.map((e) => [e.err, String(e.count)]), bold) + '\n';
  }
  if (s.top_paths.length > 0) {
    out += table(['PATH', 'REQUESTS', 'TOTAL TIME'], s.top_paths.map((p) => [p.path, String(p.requests), formatDuration(p.total_ns)]), bold) + '\n';
  }
  if (s.top_procs.length > 0) {
    out += table(
      ['PROCESS', 'REQUESTS', 'TOTAL TIME'],
      s.top_procs.map((p) => [`${p.pid} ${p.comm ?? '?'}`, String(p.requests), formatDuration(p.total_ns)]),
      bold,
    );
  }
  return out;
}
