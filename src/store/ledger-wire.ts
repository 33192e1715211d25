/**
 * The few FUSE wire fields the request ledger needs, read straight from frame bytes.
 *
 * Adapter: the codec in src/protocol/ is meant to be the one source of truth for opcodes and
 * struct layouts; until it lands, this file is the only place the ledger knows them. Offsets are
 * from include/uapi/linux/fuse.h (protocol 7.45). Every reader here is bounds-checked and returns
 * null instead of throwing: frames may be cut by --snaplen, and a server may write anything.
 */

/** sizeof(struct fuse_in_header): len u32, opcode u32, unique u64, nodeid u64, uid, gid, pid u32, total_extlen u16, padding u16. */
export const IN_HEADER_SIZE = 40;
/** sizeof(struct fuse_out_header): len u32, error i32, unique u64. */
export const OUT_HEADER_SIZE = 16;

/** enum fuse_opcode values the ledger acts on. */
export const OP = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  RELEASE: 18,
  FSYNC: 20,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  CREATE: 35,
  INTERRUPT: 36,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  TMPFILE: 51,
  STATX: 52,
  COPY_FILE_RANGE_64: 53,
} as const;

/** enum fuse_notify_code (7.45), lower-case names for `requests.outcome` of notify rows. */
export const NOTIFY_NAMES: Record<number, string> = {
  1: 'poll',
  2: 'inval_inode',
  3: 'inval_entry',
  4: 'store',
  5: 'retrieve',
  6: 'delete',
  7: 'resend',
  8: 'inc_epoch',
  9: 'prune',
};
export const NOTIFY_INVAL_INODE = 2;
export const NOTIFY_INVAL_ENTRY = 3;
export const NOTIFY_STORE = 4;
export const NOTIFY_RETRIEVE = 5;
export const NOTIFY_DELETE = 6;

/** FUSE_INT_REQ_BIT: since 7.28 (kernel 5.0) an INTERRUPT's unique is its target's unique | 1. */
export const FUSE_INT_REQ_BIT = 1n;
/** fuse_write_in.write_flags: delayed write from the page cache (writeback), no process waits on it. */
export const FUSE_WRITE_CACHE = 1;
/** fuse_getattr_in.getattr_flags (also fuse_statx_in): fh is valid. */
export const FUSE_GETATTR_FH = 1;
/** fuse_setattr_in.valid: fh is valid. */
export const FATTR_FH = 1 << 6;
/** renameat2 flags as RENAME2 carries them (include/uapi/linux/fs.h). */
export const RENAME_EXCHANGE = 2;

/** Linux errnos the classifier names (asm-generic/errno-base.h). */
export const EIO = 5;
export const EINTR = 4;
export const ENOENT = 2;
export const EAGAIN = 11;
export const EINVAL = 22;

/**
 * sizeof(struct fuse_entry_out): 40 bytes + fuse_attr (88 since 7.9). FUSE_COMPAT_ENTRY_OUT_SIZE
 * (120) for servers speaking < 7.9, which the running kernel no longer accepts; kept for old traces.
 */
export function entryOutSize(minor: number): number {
  return minor < 9 ? 120 : 128;
}

export function u32(b: Buffer, off: number): number | null {
  return off + 4 <= b.length ? b.readUInt32LE(off) : null;
}

export function u64(b: Buffer, off: number): bigint | null {
  return off + 8 <= b.length ? b.readBigUInt64LE(off) : null;
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

/**
 * Size of the fixed struct before the first name of a name-bearing request (the name's offset is
 * IN_HEADER_SIZE + this), given the negotiated protocol minor; -1 for opcodes without a name.
 */
export function nameArgOffset(opcode: number, minor: number): number {
  switch (opcode) {
    case OP.LOOKUP:
    case OP.UNLINK:
    case OP.RMDIR:
    case OP.SYMLINK: // name, then the link target
      return 0;
    case OP.MKNOD:
      return minor < 12 ? 8 : 16; // fuse_mknod_in; FUSE_COMPAT_MKNOD_IN_SIZE before 7.12
    case OP.MKDIR:
      return 8; // fuse_mkdir_in
    case OP.CREATE:
    case OP.TMPFILE:
      return minor < 12 ? 8 : 16; // fuse_create_in; fuse_open_in before 7.12
    case OP.RENAME:
      return 8; // fuse_rename_in { newdir }
    case OP.RENAME2:
      return 16; // fuse_rename2_in { newdir, flags, padding }
    case OP.LINK:
      return 8; // fuse_link_in { oldnodeid }
    default:
      return -1;
  }
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
