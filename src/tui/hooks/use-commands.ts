import { useCallback, useRef } from 'react';
import { useInput, type Key } from 'ink';
import { resolveKey, type Command, type KeyContext } from '../keymap.js';

/**
 * Reads keys and hands the app named commands (or text typed into the filter bar); the only place
 * key presses are looked at, through the keymap.
 *
 * The handler given to Ink is stable and reads the latest context from a ref set during render:
 * Ink re-subscribes a changed handler only in a passive effect, and keys typed before that effect
 * runs (a fast typist, a paste, tmux send-keys) would otherwise go to the previous context, e.g.
 * text typed right after `/` would be read as list keys.
 */
export function useCommands(context: KeyContext, onCommand: (command: Command) => void, onInsert: (text: string) => void): void {
  const latest = useRef({ context, onCommand, onInsert });
  latest.current = { context, onCommand, onInsert };
  const handler = useCallback((input: string, key: Key) => {
    for (const [i, k] of splitChunk(input, key)) {
      // Each piece sees the context left by the previous one (text, then Enter applies it).
      const { context: ctx, onCommand: cmd, onInsert: ins } = latest.current;
      const r = resolveKey(ctx, i, k);
      if (r === null) continue;
      if ('command' in r) cmd(r.command);
      else ins(r.insert);
    }
  }, []);
  useInput(handler);
}

/**
 * Ink hands over what one read() returned as one input. Typed text followed at once by Enter or
 * Backspace (a paste, or tmux send-keys under load) arrives as one chunk like `op==READ\r`; split
 * it into the text and the keys so that neither is dropped. Escape sequences are left to Ink.
 */
export function splitChunk(input: string, key: Key): Array<[string, Key]> {
  if (input.length <= 1 || input.startsWith('\x1b') || !/[\r\n\x7f\b]/.test(input)) return [[input, key]];
  const plain: Key = { ...key, return: false, backspace: false, delete: false, ctrl: false, meta: false };
  const out: Array<[string, Key]> = [];
  for (const m of input.matchAll(/[\r\n]|[\x7f\b]|[^\r\n\x7f\b]+/g)) {
    const t = m[0];
    if (t === '\r' || t === '\n') out.push(['', { ...plain, return: true }]);
    else if (t === '\x7f' || t === '\b') out.push(['', { ...plain, delete: true }]);
    else out.push([t, plain]);
  }
  return out;
}
