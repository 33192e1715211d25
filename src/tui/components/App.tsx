import React, { useCallback, useEffect, useMemo, useReducer, useRef } from 'react';
import { Box, Text, useApp } from 'ink';
import type { Command, KeyContext } from '../keymap.js';
import { initialState, effectiveFilter, reducer, tableRows, type TuiAction, type TuiState } from '../state.js';
import type { ListQuery, TuiSource } from '../data.js';
import { detailLines } from '../detail.js';
import { formatCount, formatTime } from '../../format.js';
import { useCommands } from '../hooks/use-commands.js';
import { useLiveTick } from '../hooks/use-live-tick.js';
import { useReplay } from '../hooks/use-replay.js';
import { useRequestList } from '../hooks/use-request-list.js';
import { useTerminalSize } from '../hooks/use-terminal-size.js';
import { DetailPane } from './DetailPane.js';
import { DiffView, diffViewLines } from './DiffView.js';
import type { SessionDiff } from '../../diff/diff.js';
import { FilterBar } from './FilterBar.js';
import { HelpView } from './HelpView.js';
import { ReplayView } from './ReplayView.js';
import { RequestTable } from './RequestTable.js';
import { SessionsView } from './SessionsView.js';
import { StatsView, statsLines, type StatsData } from './StatsView.js';
import { StatusLine, position } from './StatusLine.js';

export interface AppProps {
  source: TuiSource;
  /** Open this session at start (else the sessions view). */
  session?: number | null;
  /** Re-read counts and rows on a timer (a recording in progress). */
  live?: boolean;
  /** Fixed terminal size (tests); otherwise the terminal's. */
  columns?: number;
  rows?: number;
}

/** Lines the chrome takes: title, table header, status line. */
const CHROME = 3;

/** The whole TUI: state in the reducer, data from TuiSource, keys through the keymap. */
export function App({ source, session = null, live = false, columns, rows }: AppProps): React.JSX.Element {
  const { exit } = useApp();
  const size = useTerminalSize({ columns, rows });
  const [state, dispatch] = useReducer(reducer, undefined, () => initialState({ session, pageRows: size.rows - CHROME }));
  const tick = useLiveTick(live);
  const s = state.requests;

  // Lines the filter bar takes away from the list while it is open (plus one for its error).
  const barLines = s.edit ? (s.filterError ? 2 : 1) : 0;
  const pageRows = Math.max(3, size.rows - CHROME - barLines);
  useEffect(() => dispatch({ type: 'resize', pageRows }), [pageRows]);

  const sessions = useMemo(() => source.sessions(), [source, tick]);
  useEffect(() => dispatch({ type: 'setTotal', list: 'sessions', total: sessions.length }), [sessions.length]);

  const q: ListQuery = useMemo(() => ({ filter: effectiveFilter(s), sort: s.sort, scope: s.scope }), [s.filter, s.toggles, s.sort, s.scope]);
  const listRows = tableRows(state);
  const list = useRequestList(source, state.session, q, s.top, listRows, s.total, tick, dispatch);
  const selected = list.rows[s.cursor - s.top] ?? null;

  const detail = useMemo(() => {
    if (!s.detail || !selected || state.session === null) return null;
    const d = source.detail(state.session, selected.seq);
    return d ? detailLines(d) : null;
  }, [source, state.session, s.detail !== null, selected?.seq, tick]);

  const statsData: StatsData | null = useMemo(() => {
    if (state.view !== 'stats' || state.session === null) return null;
    const filter = effectiveFilter(s);
    return {
      stats: source.stats(state.session, filter),
      histogram: source.histogram(state.session, filter),
      timeline: source.timeline(state.session, filter, Math.max(10, size.columns - 28)),
    };
  }, [source, state.view, state.session, q.filter, size.columns, tick]);

  // The diff view compares the picked pair with the requests view's filter applied to both.
  const pair = state.diff.pair;
  const diffData: SessionDiff | null = useMemo(() => {
    if (state.view !== 'diff' || pair === null) return null;
    return source.diff(pair.a, pair.b, effectiveFilter(s));
  }, [source, state.view, pair?.a, pair?.b, q.filter, tick]);

  useReplay(source.db, state.session, state.replay, dispatch);

  useEffect(() => {
    if (state.quit) exit();
  }, [state.quit, exit]);

  const stateRef = useRef<TuiState>(state);
  stateRef.current = state;
  const follow = useCallback(
    (command: Command) => {
      const st = stateRef.current;
      const sess = st.session;
      const row = selected;
      if (sess === null || !row) return dispatch({ type: 'message', text: 'no request selected' });
      const r = st.requests;
      const jump = (seq: number, lq: ListQuery, actions: TuiAction[]) => {
        const index = source.indexOf(sess, lq, seq);
        for (const a of actions) dispatch(a);
        if (index === null) return dispatch({ type: 'message', text: 'that request is not in the list' });
        dispatch({ type: 'setTotal', list: 'requests', total: source.count(sess, lq) });
        dispatch({ type: 'jumpTo', index, detail: r.detail !== null || command === 'followOrigin' });
      };
      switch (command) {
        case 'followOrigin': {
          const which = row.fh !== null ? 'fh' : 'nodeid';
          const o = source.origin(sess, row, which);
          if ('reason' in o) return dispatch({ type: 'message', text: o.reason });
          const here: ListQuery = { filter: effectiveFilter(r), sort: r.sort, scope: r.scope };
          if (source.indexOf(sess, here, o.seq) !== null) return jump(o.seq, here, []);
          // Not in the current list: show everything, then jump.
          return jump(o.seq, { filter: '', sort: r.sort, scope: null }, [{ type: 'clearFilter' }]);
        }
        case 'sameNodeid':
        case 'sameFh': {
          const field = command === 'sameNodeid' ? 'nodeid' : 'fh';
          const v = row[field];
          if (v === null) return dispatch({ type: 'message', text: `this request names no ${field}` });
          const filter = `${field}==${v}`;
          return jump(row.seq, { filter, sort: r.sort, scope: null }, [{ type: 'clearFilter' }, { type: 'setFilter', filter }]);
        }
        case 'inFlight': {
          const scope = { kind: 'inflight' as const, atNs: row.start_ns, unique: String(row.unique) };
          return jump(row.seq, { filter: effectiveFilter(r), sort: r.sort, scope }, [{ type: 'scope', scope }]);
        }
      }
    },
    [source, selected],
  );

  /** The detail pane's last useful scroll position (its lines minus its height). */
  const detailRef = useRef(0);
  const detailMax = () => detailRef.current;
  /** The same for the stats and replay views (their lines minus the screen). */
  const scrollRef = useRef<number | undefined>(undefined);
  const scrollMax = () => scrollRef.current;
  /** Navigation keys scroll the detail pane while it is open. */
  const inDetail = () => stateRef.current.view === 'requests' && stateRef.current.requests.detail !== null;
  const onCommand = useCallback(
    (c: Command) => {
      switch (c) {
        case 'quit': return dispatch({ type: 'quit' });
        case 'help': return dispatch({ type: 'toggleHelp' });
        case 'back': return dispatch({ type: 'back' });
        case 'open':
          if (stateRef.current.view === 'sessions') {
            const chosen = sessions[stateRef.current.sessions.cursor];
            if (chosen) dispatch({ type: 'openSession', session: chosen.id });
            return;
          }
          return dispatch({ type: 'openDetail' });
        case 'down': return dispatch(inDetail() ? { type: 'scrollDetail', delta: 1, max: detailMax() } : { type: 'move', delta: 1, max: scrollMax() });
        case 'up': return dispatch(inDetail() ? { type: 'scrollDetail', delta: -1, max: detailMax() } : { type: 'move', delta: -1, max: scrollMax() });
        case 'pageDown': return dispatch(inDetail() ? { type: 'scrollDetail', delta: 10, max: detailMax() } : { type: 'page', direction: 1, max: scrollMax() });
        case 'pageUp': return dispatch(inDetail() ? { type: 'scrollDetail', delta: -10, max: detailMax() } : { type: 'page', direction: -1, max: scrollMax() });
        case 'top': return dispatch(inDetail() ? { type: 'scrollDetail', delta: -Infinity, max: detailMax() } : { type: 'home' });
        case 'bottom': return dispatch(inDetail() ? { type: 'scrollDetail', delta: Infinity, max: detailMax() } : { type: 'end', max: scrollMax() });
        case 'nextRequest': dispatch({ type: 'move', delta: 1 }); return dispatch({ type: 'scrollDetail', delta: -Infinity, max: detailMax() });
        case 'prevRequest': dispatch({ type: 'move', delta: -1 }); return dispatch({ type: 'scrollDetail', delta: -Infinity, max: detailMax() });
        case 'filter': return stateRef.current.session === null ? dispatch({ type: 'message', text: 'open a session first (Enter)' }) : dispatch({ type: 'filterOpen' });
        case 'clearFilter': return dispatch({ type: 'clearFilter' });
        case 'toggleErrors': return dispatch({ type: 'toggle', which: 'errors' });
        case 'toggleTrouble': return dispatch({ type: 'toggle', which: 'trouble' });
        case 'toggleSlow': return dispatch({ type: 'toggle', which: 'slow' });
        case 'sort': return dispatch({ type: 'sort' });
        case 'viewSessions': return dispatch({ type: 'view', view: 'sessions' });
        case 'viewRequests': return dispatch({ type: 'view', view: 'requests' });
        case 'viewStats': return dispatch({ type: 'view', view: 'stats' });
        case 'followOrigin':
        case 'sameNodeid':
        case 'sameFh':
        case 'inFlight':
          return follow(c);
        case 'replay':
          return dispatch({ type: 'replayOpen' });
        case 'diffMark': {
          // In the sessions view the session under the cursor, elsewhere the open one.
          const st = stateRef.current;
          const id = st.view === 'sessions' ? sessions[st.sessions.cursor]?.id : st.session;
          if (id === undefined || id === null) return dispatch({ type: 'message', text: 'no session to mark' });
          return dispatch({ type: 'diffMark', session: id });
        }
        case 'viewDiff': return dispatch({ type: 'view', view: 'diff' });
        case 'filterApply': return dispatch({ type: 'filterApply' });
        case 'filterCancel': return dispatch({ type: 'filterCancel' });
        case 'filterBackspace': return dispatch({ type: 'filterBackspace' });
        case 'filterLeft': return dispatch({ type: 'filterCursor', delta: -1 });
        case 'filterRight': return dispatch({ type: 'filterCursor', delta: 1 });
        case 'filterKill': return dispatch({ type: 'filterKill' });
      }
    },
    [sessions, follow],
  );

  const context: KeyContext = s.edit ? 'filter' : state.help ? 'help' : state.view === 'requests' && s.detail ? 'detail' : 'list';
  useCommands(context, onCommand, (text) => dispatch({ type: 'filterInsert', text }));

  const current = sessions.find((x) => x.id === state.session);
  // While the session is recorded, "now" on its clock (frame times are CLOCK_MONOTONIC, as is hrtime).
  const liveNowNs = live && current && current.durationNs === null ? Number(process.hrtime.bigint() - current.startedMonoNs) : undefined;
  const title = `fusetrace  ${current ? `session ${current.id}${current.name ? ` "${current.name}"` : ''}  ${current.command}` : `${formatCount(sessions.length)} sessions`}${live ? '  [live]' : ''}`;
  const views = `[1 sessions] [2 requests] [3 stats] [4 diff] [R replay]  ? keys  q quit`;

  let body: React.JSX.Element;
  let left = '';
  let right = '';
  if (state.help) {
    body = <HelpView contexts={[context === 'help' ? 'list' : context, 'detail', 'filter']} height={pageRows} />;
    left = 'keys';
  } else if (state.view === 'sessions') {
    body = <SessionsView sessions={sessions} cursor={state.sessions.cursor} top={state.sessions.top} height={pageRows} width={size.columns} />;
    left = `sessions  Enter: open  d: diff${state.diff.base !== null ? ` (A = session ${state.diff.base}, d on B)` : ''}`;
    right = position(state.sessions.cursor, sessions.length, false);
  } else if (state.view === 'replay') {
    body = <ReplayView replay={state.replay} height={pageRows} />;
    scrollRef.current = Math.max(0, (state.replay.lines?.length ?? 0) - pageRows - 1);
    left = `replay  ${state.replay.command}`;
    right = state.replay.running ? 'running…' : state.replay.ok === true ? 'all replies matched' : state.replay.ok === false ? 'DIVERGED' : '';
  } else if (state.view === 'diff') {
    body = <DiffView diff={diffData} scroll={state.diff.scroll} height={pageRows} />;
    scrollRef.current = diffData ? Math.max(0, diffViewLines(diffData).length - pageRows - 1) : undefined;
    left = `diff  A session ${pair?.a} → B session ${pair?.b}  filter: ${effectiveFilter(s) || '(none)'}`;
  } else if (state.view === 'stats') {
    body = <StatsView data={statsData} scroll={state.stats.scroll} height={pageRows} width={size.columns} />;
    scrollRef.current = statsData ? Math.max(0, statsLines(statsData, size.columns).length - pageRows - 1) : undefined;
    left = `stats  filter: ${effectiveFilter(s) || '(none)'}`;
  } else {
    const detailHeight = pageRows - listRows - 1;
    detailRef.current = Math.max(0, (detail?.length ?? 0) - detailHeight);
    body = (
      <Box flexDirection="column">
        <RequestTable rows={list.rows} top={s.top} cursor={s.cursor} height={listRows} width={size.columns} liveNowNs={liveNowNs} />
        {s.detail && detail ? <DetailPane lines={detail} scroll={s.detail.scroll} height={detailHeight} /> : null}
      </Box>
    );
    const scope = s.scope ? `  in flight at ${formatTime(s.scope.atNs)}s (unique ${s.scope.unique})` : '';
    left = `filter: ${effectiveFilter(s) || '(none)'}${scope}  sort: ${s.sort === 'time' ? 'time' : 'duration'}`;
    right = position(s.cursor, s.total, list.counting);
  }

  return (
    <Box flexDirection="column" width={size.columns}>
      <Text bold wrap="truncate">
        <Text color="cyan">{title}</Text>
        <Text dimColor>{'  ' + views}</Text>
      </Text>
      {body}
      {s.edit ? <FilterBar edit={s.edit} error={s.filterError} /> : null}
      <StatusLine width={size.columns} left={left} right={right} message={state.message} error={state.view === 'requests' ? list.error : null} />
    </Box>
  );
}
