import React from 'react';
import { Box, Text } from 'ink';
import { helpRows, type KeyContext } from '../keymap.js';

/** `?`: the keymap for where the user is, read from keymap.ts. */
export function HelpView({ contexts, height }: { contexts: KeyContext[]; height: number }): React.JSX.Element {
  const rows = helpRows(contexts);
  const width = Math.max(...rows.map((r) => r.keys.length));
  return (
    <Box flexDirection="column" height={height + 1}>
      <Text bold underline>
        keys (? or Esc to close)
      </Text>
      {rows.slice(0, height).map((r, i) => (
        <Text key={i} wrap="truncate">
          <Text color="cyan">{r.keys.padEnd(width)}</Text>  {r.help}
        </Text>
      ))}
    </Box>
  );
}
