import React from 'react';
import { Box, Text } from 'ink';
import type { RequestRow } from '../../store/query.js';
import { fit, fitLeft, formatResult, formatTime, liveCells, stateColor } from '../../format.js';

/** Fixed column widths; the path takes what is left. */
const COLS = { time: 11, unique: 9, op: 12, proc: 22, dur: 8, result: 10, state: 22 };
const FIXED = Object.values(COLS).reduce((a, b) => a + b, 0) + 8;

function cells(width: number, r: { time: string; unique: string; op: string; path: string; proc: string; dur: string; result: string; state: string }): string {
  const pathWidth = Math.max(8, width - FIXED);
  return [
    fit(r.time, COLS.time, 'right'),
    fit(r.unique, COLS.unique, 'right'),
    fit(r.op, COLS.op),
    fitLeft(r.path, pathWidth),
    fit(r.proc, COLS.proc),
    fit(r.dur, COLS.dur, 'right'),
    fit(r.result, COLS.result),
    fit(r.state, COLS.state),
  ].join(' ');
}

export interface RequestTableProps {
  rows: RequestRow[];
  /** Index of rows[0] in the list. */
  top: number;
  cursor: number;
  height: number;
  width: number;
  /** ns since the session's start, while it is being recorded: outstanding requests show their age, and HUNG past a threshold. */
  liveNowNs?: number;
}

/** The requests table: one line per request, coloured by lifecycle state, the selection inverted. */
export function RequestTable({ rows, top, cursor, height, width, liveNowNs }: RequestTableProps): React.JSX.Element {
  const header = cells(width, { time: 'time s', unique: 'unique', op: 'op', path: 'path', proc: 'pid comm', dur: 'dur', result: 'result', state: 'state' });
  return (
    <Box flexDirection="column" height={height + 1}>
      <Text bold underline wrap="truncate">
        {header}
      </Text>
      {rows.slice(0, height).map((r, i) => {
        const live = liveCells(r, liveNowNs);
        const line = cells(width, {
          time: formatTime(r.start_ns),
          unique: String(r.unique),
          op: r.op,
          path: r.path ?? (r.nodeid !== null && r.nodeid !== 0 ? `<nodeid ${r.nodeid}>` : ''),
          proc: r.pid === null ? '' : `${r.pid} ${r.comm ?? ''}`,
          dur: live.dur,
          result: formatResult(r.errno),
          state: live.state,
        });
        const selected = top + i === cursor;
        return (
          <Text key={r.seq} {...stateColor(r.state)} inverse={selected} wrap="truncate">
            {line}
          </Text>
        );
      })}
      {rows.length === 0 ? <Text dimColor>no requests match</Text> : null}
    </Box>
  );
}
