/**
 * View state of the TUI: a pure reducer over a typed action union. No I/O here: the hooks read
 * SQLite and dispatch what they found (`setTotal`, `jumpTo`, ...). Tested on its own in
 * test/tui-state.test.ts.
 */
import { FilterError, parseFilter } from '../store/filter.js';

export type View = 'sessions' | 'requests' | 'stats' | 'replay' | 'diff';
export type SortOrder = 'time' | 'dur';

/** Requests slower than this are "slow" for the quick toggle (dur>=10ms). */
export const SLOW_FILTER = 'dur>=10ms';
/** The quick toggle for requests whose lifecycle went wrong (schema.ts, requests.state). */
export const TROUBLE_FILTER = 'state in {interrupted late unanswered aborted}';
export const ERRORS_FILTER = 'err';

/** A restriction the filter language cannot say: requests in flight at one instant. */
export interface InFlightScope {
  kind: 'inflight';
  /** ns since session start. */
  atNs: number;
  /** The request whose start time it is (its unique, for the status line). */
  unique: string;
}

export interface FilterBarState {
  /** What the bar edits: the filter expression, or the server command of a replay. */
  target: 'filter' | 'replay';
  text: string;
  /** Cursor position in `text` (0..length). */
  cursor: number;
}

export interface FilterErrorState {
  message: string;
  /** 1-based column in `expression`. */
  column: number;
  expression: string;
}

export interface ListState {
  /** Index of the selected row in the (filtered, sorted) list. */
  cursor: number;
  /** Index of the first row on screen. */
  top: number;
  /** Rows in the list (from SQLite). */
  total: number;
}

export interface RequestsState extends ListState {
  sort: SortOrder;
  /** The applied filter expression, as the user typed it. */
  filter: string;
  toggles: { errors: boolean; trouble: boolean; slow: boolean };
  scope: InFlightScope | null;
  /** The filter bar while it is open. */
  edit: FilterBarState | null;
  /** The last filter that failed to parse (shown under the filter bar). */
  filterError: FilterErrorState | null;
  /** The detail pane: open, and scrolled by `scroll` lines. */
  detail: { scroll: number } | null;
}

/** A replay started from the TUI (src/tui/replay.ts runs it). */
export interface ReplayState {
  /** The server command line as typed (kept for the next replay). */
  command: string;
  /** The filter whose requests are compared ('' = all). */
  filter: string;
  /** Bumped for every replay started; the hook runs one replay per id. */
  runId: number;
  running: boolean;
  /** The report, once done. */
  lines: string[] | null;
  ok: boolean | null;
  scroll: number;
}

/** Two sessions compared in the diff view: `base` is marked with `d`, the next `d` picks B. */
export interface DiffState {
  /** The session marked as A, waiting for B. */
  base: number | null;
  /** The pair shown in the diff view (A, B), once picked. */
  pair: { a: number; b: number } | null;
  scroll: number;
}

export interface TuiState {
  view: View;
  help: boolean;
  /** Open session id, or null before one is chosen. */
  session: number | null;
  sessions: ListState;
  requests: RequestsState;
  stats: { scroll: number };
  replay: ReplayState;
  diff: DiffState;
  /** Rows the current list can show (terminal height minus chrome). */
  pageRows: number;
  /** One-line message for the status line (cleared by the next key). */
  message: string | null;
  quit: boolean;
}

export type TuiAction =
  | { type: 'quit' }
  | { type: 'toggleHelp' }
  | { type: 'back' }
  | { type: 'view'; view: View }
  | { type: 'openSession'; session: number }
  | { type: 'resize'; pageRows: number }
  /** `partial`: a running count (the list is still being counted): the cursor is not pulled back to it. */
  | { type: 'setTotal'; list: 'sessions' | 'requests'; total: number; partial?: boolean }
  /** `max` (stats and replay views): the last scroll position that still fills the screen. */
  | { type: 'move'; delta: number; max?: number }
  | { type: 'page'; direction: 1 | -1; max?: number }
  | { type: 'home' }
  | { type: 'end'; max?: number }
  | { type: 'openDetail' }
  | { type: 'closeDetail' }
  /** `max`: the last scroll position that still fills the pane (lines - pane height). */
  | { type: 'scrollDetail'; delta: number; max?: number }
  | { type: 'filterOpen' }
  | { type: 'replayOpen' }
  | { type: 'replayDone'; runId: number; lines: string[]; ok: boolean | null }
  | { type: 'filterInsert'; text: string }
  | { type: 'filterBackspace' }
  | { type: 'filterCursor'; delta: number }
  | { type: 'filterKill' }
  | { type: 'filterCancel' }
  | { type: 'filterApply' }
  | { type: 'setFilter'; filter: string }
  | { type: 'clearFilter' }
  | { type: 'toggle'; which: 'errors' | 'trouble' | 'slow' }
  | { type: 'sort' }
  | { type: 'scope'; scope: InFlightScope | null }
  | { type: 'jumpTo'; index: number; detail?: boolean }
  | { type: 'message'; text: string | null }
  /** `d`: mark `session` as A, or, with A marked, compare A with it. */
  | { type: 'diffMark'; session: number };

const emptyList: ListState = { cursor: 0, top: 0, total: 0 };

export function initialState(opts: { session?: number | null; pageRows?: number } = {}): TuiState {
  const session = opts.session ?? null;
  return {
    view: session === null ? 'sessions' : 'requests',
    help: false,
    session,
    sessions: { ...emptyList },
    requests: {
      ...emptyList,
      sort: 'time',
      filter: '',
      toggles: { errors: false, trouble: false, slow: false },
      scope: null,
      edit: null,
      filterError: null,
      detail: null,
    },
    stats: { scroll: 0 },
    replay: { command: '', filter: '', runId: 0, running: false, lines: null, ok: null, scroll: 0 },
    diff: { base: null, pair: null, scroll: 0 },
    pageRows: opts.pageRows ?? 20,
    message: null,
    quit: false,
  };
}

/** The filter the store runs: the user's expression and the quick toggles, ANDed. */
export function effectiveFilter(r: Pick<RequestsState, 'filter' | 'toggles'>): string {
  const parts: string[] = [];
  if (r.filter.trim()) parts.push(`(${r.filter})`);
  if (r.toggles.errors) parts.push(ERRORS_FILTER);
  if (r.toggles.trouble) parts.push(TROUBLE_FILTER);
  if (r.toggles.slow) parts.push(SLOW_FILTER);
  return parts.join(' && ');
}

/** Keeps the cursor inside the list and on screen (the first row on screen follows the cursor). */
function clampList<T extends ListState>(l: T, pageRows: number): T {
  const rows = Math.max(1, pageRows);
  const cursor = Math.max(0, Math.min(l.cursor, l.total - 1));
  let top = Math.min(l.top, Math.max(0, l.total - rows));
  if (cursor < top) top = cursor;
  if (cursor >= top + rows) top = cursor - rows + 1;
  return { ...l, cursor, top: Math.max(0, top) };
}

/** Rows the requests table shows: fewer while the detail pane takes the lower part of the screen. */
export function tableRows(s: TuiState): number {
  if (s.view === 'requests' && s.requests.detail) return Math.max(3, Math.floor(s.pageRows / 3));
  return s.pageRows;
}

function withList(s: TuiState, f: (l: ListState) => ListState): TuiState {
  if (s.view === 'sessions') return { ...s, sessions: clampList(f(s.sessions), s.pageRows) };
  if (s.view === 'requests') return { ...s, requests: clampList({ ...s.requests, ...f(s.requests) }, tableRows(s)) };
  return s;
}

/** A scroll position between 0 and `max` (unbounded above without one, as for a pane not drawn yet). */
function scrollTo(v: number, max = Infinity): number {
  return Math.max(0, Math.min(max, v));
}

/** A fresh list position: after the filter, toggles, scope or sort changed. */
function resetPosition(r: RequestsState): RequestsState {
  return { ...r, cursor: 0, top: 0, detail: null };
}

export function reducer(s: TuiState, a: TuiAction): TuiState {
  // Any action but a message clears the previous message: it was about the last key.
  if (a.type !== 'message' && s.message !== null && a.type !== 'setTotal' && a.type !== 'resize') s = { ...s, message: null };
  switch (a.type) {
    case 'quit':
      return { ...s, quit: true };
    case 'toggleHelp':
      return { ...s, help: !s.help };
    case 'message':
      return { ...s, message: a.text };
    case 'back':
      if (s.help) return { ...s, help: false };
      if (s.view === 'requests' && s.requests.detail) return { ...s, requests: { ...s.requests, detail: null } };
      if (s.view === 'requests' && s.requests.scope) return { ...s, requests: resetPosition({ ...s.requests, scope: null }) };
      if (s.view === 'stats' || s.view === 'replay') return { ...s, view: s.session === null ? 'sessions' : 'requests' };
      if (s.view === 'diff') return { ...s, view: 'sessions' };
      if (s.view === 'sessions' && s.diff.base !== null) return { ...s, diff: { ...s.diff, base: null }, message: 'diff: mark cleared' };
      if (s.view === 'requests') return { ...s, view: 'sessions' };
      return s;
    case 'view':
      if (a.view === 'diff') {
        if (s.diff.pair === null) return { ...s, message: 'diff: press d on one session (A), then on another (B)' };
        return { ...s, view: 'diff', help: false };
      }
      if (a.view !== 'sessions' && s.session === null) return { ...s, message: 'open a session first (Enter)' };
      return { ...s, view: a.view, help: false };
    case 'openSession': {
      if (a.session === s.session) return { ...s, view: 'requests' };
      const fresh = initialState({ session: a.session, pageRows: s.pageRows });
      return { ...fresh, sessions: s.sessions, diff: s.diff };
    }
    case 'resize': {
      const next = { ...s, pageRows: Math.max(1, a.pageRows) };
      return {
        ...next,
        sessions: clampList(next.sessions, next.pageRows),
        requests: clampList(next.requests, tableRows(next)),
      };
    }
    case 'setTotal': {
      if (a.list === 'sessions') return { ...s, sessions: clampList({ ...s.sessions, total: a.total }, s.pageRows) };
      if (a.partial) return { ...s, requests: { ...s.requests, total: a.total } };
      const requests = clampList({ ...s.requests, total: a.total }, tableRows(s));
      return { ...s, requests: a.total === 0 ? { ...requests, detail: null } : requests };
    }
    case 'move':
      if (s.view === 'diff') return { ...s, diff: { ...s.diff, scroll: scrollTo(s.diff.scroll + a.delta, a.max) } };
      if (s.view === 'replay') return { ...s, replay: { ...s.replay, scroll: scrollTo(s.replay.scroll + a.delta, a.max) } };
      if (s.view === 'stats') return { ...s, stats: { scroll: scrollTo(s.stats.scroll + a.delta, a.max) } };
      return withList(s, (l) => ({ ...l, cursor: l.cursor + a.delta }));
    case 'page': {
      const half = Math.max(1, Math.floor((s.view === 'requests' ? tableRows(s) : s.pageRows) / 2));
      if (s.view === 'stats') return { ...s, stats: { scroll: scrollTo(s.stats.scroll + a.direction * half, a.max) } };
      if (s.view === 'diff') return { ...s, diff: { ...s.diff, scroll: scrollTo(s.diff.scroll + a.direction * half, a.max) } };
      if (s.view === 'replay') return { ...s, replay: { ...s.replay, scroll: scrollTo(s.replay.scroll + a.direction * half, a.max) } };
      return withList(s, (l) => ({ ...l, cursor: l.cursor + a.direction * half, top: l.top + a.direction * half }));
    }
    case 'home':
      if (s.view === 'stats') return { ...s, stats: { scroll: 0 } };
      if (s.view === 'diff') return { ...s, diff: { ...s.diff, scroll: 0 } };
      if (s.view === 'replay') return { ...s, replay: { ...s.replay, scroll: 0 } };
      return withList(s, (l) => ({ ...l, cursor: 0, top: 0 }));
    case 'end':
      if (s.view === 'diff') return { ...s, diff: { ...s.diff, scroll: scrollTo(Infinity, a.max) } };
      if (s.view === 'replay') return { ...s, replay: { ...s.replay, scroll: scrollTo(Infinity, a.max) } };
      if (s.view === 'stats') return { ...s, stats: { scroll: scrollTo(Infinity, a.max) } };
      return withList(s, (l) => ({ ...l, cursor: l.total - 1, top: l.total }));
    case 'openDetail':
      if (s.view !== 'requests' || s.requests.total === 0) return s;
      return { ...s, requests: clampList({ ...s.requests, detail: { scroll: 0 } }, Math.max(3, Math.floor(s.pageRows / 3))) };
    case 'closeDetail':
      return { ...s, requests: { ...s.requests, detail: null } };
    case 'scrollDetail':
      if (!s.requests.detail) return s;
      return { ...s, requests: { ...s.requests, detail: { scroll: Math.max(0, Math.min(a.max ?? Infinity, s.requests.detail.scroll + a.delta)) } } };
    case 'filterOpen': {
      const text = s.requests.filter;
      const view = s.view === 'stats' ? 'stats' : 'requests';
      return { ...s, view, help: false, requests: { ...s.requests, edit: { target: 'filter', text, cursor: text.length }, filterError: null } };
    }
    case 'replayOpen': {
      if (s.session === null) return { ...s, message: 'open a session first (Enter)' };
      if (s.replay.running) return { ...s, message: 'a replay is running' };
      const text = s.replay.command;
      return { ...s, help: false, requests: { ...s.requests, edit: { target: 'replay', text, cursor: text.length }, filterError: null } };
    }
    case 'replayDone':
      if (a.runId !== s.replay.runId) return s;
      return { ...s, replay: { ...s.replay, running: false, lines: a.lines, ok: a.ok, scroll: 0 } };
    case 'filterInsert': {
      const e = s.requests.edit;
      if (!e) return s;
      const text = e.text.slice(0, e.cursor) + a.text + e.text.slice(e.cursor);
      return { ...s, requests: { ...s.requests, edit: { ...e, text, cursor: e.cursor + a.text.length } } };
    }
    case 'filterBackspace': {
      const e = s.requests.edit;
      if (!e || e.cursor === 0) return s;
      const text = e.text.slice(0, e.cursor - 1) + e.text.slice(e.cursor);
      return { ...s, requests: { ...s.requests, edit: { ...e, text, cursor: e.cursor - 1 } } };
    }
    case 'filterCursor': {
      const e = s.requests.edit;
      if (!e) return s;
      return { ...s, requests: { ...s.requests, edit: { ...e, cursor: Math.max(0, Math.min(e.text.length, e.cursor + a.delta)) } } };
    }
    case 'filterKill':
      if (!s.requests.edit) return s;
      return { ...s, requests: { ...s.requests, edit: { ...s.requests.edit, text: '', cursor: 0 } } };
    case 'filterCancel':
      return { ...s, requests: { ...s.requests, edit: null, filterError: null } };
    case 'filterApply': {
      const e = s.requests.edit;
      if (!e) return s;
      if (e.target === 'replay') {
        const command = e.text.trim();
        if (!command) return { ...s, message: 'type the server command to replay against (e.g. ./myfs -f)' };
        const replay: ReplayState = {
          command, filter: effectiveFilter(s.requests), runId: s.replay.runId + 1, running: true, lines: null, ok: null, scroll: 0,
        };
        return { ...s, view: 'replay', replay, requests: { ...s.requests, edit: null } };
      }
      // Parse here so the error is shown under the text the user is still editing; the bar stays open.
      try {
        parseFilter(e.text);
      } catch (err) {
        if (!(err instanceof FilterError)) throw err;
        const filterError = { message: err.message, column: err.column, expression: err.expression };
        return { ...s, requests: { ...s.requests, filterError, edit: { ...e, cursor: Math.min(e.text.length, err.column - 1) } } };
      }
      return { ...s, requests: resetPosition({ ...s.requests, filter: e.text.trim(), edit: null, filterError: null }) };
    }
    case 'setFilter':
      return { ...s, view: 'requests', requests: resetPosition({ ...s.requests, filter: a.filter, edit: null, filterError: null }) };
    case 'clearFilter':
      return {
        ...s,
        requests: resetPosition({
          ...s.requests,
          filter: '',
          toggles: { errors: false, trouble: false, slow: false },
          scope: null,
          filterError: null,
        }),
      };
    case 'toggle': {
      const toggles = { ...s.requests.toggles, [a.which]: !s.requests.toggles[a.which] };
      return { ...s, view: s.session === null ? s.view : 'requests', requests: resetPosition({ ...s.requests, toggles }) };
    }
    case 'sort':
      return { ...s, requests: resetPosition({ ...s.requests, sort: s.requests.sort === 'time' ? 'dur' : 'time' }) };
    case 'scope':
      return { ...s, view: 'requests', requests: resetPosition({ ...s.requests, scope: a.scope }) };
    case 'diffMark': {
      const base = s.diff.base;
      if (base === null) return { ...s, diff: { ...s.diff, base: a.session }, message: `diff: session ${a.session} is A; press d on the session to compare it with (B)` };
      if (base === a.session) return { ...s, diff: { ...s.diff, base: null }, message: 'diff: mark cleared' };
      return { ...s, view: 'diff', help: false, diff: { base: null, pair: { a: base, b: a.session }, scroll: 0 } };
    }
    case 'jumpTo': {
      const r = s.requests;
      const detail = a.detail ? { scroll: 0 } : r.detail;
      const next = { ...s, view: 'requests' as const, requests: { ...r, cursor: a.index, detail } };
      // Put the target in the middle of the table, so what came before it is visible too.
      const rows = tableRows(next);
      return { ...next, requests: clampList({ ...next.requests, top: a.index - Math.floor(rows / 2) }, rows) };
    }
  }
}
