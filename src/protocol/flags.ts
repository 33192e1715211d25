/**
 * Flag sets and enums of the FUSE wire protocol, declared once: printing, formatFields() and the
 * filter language read these tables. Values are the kernel's (include/uapi/linux/fuse.h, protocol
 * 7.45) or, for O_*, S_IF*, F_*LCK, SEEK_*, DT_*, the x86-64/arm64 Linux values the kernel forwards.
 */

/** A set of independent bits, printed by name in bit order; leftover bits print as hex. */
export interface FlagSet {
  readonly kind: 'flags';
  readonly name: string;
  /** [name, bit value] in increasing bit order. */
  readonly bits: ReadonlyArray<readonly [string, bigint]>;
  /** A multi-bit field inside the value that is an enum, printed first (O_ACCMODE in open flags). */
  readonly field?: { readonly mask: bigint; readonly values: ReadonlyArray<readonly [string, bigint]> };
}

/** A value that is one of a list (lock type, whence, dirent type). Unknown values print as numbers. */
export interface EnumSet {
  readonly kind: 'enum';
  readonly name: string;
  readonly values: ReadonlyArray<readonly [string, bigint]>;
}

const bitsOf = (names: Array<string | [string, number]>): Array<[string, bigint]> =>
  names.map((n, i) => (typeof n === 'string' ? [n, 1n << BigInt(i)] : [n[0], 1n << BigInt(n[1])]));

const flags = (name: string, bits: Array<[string, bigint]>, field?: FlagSet['field']): FlagSet => ({
  kind: 'flags', name, bits, field,
});
const enumOf = (name: string, values: Array<[string, number]>): EnumSet => ({
  kind: 'enum', name, values: values.map(([n, v]) => [n, BigInt(v)] as const),
});

/** INIT flags and flags2 as one 64-bit set: flags2 holds bits 32..63 (fuse.h, 7.36 FUSE_INIT_EXT). */
export const INIT_FLAGS = flags('init', bitsOf([
  'FUSE_ASYNC_READ', 'FUSE_POSIX_LOCKS', 'FUSE_FILE_OPS', 'FUSE_ATOMIC_O_TRUNC', 'FUSE_EXPORT_SUPPORT',
  'FUSE_BIG_WRITES', 'FUSE_DONT_MASK', 'FUSE_SPLICE_WRITE', 'FUSE_SPLICE_MOVE', 'FUSE_SPLICE_READ',
  'FUSE_FLOCK_LOCKS', 'FUSE_HAS_IOCTL_DIR', 'FUSE_AUTO_INVAL_DATA', 'FUSE_DO_READDIRPLUS',
  'FUSE_READDIRPLUS_AUTO', 'FUSE_ASYNC_DIO', 'FUSE_WRITEBACK_CACHE', 'FUSE_NO_OPEN_SUPPORT',
  'FUSE_PARALLEL_DIROPS', 'FUSE_HANDLE_KILLPRIV', 'FUSE_POSIX_ACL', 'FUSE_ABORT_ERROR', 'FUSE_MAX_PAGES',
  'FUSE_CACHE_SYMLINKS', 'FUSE_NO_OPENDIR_SUPPORT', 'FUSE_EXPLICIT_INVAL_DATA', 'FUSE_MAP_ALIGNMENT',
  'FUSE_SUBMOUNTS', 'FUSE_HANDLE_KILLPRIV_V2', 'FUSE_SETXATTR_EXT', 'FUSE_INIT_EXT', 'FUSE_INIT_RESERVED',
  'FUSE_SECURITY_CTX', 'FUSE_HAS_INODE_DAX', 'FUSE_CREATE_SUPP_GROUP', 'FUSE_HAS_EXPIRE_ONLY',
  'FUSE_DIRECT_IO_ALLOW_MMAP', 'FUSE_PASSTHROUGH', 'FUSE_NO_EXPORT_SUPPORT', 'FUSE_HAS_RESEND',
  'FUSE_ALLOW_IDMAP', 'FUSE_OVER_IO_URING', 'FUSE_REQUEST_TIMEOUT',
]));

/** INIT flag bits by name, as bigint (bits 32.. live in flags2 on the wire). */
export const INIT_FLAG: Readonly<Record<string, bigint>> = Object.fromEntries(INIT_FLAGS.bits);

/** The flags2 half of INIT: printed as the 64-bit set shifted, so names match INIT_FLAGS. */
export const INIT_FLAGS2 = flags('init2', INIT_FLAGS.bits.filter(([, v]) => v >= 1n << 32n).map(([n, v]) => [n, v >> 32n]));

/** CUSE_INIT flags. */
export const CUSE_INIT_FLAGS = flags('cuseInit', bitsOf(['CUSE_UNRESTRICTED_IOCTL']));

/** open(2) flags as the kernel forwards them in OPEN/CREATE/READ/WRITE/RELEASE (octal values, x86-64).
 * The kernel strips O_CREAT, O_EXCL and O_NOCTTY before OPEN (fs/fuse/file.c), and O_TRUNC unless the
 * server asked for FUSE_ATOMIC_O_TRUNC; O_LARGEFILE is forced on 64-bit kernels. */
export const OPEN_FLAGS = flags('open', [
  ['O_CREAT', 0o100n], ['O_EXCL', 0o200n], ['O_NOCTTY', 0o400n], ['O_TRUNC', 0o1000n],
  ['O_APPEND', 0o2000n], ['O_NONBLOCK', 0o4000n], ['O_DSYNC', 0o10000n], ['FASYNC', 0o20000n],
  ['O_DIRECT', 0o40000n], ['O_LARGEFILE', 0o100000n], ['O_DIRECTORY', 0o200000n],
  ['O_NOFOLLOW', 0o400000n], ['O_NOATIME', 0o1000000n], ['O_CLOEXEC', 0o2000000n],
  ['__O_SYNC', 0o4000000n], ['O_PATH', 0o10000000n], ['__O_TMPFILE', 0o20000000n],
  // FMODE_EXEC leaks into open flags for execve() opens (fs/fuse/file.c passes it as-is).
  ['FMODE_EXEC', 0o40n],
].sort((a, b) => Number((a[1] as bigint) - (b[1] as bigint))) as Array<[string, bigint]>, {
  mask: 3n, values: [['O_RDONLY', 0n], ['O_WRONLY', 1n], ['O_RDWR', 2n], ['O_ACCMODE', 3n]],
});

/** fuse_open_out.open_flags. */
export const FOPEN_FLAGS = flags('fopen', bitsOf([
  'FOPEN_DIRECT_IO', 'FOPEN_KEEP_CACHE', 'FOPEN_NONSEEKABLE', 'FOPEN_CACHE_DIR', 'FOPEN_STREAM',
  'FOPEN_NOFLUSH', 'FOPEN_PARALLEL_DIRECT_WRITES', 'FOPEN_PASSTHROUGH',
]));
/** fuse_open_in.open_flags / fuse_create_in.open_flags (7.33). */
export const OPEN_IN_FLAGS = flags('openIn', bitsOf(['FUSE_OPEN_KILL_SUIDGID']));
/** fuse_setattr_in.valid. */
export const FATTR_FLAGS = flags('fattr', bitsOf([
  'FATTR_MODE', 'FATTR_UID', 'FATTR_GID', 'FATTR_SIZE', 'FATTR_ATIME', 'FATTR_MTIME', 'FATTR_FH',
  'FATTR_ATIME_NOW', 'FATTR_MTIME_NOW', 'FATTR_LOCKOWNER', 'FATTR_CTIME', 'FATTR_KILL_SUIDGID',
]));
/** fuse_write_in.write_flags. */
export const WRITE_FLAGS = flags('write', bitsOf(['FUSE_WRITE_CACHE', 'FUSE_WRITE_LOCKOWNER', 'FUSE_WRITE_KILL_SUIDGID']));
/** fuse_read_in.read_flags. */
export const READ_FLAGS = flags('read', bitsOf([['FUSE_READ_LOCKOWNER', 1]]));
/** fuse_release_in.release_flags. */
export const RELEASE_FLAGS = flags('release', bitsOf(['FUSE_RELEASE_FLUSH', 'FUSE_RELEASE_FLOCK_UNLOCK']));
/** fuse_getattr_in.getattr_flags. */
export const GETATTR_FLAGS = flags('getattr', bitsOf(['FUSE_GETATTR_FH']));
/** fuse_lk_in.lk_flags. */
export const LK_FLAGS = flags('lk', bitsOf(['FUSE_LK_FLOCK']));
/** fuse_fsync_in.fsync_flags. */
export const FSYNC_FLAGS = flags('fsync', bitsOf(['FUSE_FSYNC_FDATASYNC']));
/** fuse_ioctl_in.flags / fuse_ioctl_out.flags. */
export const IOCTL_FLAGS = flags('ioctl', bitsOf([
  'FUSE_IOCTL_COMPAT', 'FUSE_IOCTL_UNRESTRICTED', 'FUSE_IOCTL_RETRY', 'FUSE_IOCTL_32BIT', 'FUSE_IOCTL_DIR',
  'FUSE_IOCTL_COMPAT_X32',
]));
/** fuse_poll_in.flags. */
export const POLL_FLAGS = flags('poll', bitsOf(['FUSE_POLL_SCHEDULE_NOTIFY']));
/** poll(2) events in fuse_poll_in.events / fuse_poll_out.revents. */
export const POLL_EVENTS = flags('pollEvents', bitsOf([
  'POLLIN', 'POLLPRI', 'POLLOUT', 'POLLERR', 'POLLHUP', 'POLLNVAL', 'POLLRDNORM', 'POLLRDBAND', 'POLLWRNORM',
  'POLLWRBAND', 'POLLMSG', ['POLLREMOVE', 12], ['POLLRDHUP', 13],
]));
/** fuse_attr.flags. */
export const ATTR_FLAGS = flags('attr', bitsOf(['FUSE_ATTR_SUBMOUNT', 'FUSE_ATTR_DAX']));
/** fuse_setxattr_in.setxattr_flags (FUSE_SETXATTR_EXT). */
export const SETXATTR_FLAGS = flags('setxattrExt', bitsOf(['FUSE_SETXATTR_ACL_KILL_SGID']));
/** setxattr(2) flags in fuse_setxattr_in.flags. */
export const XATTR_FLAGS = flags('xattr', bitsOf(['XATTR_CREATE', 'XATTR_REPLACE']));
/** renameat2(2) flags in fuse_rename2_in.flags. */
export const RENAME_FLAGS = flags('rename', bitsOf(['RENAME_NOREPLACE', 'RENAME_EXCHANGE', 'RENAME_WHITEOUT']));
/** access(2) mask in fuse_access_in.mask. */
export const ACCESS_MASK = flags('access', bitsOf(['X_OK', 'W_OK', 'R_OK']));
/** fallocate(2) mode. */
export const FALLOC_FLAGS = flags('falloc', bitsOf([
  'FALLOC_FL_KEEP_SIZE', 'FALLOC_FL_PUNCH_HOLE', 'FALLOC_FL_NO_HIDE_STALE', 'FALLOC_FL_COLLAPSE_RANGE',
  'FALLOC_FL_ZERO_RANGE', 'FALLOC_FL_INSERT_RANGE', 'FALLOC_FL_UNSHARE_RANGE', 'FALLOC_FL_WRITE_ZEROES',
]));
/** fuse_notify_inval_entry_out.flags. */
export const INVAL_ENTRY_FLAGS = flags('invalEntry', bitsOf(['FUSE_EXPIRE_ONLY']));
/** fuse_setupmapping_in.flags. */
export const SETUPMAPPING_FLAGS = flags('setupmapping', bitsOf(['FUSE_SETUPMAPPING_FLAG_WRITE', 'FUSE_SETUPMAPPING_FLAG_READ']));
/** statx(2) mask (STATX_*), in fuse_statx_in.sx_mask and fuse_statx.mask. */
export const STATX_MASK = flags('statx', bitsOf([
  'STATX_TYPE', 'STATX_MODE', 'STATX_NLINK', 'STATX_UID', 'STATX_GID', 'STATX_ATIME', 'STATX_MTIME',
  'STATX_CTIME', 'STATX_INO', 'STATX_SIZE', 'STATX_BLOCKS', 'STATX_BTIME', 'STATX_MNT_ID', 'STATX_DIOALIGN',
  'STATX_MNT_ID_UNIQUE', 'STATX_SUBVOL', 'STATX_WRITE_ATOMIC', 'STATX_DIO_READ_ALIGN',
]));
/** AT_* flags in fuse_statx_in.sx_flags. */
export const AT_FLAGS = flags('at', [
  ['AT_SYMLINK_NOFOLLOW', 0x100n], ['AT_NO_AUTOMOUNT', 0x800n], ['AT_EMPTY_PATH', 0x1000n],
  ['AT_STATX_FORCE_SYNC', 0x2000n], ['AT_STATX_DONT_SYNC', 0x4000n],
]);

/** fuse_file_lock.type (fcntl F_*LCK). */
export const LOCK_TYPES = enumOf('lockType', [['F_RDLCK', 0], ['F_WRLCK', 1], ['F_UNLCK', 2]]);
/** fuse_lseek_in.whence. */
export const WHENCE = enumOf('whence', [['SEEK_SET', 0], ['SEEK_CUR', 1], ['SEEK_END', 2], ['SEEK_DATA', 3], ['SEEK_HOLE', 4]]);
/** fuse_dirent.type (DT_*). */
export const DIRENT_TYPES = enumOf('direntType', [
  ['DT_UNKNOWN', 0], ['DT_FIFO', 1], ['DT_CHR', 2], ['DT_DIR', 4], ['DT_BLK', 6], ['DT_REG', 8], ['DT_LNK', 10],
  ['DT_SOCK', 12], ['DT_WHT', 14],
]);
/** File types in the S_IFMT bits of a mode, with the short names the printer uses. */
export const MODE_TYPES = enumOf('modeType', [
  ['fifo', 0o010000], ['chr', 0o020000], ['dir', 0o040000], ['blk', 0o060000], ['reg', 0o100000],
  ['lnk', 0o120000], ['sock', 0o140000],
]);

/** Every flag set and enum by the name struct descriptors use in `fmt`. */
export const FORMAT_SETS: ReadonlyMap<string, FlagSet | EnumSet> = new Map(
  [
    INIT_FLAGS, INIT_FLAGS2, CUSE_INIT_FLAGS, OPEN_FLAGS, FOPEN_FLAGS, OPEN_IN_FLAGS, FATTR_FLAGS, WRITE_FLAGS,
    READ_FLAGS, RELEASE_FLAGS, GETATTR_FLAGS, LK_FLAGS, FSYNC_FLAGS, IOCTL_FLAGS, POLL_FLAGS, POLL_EVENTS,
    ATTR_FLAGS, SETXATTR_FLAGS, XATTR_FLAGS, RENAME_FLAGS, ACCESS_MASK, FALLOC_FLAGS, INVAL_ENTRY_FLAGS,
    SETUPMAPPING_FLAGS, STATX_MASK, AT_FLAGS, LOCK_TYPES, WHENCE, DIRENT_TYPES, MODE_TYPES,
  ].map((s) => [s.name, s] as const),
);

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** Names of the set bits in bit order joined by `|`, leftover bits as hex; 0 prints as `0`. */
export function formatFlags(set: FlagSet, value: number | bigint): string {
  let v = BigInt(value);
  const out: string[] = [];
  if (set.field) {
    const f = v & set.field.mask;
    const name = set.field.values.find(([, x]) => x === f)?.[0];
    out.push(name ?? hex(f));
    v &= ~set.field.mask;
  }
  for (const [name, bit] of set.bits) {
    if (v & bit) {
      out.push(name);
      v &= ~bit;
    }
  }
  if (v !== 0n) out.push(hex(v));
  return out.length ? out.join('|') : '0';
}

/** The enum's name for a value, or the decimal number if none. */
export function formatEnum(set: EnumSet, value: number | bigint): string {
  const v = BigInt(value);
  return set.values.find(([, x]) => x === v)?.[0] ?? v.toString();
}

/** A mode as `<type> <octal permissions>`, e.g. `reg 0644`, `dir 01777`; a bare permission mode
 * (no type bits, as in MKDIR) prints as octal only. */
export function formatMode(mode: number | bigint): string {
  const m = Number(mode);
  const type = m & 0o170000;
  const perm = (m & 0o7777).toString(8).padStart(4, '0');
  if (type === 0) return perm;
  const t = MODE_TYPES.values.find(([, x]) => Number(x) === type)?.[0] ?? `type${(type >> 12).toString(8)}`;
  return `${t} ${perm}`;
}

/** Parse a `|`-separated list of names (or numbers) back into a value, for filters; undefined if a name is unknown. */
export function parseFlags(set: FlagSet | EnumSet, text: string): bigint | undefined {
  let v = 0n;
  for (const part of text.split('|').map((s) => s.trim()).filter(Boolean)) {
    if (/^(0x[0-9a-f]+|\d+)$/i.test(part)) {
      v |= BigInt(part);
      continue;
    }
    const up = part.toUpperCase();
    const list = set.kind === 'flags' ? [...(set.field?.values ?? []), ...set.bits] : set.values;
    const hit = list.find(([n]) => n.toUpperCase() === up || n.toUpperCase() === `FUSE_${up}`);
    if (!hit) return undefined;
    v |= hit[1];
  }
  return v;
}
