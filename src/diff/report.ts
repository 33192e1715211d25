/**
 * The human form of a diff, as lines with a tone: `fusetrace diff` prints them (colour on a
 * terminal, plain in a pipe) and the TUI's diff view draws them, so both say the same thing.
 */
import { formatDuration } from '../format.js';
import { delta, ratio, type Change, type SessionDiff, type TimeDiff } from './diff.js';

/** head: a heading; worse / better: B is slower or has more errors / the reverse. */
export type Tone = 'head' | 'title' | 'worse' | 'better' | 'dim';

export interface ReportLine {
  text: string;
  tone?: Tone;
}

export interface ReportLimits {
  /** Most opcode rows (the rest is counted in one line). */
  ops?: number;
  /** Most rows of each of errors, paths and processes. */
  rows?: number;
}

/** A factor: `1.00x`, `12.5x`, `673x`, `∞x`; `-` when undefined. */
export function formatFactor(r: number | null): string {
  if (r === null) return '-';
  if (r === Infinity) return '∞x';
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

/** A signed duration: `+2.01s`, `-45.0µs`, `0`. */
export function formatDurationChange(ns: number): string {
  if (ns === 0) return '0';
  return `${ns > 0 ? '+' : '-'}${formatDuration(Math.abs(ns))}`;
}

function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}

function arrow(c: Change, f: (v: number | null) => string): string {
  return `${f(c.a)} → ${f(c.b)}`;
}

/** worse when B took 10% more time than A (or appeared), better when 10% less. */
function toneOf(c: Change): Tone | undefined {
  const r = ratio(c);
  if (r === null || delta(c) === 0) return undefined;
  return r > 1.1 ? 'worse' : r < 1 / 1.1 ? 'better' : undefined;
}

/** Left-aligned first column, the others right-aligned, two spaces apart. */
function table(header: string[], rows: Array<{ cells: string[]; tone?: Tone }>): ReportLine[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r.cells[i]!.length)));
  const line = (cells: string[]): string => '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [{ text: line(header), tone: 'head' }, ...rows.map((r) => ({ text: line(r.cells), tone: r.tone }))];
}

/** The first line: both sides. */
function sideText(s: SessionDiff['a']): string {
  return `${s.label} (session ${s.session}: ${s.requests} requests, ${s.errors} errors, ${formatDuration(s.time_ns)} in requests)`;
}

/** One sentence on what changed most, for the top of the report. */
export function headline(d: SessionDiff): ReportLine {
  const o = d.ops[0];
  if (!o || (delta(o.time_ns) === 0 && delta(o.count) === 0)) return { text: 'no change in requests or time per opcode', tone: 'title' };
  const parts = [`${o.op} ${formatDurationChange(delta(o.time_ns))} (${formatFactor(ratio(o.time_ns))} time)`];
  parts.push(`count ${arrow(o.count, String)}`);
  if (o.p99_ns.a !== null || o.p99_ns.b !== null) parts.push(`p99 ${arrow(o.p99_ns, formatDuration)}`);
  return { text: `most changed: ${parts.join(', ')}`, tone: toneOf(o.time_ns) ?? 'title' };
}

/** The report; `limits` keeps it to one screen on a terminal, none prints everything. */
export function diffReport(d: SessionDiff, limits: ReportLimits = {}): ReportLine[] {
  const out: ReportLine[] = [
    { text: `A ${sideText(d.a)}`, tone: 'title' },
    { text: `B ${sideText(d.b)}`, tone: 'title' },
    headline(d),
    { text: '' },
  ];
  const ops = d.ops.slice(0, limits.ops ?? d.ops.length);
  out.push(
    ...table(
      ['OP', 'COUNT A → B', 'Δ', 'P50 A → B', 'P99 A → B', 'P99 ×', 'TIME A → B', 'ΔTIME', 'TIME ×'],
      ops.map((o) => ({
        cells: [o.op, arrow(o.count, String), signed(delta(o.count)), arrow(o.p50_ns, formatDuration), arrow(o.p99_ns, formatDuration), formatFactor(ratio(o.p99_ns)),
          arrow(o.time_ns, formatDuration), formatDurationChange(delta(o.time_ns)), formatFactor(ratio(o.time_ns))],
        tone: toneOf(o.time_ns),
      })),
    ),
  );
  if (d.ops.length > ops.length) out.push({ text: `  (${d.ops.length - ops.length} more opcodes; --json or a pipe shows all)`, tone: 'dim' });

  const rows = limits.rows ?? Infinity;
  if (d.errors.length > 0) {
    out.push({ text: '' });
    out.push(...table(['ERRORS', 'OP', 'ERRNO', 'A → B'], d.errors.slice(0, rows).map((e) => ({
      cells: [e.kind, e.op, e.err, `${e.a} → ${e.b}`],
      tone: e.b > e.a ? 'worse' : 'better',
    }))));
  }
  // The ratios that changed, the largest change (as a factor either way) first.
  const size = (m: Change): number => {
    const r = ratio(m);
    return r === null ? -1 : r === 0 || r === Infinity ? Infinity : Math.abs(Math.log(r));
  };
  const amp = d.amplification
    .filter((m) => m.a === null || m.b === null || Math.abs((m.b - m.a) / Math.max(Math.abs(m.a), 1e-9)) > 0.005)
    .sort((x, y) => size(y) - size(x))
    .slice(0, rows);
  if (amp.length > 0) {
    out.push({ text: '' });
    const num = (v: number | null): string => (v === null ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(2));
    out.push(...table(['AMPLIFICATION', 'A → B', '×'], amp.map((m) => ({ cells: [`${m.label} (${m.name})`, arrow(m, num), formatFactor(ratio(m))], tone: toneOf(m) }))));
    if (d.dirents_partial) out.push({ text: '  (some directory listings were cut by --snaplen: entries counted as far as recorded)', tone: 'dim' });
  }
  for (const [title, list] of [['PATH', d.paths], ['PROCESS', d.processes]] as const) {
    if (list.length === 0) continue;
    out.push({ text: '' });
    out.push(...timeTable(title, list.slice(0, rows)));
  }
  return out;
}

function timeTable(title: string, list: TimeDiff[]): ReportLine[] {
  return table([title, 'REQUESTS A → B', 'TIME A → B', 'ΔTIME'], list.map((t) => ({
    cells: [t.key, arrow(t.requests, String), arrow(t.time_ns, formatDuration), formatDurationChange(delta(t.time_ns))],
    tone: toneOf(t.time_ns),
  })));
}
