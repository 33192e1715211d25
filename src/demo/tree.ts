/**
 * The demo filesystem's contents: a fixed tree whose files each produce one request lifecycle
 * (src/store/ledger.ts states) when read. Everything is deterministic: nodeids, inode numbers, file
 * handles and times come from fixed values and counters that advance only with the requests, so two
 * runs of the same workload (or a replay of a recording) get byte-identical replies.
 */

/** 2024-01-01T00:00:00Z: every atime/mtime/ctime of the demo tree (fuse_attr seconds). */
export const DEMO_EPOCH = 1_704_067_200n;

/** nodeids of the fixed tree; FUSE_ROOT_ID is 1 (fuse.h). Files created at run time start at FIRST_DYNAMIC_NODEID. */
export const NODEID = {
  root: 1n,
  readme: 2n,
  hello: 3n,
  notes: 4n,
  todo: 5n,
  fuse: 6n,
  kernel: 7n,
  scratch: 8n,
  broken: 9n,
  slow: 10n,
  waitEintr: 11n,
  waitAnyway: 12n,
  never: 13n,
} as const;
export const FIRST_DYNAMIC_NODEID = 100n;

/** What a READ of the file does (the point of each demo file). */
export type ReadBehaviour =
  | 'data' // answered at once from the content
  | 'eio' // answered -EIO
  | 'slow' // answered after SLOW_MS
  | 'wait-eintr' // parked until a FUSE_INTERRUPT names it, then answered -EINTR
  | 'wait-anyway' // an INTERRUPT is noted but ignored; answered normally after ANYWAY_MS
  | 'never'; // never answered: outstanding when the session ends

/** Delay of slow.txt's READ reply. */
export const SLOW_MS = 300;
/** Delay of wait-anyway's READ reply, interrupted or not. */
export const ANYWAY_MS = 400;

export interface DemoNode {
  nodeid: bigint;
  parent: bigint;
  name: string;
  dir: boolean;
  /** Permission bits (S_IFREG/S_IFDIR added from `dir`). */
  perm: number;
  content: Buffer;
  writable: boolean;
  read: ReadBehaviour;
  /** Open with FOPEN_DIRECT_IO so every read(2) reaches the server (no page cache in between). */
  directIo: boolean;
  children: Map<string, bigint>;
}

const README = `fusetrace demo filesystem: each file shows one request lifecycle.

  hello.txt     an ordinary read                          -> ok
  notes/        a directory: lookups and readdir          -> ok
  scratch.txt   writable: write, truncate, read back      -> ok
  broken        every read fails                          -> error (EIO)
  slow.txt      the read is answered after ${SLOW_MS} ms        -> ok, slow
  wait-eintr    the read waits for FUSE_INTERRUPT,
                then answers EINTR                        -> interrupted (eintr)
  wait-anyway   the read ignores FUSE_INTERRUPT and
                answers after ${ANYWAY_MS} ms                   -> interrupted (answered)
  never         the read is never answered                -> aborted at the session's end
`;

/** The fixed tree, fresh (scratch.txt empty, no created files). */
export function buildTree(): Map<bigint, DemoNode> {
  const nodes = new Map<bigint, DemoNode>();
  const add = (nodeid: bigint, parent: bigint, name: string, opts: Partial<DemoNode> & { text?: string } = {}) => {
    const n: DemoNode = {
      nodeid, parent, name, dir: opts.dir ?? false, perm: opts.perm ?? (opts.dir ? 0o755 : opts.writable ? 0o666 : 0o444),
      content: opts.content ?? Buffer.from(opts.text ?? '', 'utf8'), writable: opts.writable ?? false,
      read: opts.read ?? 'data', directIo: opts.directIo ?? false, children: new Map(),
    };
    nodes.set(nodeid, n);
    if (nodeid !== parent) nodes.get(parent)!.children.set(name, nodeid);
  };
  add(NODEID.root, NODEID.root, '', { dir: true });
  add(NODEID.readme, NODEID.root, 'README', { text: README });
  add(NODEID.hello, NODEID.root, 'hello.txt', { text: 'Hello from the fusetrace demo filesystem!\n' });
  add(NODEID.notes, NODEID.root, 'notes', { dir: true });
  add(NODEID.todo, NODEID.notes, 'todo.txt', { text: '- record a FUSE server\n- look at the slow requests\n- replay the session\n' });
  add(NODEID.fuse, NODEID.notes, 'fuse.txt', { text: 'Every request the kernel sends has a unique; its reply carries the same unique.\n' });
  add(NODEID.kernel, NODEID.notes, 'kernel.txt', { text: 'A signalled reader makes the kernel send FUSE_INTERRUPT (fs/fuse/dev.c).\n' });
  add(NODEID.scratch, NODEID.root, 'scratch.txt', { writable: true });
  // Scenario files: direct_io so that each read(2) is one READ request the server sees.
  add(NODEID.broken, NODEID.root, 'broken', { text: 'x'.repeat(64), read: 'eio', directIo: true });
  add(NODEID.slow, NODEID.root, 'slow.txt', { text: `this answer took ${SLOW_MS} ms\n`, read: 'slow', directIo: true });
  add(NODEID.waitEintr, NODEID.root, 'wait-eintr', { text: 'not seen: this read ends with EINTR\n', read: 'wait-eintr', directIo: true });
  add(NODEID.waitAnyway, NODEID.root, 'wait-anyway', { text: 'answered anyway, interrupt or not\n', read: 'wait-anyway', directIo: true });
  add(NODEID.never, NODEID.root, 'never', { text: 'n'.repeat(64), read: 'never', directIo: true });
  return nodes;
}

/** S_IFDIR / S_IFREG (the kernel's mode bits, passed through fuse_attr.mode). */
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** fuse_attr values of a node: fixed owner root:root and fixed times. */
export function attrOf(n: DemoNode, nodes: Map<bigint, DemoNode>): Record<string, number | bigint> {
  const size = BigInt(n.content.length);
  return {
    ino: n.nodeid,
    size: n.dir ? 4096n : size,
    blocks: n.dir ? 8n : (size + 511n) / 512n,
    atime: DEMO_EPOCH,
    mtime: DEMO_EPOCH,
    ctime: DEMO_EPOCH,
    mode: (n.dir ? S_IFDIR : S_IFREG) | n.perm,
    // A directory's link count: itself, its entry in the parent, and each subdirectory's `..`.
    nlink: n.dir ? 2 + [...n.children.values()].filter((c) => nodes.get(c)?.dir).length : 1,
    uid: 0,
    gid: 0,
    blksize: 4096,
  };
}
