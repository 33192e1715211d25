/**
 * The one keymap of the TUI: every key maps to a named command here, and nowhere else. Components
 * and hooks only ever see `Command`s (gemini-cli / lazygit style); `?` renders this table, and
 * docs/keymap.md is generated from it (`keymapMarkdown()`).
 */
import type { Key } from 'ink';

/** Named commands. `insert` carries typed text in the filter bar. */
export type Command =
  | 'quit'
  | 'help'
  | 'back'
  | 'open'
  | 'down'
  | 'up'
  | 'pageDown'
  | 'pageUp'
  | 'top'
  | 'bottom'
  | 'filter'
  | 'clearFilter'
  | 'toggleErrors'
  | 'toggleTrouble'
  | 'toggleSlow'
  | 'sort'
  | 'viewSessions'
  | 'viewRequests'
  | 'viewStats'
  | 'followOrigin'
  | 'sameNodeid'
  | 'sameFh'
  | 'inFlight'
  | 'replay'
  | 'diffMark'
  | 'viewDiff'
  | 'nextRequest'
  | 'prevRequest'
  | 'filterApply'
  | 'filterCancel'
  | 'filterBackspace'
  | 'filterLeft'
  | 'filterRight'
  | 'filterKill';

/**
 * Where keys are read. `list`: sessions/requests/stats views; `detail`: the detail pane has the
 * focus; `filter`: the filter bar is open and printable keys are text; `help`: the key list is shown.
 */
export type KeyContext = 'list' | 'detail' | 'filter' | 'help';

/** A key as the keymap names it: a printable character, `ctrl-x`, or a special key name. */
export type KeyName = string;

export interface Binding {
  keys: KeyName[];
  command: Command;
  contexts: KeyContext[];
  /** What it does, as shown by `?` and in docs/keymap.md. */
  help: string;
}

const NAV: KeyContext[] = ['list', 'detail'];

/** The keymap. The first binding for a (context, key) wins. */
export const KEYMAP: readonly Binding[] = [
  { keys: ['q', 'ctrl-c'], command: 'quit', contexts: ['list', 'detail', 'help'], help: 'quit (restores the terminal)' },
  { keys: ['ctrl-c'], command: 'quit', contexts: ['filter'], help: 'quit' },
  { keys: ['?'], command: 'help', contexts: ['list', 'detail', 'help'], help: 'show / hide this key list' },
  { keys: ['escape'], command: 'back', contexts: ['list', 'detail', 'help'], help: 'close the pane / go back' },
  { keys: ['return'], command: 'open', contexts: ['list'], help: 'open the session / the detail pane of the request' },
  { keys: ['return'], command: 'back', contexts: ['detail'], help: 'close the detail pane' },
  { keys: ['j', 'down'], command: 'down', contexts: NAV, help: 'next row (in the detail pane: scroll)' },
  { keys: ['k', 'up'], command: 'up', contexts: NAV, help: 'previous row (in the detail pane: scroll)' },
  { keys: ['ctrl-d', 'pagedown', 'space'], command: 'pageDown', contexts: NAV, help: 'half a page down' },
  { keys: ['ctrl-u', 'pageup'], command: 'pageUp', contexts: NAV, help: 'half a page up' },
  { keys: ['g', 'home'], command: 'top', contexts: NAV, help: 'first row' },
  { keys: ['G', 'end'], command: 'bottom', contexts: NAV, help: 'last row' },
  { keys: [']', 'J'], command: 'nextRequest', contexts: ['detail'], help: 'detail of the next request' },
  { keys: ['[', 'K'], command: 'prevRequest', contexts: ['detail'], help: 'detail of the previous request' },
  { keys: ['/'], command: 'filter', contexts: NAV, help: 'edit the filter (e.g. op==READ && dur>1ms)' },
  { keys: ['c'], command: 'clearFilter', contexts: NAV, help: 'clear filter, toggles and follow scope' },
  { keys: ['x'], command: 'toggleErrors', contexts: NAV, help: 'toggle: errors only' },
  { keys: ['i'], command: 'toggleTrouble', contexts: NAV, help: 'toggle: interrupted / late / unanswered / aborted only' },
  { keys: ['l'], command: 'toggleSlow', contexts: NAV, help: 'toggle: slow requests only (dur>=10ms)' },
  { keys: ['s'], command: 'sort', contexts: NAV, help: 'sort by time / by duration (slowest first)' },
  { keys: ['o'], command: 'followOrigin', contexts: NAV, help: 'follow: jump to where the nodeid / fh came from (LOOKUP, CREATE, OPEN reply)' },
  { keys: ['n'], command: 'sameNodeid', contexts: NAV, help: 'follow: every request on the same nodeid' },
  { keys: ['f'], command: 'sameFh', contexts: NAV, help: 'follow: every request on the same fh' },
  { keys: ['w'], command: 'inFlight', contexts: NAV, help: 'follow: what was in flight when this request was read' },
  { keys: ['1'], command: 'viewSessions', contexts: NAV, help: 'sessions view' },
  { keys: ['2'], command: 'viewRequests', contexts: NAV, help: 'requests view' },
  { keys: ['3', 't'], command: 'viewStats', contexts: NAV, help: 'stats view: percentiles, histogram, timeline' },
  { keys: ['d'], command: 'diffMark', contexts: NAV, help: 'diff: mark the session under the cursor (or the open one) as A; d on another shows A → B' },
  { keys: ['4', 'D'], command: 'viewDiff', contexts: NAV, help: 'diff view: the last two sessions compared' },
  { keys: ['R'], command: 'replay', contexts: NAV, help: 'replay the session against a server command you type (compares the filtered requests)' },
  { keys: ['return'], command: 'filterApply', contexts: ['filter'], help: 'apply the filter (or start the replay)' },
  { keys: ['escape'], command: 'filterCancel', contexts: ['filter'], help: 'leave the filter bar unchanged' },
  { keys: ['backspace', 'delete'], command: 'filterBackspace', contexts: ['filter'], help: 'delete the character before the cursor' },
  { keys: ['left'], command: 'filterLeft', contexts: ['filter'], help: 'cursor left' },
  { keys: ['right'], command: 'filterRight', contexts: ['filter'], help: 'cursor right' },
  { keys: ['ctrl-u'], command: 'filterKill', contexts: ['filter'], help: 'erase the whole filter' },
];

/** The key's name in the keymap's vocabulary, or null for keys the keymap never names. */
export function keyName(input: string, key: Key): KeyName | null {
  if (key.upArrow) return 'up';
  if (key.downArrow) return 'down';
  if (key.leftArrow) return 'left';
  if (key.rightArrow) return 'right';
  if (key.pageDown) return 'pagedown';
  if (key.pageUp) return 'pageup';
  if (key.home) return 'home';
  if (key.end) return 'end';
  if (key.return) return 'return';
  if (key.escape) return 'escape';
  if (key.tab) return 'tab';
  if (key.backspace) return 'backspace';
  if (key.delete) return 'delete';
  if (key.ctrl && input.length === 1) return `ctrl-${input.toLowerCase()}`;
  if (input === ' ') return 'space';
  if (input.length === 1) return input;
  return null;
}

/** What a key press means in a context. */
export type Resolved = { command: Command } | { insert: string } | null;

/**
 * Resolves a key press. In the filter bar, anything that is not bound and is printable is text
 * to insert (a paste arrives as one multi-character input).
 */
export function resolveKey(context: KeyContext, input: string, key: Key): Resolved {
  const name = keyName(input, key);
  if (name !== null) {
    for (const b of KEYMAP) {
      if (b.contexts.includes(context) && b.keys.includes(name)) return { command: b.command };
    }
  }
  if (context === 'filter' && !key.ctrl && !key.meta && input.length > 0 && !/[\x00-\x1f\x7f]/.test(input)) {
    return { insert: input };
  }
  return null;
}

/** Display form of a key: `ctrl-d` -> `Ctrl-D`, `return` -> `Enter`. */
export function displayKey(k: KeyName): string {
  const special: Record<string, string> = {
    return: 'Enter', escape: 'Esc', up: '↑', down: '↓', left: '←', right: '→',
    pagedown: 'PgDn', pageup: 'PgUp', home: 'Home', end: 'End', space: 'Space',
    backspace: 'Backspace', delete: 'Del', tab: 'Tab',
  };
  if (special[k]) return special[k]!;
  if (k.startsWith('ctrl-')) return `Ctrl-${k.slice(5).toUpperCase()}`;
  return k;
}

/** Help rows for one context: keys as displayed, and what they do. */
export function helpRows(contexts: KeyContext[]): Array<{ keys: string; help: string }> {
  return KEYMAP.filter((b) => b.contexts.some((c) => contexts.includes(c))).map((b) => ({
    keys: b.keys.map(displayKey).join(' '),
    help: b.help,
  }));
}

/** docs/keymap.md, generated from KEYMAP (see test/tui-keymap.test.ts, which keeps the file in sync). */
export function keymapMarkdown(): string {
  const sections: Array<[string, KeyContext[]]> = [
    ['Lists (sessions, requests, stats)', ['list']],
    ['Detail pane', ['detail']],
    ['Filter bar', ['filter']],
  ];
  let out = '# fusetrace tui keys\n\nGenerated from `src/tui/keymap.ts`; do not edit by hand.\n';
  for (const [title, ctx] of sections) {
    out += `\n## ${title}\n\n| keys | command | what it does |\n|---|---|---|\n`;
    for (const b of KEYMAP.filter((x) => x.contexts.some((c) => ctx.includes(c)))) {
      out += `| ${b.keys.map((k) => '`' + displayKey(k).replace('|', '\\|') + '`').join(' ')} | ${b.command} | ${b.help} |\n`;
    }
  }
  return out;
}
