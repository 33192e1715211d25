import React from 'react';
import { Box, Text } from 'ink';
import type { SessionSummary } from '../data.js';
import { fit, formatCount, formatDuration } from '../../format.js';

const header = (w: number) =>
  [fit('id', 4, 'right'), fit('name', 14), fit('started (UTC)', 19), fit('length', 8, 'right'), fit('requests', 10, 'right'), fit('errors', 7, 'right'),
    fit('intr', 6, 'right'), fit('late', 5, 'right'), fit('unans', 6, 'right'), fit('abort', 6, 'right'), fit('lost', 6, 'right'), fit('end', 12), fit('command', Math.max(8, w - 117))].join(' ');

function line(s: SessionSummary, w: number): string {
  const started = new Date(Number(s.startedWallNs / 1_000_000n)).toISOString().slice(0, 19).replace('T', ' ');
  const n = (state: string) => formatCount(s.states[state] ?? 0);
  return [
    fit(String(s.id), 4, 'right'),
    fit(s.name ?? '', 14),
    fit(started, 19),
    fit(s.durationNs === null ? 'live?' : formatDuration(s.durationNs, 'us'), 8, 'right'),
    fit(formatCount(s.requests), 10, 'right'),
    fit(n('error'), 7, 'right'),
    fit(n('interrupted'), 6, 'right'),
    fit(n('late'), 5, 'right'),
    fit(n('unanswered'), 6, 'right'),
    fit(n('aborted'), 6, 'right'),
    fit(n('lost'), 6, 'right'),
    fit(s.endReason ?? (s.durationNs === null ? 'recording' : ''), 12),
    fit(s.command + (s.mountpoint ? `  (${s.mountpoint})` : ''), Math.max(8, w - 117)),
  ].join(' ');
}

export interface SessionsViewProps {
  sessions: SessionSummary[];
  cursor: number;
  top: number;
  height: number;
  width: number;
}

/** The sessions in the file with their headline numbers; Enter opens one. */
export function SessionsView({ sessions, cursor, top, height, width }: SessionsViewProps): React.JSX.Element {
  const visible = sessions.slice(top, top + height);
  return (
    <Box flexDirection="column" height={height + 1}>
      <Text bold underline wrap="truncate">
        {header(width)}
      </Text>
      {visible.map((s, i) => {
        const trouble = (s.states.interrupted ?? 0) + (s.states.late ?? 0) + (s.states.unanswered ?? 0) + (s.states.aborted ?? 0) + (s.states.lost ?? 0);
        return (
          <Text key={s.id} inverse={top + i === cursor} color={trouble > 0 ? 'magenta' : (s.states.error ?? 0) > 0 ? 'red' : undefined} wrap="truncate">
            {line(s, width)}
          </Text>
        );
      })}
      {sessions.length === 0 ? <Text dimColor>no sessions in this file (record one with fusetrace record)</Text> : null}
    </Box>
  );
}
