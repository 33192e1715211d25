import React from 'react';
import { Box, Text } from 'ink';
import type { SessionStats } from '../../store/stats.js';
import type { HistogramBucket, TimelineBucket } from '../data.js';
import { fit, formatCount, formatDuration, formatTime } from '../../format.js';

export interface StatsData {
  stats: SessionStats;
  histogram: HistogramBucket[];
  timeline: TimelineBucket[];
}

interface Line {
  text: string;
  color?: string;
  bold?: boolean;
}

const SPARKS = ' ▁▂▃▄▅▆▇█';

/** One character per value, scaled to the largest: a sparkline. */
export function sparkline(values: number[]): string {
  const max = Math.max(1, ...values);
  return values.map((v) => SPARKS[v === 0 ? 0 : Math.max(1, Math.round((v / max) * (SPARKS.length - 1)))]).join('');
}

/** The stats view's lines: per-opcode table, latency histogram, timeline of rate and in-flight. */
export function statsLines(d: StatsData, width: number): Line[] {
  const s = d.stats;
  const out: Line[] = [];
  const states = Object.entries(s.states).map(([k, v]) => `${k} ${formatCount(v)}`).join('  ');
  out.push({ text: `${formatCount(s.requests)} requests, ${formatCount(s.errors)} errors   ${states}`, bold: true });
  out.push({
    text: `max in flight ${s.max_in_flight.count}${s.max_in_flight.at_ns !== null ? ` at ${formatTime(s.max_in_flight.at_ns)}s` : ''}   read ${formatCount(s.bytes_read)} B   written ${formatCount(s.bytes_written)} B`,
  });
  out.push({ text: '' });
  const hdr = [fit('op', 16), fit('requests', 10, 'right'), fit('errors', 8, 'right'), fit('p50', 9, 'right'), fit('p90', 9, 'right'), fit('p99', 9, 'right'), fit('max', 9, 'right')].join(' ');
  out.push({ text: hdr, bold: true, color: 'cyan' });
  const opLine = (name: string, requests: number, errors: number, l: { p50_ns: number | null; p90_ns: number | null; p99_ns: number | null; max_ns: number | null }) =>
    [fit(name, 16), fit(formatCount(requests), 10, 'right'), fit(formatCount(errors), 8, 'right'), fit(formatDuration(l.p50_ns, 'us'), 9, 'right'), fit(formatDuration(l.p90_ns, 'us'), 9, 'right'), fit(formatDuration(l.p99_ns, 'us'), 9, 'right'), fit(formatDuration(l.max_ns, 'us'), 9, 'right')].join(' ');
  for (const o of s.ops) out.push({ text: opLine(o.op, o.requests, o.errors, o), color: o.errors > 0 ? 'red' : undefined });
  out.push({ text: opLine('all', s.requests, s.errors, s.overall), bold: true });
  if (s.errnos.length) out.push({ text: `errors: ${s.errnos.map((e) => `${e.err} ${formatCount(e.count)}`).join('  ')}`, color: 'red' });

  out.push({ text: '' });
  out.push({ text: 'latency histogram (requests with a reply)', bold: true, color: 'cyan' });
  const maxCount = Math.max(1, ...d.histogram.map((b) => b.count));
  const barWidth = Math.max(10, width - 32);
  for (const b of d.histogram) {
    const bar = '█'.repeat(Math.round((b.count / maxCount) * barWidth)) || (b.count > 0 ? '▏' : '');
    out.push({ text: `${fit(`${formatDuration(b.loNs, 'us')}-${formatDuration(b.hiNs, 'us')}`, 15, 'right')} ${fit(formatCount(b.count), 9, 'right')} ${bar}` });
  }

  out.push({ text: '' });
  if (d.timeline.length) {
    const first = d.timeline[0]!;
    const last = d.timeline[d.timeline.length - 1]!;
    const step = d.timeline.length > 1 ? d.timeline[1]!.startNs - first.startNs : 0;
    out.push({ text: `timeline ${formatTime(first.startNs)}s .. ${formatTime(last.startNs + step)}s, ${formatDuration(step, 'us')} per column`, bold: true, color: 'cyan' });
    const maxRate = Math.max(...d.timeline.map((b) => b.started));
    const maxFlight = Math.max(...d.timeline.map((b) => b.inFlight));
    out.push({ text: `rate      ${sparkline(d.timeline.map((b) => b.started))} max ${formatCount(maxRate)}/col` });
    out.push({ text: `in flight ${sparkline(d.timeline.map((b) => b.inFlight))} max ${formatCount(maxFlight)}` });
  }
  return out;
}

/** The stats view, scrolled by `scroll` lines. */
export function StatsView({ data, scroll, height, width }: { data: StatsData | null; scroll: number; height: number; width: number }): React.JSX.Element {
  if (!data) return <Box height={height + 1}><Text dimColor>computing…</Text></Box>;
  const lines = statsLines(data, width);
  const top = Math.max(0, Math.min(scroll, lines.length - height - 1));
  return (
    <Box flexDirection="column" height={height + 1}>
      {lines.slice(top, top + height + 1).map((l, i) => (
        <Text key={top + i} color={l.color} bold={l.bold} wrap="truncate">
          {l.text}
        </Text>
      ))}
    </Box>
  );
}
