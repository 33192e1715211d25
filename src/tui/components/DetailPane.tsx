import React from 'react';
import { Box, Text } from 'ink';
import type { DetailLine } from '../detail.js';

/** The lower pane: the selected request decoded, scrolled by `scroll` lines. */
export function DetailPane({ lines, scroll, height }: { lines: DetailLine[]; scroll: number; height: number }): React.JSX.Element {
  const top = Math.max(0, Math.min(scroll, lines.length - height));
  return (
    <Box flexDirection="column" height={height} borderStyle={undefined}>
      {lines.slice(top, top + height).map((l, i) => (
        <Text key={top + i} color={l.color} bold={l.bold} dimColor={l.dim} wrap="truncate">
          {l.text}
        </Text>
      ))}
    </Box>
  );
}
