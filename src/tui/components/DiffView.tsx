import React from 'react';
import { Box, Text } from 'ink';
import type { SessionDiff } from '../../diff/diff.js';
import { diffReport, type ReportLine, type Tone } from '../../diff/report.js';

/** Ink styles of the report's tones: slower in red, faster in green, as `fusetrace diff` on a terminal. */
const STYLE: Record<Tone, { color?: string; bold?: boolean; dimColor?: boolean }> = {
  head: { bold: true, color: 'cyan' },
  title: { bold: true },
  worse: { color: 'red' },
  better: { color: 'green' },
  dim: { dimColor: true },
};

/** The diff report's lines (the same as `fusetrace diff` prints), for the scroll bounds. */
export function diffViewLines(diff: SessionDiff): ReportLine[] {
  return diffReport(diff);
}

/** Two sessions compared (picked with `d`), scrolled by `scroll` lines. */
export function DiffView({ diff, scroll, height }: { diff: SessionDiff | null; scroll: number; height: number }): React.JSX.Element {
  if (!diff) return <Box height={height + 1}><Text dimColor>computing…</Text></Box>;
  const lines = diffViewLines(diff);
  const top = Math.max(0, Math.min(scroll, lines.length - height - 1));
  return (
    <Box flexDirection="column" height={height + 1}>
      {lines.slice(top, top + height + 1).map((l, i) => (
        <Text key={top + i} {...(l.tone ? STYLE[l.tone] : {})} wrap="truncate">
          {l.text || ' '}
        </Text>
      ))}
    </Box>
  );
}
