import React from 'react';
import { Box, Text } from 'ink';
import type { FilterBarState, FilterErrorState } from '../state.js';

/** Width of the `filter> ` prompt, so the error caret lines up with the text. */
const PROMPT = 'filter> ';

/** The `/` filter bar: the text with its cursor, and the last parse error with a caret at its column. */
export function FilterBar({ edit, error }: { edit: FilterBarState; error: FilterErrorState | null }): React.JSX.Element {
  const before = edit.text.slice(0, edit.cursor);
  const at = edit.text[edit.cursor] ?? ' ';
  const after = edit.text.slice(edit.cursor + 1);
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        <Text color="cyan" bold>
          {PROMPT}
        </Text>
        {before}
        <Text inverse>{at}</Text>
        {after}
      </Text>
      {error ? (
        <Text color="red" wrap="truncate">
          {' '.repeat(PROMPT.length + Math.max(0, error.column - 1))}^ {error.message}
        </Text>
      ) : null}
    </Box>
  );
}
