import React from 'react';
import { Box, Text } from 'ink';
import type { FilterBarState, FilterErrorState } from '../state.js';

/** The prompts; the error caret is shifted by the prompt's width so it lines up with the text. */
const PROMPTS = { filter: 'filter> ', replay: 'replay against server> ' } as const;

/** The `/` filter bar (and R's server command): the text with its cursor, and the last parse error with a caret at its column. */
export function FilterBar({ edit, error }: { edit: FilterBarState; error: FilterErrorState | null }): React.JSX.Element {
  const PROMPT = PROMPTS[edit.target];
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
      {error && edit.target === 'filter' ? (
        <Text color="red" wrap="truncate">
          {' '.repeat(PROMPT.length + Math.max(0, error.column - 1))}^ {error.message}
        </Text>
      ) : null}
    </Box>
  );
}
