// The TUI's diff view: the reducer's diffMark flow on its own, then the App driven through
// ink-testing-library on a real trace file with two sessions of known ledger rows.
import React from 'react';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, render } from 'ink-testing-library';
import { Opcode } from '../src/protocol/index.js';
import { addSession, createFixtureDb, type FixtureDb, type FixtureRequest } from '../src/store/requests.fixture.js';
import { openTraceDb } from '../src/store/db.js';
import { TuiSource } from '../src/tui/data.js';
import { App } from '../src/tui/components/App.js';
import { initialState, reducer } from '../src/tui/state.js';

const READ = Opcode.READ!;
const LOOKUP = Opcode.LOOKUP!;
const rows = (n: number, r: FixtureRequest): FixtureRequest[] => Array.from({ length: n }, () => ({ ...r }));

let fx: FixtureDb;
let source: TuiSource;

beforeAll(() => {
  fx = createFixtureDb();
  addSession(fx.db, [...rows(4, { opcode: LOOKUP, path: '/a' }), ...rows(6, { opcode: READ, path: '/a', dur_ns: 1_000_000 })], { name: 'fast' });
  addSession(fx.db, [...rows(4, { opcode: LOOKUP, path: '/a' }), ...rows(6, { opcode: READ, path: '/a', dur_ns: 40_000_000 })], { name: 'slow' });
  fx.db.close();
  source = new TuiSource(openTraceDb(fx.file, { readonly: true }));
});
afterAll(() => {
  source.db.close();
  fx.cleanup();
});
afterEach(() => cleanup());

describe('diff in the reducer', () => {
  it('marks A, then shows A → B; d on A again clears the mark', () => {
    let s = reducer(initialState(), { type: 'diffMark', session: 1 });
    expect(s.diff).toEqual({ base: 1, pair: null, scroll: 0 });
    expect(s.message).toMatch(/session 1 is A/);
    expect(reducer(s, { type: 'diffMark', session: 1 }).diff.base).toBeNull();
    s = reducer(s, { type: 'diffMark', session: 2 });
    expect(s.view).toBe('diff');
    expect(s.diff).toEqual({ base: null, pair: { a: 1, b: 2 }, scroll: 0 });
    s = reducer(s, { type: 'move', delta: 3, max: 2 });
    expect(s.diff.scroll).toBe(2);
    s = reducer(s, { type: 'back' });
    expect(s.view).toBe('sessions');
    expect(reducer(s, { type: 'view', view: 'diff' }).view).toBe('diff');
    expect(reducer(initialState(), { type: 'view', view: 'diff' }).message).toMatch(/press d on one session/);
  });
});

const settle = (ms = 60) => new Promise((r) => setTimeout(r, ms));

describe('diff view (ink-testing-library)', () => {
  it('picks two sessions with d and shows the report, slower READs first', async () => {
    const app = render(<App source={source} columns={150} rows={30} />);
    await settle();
    const type = async (k: string) => {
      app.stdin.write(k);
      await settle(80);
      return app.lastFrame() ?? '';
    };
    let f = await type('d');
    expect(f).toContain('d: diff (A = session 1, d on B)');
    await type('j');
    f = await type('d');
    const lines = f.split('\n');
    expect(lines[1]).toBe('A 1 "fast" (session 1: 10 requests, 0 errors, 6.00ms in requests)');
    expect(lines[3]).toBe('most changed: READ +234ms (40.0x time), count 6 → 6, p99 1.00ms → 40.0ms');
    expect(lines.find((l) => /^ {2}READ /.test(l))).toMatch(/READ +6 → 6 +0 +1\.00ms → 40\.0ms/);
    expect(f).toMatch(/diff {2}A session 1 → B session 2 {2}filter: \(none\)/);
    f = await type('1');
    expect(f).toContain('started (UTC)');
    f = await type('4');
    expect(f).toContain('most changed: READ');
  });
});
