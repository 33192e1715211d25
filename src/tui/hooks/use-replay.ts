import { useEffect, type Dispatch } from 'react';
import type { Database } from 'better-sqlite3';
import { replayFromTui } from '../replay.js';
import type { ReplayState, TuiAction } from '../state.js';

/** Runs the replay the reducer asked for (one per runId) and reports back with `replayDone`. */
export function useReplay(db: Database, session: number | null, replay: ReplayState, dispatch: Dispatch<TuiAction>): void {
  useEffect(() => {
    if (!replay.running || session === null) return;
    const runId = replay.runId;
    void replayFromTui(db, session, replay.command, replay.filter).then((r) => dispatch({ type: 'replayDone', runId, lines: r.lines, ok: r.ok }));
    // One replay per runId; the other fields belong to that run.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [replay.runId]);
}
