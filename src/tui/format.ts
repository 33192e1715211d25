/**
 * Text formatting shared by the TUI's components: times, durations, states and their colours,
 * column padding and hex dumps. Names and errnos come from src/protocol (the one table of each).
 */
import { errnoName } from '../protocol/index.js';

/** ns since session start as seconds with microseconds: `12.345678`. */
export function formatTime(ns: number): string {
  return (ns / 1e9).toFixed(6);
}

/** A duration in the unit that keeps 3 significant figures: `812ns`, `14.2us`, `3.07ms`, `1.25s`. */
export function formatDur(ns: number | null): string {
  if (ns === null) return '-';
  const units: Array<[number, string]> = [[1e9, 's'], [1e6, 'ms'], [1e3, 'us']];
  for (const [scale, unit] of units) {
    if (ns >= scale) {
      const v = ns / scale;
      return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)}${unit}`;
    }
  }
  return `${Math.round(ns)}ns`;
}

/** The result column: `OK`, the errno's name, or `-` without a reply. */
export function formatResult(errno: number | null): string {
  if (errno === null) return '-';
  return errno === 0 ? 'OK' : errnoName(errno);
}

/** Ink colour of a lifecycle state (schema.ts requests.state): what went wrong stands out. */
export function stateColor(state: string): { color?: string; bold?: boolean; dim?: boolean } {
  switch (state) {
    case 'error':
      return { color: 'red' };
    case 'interrupted':
      return { color: 'magenta', bold: true };
    case 'late':
      return { color: 'yellow', bold: true };
    case 'unanswered':
      return { color: 'redBright', bold: true };
    case 'aborted':
      return { color: 'red', bold: true };
    case 'noreply':
    case 'notify':
      return { dim: true };
    case 'unknown':
      return { color: 'cyan' };
    default:
      return {};
  }
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

/** Thousands separators: `1,000,000`. */
export function formatCount(n: number): string {
  // Not toLocaleString: it is slow enough to show up when the status line is redrawn per chunk.
  return String(Math.trunc(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A request outstanding this long in a live session is flagged as hung (the same default as `fusetrace hang`). */
export const HUNG_AFTER_NS = 5e9;

/**
 * The duration and state cells of a row in a live session: an `unanswered` request shows its age
 * so far (`2.01s+`), and `HUNG` once it has waited HUNG_AFTER_NS. Other rows, or no live clock
 * (`nowNs` undefined: a finished session), show their recorded values.
 */
export function liveCells(r: { state: string; outcome: string | null; start_ns: number; dur_ns: number | null }, nowNs: number | undefined): { dur: string; state: string } {
  const recorded = { dur: formatDur(r.dur_ns), state: r.outcome ? `${r.state} (${r.outcome})` : r.state };
  if (nowNs === undefined || r.state !== 'unanswered') return recorded;
  const age = Math.max(0, nowNs - r.start_ns);
  return { dur: `${formatDur(age)}+`, state: age >= HUNG_AFTER_NS ? `HUNG ${formatDur(age)}` : r.state };
}
