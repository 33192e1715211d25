/**
 * How fusetrace writes numbers and states for people, in the CLI's tables and the TUI alike:
 * times, durations, sizes, counts, request results, lifecycle state colours, column fitting and hex
 * dumps. Names of opcodes, flags and errnos come from src/protocol (the one table of each).
 */
import { errnoName } from './protocol/index.js';

/** ns since session start as seconds with microseconds: `12.345678`. */
export function formatTime(ns: number): string {
  return (ns / 1e9).toFixed(6);
}

/**
 * A duration in the unit that keeps 3 significant figures: `812ns`, `14.2µs`, `3.07ms`, `1.25s`.
 * `micro` spells the microsecond: the CLI writes `µs`; the TUI writes `us`, as its filter bar
 * takes durations (`dur>40us`).
 */
export function formatDuration(ns: number | null, micro: 'µs' | 'us' = 'µs'): string {
  if (ns === null) return '-';
  for (const [scale, unit] of [[1e9, 's'], [1e6, 'ms'], [1e3, micro]] as const) {
    if (ns >= scale) return `${threeFigures(ns / scale)}${unit}`;
  }
  return `${Math.round(ns)}ns`;
}

/** Bytes in binary units: `512B`, `4.00KiB`, `1.50MiB`, `2.25GiB`. */
export function formatBytes(n: number): string {
  for (const [scale, unit] of [[2 ** 40, 'TiB'], [2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']] as const) {
    if (n >= scale) return `${threeFigures(n / scale)}${unit}`;
  }
  return `${n}B`;
}

/** 1.23, 12.3, 123: three significant figures for a value of at least 1. */
function threeFigures(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** How long a session lasted, to the second once it is long: `850ms`, `12.3s`, `4m05s`, `2h03m`. */
export function formatSessionLength(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A wall-clock time (ns since the Unix epoch) as YYYY-MM-DD HH:MM:SS in the local time zone. */
export function formatLocalTime(wallNs: bigint): string {
  const d = new Date(Number(wallNs / 1_000_000n));
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Thousands separators: `1,000,000`. */
export function formatCount(n: number): string {
  // Not toLocaleString: it is slow enough to show up when the status line is redrawn per chunk.
  return String(Math.trunc(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A request's result: `OK`, the errno's name, or `-` without a reply. */
export function formatResult(errno: number | null): string {
  if (errno === null) return '-';
  return errno === 0 ? 'OK' : errnoName(errno);
}

/** How a lifecycle state is drawn, in Ink's terms (colour names of chalk). */
export interface StateStyle {
  color?: 'red' | 'magenta' | 'yellow' | 'redBright' | 'cyan';
  bold?: boolean;
  dim?: boolean;
}

/** The style of each lifecycle state (schema.ts requests.state): what went wrong stands out. */
const STATE_STYLES: Readonly<Record<string, StateStyle>> = {
  error: { color: 'red' },
  interrupted: { color: 'magenta', bold: true },
  late: { color: 'yellow', bold: true },
  unanswered: { color: 'redBright', bold: true },
  aborted: { color: 'red', bold: true },
  noreply: { dim: true },
  notify: { dim: true },
  unknown: { color: 'cyan' },
  lost: { color: 'yellow', dim: true },
};

/** The style of a lifecycle state for Ink (`<Text {...stateColor(s)}>`); ok and unknown names draw plain. */
export function stateColor(state: string): StateStyle {
  return STATE_STYLES[state] ?? {};
}

/** SGR codes of StateStyle's colours (ECMA-48). */
const SGR_COLOUR: Record<NonNullable<StateStyle['color']>, string> = { red: '31', magenta: '35', yellow: '33', redBright: '91', cyan: '36' };

/** `text` in the lifecycle state's style as ANSI escapes, for a terminal; unchanged when the state draws plain. */
export function paintState(text: string, state: string): string {
  const st = stateColor(state);
  const codes = [st.bold ? '1' : '', st.dim ? '2' : '', st.color ? SGR_COLOUR[st.color] : ''].filter(Boolean);
  return codes.length === 0 ? text : `\x1b[${codes.join(';')}m${text}\x1b[0m`;
}

/** Pads or cuts `s` to exactly `width` columns (cut text ends with `…`). */
export function fit(s: string, width: number, align: 'left' | 'right' = 'left'): string {
  if (width <= 0) return '';
  if (s.length > width) return width === 1 ? '…' : s.slice(0, width - 1) + '…';
  return align === 'left' ? s.padEnd(width) : s.padStart(width);
}

/** Like fit, but cuts from the left: the end of a path says more than its start. */
export function fitLeft(s: string, width: number): string {
  if (width <= 0) return '';
  if (s.length > width) return '…' + s.slice(s.length - width + 1);
  return s.padEnd(width);
}

/** A classic hex dump: offset, 16 bytes in two groups of 8, printable ASCII. */
export function hexDump(buf: Buffer, maxBytes = 4096): string[] {
  const lines: string[] = [];
  const n = Math.min(buf.length, maxBytes);
  for (let off = 0; off < n; off += 16) {
    const chunk = buf.subarray(off, Math.min(off + 16, n));
    let hex = '';
    for (let i = 0; i < 16; i++) {
      hex += i < chunk.length ? chunk[i]!.toString(16).padStart(2, '0') + ' ' : '   ';
      if (i === 7) hex += ' ';
    }
    const ascii = [...chunk].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  if (buf.length > n) lines.push(`... ${buf.length - n} more bytes`);
  return lines;
}

/** A request outstanding this long in a live session is flagged as hung (the same default as `fusetrace hang`). */
export const HUNG_AFTER_NS = 5e9;

/**
 * The duration and state cells of a TUI row in a live session: an `unanswered` request shows its
 * age so far (`2.50s+`), and `HUNG` once it has waited HUNG_AFTER_NS. Other rows, or no live clock
 * (`nowNs` undefined: a finished session), show their recorded values.
 */
export function liveCells(r: { state: string; outcome: string | null; start_ns: number; dur_ns: number | null }, nowNs: number | undefined): { dur: string; state: string } {
  const recorded = { dur: formatDuration(r.dur_ns, 'us'), state: r.outcome ? `${r.state} (${r.outcome})` : r.state };
  if (nowNs === undefined || r.state !== 'unanswered') return recorded;
  const age = Math.max(0, nowNs - r.start_ns);
  return { dur: `${formatDuration(age, 'us')}+`, state: age >= HUNG_AFTER_NS ? `HUNG ${formatDuration(age, 'us')}` : r.state };
}
