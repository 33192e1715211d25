/**
 * Field-by-field comparison of a recorded reply with the live one, under normalisation rules the
 * user can see (every report lists them) and change (`--rule FIELD=MODE`, `--data length`).
 *
 * A reply is compared as the codec decodes it (src/protocol): a tree of fuse.h field names.
 * Each leaf has a dotted path (`attr.mtime`, `entries[2].dirent.off`); a rule names a path suffix
 * (`mtime` matches `attr.mtime` and `entries[2].entry_out.attr.mtime`), `*` matches within one
 * segment, and a trailing `@dir` (`@file`) limits the rule to structs whose `mode` is a directory
 * (a regular file). The last matching rule wins, so user rules (added after the defaults) override
 * them. One rule is not about a field: `readdir=set|ordered` says whether the entries of a
 * directory listing are compared as a set (by name) or in the order the server gave them.
 */
import { errnoName } from '../protocol/index.js';

/** What a rule does with a field (`set`, `ordered`: only for the `readdir` rule). */
export type RuleMode = 'ignore' | 'exact' | 'translate' | 'length' | 'set' | 'ordered';

export const RULE_MODES: readonly RuleMode[] = ['ignore', 'exact', 'translate', 'length'];

/** The pseudo-field of the rule on directory listings, and its modes. */
export const READDIR_RULE = 'readdir';
export const READDIR_MODES: readonly RuleMode[] = ['set', 'ordered'];

/** Whether directory listings are compared as sets under these rules (the last `readdir` rule wins). */
export function readdirAsSet(rules: readonly NormRule[]): boolean {
  for (let i = rules.length - 1; i >= 0; i--) if (rules[i].field === READDIR_RULE) return rules[i].mode === 'set';
  return false;
}

export interface NormRule {
  /** Path suffix pattern, optionally with `@dir`. */
  field: string;
  mode: RuleMode;
  /** Why the rule exists (printed in reports). */
  why: string;
}

/**
 * The defaults. Everything not named here is compared exactly.
 * - Times: a replay runs later than the recording, on a copy of the backing files.
 * - Timeouts (entry_valid, attr_valid): servers often derive them from the clock or config.
 * - Server-chosen identifiers (nodeid, generation, fh, ino, directory offsets): compared through
 *   the recording->live translation (idmap.ts), i.e. they must name the same things consistently.
 * - Directory size and blocks: they depend on the backing file system's history (deleted entries
 *   leave space behind on ext4; a fresh copy is compact).
 * - statfs counters: free space and inode counts move with everything else on the backing fs.
 */
export const DEFAULT_RULES: readonly NormRule[] = [
  ...['atime', 'atimensec', 'mtime', 'mtimensec', 'ctime', 'ctimensec', 'btime'].flatMap((f) => [
    { field: f, mode: 'ignore' as const, why: 'timestamps differ between recording and replay' },
    { field: `${f}.*`, mode: 'ignore' as const, why: 'timestamps differ between recording and replay' },
  ]),
  ...['entry_valid', 'entry_valid_nsec', 'attr_valid', 'attr_valid_nsec'].map((f) => ({
    field: f, mode: 'ignore' as const, why: 'cache timeouts are configuration, not results',
  })),
  ...['nodeid', 'generation', 'fh', 'ino'].map((f) => ({
    field: f, mode: 'translate' as const, why: 'chosen by the server: compared through the id translation',
  })),
  { field: 'dirent.off', mode: 'translate', why: 'directory offsets are server cookies: compared through the id translation' },
  { field: 'size@dir', mode: 'ignore', why: 'directory sizes depend on the backing file system history' },
  { field: 'blocks@dir', mode: 'ignore', why: 'directory sizes depend on the backing file system history' },
  {
    field: 'blocks@file', mode: 'ignore',
    why: 'blocks allocated to a regular file vary between runs (ext4 delayed allocation and preallocation); size is compared',
  },
  { field: READDIR_RULE, mode: 'set', why: 'the order of directory entries is the server\'s choice and may change between runs' },
  ...['blocks', 'bfree', 'bavail', 'files', 'ffree'].map((f) => ({
    field: `st.${f}`, mode: 'ignore' as const, why: 'statfs counters move with the rest of the backing file system',
  })),
  { field: 'data', mode: 'exact', why: 'file data must match byte for byte (--data length to compare sizes only)' },
];

/** Parses `FIELD=MODE[,FIELD=MODE...]` (the --rule flag); throws RangeError with an exact message. */
export function parseRules(spec: string, why = 'set on the command line'): NormRule[] {
  const out: NormRule[] = [];
  for (const part of spec.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.lastIndexOf('=');
    if (eq <= 0) throw new RangeError(`bad rule '${item}': expected FIELD=MODE with MODE one of ${RULE_MODES.join(', ')}`);
    const field = item.slice(0, eq).trim();
    const mode = item.slice(eq + 1).trim() as RuleMode;
    if (field === READDIR_RULE) {
      if (!READDIR_MODES.includes(mode)) throw new RangeError(`bad rule '${item}': readdir takes ${READDIR_MODES.join(' or ')}`);
    } else if (!RULE_MODES.includes(mode)) {
      throw new RangeError(`bad rule '${item}': MODE must be one of ${RULE_MODES.join(', ')}`);
    }
    if (!/^[A-Za-z0-9_.*]+(@dir|@file)?$/.test(field)) throw new RangeError(`bad rule '${item}': FIELD is a dotted field name like attr.mtime`);
    out.push({ field, mode, why });
  }
  return out;
}

/**
 * A rules file (`--rules FILE`): one FIELD=MODE per line, as --rule takes them; `#` starts a
 * comment. Errors name the line: `FILE:3: bad rule ...`.
 */
export function parseRulesFile(text: string, name: string): NormRule[] {
  const out: NormRule[] = [];
  text.split('\n').forEach((line, i) => {
    const item = line.replace(/#.*/, '').trim();
    if (!item) return;
    try {
      out.push(...parseRules(item, `from ${name}`));
    } catch (err) {
      throw new RangeError(`${name}:${i + 1}: ${(err as Error).message}`);
    }
  });
  return out;
}

/** One leaf of a decoded reply. */
type Leaf = number | bigint | string | boolean | Buffer | null;

interface FlatLeaf {
  /** Path with indices (`entries[2].dirent.off`). */
  path: string;
  /** Path segments without indices, for rule matching. */
  segs: string[];
  value: Leaf;
  /** The enclosing struct's file type (its `mode` & S_IFMT), 0 when it has no mode. */
  type: number;
}

/** S_IFMT / S_IFDIR / S_IFREG (stat.h), as the kernel forwards st_mode in fuse_attr.mode. */
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** Flattens a decoded tree to its leaves, in field order. Never throws. */
export function flatten(tree: unknown): FlatLeaf[] {
  const out: FlatLeaf[] = [];
  const walk = (v: unknown, path: string, segs: string[], type: number): void => {
    if (v === undefined) return;
    if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) {
      out.push({ path, segs, value: v as Leaf, type });
      return;
    }
    if (v instanceof Uint8Array) {
      out.push({ path, segs, value: Buffer.from(v), type });
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${path}[${i}]`, segs, type));
      return;
    }
    const obj = v as Record<string, unknown>;
    const mode = obj.mode;
    const t = typeof mode === 'number' ? mode & S_IFMT : type;
    for (const [k, child] of Object.entries(obj)) {
      walk(child, path ? `${path}.${k}` : k, [...segs, k], t);
    }
  };
  walk(tree, '', [], 0);
  return out;
}

/**
 * Orders the entries of a decoded directory listing (replyTree's `dirents`) by name, so that two
 * listings with the same entries in another order compare equal (the `readdir=set` rule).
 */
export function direntsByName(tree: Record<string, unknown>): void {
  const d = tree.dirents as Array<{ dirent: { name: unknown } }> | undefined;
  if (!Array.isArray(d)) return;
  const key = (e: { dirent: { name: unknown } }): string => String(e.dirent.name);
  d.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** A rule's pattern compiled once: one test per path segment, last segment first. */
interface CompiledRule {
  rule: NormRule;
  /** S_IFDIR for `@dir`, S_IFREG for `@file`, 0 for any. */
  onlyType: number;
  /** Segment tests from the last segment backwards. */
  tests: Array<(seg: string) => boolean>;
}

function compileSeg(pattern: string): (seg: string) => boolean {
  if (!pattern.includes('*')) return (seg) => seg === pattern;
  const re = new RegExp(`^${pattern.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (seg) => re.test(seg);
}

/** Compiled rules and the rule found for each (path, directory) shape, per rule list. */
const compiled = new WeakMap<readonly NormRule[], { rules: CompiledRule[]; cache: Map<string, NormRule | null> }>();

function compile(rules: readonly NormRule[]): { rules: CompiledRule[]; cache: Map<string, NormRule | null> } {
  let c = compiled.get(rules);
  if (!c) {
    c = {
      rules: rules.filter((rule) => rule.field !== READDIR_RULE).map((rule) => {
        const at = rule.field.indexOf('@');
        const qual = at < 0 ? '' : rule.field.slice(at + 1);
        const field = at < 0 ? rule.field : rule.field.slice(0, at);
        const onlyType = qual === 'dir' ? S_IFDIR : qual === 'file' ? S_IFREG : 0;
        return { rule, onlyType, tests: field.split('.').reverse().map(compileSeg) };
      }),
      cache: new Map(),
    };
    compiled.set(rules, c);
  }
  return c;
}

/** The rule for a leaf: the last one whose pattern is a suffix of the leaf's path. */
export function ruleFor(rules: readonly NormRule[], segs: string[], type: number): NormRule | undefined {
  const c = compile(rules);
  const key = `${type}:${segs.join('.')}`;
  const hit = c.cache.get(key);
  if (hit !== undefined) return hit ?? undefined;
  let found: NormRule | null = null;
  for (let i = c.rules.length - 1; i >= 0 && !found; i--) {
    const r = c.rules[i];
    if (r.onlyType !== 0 && r.onlyType !== type) continue;
    if (r.tests.length > segs.length) continue;
    let ok = true;
    for (let k = 0; k < r.tests.length; k++) {
      if (!r.tests[k](segs[segs.length - 1 - k])) {
        ok = false;
        break;
      }
    }
    if (ok) found = r.rule;
  }
  c.cache.set(key, found);
  return found ?? undefined;
}

/** One field that differs. */
export interface FieldDiff {
  field: string;
  recorded: string;
  live: string;
  mode: RuleMode;
  /** Why a translated id is considered different. */
  note?: string;
}

/**
 * Checks a server-chosen identifier through the translation: `kind` is the leaf's name (nodeid,
 * generation, fh, ino, off). Returns null when `live` is what `recorded` translates to. Must not
 * change anything (compareTrees may ask twice); `path` names the leaf for messages, and is empty
 * when only a match is asked.
 */
export type TranslateCheck = (kind: string, recorded: bigint, live: bigint, path: string) => string | null;

/**
 * Rules looked up by path without building the path: one node per path segment (array indices
 * skipped, as in FlatLeaf.segs), the rule per file type cached on the node. Per rule list.
 */
interface RuleNode {
  children: Map<string, RuleNode>;
  segs: string[];
  byType: Map<number, RuleMode>;
}

const ruleTries = new WeakMap<readonly NormRule[], RuleNode>();

function childNode(node: RuleNode, seg: string): RuleNode {
  let c = node.children.get(seg);
  if (!c) {
    c = { children: new Map(), segs: [...node.segs, seg], byType: new Map() };
    node.children.set(seg, c);
  }
  return c;
}

function modeAt(rules: readonly NormRule[], node: RuleNode, type: number): RuleMode {
  let m = node.byType.get(type);
  if (m === undefined) {
    m = ruleFor(rules, node.segs, type)?.mode ?? 'exact';
    node.byType.set(type, m);
  }
  return m;
}

/** Thrown by sameTree when the two trees are not leaf-for-leaf equal: the full comparison says how. */
const DIFFERENT = Symbol('different');

/**
 * True when two decoded replies have the same shape and every leaf is equal under the rules: the
 * common case, answered by walking both trees together, with no flattened leaf lists, path
 * strings or maps. Any difference (a field, a missing or extra field, another shape) returns
 * false, and compareTrees then runs the full comparison that names the differences.
 */
function sameTree(recorded: unknown, live: unknown, rules: readonly NormRule[], check: TranslateCheck): boolean {
  let root = ruleTries.get(rules);
  if (!root) {
    root = { children: new Map(), segs: [], byType: new Map() };
    ruleTries.set(rules, root);
  }
  const leaf = (v: unknown): boolean => v === null || typeof v !== 'object' || v instanceof Uint8Array;
  const walk = (a: unknown, b: unknown, node: RuleNode, type: number): void => {
    if (a === undefined || b === undefined) {
      if (a !== b) throw DIFFERENT;
      return;
    }
    if (leaf(a) || leaf(b)) {
      if (!leaf(a) || !leaf(b)) throw DIFFERENT;
      const mode = modeAt(rules, node, type);
      if (mode === 'ignore') return;
      const x = Buffer.isBuffer(a) || !(a instanceof Uint8Array) ? a : Buffer.from(a);
      const y = Buffer.isBuffer(b) || !(b instanceof Uint8Array) ? b : Buffer.from(b);
      if (!leafEqual(x as Leaf, y as Leaf, mode, node.segs[node.segs.length - 1], check)) throw DIFFERENT;
      return;
    }
    if (Array.isArray(a) || Array.isArray(b)) {
      if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) throw DIFFERENT;
      for (let i = 0; i < a.length; i++) walk(a[i], b[i], node, type);
      return;
    }
    const oa = a as Record<string, unknown>;
    const ob = b as Record<string, unknown>;
    const mode = oa.mode;
    const t = typeof mode === 'number' ? mode & S_IFMT : type;
    let n = 0;
    for (const k in oa) {
      n++;
      if (!(k in ob)) throw DIFFERENT;
      walk(oa[k], ob[k], childNode(node, k), t);
    }
    for (const _k in ob) n--;
    if (n !== 0) throw DIFFERENT;
  };
  try {
    walk(recorded, live, root, 0);
    return true;
  } catch (e) {
    if (e === DIFFERENT) return false;
    throw e;
  }
}

/** Compares two decoded replies; returns the differing fields in recorded field order. */
export function compareTrees(recorded: unknown, live: unknown, rules: readonly NormRule[], check: TranslateCheck): FieldDiff[] {
  if (sameTree(recorded, live, rules, check)) return [];
  const rec = flatten(recorded);
  const liv = flatten(live);
  const liveBy = new Map(liv.map((l) => [l.path, l]));
  const seen = new Set<string>();
  const diffs: FieldDiff[] = [];
  for (const r of rec) {
    seen.add(r.path);
    const l = liveBy.get(r.path);
    const rule = ruleFor(rules, r.segs, r.type);
    const mode = rule?.mode ?? 'exact';
    if (mode === 'ignore') continue;
    if (!l) {
      diffs.push({ field: r.path, recorded: show(r.value, r.segs), live: '(absent)', mode });
      continue;
    }
    const d = compareLeaf(r, l, mode, check);
    if (d) diffs.push(d);
  }
  for (const l of liv) {
    if (seen.has(l.path)) continue;
    const mode = ruleFor(rules, l.segs, l.type)?.mode ?? 'exact';
    if (mode === 'ignore') continue;
    diffs.push({ field: l.path, recorded: '(absent)', live: show(l.value, l.segs), mode });
  }
  return diffs;
}

/** compareLeaf(...) === null, without making the diff (sameTree; `kind` is the leaf's name). */
function leafEqual(a: Leaf, b: Leaf, mode: RuleMode, kind: string, check: TranslateCheck): boolean {
  if (mode === 'translate' && (typeof a === 'bigint' || typeof a === 'number') && (typeof b === 'bigint' || typeof b === 'number')) {
    return check(kind, BigInt(a), BigInt(b), '') === null;
  }
  if (mode === 'length' && (Buffer.isBuffer(a) || typeof a === 'string') && (Buffer.isBuffer(b) || typeof b === 'string')) return a.length === b.length;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    try {
      return BigInt(a as never) === BigInt(b as never);
    } catch {
      return false;
    }
  }
  return a === b;
}

function compareLeaf(r: FlatLeaf, l: FlatLeaf, mode: RuleMode, check: TranslateCheck): FieldDiff | null {
  const a = r.value;
  const b = l.value;
  const diff = (note?: string): FieldDiff => ({ field: r.path, recorded: show(a, r.segs), live: show(b, r.segs), mode, note });
  if (mode === 'translate' && (typeof a === 'bigint' || typeof a === 'number') && (typeof b === 'bigint' || typeof b === 'number')) {
    const note = check(r.segs[r.segs.length - 1], BigInt(a), BigInt(b), r.path);
    return note === null ? null : diff(note);
  }
  if (mode === 'length' && (Buffer.isBuffer(a) || typeof a === 'string') && (Buffer.isBuffer(b) || typeof b === 'string')) {
    return a.length === b.length ? null : diff(`length ${a.length} recorded, ${b.length} live`);
  }
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) {
    if (a.equals(b)) return null;
    const n = Math.min(a.length, b.length);
    let at = 0;
    while (at < n && a[at] === b[at]) at++;
    return diff(`first difference at byte ${at} (${a.length} bytes recorded, ${b.length} live)`);
  }
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    try {
      return BigInt(a as never) === BigInt(b as never) ? null : diff();
    } catch {
      return diff();
    }
  }
  return a === b ? null : diff();
}

/**
 * A leaf as text for reports: numbers in decimal (a `mode` in octal, an `error` with its errno
 * name), data as its length and a printable preview. `segs` is the leaf's path.
 */
export function show(v: unknown, segs: readonly string[] = []): string {
  if (v === null || v === undefined) return String(v);
  const name = segs[segs.length - 1];
  if (name === 'mode' && (typeof v === 'number' || typeof v === 'bigint')) return `0${v.toString(8)}`;
  if (name === 'error' && segs.length === 1 && typeof v === 'number' && v < 0) return `${v} ${errnoName(-v)}`;
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Buffer.isBuffer(v)) {
    const head = v.subarray(0, 24);
    const printable = head.every((c) => (c >= 0x20 && c < 0x7f) || c === 0x0a || c === 0x09);
    const preview = printable ? JSON.stringify(head.toString('latin1')) : head.toString('hex');
    return `${v.length} bytes ${preview}${v.length > head.length ? '…' : ''}`;
  }
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** The rules in effect for reports: consecutive rules with the same mode and reason share a line. */
export function describeRules(rules: readonly NormRule[]): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < rules.length) {
    const { mode, why } = rules[i];
    const fields: string[] = [];
    while (i < rules.length && rules[i].mode === mode && rules[i].why === why) fields.push(rules[i++].field);
    out.push(`${mode}: ${fields.join(' ')}  (${why})`);
  }
  return out;
}
