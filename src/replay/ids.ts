/**
 * Where the identifiers a FUSE server chooses sit in request frames, so the replayer can translate them
 * between the recording and the live run by patching bytes in place: everything it does not
 * translate reaches the server byte for byte as the kernel sent it.
 *
 * Fields are named as in include/uapi/linux/fuse.h; their offsets come from the codec's struct
 * descriptors (src/protocol, the one source of truth for layouts), taken after the 40-byte
 * fuse_in_header.
 */
import { OP, layout, opcodeByName } from '../protocol/index.js';

// engine.ts and plan.ts still import these protocol facts from here; their rewrite (issue 16)
// imports them from src/protocol, where they live, and then these re-exports go.
export { FUSE_INT_REQ_BIT, IN_HEADER_SIZE as IN_HEADER, OUT_HEADER_SIZE as OUT_HEADER, OP, isNoReply } from '../protocol/index.js';

/** What kind of server-chosen identifier a request body field holds. */
export type IdKind = 'nodeid' | 'fh' | 'dircookie';

/** One identifier field in a request body; `when` tells whether it is valid in this frame. */
export interface IdField {
  /** Offset in the body, from the codec's layout of the opcode's request struct. */
  off: number;
  /** fuse.h field name. */
  field: string;
  kind: IdKind;
  /** Some fh fields are only meaningful with a flag set (GETATTR's FUSE_GETATTR_FH, SETATTR's FATTR_FH). */
  when?: (body: Buffer) => boolean;
}

/** getattr_flags & FUSE_GETATTR_FH (fuse.h), first u32 of fuse_getattr_in and fuse_statx_in. */
const getattrFh = (b: Buffer): boolean => b.length >= 4 && (b.readUInt32LE(0) & 1) !== 0;
/** fuse_setattr_in.valid & FATTR_FH (1 << 6). */
const setattrFh = (b: Buffer): boolean => b.length >= 4 && (b.readUInt32LE(0) & (1 << 6)) !== 0;

type Spec = [field: string, kind: IdKind, when?: (body: Buffer) => boolean];

/**
 * Identifier fields of request bodies by opcode name (fuse.h field names). fuse_in_header.nodeid
 * is translated for every request but those of headerNodeidIsNode(). A READDIR's offset is a cookie
 * the server chose (fuse_dirent.off); POLL's kh is the kernel's own handle, not translated.
 */
const ID_SPECS: Record<string, Spec[]> = {
  GETATTR: [['fh', 'fh', getattrFh]],
  SETATTR: [['fh', 'fh', setattrFh]],
  STATX: [['fh', 'fh', getattrFh]],
  RENAME: [['newdir', 'nodeid']],
  RENAME2: [['newdir', 'nodeid']],
  LINK: [['oldnodeid', 'nodeid']],
  READ: [['fh', 'fh']],
  WRITE: [['fh', 'fh']],
  RELEASE: [['fh', 'fh']],
  RELEASEDIR: [['fh', 'fh']],
  FSYNC: [['fh', 'fh']],
  FSYNCDIR: [['fh', 'fh']],
  FLUSH: [['fh', 'fh']],
  READDIR: [['fh', 'fh'], ['offset', 'dircookie']],
  READDIRPLUS: [['fh', 'fh'], ['offset', 'dircookie']],
  GETLK: [['fh', 'fh']],
  SETLK: [['fh', 'fh']],
  SETLKW: [['fh', 'fh']],
  IOCTL: [['fh', 'fh']],
  POLL: [['fh', 'fh']],
  FALLOCATE: [['fh', 'fh']],
  LSEEK: [['fh', 'fh']],
  COPY_FILE_RANGE: [['fh_in', 'fh'], ['nodeid_out', 'nodeid'], ['fh_out', 'fh']],
  COPY_FILE_RANGE_64: [['fh_in', 'fh'], ['nodeid_out', 'nodeid'], ['fh_out', 'fh']],
  SETUPMAPPING: [['fh', 'fh']],
};

/** ID_SPECS resolved against the codec's struct layouts; throws at start-up if a name is wrong. */
function resolveIdFields(): Record<number, IdField[]> {
  const out: Record<number, IdField[]> = {};
  for (const [name, specs] of Object.entries(ID_SPECS)) {
    const info = opcodeByName(name);
    if (!info?.request) throw new Error(`replay/ids.ts: no request struct for ${name} in the opcode table`);
    const leaves = layout(info.request).leaves;
    out[info.opcode] = specs.map(([field, kind, when]) => {
      const leaf = leaves.find((l) => l.path.length === 1 && l.path[0] === field);
      if (!leaf || leaf.type !== 'u64') throw new Error(`replay/ids.ts: ${info.request!.name} has no u64 field ${field}`);
      return { off: leaf.offset, field, kind, when };
    });
  }
  return out;
}

/** Identifier fields of request bodies by opcode number. */
export const REQUEST_ID_FIELDS: Readonly<Record<number, readonly IdField[]>> = resolveIdFields();

/** Requests whose fuse_in_header.nodeid is not a node (or is 0 by definition). */
export function headerNodeidIsNode(opcode: number): boolean {
  return !(opcode === OP.INIT || opcode === OP.INTERRUPT || opcode === OP.NOTIFY_REPLY ||
    opcode === OP.BATCH_FORGET || opcode === OP.DESTROY);
}

/**
 * A unique (or any u64 identifier) as a Map key: a number below 2^53 (every unique in practice),
 * else the bigint itself; no number equals a bigint as a key, so the two never collide. V8 hashes
 * a bigint key through a call into its runtime and compares two through another, which made the
 * replay's per-request maps a tenth of its CPU; a number key costs a fraction of that.
 */
export type UniqueKey = number | bigint;

const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);

export function uniqueKey(u: bigint): UniqueKey {
  return u <= MAX_EXACT && u >= 0n ? Number(u) : u;
}

/** A Map keyed by u64 identifiers (uniques, nodeids, fhs, inode numbers), stored under uniqueKey(). */
export class U64Map<V> {
  private readonly m = new Map<UniqueKey, V>();

  get size(): number {
    return this.m.size;
  }

  get(k: bigint): V | undefined {
    return this.m.get(uniqueKey(k));
  }

  has(k: bigint): boolean {
    return this.m.has(uniqueKey(k));
  }

  set(k: bigint, v: V): this {
    this.m.set(uniqueKey(k), v);
    return this;
  }

  delete(k: bigint): boolean {
    return this.m.delete(uniqueKey(k));
  }

  values(): IterableIterator<V> {
    return this.m.values();
  }
}
