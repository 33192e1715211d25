/**
 * nodeid -> path resolution through the ledger: each request shows the path as of its time, across
 * renames of files and directories, re-created names, nodeid reuse after FORGET, hard links,
 * READDIRPLUS entries and RENAME_EXCHANGE.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Script, direntplus, entryOut, name, openOut, recordScript, row, closeTraces, trace, u32, u64 } from './ledger-frames.fixture.js';
import { PathResolver } from './paths.js';

afterEach(closeTraces);

const LOOKUP = 1, FORGET = 2, GETATTR = 3, SYMLINK = 6, MKNOD = 8, MKDIR = 9, UNLINK = 10, RMDIR = 11, RENAME = 12, LINK = 13;
const CREATE = 35, BATCH_FORGET = 42, READDIRPLUS = 44, RENAME2 = 45, TMPFILE = 51;
const getattrIn = [u32(0), u32(0), u64(0)];
const createIn = (n: string) => [u32(0o101), u32(0o644), u32(0o22), u32(0), name(n)];
const mkdirIn = (n: string) => [u32(0o755), u32(0o22), name(n)];

/** A scripted workload: every request/reply pair answered at once, unique counting up by 2. */
class Workload {
  readonly s = new Script();
  private u = 2;
  /** Sends a request, answers it with `reply` (error 0) or `error`, returns the request's seq. */
  op(opcode: number, nodeid: number, args: Buffer[], reply: Buffer[] = [], error = 0): number {
    const u = this.u;
    this.u += 2;
    const f = this.s.req(opcode, u, nodeid, args);
    this.s.reply(u, error, error ? [] : reply);
    return f.seq;
  }
  noreply(opcode: number, nodeid: number, args: Buffer[]): number {
    const u = this.u;
    this.u += 2;
    return this.s.req(opcode, u, nodeid, args).seq;
  }
  getattr(nodeid: number): number {
    return this.op(GETATTR, nodeid, getattrIn, [Buffer.alloc(104)]);
  }
}

describe('paths', () => {
  it('follows renames of files and of whole directories, as of each request', () => {
    const { db } = trace();
    const w = new Workload();
    const mkdir = w.op(MKDIR, 1, mkdirIn('src'), [entryOut(2)]);
    const mkdir2 = w.op(MKDIR, 2, mkdirIn('lib'), [entryOut(3)]);
    const create = w.op(CREATE, 3, createIn('a.c'), [entryOut(4), openOut(70)]);
    const before = w.getattr(4);
    // mv /src /old  (a directory: its subtree moves with it)
    const mv = w.op(RENAME, 1, [u64(1), name('src'), name('old')]);
    const after = w.getattr(4);
    // RENAME2 with RENAME_NOREPLACE (1): mv /old/lib/a.c /b.c
    const mv2 = w.op(RENAME2, 3, [u64(1), u32(1), u32(0), name('a.c'), name('b.c')]);
    const after2 = w.getattr(4);
    // A refused rename changes nothing.
    w.op(RENAME, 1, [u64(2), name('b.c'), name('x.c')], [], -18 /* EXDEV */);
    const after3 = w.getattr(4);
    const { session } = recordScript(db, w.s);
    expect(row(db, session, mkdir).path).toBe('/src');
    expect(row(db, session, mkdir2).path).toBe('/src/lib');
    expect(row(db, session, create)).toMatchObject({ path: '/src/lib/a.c', fh: 70 });
    expect(row(db, session, before).path).toBe('/src/lib/a.c');
    expect(row(db, session, mv).path).toBe('/src');
    expect(row(db, session, after).path).toBe('/old/lib/a.c');
    expect(row(db, session, mv2).path).toBe('/old/lib/a.c');
    expect(row(db, session, after2).path).toBe('/b.c');
    expect(row(db, session, after3).path).toBe('/b.c');
  });

  it('a re-created name is a new nodeid; the old one, still open, shows as deleted', () => {
    const { db } = trace();
    const w = new Workload();
    w.op(CREATE, 1, createIn('log'), [entryOut(5), openOut(1)]);
    const unlink = w.op(UNLINK, 1, [name('log')]);
    const readOld = w.getattr(5);
    w.op(CREATE, 1, createIn('log'), [entryOut(6), openOut(2)]);
    const readNew = w.getattr(6);
    const readOld2 = w.getattr(5);
    // rename over an existing name: the replaced file loses its name
    w.op(CREATE, 1, createIn('tmp'), [entryOut(7), openOut(3)]);
    w.op(RENAME, 1, [u64(1), name('tmp'), name('log')]);
    const replaced = w.getattr(6);
    const moved = w.getattr(7);
    const { session } = recordScript(db, w.s);
    expect(row(db, session, unlink).path).toBe('/log');
    expect(row(db, session, readOld).path).toBe('/log (deleted)');
    expect(row(db, session, readNew).path).toBe('/log');
    expect(row(db, session, readOld2).path).toBe('/log (deleted)');
    expect(row(db, session, replaced).path).toBe('/log (deleted)');
    expect(row(db, session, moved).path).toBe('/log');
  });

  it('a nodeid forgotten to zero may come back as another file', () => {
    const { db } = trace();
    const w = new Workload();
    w.op(LOOKUP, 1, [name('a')], [entryOut(9)]);
    w.op(LOOKUP, 1, [name('a')], [entryOut(9)]); // nlookup 2
    const forget1 = w.noreply(FORGET, 9, [u64(1)]);
    const stillA = w.getattr(9);
    // BATCH_FORGET { count 1, dummy } { nodeid 9, nlookup 1 }: now zero
    const forget2 = w.noreply(BATCH_FORGET, 0, [u32(1), u32(0), u64(9), u64(1)]);
    const gone = w.getattr(9);
    w.op(MKNOD, 1, [u32(0o10644), u32(0), u32(0o22), u32(0), name('fifo')], [entryOut(9)]);
    const reused = w.getattr(9);
    const { session } = recordScript(db, w.s);
    expect(row(db, session, forget1)).toMatchObject({ path: '/a', state: 'noreply' });
    expect(row(db, session, stillA).path).toBe('/a');
    expect(row(db, session, forget2)).toMatchObject({ path: null, state: 'noreply' });
    expect(row(db, session, gone).path).toBe('<nodeid:9>');
    expect(row(db, session, reused).path).toBe('/fifo');
  });

  it('names from READDIRPLUS, SYMLINK, LINK, TMPFILE; RMDIR; RENAME_EXCHANGE swaps', () => {
    const { db } = trace();
    const w = new Workload();
    w.op(MKDIR, 1, mkdirIn('d'), [entryOut(2)]);
    const rdp = w.op(READDIRPLUS, 2, [u64(1), u64(0), u32(4096), u32(0), u64(0), u32(0), u32(0)], [
      direntplus([['.', 2], ['..', 1], ['x', 3], ['y', 4]]),
    ]);
    const x = w.getattr(3);
    const y = w.getattr(4);
    const sym = w.op(SYMLINK, 2, [name('ln'), name('/etc/passwd')], [entryOut(5)]);
    const symAttr = w.getattr(5);
    const link = w.op(LINK, 1, [u64(3), name('hard')], [entryOut(3)]);
    const linked = w.getattr(3);
    w.op(UNLINK, 1, [name('hard')]);
    const unlinkedOne = w.getattr(3);
    w.op(RENAME2, 2, [u64(2), u32(2), u32(0), name('x'), name('y')]);
    const swappedX = w.getattr(3);
    const swappedY = w.getattr(4);
    const tmp = w.op(TMPFILE, 2, [u32(0o2), u32(0o600), u32(0o22), u32(0), name('/')], [entryOut(6), openOut(4)]);
    const tmpAttr = w.getattr(6);
    w.op(MKDIR, 2, mkdirIn('e'), [entryOut(7)]);
    const rmdir = w.op(RMDIR, 2, [name('e')]);
    const rmAttr = w.getattr(7);
    const { session, ledger } = recordScript(db, w.s);
    // "." and ".." in READDIRPLUS are not lookups (fs/fuse/readdir.c fuse_direntplus_link).
    expect((ledger as unknown as { paths: PathResolver }).paths.nlookup(1n)).toBe(0n);
    expect((ledger as unknown as { paths: PathResolver }).paths.nlookup(2n)).toBe(1n);
    expect(row(db, session, rdp).path).toBe('/d');
    expect(row(db, session, x).path).toBe('/d/x');
    expect(row(db, session, y).path).toBe('/d/y');
    expect(row(db, session, sym).path).toBe('/d/ln');
    expect(row(db, session, symAttr).path).toBe('/d/ln');
    expect(row(db, session, link).path).toBe('/hard');
    expect(row(db, session, linked).path).toBe('/hard');
    expect(row(db, session, unlinkedOne).path).toBe('/d/x');
    expect(row(db, session, swappedX).path).toBe('/d/y');
    expect(row(db, session, swappedY).path).toBe('/d/x');
    expect(row(db, session, tmp)).toMatchObject({ path: '/d', fh: 4 });
    expect(row(db, session, tmpAttr).path).toBe('/d/(tmpfile) (deleted)');
    expect(row(db, session, rmdir).path).toBe('/d/e');
    expect(row(db, session, rmAttr).path).toBe('/d/e (deleted)');
  });

  it('counts lookups per nodeid and never forgets the root', () => {
    const p = new PathResolver();
    p.entry(1n, 'a', 2n);
    p.entry(1n, 'a', 2n);
    p.entry(2n, '..', 1n);
    expect(p.nlookup(2n)).toBe(2n);
    p.forget(1n, 100n);
    expect(p.path(1n)).toBe('/');
    p.forget(2n, 1n);
    expect(p.path(2n)).toBe('/a');
    p.forget(2n, 1n);
    expect(p.path(2n)).toBe('<nodeid:2>');
    expect(p.size).toBe(1);
    // A cycle in corrupt data does not hang.
    p.entry(3n, 'c', 4n);
    p.entry(4n, 'd', 3n);
    expect(p.path(4n)).toMatch(/<nodeid:\d>/);
  });

  it('keeps nodeids above 2^53 apart from their neighbours (a number key would round them together)', () => {
    const p = new PathResolver();
    const big = 2n ** 53n; // 2^53 and 2^53 + 1 are the same double
    const dir = 2n ** 64n - 2n;
    p.entry(1n, 'd', dir);
    p.entry(dir, 'x', big);
    p.entry(dir, 'y', big + 1n);
    p.entry(big, 'inner', 7n);
    expect(p.path(big)).toBe('/d/x');
    expect(p.path(big + 1n)).toBe('/d/y');
    expect(p.path(7n)).toBe('/d/x/inner');
    p.rename(dir, 'x', 1n, 'top');
    expect(p.path(7n)).toBe('/top/inner');
    expect(p.path(big + 1n)).toBe('/d/y');
    p.remove(dir, 'y');
    expect(p.path(big + 1n)).toBe('/d/y (deleted)');
    p.forget(big + 1n, 1n);
    expect(p.path(big + 1n)).toBe(`<nodeid:${big + 1n}>`);
    expect(p.path(big)).toBe('/top');
    expect(p.nlookup(dir)).toBe(1n);
    // The directory forgotten: its children's paths lose it, and nothing of it stays behind.
    p.forget(dir, 1n);
    expect(p.childPath(dir, 'z')).toBe(`<nodeid:${dir}>/z`);
    expect(p.size).toBe(2);
  });
});
