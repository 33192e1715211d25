// record drops the request-duration indexes while it records and creates them again at the end
// (schema.ts DURATION_INDEX_SQL). Everything that reads requests must work in between.
import { afterEach, describe, expect, it } from 'vitest';
import { createDurationIndexes, dropDurationIndexes } from './db.js';
import { addSession, createFixtureDb, type FixtureDb } from './requests.fixture.js';
import { countRequests, queryRequests } from './query.js';
import { stats } from './stats.js';
import { TuiSource } from '../tui/data.js';

let fx: FixtureDb | undefined;
afterEach(() => fx?.cleanup());

const indexes = (f: FixtureDb) =>
  f.db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'requests_%dur' ORDER BY name").pluck().all();

describe('duration indexes dropped during a recording', () => {
  it('queries, stats and the TUI give the same answers with and without them', () => {
    fx = createFixtureDb();
    const rows = Array.from({ length: 200 }, (_, i) => ({ opcode: i % 3 === 0 ? 15 : 3, dur_ns: ((i * 7919) % 200) * 10_000 }));
    const session = addSession(fx.db, rows);
    const readSlow = (f: FixtureDb) => {
      const src = new TuiSource(f.db);
      return {
        count: countRequests(f.db, session, { filter: 'op==READ && dur>1ms' }),
        top: queryRequests(f.db, session, { filter: 'dur>500us', sort: 'dur', limit: 5 }).map((r) => r.seq),
        p99: stats(f.db, session).overall.p99_ns,
        tui: src.page(session, { filter: 'op==READ', sort: 'dur', scope: null }, 0, 5).map((r) => r.seq),
        tuiAll: src.page(session, { filter: '', sort: 'dur', scope: null }, 0, 5).map((r) => r.seq),
      };
    };
    expect(indexes(fx)).toEqual(['requests_dur', 'requests_op_dur']);
    const withIdx = readSlow(fx);
    dropDurationIndexes(fx.db);
    expect(indexes(fx)).toEqual([]);
    const without = readSlow(fx);
    expect(without).toEqual(withIdx);
    expect(withIdx.count).toBeGreaterThan(0);
    expect(withIdx.p99).toBeGreaterThan(0);
    expect(withIdx.top).toHaveLength(5);
    expect(createDurationIndexes(fx.db)).toBe(true);
    expect(indexes(fx)).toEqual(['requests_dur', 'requests_op_dur']);
    expect(createDurationIndexes(fx.db)).toBe(false);
  });
});
