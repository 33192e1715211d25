import { describe, expect, it } from 'vitest';
import { buildReply, decodeReply, Opcode, type Fields } from '../protocol/index.js';
import { DEFAULT_RULES, compareTrees, parseRules, type NormRule, type TranslateCheck } from './compare.js';
import { replyTree } from './engine.js';
import { FixedReplies } from './fixed-reply.js';

/** Ids translate when live = recorded + 1000 (nodeid, fh, ino, generation). */
const plus1000: TranslateCheck = (_kind, rec, live) => (live === rec + 1000n ? null : `recorded ${rec}, live ${live}`);

function reply(opcode: number, args: Fields[], error = 0): Buffer {
  return buildReply({ unique: 10n, opcode, error, args: error ? undefined : args });
}

function entry(over: Partial<{ nodeid: bigint; ino: bigint; size: bigint; blocks: bigint; mode: number; mtime: bigint; nlink: number; entry_valid: bigint }> = {}): Fields {
  return {
    nodeid: over.nodeid ?? 5n, generation: 0n, entry_valid: over.entry_valid ?? 1n, attr_valid: 1n,
    attr: {
      ino: over.ino ?? 100n, size: over.size ?? 12n, blocks: over.blocks ?? 8n, mode: over.mode ?? 0o100644,
      mtime: over.mtime ?? 1000n, nlink: over.nlink ?? 1,
    },
  };
}

/** What the full comparison says: equal under the rules or not. */
function fullSays(opcode: number, rec: Buffer, live: Buffer, rules: readonly NormRule[]): boolean {
  const a = decodeReply(rec, { opcode }).frame!;
  const b = decodeReply(live, { opcode }).frame!;
  return compareTrees(replyTree(a), replyTree(b), rules, plus1000).length === 0;
}

/** What the in-place comparison says (equal only when it can tell). */
function fixedSays(opcode: number, rec: Buffer, live: Buffer, rules: readonly NormRule[]): boolean {
  const f = new FixedReplies(rules);
  const l = f.sameExceptIds(opcode, 45, rec, live);
  return l !== null && f.idsEqual(l, rec, live, plus1000);
}

describe('fixed-layout replies compared in place', () => {
  const cases: Array<[string, number, Buffer, Buffer]> = [
    ['same entry, ids translated', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry()]), reply(Opcode.LOOKUP, [entry({ nodeid: 1005n, ino: 1100n })])],
    ['nodeid not translated', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry()]), reply(Opcode.LOOKUP, [entry({ nodeid: 6n, ino: 1100n })])],
    ['mtime and timeouts differ (ignored)', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry()]),
      reply(Opcode.LOOKUP, [entry({ nodeid: 1005n, ino: 1100n, mtime: 5n, entry_valid: 9n })])],
    ['file size differs', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry()]), reply(Opcode.LOOKUP, [entry({ nodeid: 1005n, ino: 1100n, size: 13n })])],
    ['file blocks differ (ignored @file)', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry()]),
      reply(Opcode.LOOKUP, [entry({ nodeid: 1005n, ino: 1100n, blocks: 16n })])],
    ['directory size differs (ignored @dir)', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry({ mode: 0o040755 })]),
      reply(Opcode.LOOKUP, [entry({ mode: 0o040755, nodeid: 1005n, ino: 1100n, size: 4096n })])],
    ['a directory now, a file then', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry({ mode: 0o100644, size: 1n })]),
      reply(Opcode.LOOKUP, [entry({ mode: 0o040755, nodeid: 1005n, ino: 1100n, size: 2n })])],
    ['nlink differs', Opcode.GETATTR, reply(Opcode.GETATTR, [{ attr_valid: 1n, attr: { ino: 7n, mode: 0o100644, nlink: 1 } }]),
      reply(Opcode.GETATTR, [{ attr_valid: 3n, attr: { ino: 1007n, mode: 0o100644, nlink: 2 } }])],
    ['getattr equal', Opcode.GETATTR, reply(Opcode.GETATTR, [{ attr_valid: 1n, attr: { ino: 7n, mode: 0o100644, nlink: 1 } }]),
      reply(Opcode.GETATTR, [{ attr_valid: 3n, attr: { ino: 1007n, mode: 0o100644, nlink: 1 } }])],
    ['create: entry and fh', Opcode.CREATE, reply(Opcode.CREATE, [entry(), { fh: 3n, open_flags: 0 }]),
      reply(Opcode.CREATE, [entry({ nodeid: 1005n, ino: 1100n }), { fh: 1003n, open_flags: 0 }])],
    ['create: open flags differ', Opcode.CREATE, reply(Opcode.CREATE, [entry(), { fh: 3n, open_flags: 0 }]),
      reply(Opcode.CREATE, [entry({ nodeid: 1005n, ino: 1100n }), { fh: 1003n, open_flags: 2 }])],
    ['same error', Opcode.LOOKUP, reply(Opcode.LOOKUP, [], -2), reply(Opcode.LOOKUP, [], -2)],
    ['another error', Opcode.LOOKUP, reply(Opcode.LOOKUP, [], -2), reply(Opcode.LOOKUP, [], -13)],
    ['an error now, an entry then', Opcode.LOOKUP, reply(Opcode.LOOKUP, [entry()]), reply(Opcode.LOOKUP, [], -2)],
    ['header only', Opcode.UNLINK, reply(Opcode.UNLINK, []), reply(Opcode.UNLINK, [])],
    ['write count differs', Opcode.WRITE, reply(Opcode.WRITE, [{ size: 4096 }]), reply(Opcode.WRITE, [{ size: 100 }])],
  ];
  const ruleSets: Array<[string, readonly NormRule[]]> = [
    ['defaults', DEFAULT_RULES],
    ['mtime=exact size=ignore', [...DEFAULT_RULES, ...parseRules('mtime=exact,attr.size=ignore,blocks=exact')]],
    ['error=ignore nlink=ignore', [...DEFAULT_RULES, ...parseRules('error=ignore,nlink=ignore,open_flags=ignore')]],
  ];
  for (const [rname, rules] of ruleSets) {
    for (const [name, opcode, rec, live] of cases) {
      it(`${name} (${rname}): equal in place only where the full comparison finds them equal`, () => {
        const full = fullSays(opcode, rec, live, rules);
        const fixed = fixedSays(opcode, rec, live, rules);
        // It may leave a case to the full comparison, never call unequal replies equal; for these
        // layouts it decides every equal case itself.
        expect(fixed).toBe(full);
      });
    }
  }

  it('leaves replies of another length, data and INIT to the full comparison', () => {
    const f = new FixedReplies(DEFAULT_RULES);
    const a = reply(Opcode.LOOKUP, [entry()]);
    expect(f.sameExceptIds(Opcode.LOOKUP, 45, a, a.subarray(0, a.length - 8))).toBeNull();
    expect(f.layoutOf(Opcode.READ, 45)).toBeNull();
    expect(f.layoutOf(Opcode.INIT, 45)).toBeNull();
    expect(f.layoutOf(Opcode.STATX, 45)).toBeNull();
    expect(f.layoutOf(Opcode.READDIRPLUS, 45)).toBeNull();
  });
});
