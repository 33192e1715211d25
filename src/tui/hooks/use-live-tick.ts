import { useEffect, useState } from 'react';

/** How often live mode (`record --tui`) re-reads counts and the rows on screen. */
export const LIVE_REFRESH_MS = 1000;

/**
 * A counter that increments every LIVE_REFRESH_MS while `live` is set: data hooks list it as a
 * dependency, so a recording being written is re-read on a timer. Always 0 when not live.
 */
export function useLiveTick(live: boolean, intervalMs = LIVE_REFRESH_MS): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!live) return;
    const t = setInterval(() => setTick((n) => n + 1), intervalMs);
    return () => clearInterval(t);
  }, [live, intervalMs]);
  return tick;
}
