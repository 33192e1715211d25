import { describe, expect, it } from 'vitest';
import { buildReply, decodeReply, Opcode } from '../protocol/index.js';
import { DEFAULT_RULES, compareTrees, describeRules, direntsByName, flatten, parseRules, parseRulesFile, readdirAsSet, ruleFor, type NormRule } from './compare.js';
import { replyTree } from './engine.js';

const noTranslation = (): string | null => null;

/** A LOOKUP reply (fuse_entry_out) built by the codec, decoded back into the tree the replay compares. */
function entryTree(over: { nodeid?: bigint; ino?: bigint; size?: bigint; mode?: number; mtime?: bigint; entry_valid?: bigint }): Record<string, unknown> {
  const frame = buildReply({
    unique: 10n,
    opcode: Opcode.LOOKUP,
    args: [{
      nodeid: over.nodeid ?? 5n, generation: 0n, entry_valid: over.entry_valid ?? 1n, attr_valid: 1n,
      attr: { ino: over.ino ?? 100n, size: over.size ?? 12n, mode: over.mode ?? 0o100644, mtime: over.mtime ?? 1000n, nlink: 1 },
    }],
  });
  const d = decodeReply(frame, { opcode: Opcode.LOOKUP });
  expect(d.ok, d.error?.message).toBe(true);
  return replyTree(d.frame!);
}

describe('normalisation rules', () => {
  it('match path suffixes, with * inside a segment and @dir limited to directories', () => {
    const rules: NormRule[] = [
      { field: 'mtime', mode: 'ignore', why: '' },
      { field: 'attr.s*', mode: 'length', why: '' },
      { field: 'size@dir', mode: 'ignore', why: '' },
    ];
    expect(ruleFor(rules, ['entry_out', 'attr', 'mtime'], 0)?.mode).toBe('ignore');
    expect(ruleFor(rules, ['entry_out', 'attr', 'mtimensec'], 0)).toBeUndefined();
    expect(ruleFor(rules, ['entry_out', 'attr', 'size'], 0)?.mode).toBe('length');
    expect(ruleFor(rules, ['entry_out', 'attr', 'size'], 0o040000)?.mode).toBe('ignore');
    expect(ruleFor(rules, ['size'], 0)).toBeUndefined();
  });

  it('the last matching rule wins, so command-line rules override the defaults', () => {
    const rules = [...DEFAULT_RULES, ...parseRules('mtime=exact')];
    expect(ruleFor(rules, ['attr_out', 'attr', 'mtime'], 0)?.mode).toBe('exact');
    expect(ruleFor(DEFAULT_RULES, ['attr_out', 'attr', 'mtime'], 0)?.mode).toBe('ignore');
  });

  it('parseRules validates FIELD=MODE with exact messages', () => {
    expect(parseRules('attr.size=length, ino=exact')).toEqual([
      { field: 'attr.size', mode: 'length', why: 'set on the command line' },
      { field: 'ino', mode: 'exact', why: 'set on the command line' },
    ]);
    expect(() => parseRules('size')).toThrow(/bad rule 'size': expected FIELD=MODE/);
    expect(() => parseRules('size=sometimes')).toThrow(/MODE must be one of ignore, exact, translate, length/);
    expect(() => parseRules('a b=exact')).toThrow(/FIELD is a dotted field name/);
  });

  it('describeRules groups rules that share a mode and a reason', () => {
    const lines = describeRules(DEFAULT_RULES);
    expect(lines[0]).toMatch(/^ignore: atime atime\.\* .* \(timestamps differ/);
    expect(lines.some((l) => l.startsWith('translate: nodeid generation fh ino '))).toBe(true);
  });
});

describe('compareTrees on decoded replies', () => {
  it('ignores times and timeouts by default, and reports what differs field by field', () => {
    const a = entryTree({ mtime: 1n, entry_valid: 1n });
    const b = entryTree({ mtime: 2n, entry_valid: 9n });
    expect(compareTrees(a, b, DEFAULT_RULES, noTranslation)).toEqual([]);
    const c = entryTree({ size: 13n });
    expect(compareTrees(a, c, DEFAULT_RULES, noTranslation)).toEqual([
      { field: 'entry_out.attr.size', recorded: '12', live: '13', mode: 'exact', note: undefined },
    ]);
  });

  it('directory sizes are ignored, file sizes are not', () => {
    const dir = (size: bigint) => entryTree({ size, mode: 0o040755 });
    expect(compareTrees(dir(4096n), dir(120n), DEFAULT_RULES, noTranslation)).toEqual([]);
    expect(compareTrees(entryTree({ size: 1n }), entryTree({ size: 2n }), DEFAULT_RULES, noTranslation)).toHaveLength(1);
  });

  it('server-chosen ids go through the translation check', () => {
    const a = entryTree({ nodeid: 5n, ino: 100n });
    const b = entryTree({ nodeid: 0x7f00n, ino: 900n });
    const seen: string[] = [];
    const ok = (kind: string, rec: bigint, live: bigint): string | null => {
      seen.push(`${kind} ${rec}->${live}`);
      return null;
    };
    expect(compareTrees(a, b, DEFAULT_RULES, ok)).toEqual([]);
    expect(seen).toEqual(['nodeid 5->32512', 'generation 0->0', 'ino 100->900']);
    const bad = compareTrees(a, b, DEFAULT_RULES, (kind) => (kind === 'ino' ? 'inode 100 stands for 101' : null));
    expect(bad).toEqual([{ field: 'entry_out.attr.ino', recorded: '100', live: '900', mode: 'translate', note: 'inode 100 stands for 101' }]);
    // With ino=exact the translation is not consulted and the raw numbers differ.
    expect(compareTrees(a, b, [...DEFAULT_RULES, ...parseRules('ino=exact')], ok).map((d) => d.field)).toEqual(['entry_out.attr.ino']);
  });

  it('data is exact by default and by length with data=length; an error reply has no body to compare', () => {
    const read = (data: string) => replyTree(decodeReply(buildReply({ unique: 4n, opcode: Opcode.READ, data: Buffer.from(data) }), { opcode: Opcode.READ }).frame!);
    const diffs = compareTrees(read('hello\n'), read('HELLO\n'), DEFAULT_RULES, noTranslation);
    expect(diffs).toHaveLength(1);
    expect(diffs[0]).toMatchObject({ field: 'data', recorded: '6 bytes "hello\\n"', live: '6 bytes "HELLO\\n"' });
    expect(diffs[0].note).toMatch(/first difference at byte 0/);
    expect(compareTrees(read('hello\n'), read('HELLO\n'), [...DEFAULT_RULES, ...parseRules('data=length')], noTranslation)).toEqual([]);
    expect(compareTrees(read('hello\n'), read('hello'), [...DEFAULT_RULES, ...parseRules('data=length')], noTranslation)).toHaveLength(1);
    const enoent = replyTree(decodeReply(buildReply({ unique: 4n, opcode: Opcode.READ, error: -2 }), { opcode: Opcode.READ }).frame!);
    expect(compareTrees(read('x'), enoent, DEFAULT_RULES, noTranslation).map((d) => [d.field, d.recorded, d.live])).toEqual([
      ['error', '0', '-2 ENOENT'],
      ['data', '1 bytes "x"', '(absent)'],
    ]);
  });

  it('flatten never throws and names array elements by index', () => {
    expect(flatten({ a: [{ b: 1n }, { b: 2n }], c: Buffer.from('x'), d: null }).map((l) => l.path)).toEqual(['a[0].b', 'a[1].b', 'c', 'd']);
    expect(flatten(undefined)).toEqual([]);
  });
});

describe('rules for real file systems (issue 16)', () => {
  it('blocks of regular files are ignored by default, of other types compared; readdir is a set unless ordered', () => {
    expect(ruleFor(DEFAULT_RULES, ['attr_out', 'attr', 'blocks'], 0o100000)?.mode).toBe('ignore');
    expect(ruleFor(DEFAULT_RULES, ['attr_out', 'attr', 'blocks'], 0o120000)).toBeUndefined();
    expect(readdirAsSet(DEFAULT_RULES)).toBe(true);
    expect(readdirAsSet([...DEFAULT_RULES, ...parseRules('readdir=ordered')])).toBe(false);
    expect(() => parseRules('readdir=ignore')).toThrow(/readdir takes set or ordered/);
    expect(() => parseRules('readdir=set,blocks@file=exact')).not.toThrow();
  });

  it('a rules file: one FIELD=MODE a line, comments, errors name the line', () => {
    const rules = parseRulesFile('# our CI\nblocks@file=exact\n\nreaddir=ordered  # go-fuse keeps order\n', 'ci/replay.rules');
    expect(rules.map((r) => `${r.field}=${r.mode} ${r.why}`)).toEqual(['blocks@file=exact from ci/replay.rules', 'readdir=ordered from ci/replay.rules']);
    expect(() => parseRulesFile('mtime=ignore\nsize=sometimes\n', 'r.txt')).toThrow(/^r\.txt:2: bad rule 'size=sometimes'/);
  });

  it('direntsByName makes two listings of the same entries in another order equal', () => {
    const tree = (names: string[]) => ({ error: 0, dirents: names.map((name, i) => ({ dirent: { ino: BigInt(i + 10), off: BigInt(i + 1), type: 8, name } })) });
    const a = tree(['b', 'a', 'c']);
    const b = tree(['a', 'c', 'b']);
    // Same names at other positions: ino and off follow the name, so compare them by name only.
    const names = (t: ReturnType<typeof tree>) => { direntsByName(t); return t.dirents.map((d) => d.dirent.name); };
    expect(names(a)).toEqual(names(b));
  });
});
