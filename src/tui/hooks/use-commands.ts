import { useInput } from 'ink';
import { resolveKey, type Command, type KeyContext } from '../keymap.js';

/**
 * Reads keys and hands the app named commands (or text typed into the filter bar); the only place
 * key presses are looked at, through the keymap.
 */
export function useCommands(context: KeyContext, onCommand: (command: Command) => void, onInsert: (text: string) => void): void {
  useInput((input, key) => {
    const r = resolveKey(context, input, key);
    if (r === null) return;
    if ('command' in r) onCommand(r.command);
    else onInsert(r.insert);
  });
}
