import { describe, expect, it } from 'vitest';
import { effectiveFilter, initialState, reducer, tableRows, type TuiAction, type TuiState } from './state.js';

const run = (s: TuiState, ...actions: TuiAction[]): TuiState => actions.reduce(reducer, s);
const withRows = (total: number, pageRows = 10): TuiState =>
  run(initialState({ session: 1, pageRows }), { type: 'setTotal', list: 'requests', total });

describe('tui reducer', () => {
  it('starts in the sessions view without a session, in the requests view with one', () => {
    expect(initialState().view).toBe('sessions');
    expect(initialState({ session: 3 }).view).toBe('requests');
    expect(reducer(initialState(), { type: 'view', view: 'stats' }).message).toMatch(/open a session/);
  });

  it('moves the cursor inside the list and keeps it on screen', () => {
    let s = withRows(100);
    s = run(s, { type: 'move', delta: 1 }, { type: 'move', delta: 1 });
    expect(s.requests.cursor).toBe(2);
    s = run(s, { type: 'move', delta: -5 });
    expect(s.requests.cursor).toBe(0);
    s = run(s, { type: 'move', delta: 15 });
    expect(s.requests).toMatchObject({ cursor: 15, top: 6 });
    s = run(s, { type: 'end' });
    expect(s.requests).toMatchObject({ cursor: 99, top: 90 });
    s = run(s, { type: 'page', direction: -1 });
    expect(s.requests).toMatchObject({ cursor: 94, top: 85 });
    s = run(s, { type: 'home' });
    expect(s.requests).toMatchObject({ cursor: 0, top: 0 });
  });

  it('clamps the cursor when the list shrinks, but not to a running count', () => {
    let s = run(withRows(100), { type: 'move', delta: 50 });
    s = run(s, { type: 'setTotal', list: 'requests', total: 20, partial: true });
    expect(s.requests).toMatchObject({ cursor: 50, total: 20 });
    s = run(s, { type: 'setTotal', list: 'requests', total: 20 });
    expect(s.requests).toMatchObject({ cursor: 19, top: 10 });
  });

  it('edits the filter with a cursor; a bad filter keeps the bar open with the error column', () => {
    let s = run(withRows(100), { type: 'filterOpen' }, { type: 'filterInsert', text: 'op==READ' }, { type: 'filterCursor', delta: -4 }, { type: 'filterBackspace' });
    expect(s.requests.edit).toEqual({ target: 'filter', text: 'op=READ', cursor: 3 });
    s = run(s, { type: 'filterApply' });
    expect(s.requests.edit).not.toBeNull();
    expect(s.requests.filterError).toMatchObject({ column: 3, expression: 'op=READ' });
    expect(s.requests.filter).toBe('');
    s = run(s, { type: 'filterInsert', text: '=' }, { type: 'filterApply' });
    expect(s.requests).toMatchObject({ filter: 'op==READ', edit: null, filterError: null, cursor: 0 });
  });

  it('escape leaves the filter as it was', () => {
    const s = run(withRows(10), { type: 'setFilter', filter: 'err' }, { type: 'filterOpen' }, { type: 'filterKill' }, { type: 'filterInsert', text: 'x' }, { type: 'filterCancel' });
    expect(s.requests).toMatchObject({ filter: 'err', edit: null });
  });

  it('combines the filter and the quick toggles into one expression', () => {
    let s = run(withRows(10), { type: 'setFilter', filter: 'op==READ || op==WRITE' }, { type: 'toggle', which: 'errors' }, { type: 'toggle', which: 'slow' });
    expect(effectiveFilter(s.requests)).toBe('(op==READ || op==WRITE) && err && dur>=10ms');
    s = run(s, { type: 'toggle', which: 'errors' }, { type: 'toggle', which: 'trouble' });
    expect(effectiveFilter(s.requests)).toBe('(op==READ || op==WRITE) && state in {interrupted late unanswered aborted} && dur>=10ms');
    s = run(s, { type: 'clearFilter' });
    expect(effectiveFilter(s.requests)).toBe('');
  });

  it('opens and scrolls the detail pane; back closes pane, then scope, then goes to sessions', () => {
    let s = run(withRows(100, 30), { type: 'move', delta: 20 }, { type: 'openDetail' });
    expect(s.requests.detail).toEqual({ scroll: 0 });
    expect(tableRows(s)).toBe(10);
    // The table shrank: the cursor is still on screen.
    expect(s.requests.cursor - s.requests.top).toBeLessThan(10);
    s = run(s, { type: 'scrollDetail', delta: 3 }, { type: 'scrollDetail', delta: -10 });
    expect(s.requests.detail).toEqual({ scroll: 0 });
    // G then k: the bottom is the last position that fills the pane, one line up from there.
    s = run(s, { type: 'scrollDetail', delta: Infinity, max: 40 }, { type: 'scrollDetail', delta: -1, max: 40 });
    expect(s.requests.detail).toEqual({ scroll: 39 });
    s = run(s, { type: 'scope', scope: { kind: 'inflight', atNs: 5, unique: '8' } });
    expect(s.requests.detail).toBeNull();
    s = run(s, { type: 'openDetail' }, { type: 'back' });
    expect(s.requests).toMatchObject({ detail: null });
    expect(s.requests.scope).not.toBeNull();
    s = run(s, { type: 'back' });
    expect(s.requests.scope).toBeNull();
    s = run(s, { type: 'back' });
    expect(s.view).toBe('sessions');
  });

  it('jumps to a row and centres it', () => {
    const s = run(withRows(1000, 20), { type: 'jumpTo', index: 500, detail: true });
    expect(s.requests.cursor).toBe(500);
    expect(s.requests.detail).toEqual({ scroll: 0 });
    const rows = tableRows(s);
    expect(s.requests.top).toBe(500 - Math.floor(rows / 2));
  });

  it('sorting resets the position; opening another session resets the requests state', () => {
    let s = run(withRows(100), { type: 'move', delta: 5 }, { type: 'sort' });
    expect(s.requests).toMatchObject({ sort: 'dur', cursor: 0 });
    s = run(s, { type: 'setFilter', filter: 'err' }, { type: 'openSession', session: 2 });
    expect(s).toMatchObject({ session: 2, view: 'requests' });
    expect(s.requests).toMatchObject({ filter: '', sort: 'time' });
  });

  it('help toggles and quit is a state, not a side effect', () => {
    const s = run(initialState(), { type: 'toggleHelp' });
    expect(s.help).toBe(true);
    expect(run(s, { type: 'back' }).help).toBe(false);
    expect(run(s, { type: 'quit' }).quit).toBe(true);
  });

  it('R asks for a server command; Enter starts a replay of the filtered requests, once per run', () => {
    let s = run(withRows(10), { type: 'setFilter', filter: 'op==READ' }, { type: 'replayOpen' });
    expect(s.requests.edit).toEqual({ target: 'replay', text: '', cursor: 0 });
    s = run(s, { type: 'filterApply' });
    expect(s.message).toMatch(/type the server command/);
    s = run(s, { type: 'filterInsert', text: ' ./myfs -f ' }, { type: 'filterApply' });
    expect(s.view).toBe('replay');
    expect(s.replay).toMatchObject({ command: './myfs -f', filter: '(op==READ)', runId: 1, running: true });
    expect(s.requests.filter).toBe('op==READ');
    expect(run(s, { type: 'replayOpen' }).message).toMatch(/a replay is running/);
    // A late answer from an older run is ignored.
    expect(run(s, { type: 'replayDone', runId: 0, lines: ['old'], ok: true }).replay.running).toBe(true);
    s = run(s, { type: 'replayDone', runId: 1, lines: ['a', 'b', 'result: all replies matched'], ok: true });
    expect(s.replay).toMatchObject({ running: false, ok: true, lines: ['a', 'b', 'result: all replies matched'] });
    s = run(s, { type: 'move', delta: 2 }, { type: 'back' });
    expect(s.view).toBe('requests');
    expect(run(s, { type: 'replayOpen' }).requests.edit).toEqual({ target: 'replay', text: './myfs -f', cursor: 9 });
  });
});
