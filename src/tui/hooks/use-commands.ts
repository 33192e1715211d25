import { useCallback, useEffect, useRef } from 'react';
import { useInput, type Key } from 'ink';
import { resolveKey, type Command, type KeyContext } from '../keymap.js';

/**
 * Reads keys and hands the app named commands (or text typed into the filter bar); the only place
 * key presses are looked at, through the keymap.
 *
 * Two things make this more than a call to resolveKey:
 * - The handler given to Ink is stable and reads the latest context from a ref set during render:
 *   Ink re-subscribes a changed handler only in a passive effect, and keys typed before that effect
 *   runs would otherwise go to the previous context (text typed right after `/` read as list keys).
 * - Ink hands over what one read() returned as one input. Keys typed faster than the app draws (key
 *   repeat, a paste, tmux send-keys) arrive together, like `/op==READ\r` or `jjj`. The chunk is
 *   taken apart one key at a time, each resolved in the context the previous one left behind (the
 *   next piece waits for the render the previous dispatch caused); in the filter bar a run of
 *   printable text is one insertion.
 */
export function useCommands(context: KeyContext, onCommand: (command: Command) => void, onInsert: (text: string) => void): void {
  const latest = useRef({ context, onCommand, onInsert });
  latest.current = { context, onCommand, onInsert };
  const queue = useRef<Array<[string, Key]>>([]);
  const timer = useRef<NodeJS.Immediate | undefined>(undefined);

  const drain = useCallback(() => {
    timer.current = undefined;
    const next = queue.current.shift();
    if (!next) return;
    const [input, key] = next;
    const { context: ctx, onCommand: cmd, onInsert: ins } = latest.current;
    const [piece, rest] = takeKey(ctx, input, key);
    if (rest) queue.current.unshift([rest, key]);
    const r = resolveKey(ctx, piece[0], piece[1]);
    if (r !== null) {
      if ('command' in r) cmd(r.command);
      else ins(r.insert);
    }
    // Let the dispatch render (and update `latest`) before the next key is resolved.
    if (queue.current.length > 0) timer.current = setImmediate(drain);
  }, []);

  const handler = useCallback(
    (input: string, key: Key) => {
      queue.current.push([input, key]);
      if (timer.current === undefined) drain();
    },
    [drain],
  );
  useInput(handler);
  useEffect(
    () => () => {
      if (timer.current) clearImmediate(timer.current);
    },
    [],
  );
}

/**
 * The first key of an input chunk, and what is left of it. Escape sequences and single keys are
 * left whole for Ink's parse; Enter, Backspace and Tab inside a chunk become keys of their own.
 */
export function takeKey(context: KeyContext, input: string, key: Key): [[string, Key], string] {
  if (input === '' || input.startsWith('\x1b')) return [[input, key], ''];
  const plain: Key = { ...key, return: false, backspace: false, delete: false, tab: false, ctrl: false, meta: false, shift: false };
  const c = input[0]!;
  // A lone key as Ink parsed it (Ctrl-D arrives as 'd' with key.ctrl): keep Ink's flags.
  if (input.length === 1 && !/[\r\n\x7f\b\t]/.test(c)) return [[input, key], ''];
  if (c === '\r' || c === '\n') return [['', { ...plain, return: true }], input.slice(1)];
  if (c === '\x7f' || c === '\b') return [['', { ...plain, delete: true }], input.slice(1)];
  if (c === '\t') return [['', { ...plain, tab: true }], input.slice(1)];
  if (context === 'filter') {
    const run = /^[^\r\n\x7f\b\t\x1b]+/.exec(input)![0];
    return [[run, plain], input.slice(run.length)];
  }
  const ch = [...input][0]!;
  return [[ch, { ...plain, shift: /[A-Z]/.test(ch) }], input.slice(ch.length)];
}
