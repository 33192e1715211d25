import { useEffect, useMemo, useState, type Dispatch } from 'react';
import { FilterError } from '../../store/filter.js';
import type { RequestRow } from '../../store/query.js';
import type { ListQuery, TuiSource } from '../data.js';
import type { TuiAction } from '../state.js';

/** Longest stretch of counting between two chances for keys and paints. */
const SLICE_MS = 40;
/** Least time between two paints of a running total. */
const PARTIAL_MS = 200;

export interface RequestList {
  /** The rows on screen, from `top`. */
  rows: RequestRow[];
  /** The total is still being counted (it grows as chunks are counted). */
  counting: boolean;
  /** A filter or read error to show in the status line. */
  error: string | null;
}

/**
 * The requests on screen, read from SQLite one screen at a time, and the list's length counted in
 * chunks between renders (TuiSource.countSteps), so the first rows of a new filter show at once
 * and the UI stays responsive while a million rows are counted. `tick` (live mode) re-reads both.
 */
export function useRequestList(
  source: TuiSource,
  session: number | null,
  q: ListQuery,
  top: number,
  rowCount: number,
  total: number,
  tick: number,
  dispatch: Dispatch<TuiAction>,
): RequestList {
  const [counting, setCounting] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const key = `${q.filter}\u0000${q.sort}\u0000${q.scope ? q.scope.atNs : ''}`;

  useEffect(() => {
    if (session === null) return;
    let cancelled = false;
    let timer: NodeJS.Immediate | undefined;
    let steps: Generator<{ total: number; done: boolean }>;
    try {
      steps = source.countSteps(session, q);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      return;
    }
    setError(null);
    setCounting(true);
    let shown = Date.now();
    // Count chunk after chunk for up to SLICE_MS, then yield so keys and paints get through; show
    // the running total at most every PARTIAL_MS (every paint redraws the whole screen).
    const step = () => {
      if (cancelled) return;
      const sliceEnd = Date.now() + SLICE_MS;
      try {
        for (;;) {
          const r = steps.next();
          if (r.done || r.value.done) {
            if (!r.done) dispatch({ type: 'setTotal', list: 'requests', total: r.value.total });
            setCounting(false);
            return;
          }
          if (Date.now() - shown >= PARTIAL_MS) {
            shown = Date.now();
            dispatch({ type: 'setTotal', list: 'requests', total: r.value.total, partial: true });
          }
          if (Date.now() >= sliceEnd) break;
        }
      } catch (err) {
        setError(err instanceof FilterError || err instanceof Error ? err.message : String(err));
        setCounting(false);
        return;
      }
      timer = setImmediate(step);
    };
    step();
    return () => {
      cancelled = true;
      if (timer) clearImmediate(timer);
    };
    // q is captured through key; source and dispatch are stable.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [source, session, key, tick]);

  const rows = useMemo(() => {
    if (session === null || rowCount <= 0) return [];
    try {
      return source.page(session, q, top, rowCount, counting ? undefined : total);
    } catch {
      return [];
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [source, session, key, top, rowCount, counting ? -1 : total, tick]);

  return { rows, counting, error };
}
