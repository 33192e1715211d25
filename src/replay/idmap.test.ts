import { describe, expect, it } from 'vitest';
import { buildRequest, decodeRequest, Opcode } from '../protocol/index.js';
import { IdMap } from './idmap.js';
import { REQUEST_ID_FIELDS } from './ids.js';

const req = (opcode: number, nodeid: bigint, arg: Record<string, bigint | number> = {}, names?: string[], items?: Array<Record<string, bigint>>) =>
  buildRequest({ opcode, unique: 100n, nodeid, arg, names, items });

/** The translated frame, decoded, or the missing identifier. */
function translate(ids: IdMap, frame: Buffer, opcode: number) {
  const r = ids.translateRequest(frame, opcode);
  if ('missing' in r) return r.missing;
  const d = decodeRequest(r.frame).frame!;
  return { nodeid: d.nodeid, arg: d.args[0], items: d.items, same: r.frame === frame };
}

describe('IdMap: recorded identifiers to live ones', () => {
  it('the root is fixed; a request naming an unknown nodeid is refused, a bound one rewritten', () => {
    const ids = new IdMap();
    expect(translate(ids, req(Opcode.LOOKUP, 1n, {}, ['a']), Opcode.LOOKUP)).toMatchObject({ nodeid: 1n, same: true });
    expect(translate(ids, req(Opcode.GETATTR, 0x55n), Opcode.GETATTR)).toEqual({ kind: 'nodeid', recorded: 0x55n });
    expect(ids.matchNodeid(0x55n, 0x99n)).toBeNull();
    expect(translate(ids, req(Opcode.GETATTR, 0x55n), Opcode.GETATTR)).toMatchObject({ nodeid: 0x99n, same: false });
  });

  it('checks consistency: one recorded node is one live node, and two recorded nodes stay two', () => {
    const ids = new IdMap();
    expect(ids.matchNodeid(10n, 20n)).toBeNull();
    expect(ids.matchNodeid(10n, 20n)).toBeNull(); // a second LOOKUP of the same node
    expect(ids.matchNodeid(10n, 21n)).toMatch(/recorded nodeid 0xa is live 0x14, but the server now answered 0x15/);
    expect(ids.matchNodeid(11n, 20n)).toMatch(/live nodeid 0x14 already stands for recorded 0xa, not 0xb/);
    expect(ids.lookup('nodeid', 10n)).toBe(20n);
  });

  it('FORGET counts follow the lookups: the binding ends when the count reaches 0', () => {
    const ids = new IdMap();
    ids.matchNodeid(10n, 20n);
    ids.matchNodeid(10n, 20n);
    ids.matchIno(500n, 900n, 10n);
    // The kernel forgets with the translated nodeid; the count is its own.
    expect(translate(ids, req(Opcode.FORGET, 10n, { nlookup: 1n }), Opcode.FORGET)).toMatchObject({ nodeid: 20n });
    ids.noteSent(req(Opcode.FORGET, 10n, { nlookup: 1n }), Opcode.FORGET);
    expect(ids.liveNodeid(10n)).toBe(20n);
    ids.noteSent(req(Opcode.FORGET, 10n, { nlookup: 1n }), Opcode.FORGET);
    expect(ids.liveNodeid(10n)).toBeUndefined();
    // The inode number went with the node: a new file may reuse it on either side.
    expect(ids.lookup('ino', 500n)).toBeUndefined();
    expect(ids.matchNodeid(10n, 30n)).toBeNull();
  });

  it('BATCH_FORGET entries are translated and counted', () => {
    const ids = new IdMap();
    ids.matchNodeid(10n, 20n);
    ids.matchNodeid(11n, 21n);
    const frame = buildRequest({ opcode: Opcode.BATCH_FORGET, unique: 0n, arg: { count: 2 }, items: [{ nodeid: 10n, nlookup: 1n }, { nodeid: 11n, nlookup: 1n }] });
    const t = translate(ids, frame, Opcode.BATCH_FORGET) as unknown as { items: Array<{ nodeid: bigint }> };
    expect(t.items.map((i) => i.nodeid)).toEqual([20n, 21n]);
    ids.noteSent(frame, Opcode.BATCH_FORGET);
    expect(ids.liveNodeid(10n)).toBeUndefined();
    expect(ids.liveNodeid(11n)).toBeUndefined();
  });

  it('fh in request bodies: READ, GETATTR only with FUSE_GETATTR_FH, RENAME newdir and LINK oldnodeid as nodes', () => {
    const ids = new IdMap();
    ids.matchNodeid(10n, 20n);
    ids.bindFh(3n, 7n);
    const read = translate(ids, req(Opcode.READ, 10n, { fh: 3n, offset: 0n, size: 4096 }), Opcode.READ) as { arg: Record<string, unknown> };
    expect(read.arg.fh).toBe(7n);
    expect(translate(ids, req(Opcode.READ, 10n, { fh: 4n }), Opcode.READ)).toEqual({ kind: 'fh', recorded: 4n });
    // getattr_flags without FUSE_GETATTR_FH: fh is not a handle and stays as it is.
    const ga = translate(ids, req(Opcode.GETATTR, 10n, { getattr_flags: 0, fh: 99n }), Opcode.GETATTR) as { arg: Record<string, unknown> };
    expect(ga.arg.fh).toBe(99n);
    const gaFh = translate(ids, req(Opcode.GETATTR, 10n, { getattr_flags: 1, fh: 3n }), Opcode.GETATTR) as { arg: Record<string, unknown> };
    expect(gaFh.arg.fh).toBe(7n);
    const rn = translate(ids, req(Opcode.RENAME, 1n, { newdir: 10n }, ['a', 'b']), Opcode.RENAME) as { arg: Record<string, unknown> };
    expect(rn.arg.newdir).toBe(20n);
    expect(translate(ids, req(Opcode.LINK, 1n, { oldnodeid: 12n }, ['c']), Opcode.LINK)).toEqual({ kind: 'nodeid', recorded: 12n });
  });

  it('an fh shared by several opens lives until the last RELEASE', () => {
    const ids = new IdMap();
    ids.bindFh(0n, 0n);
    ids.bindFh(0n, 0n);
    ids.noteSent(req(Opcode.RELEASE, 5n, { fh: 0n }), Opcode.RELEASE);
    expect(ids.liveFh(0n)).toBe(0n);
    ids.noteSent(req(Opcode.RELEASE, 5n, { fh: 0n }), Opcode.RELEASE);
    expect(ids.liveFh(0n)).toBeUndefined();
  });

  it('a pointer fh handed out again before the first RELEASEDIR went out: that RELEASEDIR frees the first live fh, not the second', () => {
    // passthrough_ll's fh is a pointer: it freed 3 (RELEASEDIR of the first open, read first) and
    // handed 3 out again to the next OPENDIR. The replay bound the second open (live 9) before it
    // sent that RELEASEDIR, whose live fh is the first open's 8. Releasing 9 instead made the live
    // server free the open directory the next READDIR used.
    const ids = new IdMap();
    ids.bindFh(3n, 8n);
    ids.bindFh(3n, 9n);
    const rel = translate(ids, req(Opcode.RELEASEDIR, 1n, { fh: 3n }), Opcode.RELEASEDIR) as { arg: Record<string, unknown> };
    expect(rel.arg.fh).toBe(8n);
    ids.noteSent(req(Opcode.RELEASEDIR, 1n, { fh: 3n }), Opcode.RELEASEDIR);
    const rd = translate(ids, req(Opcode.READDIR, 1n, { fh: 3n, offset: 0n, size: 4096 }), Opcode.READDIR) as { arg: Record<string, unknown> };
    expect(rd.arg.fh).toBe(9n);
    expect(ids.liveFh(3n)).toBe(9n);
    ids.noteSent(req(Opcode.RELEASEDIR, 1n, { fh: 3n }), Opcode.RELEASEDIR);
    expect(ids.liveFh(3n)).toBeUndefined();
  });

  it('directory cookies are translated within their open directory', () => {
    const ids = new IdMap();
    ids.bindFh(3n, 8n);
    expect(ids.matchCookie(3n, 1000n, 17n)).toBeNull();
    const next = translate(ids, req(Opcode.READDIRPLUS, 1n, { fh: 3n, offset: 1000n, size: 4096 }), Opcode.READDIRPLUS) as { arg: Record<string, unknown> };
    expect(next.arg).toMatchObject({ fh: 8n, offset: 17n });
    expect(translate(ids, req(Opcode.READDIR, 1n, { fh: 3n, offset: 0n }), Opcode.READDIR)).toMatchObject({ arg: { fh: 8n, offset: 0n } });
    expect(translate(ids, req(Opcode.READDIR, 1n, { fh: 3n, offset: 5n }), Opcode.READDIR)).toEqual({ kind: 'dircookie', recorded: 5n });
    ids.noteSent(req(Opcode.RELEASEDIR, 1n, { fh: 3n }), Opcode.RELEASEDIR);
    expect(ids.lookup('off', 1000n, 3n)).toBeUndefined();
  });

  it('takes field offsets from the codec\'s struct layouts (fuse.h)', () => {
    const at = (op: number) => REQUEST_ID_FIELDS[op].map((f) => `${f.field}@${f.off}:${f.kind}`);
    expect(at(Opcode.READ)).toEqual(['fh@0:fh']);
    expect(at(Opcode.GETATTR)).toEqual(['fh@8:fh']);
    expect(at(Opcode.READDIRPLUS)).toEqual(['fh@0:fh', 'offset@8:dircookie']);
    expect(at(Opcode.COPY_FILE_RANGE)).toEqual(['fh_in@0:fh', 'nodeid_out@16:nodeid', 'fh_out@24:fh']);
    expect(Object.keys(REQUEST_ID_FIELDS).every((k) => /^\d+$/.test(k))).toBe(true);
  });

  it('after a directory reply cut by --snaplen, the next READDIR goes on from the live reply\'s last entry', () => {
    const ids = new IdMap();
    ids.bindFh(3n, 8n);
    expect(translate(ids, req(Opcode.READDIRPLUS, 1n, { fh: 3n, offset: 77n }), Opcode.READDIRPLUS)).toEqual({ kind: 'dircookie', recorded: 77n });
    ids.noteCutDirReply(3n, 4242n);
    expect(translate(ids, req(Opcode.READDIRPLUS, 1n, { fh: 3n, offset: 77n }), Opcode.READDIRPLUS)).toMatchObject({ arg: { fh: 8n, offset: 4242n } });
  });
});
