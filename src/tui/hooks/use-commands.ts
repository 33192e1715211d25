import { useCallback, useRef } from 'react';
import { useInput } from 'ink';
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
  const handler = useCallback((input: string, key: Parameters<Parameters<typeof useInput>[0]>[1]) => {
    const { context: ctx, onCommand: cmd, onInsert: ins } = latest.current;
    const r = resolveKey(ctx, input, key);
    if (r === null) return;
    if ('command' in r) cmd(r.command);
    else ins(r.insert);
  }, []);
  useInput(handler);
}
