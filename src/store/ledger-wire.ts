/**
 * The few FUSE wire fields the request ledger needs, read straight from frame bytes.
 *
 * Numbers and struct sizes come from the codec (src/protocol: the opcode and notify tables, the
 * struct descriptors with their per-minor layouts, the flag tables), the one source of truth; this
 * file only reads fields at fixed offsets, which is what keeps the ledger at recording speed (a
 * full decode per frame costs several times more). Every reader is bounds-checked and returns null
 * instead of throwing: frames may be cut by --snaplen, and a server may write anything.
 */
import {
  GETATTR_FLAGS,
  IN_HEADER_SIZE,
  NOTIFY_TABLE,
  NotifyCode,
  OP,
  RENAME_FLAGS,
  errnoNumber,
  WRITE_FLAGS,
  FATTR_FLAGS,
  sizeAt,
  structs,
  type FlagSet,
} from '../protocol/index.js';
import { readU64 } from '../util/u64.js';

function errno(name: string): number {
  const v = errnoNumber(name);
  if (v === undefined) throw new Error(`ledger-wire: the errno table has no ${name}`);
  return v;
}

function bit(set: FlagSet, name: string): number {
  const b = set.bits.find(([n]) => n === name);
  if (!b) throw new Error(`ledger-wire: flag table ${set.name} has no ${name}`);
  return Number(b[1]);
}


/** Notify code -> lower-case name without NOTIFY_ (`inval_entry`), for `requests.outcome` of notify rows. */
export const NOTIFY_NAMES: Record<number, string> = Object.fromEntries(
  NOTIFY_TABLE.map((n) => [n.code, n.name.replace(/^NOTIFY_/, '').toLowerCase()]),
);
export const NOTIFY_INVAL_INODE = NotifyCode.INVAL_INODE;
export const NOTIFY_INVAL_ENTRY = NotifyCode.INVAL_ENTRY;
export const NOTIFY_STORE = NotifyCode.STORE;
export const NOTIFY_RETRIEVE = NotifyCode.RETRIEVE;
export const NOTIFY_DELETE = NotifyCode.DELETE;

/** fuse_write_in.write_flags: delayed write from the page cache (writeback), no process waits on it. */
export const FUSE_WRITE_CACHE = bit(WRITE_FLAGS, 'FUSE_WRITE_CACHE');
/** fuse_getattr_in.getattr_flags (also fuse_statx_in): fh is valid. */
export const FUSE_GETATTR_FH = bit(GETATTR_FLAGS, 'FUSE_GETATTR_FH');
/** fuse_setattr_in.valid: fh is valid. */
export const FATTR_FH = bit(FATTR_FLAGS, 'FATTR_FH');
/** renameat2 flags as RENAME2 carries them (include/uapi/linux/fs.h). */
export const RENAME_EXCHANGE = bit(RENAME_FLAGS, 'RENAME_EXCHANGE');

/** Linux errnos the classifier names (asm-generic/errno-base.h, through the codec's errno table). */
export const EIO = errno('EIO');
export const EINTR = errno('EINTR');
export const ENOENT = errno('ENOENT');
export const EAGAIN = errno('EAGAIN');
export const EINVAL = errno('EINVAL');

/**
 * READDIRPLUS entries: fuse_direntplus { fuse_entry_out (always 128: READDIRPLUS came in 7.21),
 * fuse_dirent { ino, off, namelen, type } } then the name, padded to 8 bytes (FUSE_DIRENTPLUS_SIZE).
 */
export const DIRENTPLUS_NAME_OFFSET = structs.fuse_direntplus.size;
export const DIRENTPLUS_NAMELEN_OFFSET = structs.fuse_entry_out.size + 16;
/** Where the name starts in NOTIFY_INVAL_ENTRY { parent, namelen, flags } and NOTIFY_DELETE { parent, child, namelen, padding }. */
export const NOTIFY_INVAL_ENTRY_NAME_OFFSET = structs.fuse_notify_inval_entry_out.size;
export const NOTIFY_DELETE_NAME_OFFSET = structs.fuse_notify_delete_out.size;

/** Struct sizes that depend on the negotiated protocol minor, computed once per minor. */
export interface WireSizes {
  /** sizeof(struct fuse_entry_out): 128, FUSE_COMPAT_ENTRY_OUT_SIZE (120) before 7.9. */
  entryOut: number;
  /** Offset of the first name after the fixed struct of a name-bearing request, by opcode. */
  nameOffset: Map<number, number>;
}

const sizesByMinor = new Map<number, WireSizes>();

/** The sizes for a negotiated minor (the codec's struct descriptors know which field came when). */
export function wireSizes(minor: number): WireSizes {
  let w = sizesByMinor.get(minor);
  if (!w) {
    w = {
      entryOut: sizeAt(structs.fuse_entry_out, minor),
      nameOffset: new Map([
        [OP.LOOKUP, 0],
        [OP.UNLINK, 0],
        [OP.RMDIR, 0],
        [OP.SYMLINK, 0], // name, then the link target
        [OP.MKNOD, sizeAt(structs.fuse_mknod_in, minor)],
        [OP.MKDIR, sizeAt(structs.fuse_mkdir_in, minor)],
        [OP.CREATE, sizeAt(structs.fuse_create_in, minor)],
        [OP.TMPFILE, sizeAt(structs.fuse_create_in, minor)],
        [OP.RENAME, sizeAt(structs.fuse_rename_in, minor)],
        [OP.RENAME2, sizeAt(structs.fuse_rename2_in, minor)],
        [OP.LINK, sizeAt(structs.fuse_link_in, minor)],
      ]),
    };
    sizesByMinor.set(minor, w);
  }
  return w;
}

export function u32(b: Buffer, off: number): number | null {
  return off + 4 <= b.length ? b.readUInt32LE(off) : null;
}

export function u64(b: Buffer, off: number): bigint | null {
  return off + 8 <= b.length ? readU64(b, off) : null;
}

/**
 * A NUL-terminated name starting at `off`, stopping at `end`; null when no NUL is captured (a
 * snaplen cut, or a malformed frame). Names are bytes to the kernel; non-UTF-8 bytes decode to U+FFFD.
 */
export function cstr(b: Buffer, off: number, end = b.length): { name: string; next: number } | null {
  const stop = Math.min(end, b.length);
  if (off >= stop) return null;
  const nul = b.indexOf(0, off);
  if (nul < 0 || nul >= stop) return null;
  return { name: b.toString('utf8', off, nul), next: nul + 1 };
}

/**
 * Where a request's arguments end: fuse_in_header.len minus the extensions the kernel appended
 * (total_extlen, in 8-byte units, since 7.38 e.g. FUSE_SECURITY_CTX and supplementary groups).
 */
export function argsEnd(b: Buffer): number {
  if (b.length < IN_HEADER_SIZE) return b.length;
  const len = b.readUInt32LE(0);
  const ext = b.readUInt16LE(36) * 8;
  return Math.max(IN_HEADER_SIZE, len - ext);
}

/** Offset in the request frame of the fh a request names, or -1 (OPEN/CREATE get theirs in the reply). */
export function requestFhOffset(opcode: number, b: Buffer): number {
  const body = IN_HEADER_SIZE;
  switch (opcode) {
    case OP.READ:
    case OP.WRITE:
    case OP.RELEASE:
    case OP.RELEASEDIR:
    case OP.FLUSH:
    case OP.FSYNC:
    case OP.FSYNCDIR:
    case OP.READDIR:
    case OP.READDIRPLUS:
    case OP.GETLK:
    case OP.SETLK:
    case OP.SETLKW:
    case OP.IOCTL:
    case OP.POLL:
    case OP.FALLOCATE:
    case OP.LSEEK:
    case OP.COPY_FILE_RANGE:
    case OP.COPY_FILE_RANGE_64:
      return body; // fh is the first field of each *_in struct
    case OP.GETATTR:
    case OP.STATX: {
      const flags = u32(b, body);
      return flags !== null && (flags & FUSE_GETATTR_FH) !== 0 ? body + 8 : -1;
    }
    case OP.SETATTR: {
      const valid = u32(b, body);
      return valid !== null && (valid & FATTR_FH) !== 0 ? body + 8 : -1;
    }
    default:
      return -1;
  }
}
