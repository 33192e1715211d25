import React from 'react';
import { Box, Text } from 'ink';
import type { ReplayState } from '../state.js';

/** The report of the last replay started with R (or that one is running). */
export function ReplayView({ replay, height }: { replay: ReplayState; height: number }): React.JSX.Element {
  if (replay.running || !replay.lines) {
    return (
      <Box flexDirection="column" height={height + 1}>
        <Text color="cyan">replaying against {replay.command}{replay.filter ? ` (comparing ${replay.filter})` : ''}…</Text>
      </Box>
    );
  }
  const top = Math.max(0, Math.min(replay.scroll, replay.lines.length - height - 1));
  return (
    <Box flexDirection="column" height={height + 1}>
      {replay.lines.slice(top, top + height + 1).map((l, i) => (
        <Text
          key={top + i}
          wrap="truncate"
          bold={l.startsWith('result:') || l.startsWith('first divergence')}
          color={l.startsWith('result:') ? (replay.ok ? 'green' : 'red') : l.startsWith('  !') ? 'red' : undefined}
        >
          {l || ' '}
        </Text>
      ))}
    </Box>
  );
}
