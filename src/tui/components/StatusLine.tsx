import React from 'react';
import { Text } from 'ink';
import { fit, formatCount } from '../../format.js';

export interface StatusLineProps {
  width: number;
  left: string;
  right: string;
  message: string | null;
  error?: string | null;
}

/** The bottom line: what is shown (filter, counts, position), and the last message or error. */
export function StatusLine({ width, left, right, message, error }: StatusLineProps): React.JSX.Element {
  const note = error ?? message;
  const noteText = note ? ` ${note} ` : '';
  const l = fit(left, Math.max(0, width - right.length - noteText.length - 1));
  return (
    <Text wrap="truncate">
      <Text inverse>{l} </Text>
      {note ? (
        <Text color={error ? 'red' : 'yellow'} bold>
          {noteText}
        </Text>
      ) : null}
      <Text inverse>{right}</Text>
    </Text>
  );
}

/** `row 12 of 1,000,000` (with `+ counting…` while the total is still growing). */
export function position(cursor: number, total: number, counting: boolean): string {
  if (total === 0) return counting ? 'counting…' : 'no rows';
  return `row ${formatCount(cursor + 1)} of ${formatCount(total)}${counting ? '+ counting…' : ''}`;
}
