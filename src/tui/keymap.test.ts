import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Key } from 'ink';
import { KEYMAP, keymapMarkdown, resolveKey, type KeyContext } from './keymap.js';

const noKey: Key = {
  upArrow: false, downArrow: false, leftArrow: false, rightArrow: false, pageDown: false, pageUp: false, home: false, end: false,
  return: false, escape: false, ctrl: false, shift: false, tab: false, backspace: false, delete: false, meta: false,
  super: false, hyper: false, capsLock: false, numLock: false,
};
const key = (k: Partial<Key>): Key => ({ ...noKey, ...k });

describe('keymap', () => {
  it('maps vim keys and arrows to the same commands', () => {
    expect(resolveKey('list', 'j', noKey)).toEqual({ command: 'down' });
    expect(resolveKey('list', '', key({ downArrow: true }))).toEqual({ command: 'down' });
    expect(resolveKey('list', 'd', key({ ctrl: true }))).toEqual({ command: 'pageDown' });
    expect(resolveKey('list', 'G', noKey)).toEqual({ command: 'bottom' });
    expect(resolveKey('list', '', key({ return: true }))).toEqual({ command: 'open' });
  });

  it('types text in the filter bar, where q is a letter and Ctrl-U erases', () => {
    expect(resolveKey('filter', 'q', noKey)).toEqual({ insert: 'q' });
    expect(resolveKey('filter', 'op==READ', noKey)).toEqual({ insert: 'op==READ' });
    expect(resolveKey('filter', 'u', key({ ctrl: true }))).toEqual({ command: 'filterKill' });
    expect(resolveKey('filter', '', key({ return: true }))).toEqual({ command: 'filterApply' });
    expect(resolveKey('filter', '', key({ delete: true }))).toEqual({ command: 'filterBackspace' });
  });

  it('binds no key twice in one context', () => {
    const contexts: KeyContext[] = ['list', 'detail', 'filter', 'help'];
    for (const c of contexts) {
      const seen = new Map<string, string>();
      for (const b of KEYMAP.filter((x) => x.contexts.includes(c))) {
        for (const k of b.keys) {
          expect(seen.get(k), `${c}: ${k} bound to ${seen.get(k)} and ${b.command}`).toBeUndefined();
          seen.set(k, b.command);
        }
      }
    }
  });

  it('docs/keymap.md is generated from keymap.ts', () => {
    const file = path.join(import.meta.dirname, '..', '..', 'docs', 'keymap.md');
    if (process.env.UPDATE_DOCS) fs.writeFileSync(file, keymapMarkdown());
    expect(fs.readFileSync(file, 'utf8')).toBe(keymapMarkdown());
  });
});

describe('takeKey', () => {
  it('takes a chunk of keys apart one key at a time, text runs whole in the filter bar', async () => {
    const { takeKey } = await import('./hooks/use-commands.js');
    const all = (ctx: 'list' | 'filter', input: string) => {
      const out: Array<[string, boolean]> = [];
      let rest = input;
      while (rest) {
        const [[i, k], r] = takeKey(ctx, rest, noKey);
        out.push([i, k.return || k.delete]);
        rest = r;
      }
      return out;
    };
    expect(all('list', 'jjG')).toEqual([['j', false], ['j', false], ['G', false]]);
    expect(all('filter', 'op==READ\r')).toEqual([['op==READ', false], ['', true]]);
    expect(all('filter', 'ab\x7fc')).toEqual([['ab', false], ['', true], ['c', false]]);
    expect(takeKey('list', '\x1b[A', noKey)).toEqual([['\x1b[A', noKey], '']);
    expect(takeKey('list', 'j', noKey)).toEqual([['j', noKey], '']);
  });
});

describe('splitCommand', () => {
  it('splits a server command line with quotes like a shell (no expansion)', async () => {
    const { splitCommand } = await import('./replay.js');
    expect(splitCommand(`./myfs -f -o 'source=/a b' "x\\"y" a"b c"`)).toEqual(['./myfs', '-f', '-o', 'source=/a b', 'x"y', 'ab c']);
    expect(splitCommand('   ')).toEqual([]);
  });
});
