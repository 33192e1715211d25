/**
 * The opcode table: one row per FUSE opcode of protocol 7.45 (plus CUSE_INIT), and one row per
 * notify code. Decoding, printing and validation all read these rows (go-fuse's fuse/opcode.go is
 * the model). checkTables() verifies the tables against themselves and the header's compat sizes.
 */
import * as st from './structs.js';
import type { StructDesc } from './structs.js';
import { FORMAT_SETS } from './flags.js';

/**
 * What follows the fixed struct and the names of a request (or a notify frame):
 * - `none`: nothing.
 * - `data`: opaque bytes (WRITE payload, SETXATTR value, IOCTL input, NOTIFY_REPLY/STORE data).
 * - `list`: `count` items of `item`, count taken from the fixed struct's `count` field.
 */
export type Tail = { kind: 'none' } | { kind: 'data' } | { kind: 'list'; item: StructDesc };

/**
 * Layout of a successful reply body (an error reply is the header alone):
 * - `none`: header only.
 * - `structs`: fixed structs in order (CREATE: entry_out then open_out).
 * - `data`: opaque bytes (READ, READLINK, LISTXATTR names...).
 * - `xattr`: fuse_getxattr_out when the request asked for the size (size 0), else the value bytes.
 * - `dirents` / `direntplus`: a READDIR / READDIRPLUS buffer.
 * - `ioctl`: fuse_ioctl_out, then iovecs (FUSE_IOCTL_RETRY) or output data.
 * - `cuse`: cuse_init_out then the device info strings.
 */
export type ReplyShape =
  | { kind: 'none' }
  | { kind: 'structs'; structs: readonly StructDesc[] }
  | { kind: 'data'; text?: boolean }
  | { kind: 'xattr'; names?: boolean }
  | { kind: 'dirents'; plus: boolean }
  | { kind: 'ioctl' }
  | { kind: 'cuse' };

export interface OpcodeInfo {
  /** fuse_in_header.opcode value. */
  readonly opcode: number;
  /** Name without the FUSE_ prefix (`LOOKUP`; CUSE_INIT keeps its prefix). */
  readonly name: string;
  /** Protocol minor that added the opcode. */
  readonly minor: number;
  /** Fixed struct after fuse_in_header, or null. */
  readonly request: StructDesc | null;
  /** Number of NUL-terminated names after the fixed struct. */
  readonly names: number;
  /** What follows the names. */
  readonly tail: Tail;
  /** Layout of a successful reply. */
  readonly reply: ReplyShape;
  /** The kernel expects no reply (FORGET, BATCH_FORGET, NOTIFY_REPLY; INTERRUPT see below). */
  readonly noReply: boolean;
  /** One line on what the request means. */
  readonly doc: string;
}

const NONE: Tail = { kind: 'none' };
const DATA: Tail = { kind: 'data' };
const R_NONE: ReplyShape = { kind: 'none' };
const R = (...structs: StructDesc[]): ReplyShape => ({ kind: 'structs', structs });

// Generic in the name so that the table's names form a type (OpcodeName) and OP.<NAME> is checked by tsc.
const op = <N extends string>(
  opcode: number, name: N, minor: number, request: StructDesc | null, names: number, reply: ReplyShape,
  doc: string, extra: { tail?: Tail; noReply?: boolean } = {},
): OpcodeInfo & { readonly name: N } => ({ opcode, name, minor, request, names, tail: extra.tail ?? NONE, reply, noReply: extra.noReply ?? false, doc });

/** The rows, with their names as literal types. */
const ROWS = [
  op(1, 'LOOKUP', 0, null, 1, R(st.fuse_entry_out), 'look up a name in directory nodeid'),
  op(2, 'FORGET', 0, st.fuse_forget_in, 0, R_NONE, 'drop nlookup references to nodeid', { noReply: true }),
  op(3, 'GETATTR', 0, st.fuse_getattr_in, 0, R(st.fuse_attr_out), 'get attributes (fuse_getattr_in since 7.9)'),
  op(4, 'SETATTR', 1, st.fuse_setattr_in, 0, R(st.fuse_attr_out), 'set the attributes named in valid'),
  op(5, 'READLINK', 0, null, 0, { kind: 'data', text: true }, 'read a symlink target'),
  // The kernel sends the new entry's name, then the link target (fs/fuse/dir.c fuse_symlink).
  op(6, 'SYMLINK', 1, null, 2, R(st.fuse_entry_out), 'create symlink name -> target'),
  op(8, 'MKNOD', 1, st.fuse_mknod_in, 1, R(st.fuse_entry_out), 'create a device, fifo, socket or file'),
  op(9, 'MKDIR', 1, st.fuse_mkdir_in, 1, R(st.fuse_entry_out), 'create a directory'),
  op(10, 'UNLINK', 1, null, 1, R_NONE, 'remove a name'),
  op(11, 'RMDIR', 1, null, 1, R_NONE, 'remove a directory'),
  op(12, 'RENAME', 1, st.fuse_rename_in, 2, R_NONE, 'rename oldname in nodeid to newname in newdir'),
  op(13, 'LINK', 1, st.fuse_link_in, 1, R(st.fuse_entry_out), 'hard link oldnodeid as name in nodeid'),
  op(14, 'OPEN', 1, st.fuse_open_in, 0, R(st.fuse_open_out), 'open a file'),
  op(15, 'READ', 1, st.fuse_read_in, 0, { kind: 'data' }, 'read from an open file'),
  op(16, 'WRITE', 1, st.fuse_write_in, 0, R(st.fuse_write_out), 'write to an open file', { tail: DATA }),
  op(17, 'STATFS', 0, null, 0, R(st.fuse_statfs_out), 'file system statistics'),
  op(18, 'RELEASE', 1, st.fuse_release_in, 0, R_NONE, 'last close of an open file'),
  op(20, 'FSYNC', 1, st.fuse_fsync_in, 0, R_NONE, 'sync an open file'),
  // The value is not NUL-terminated: its length is fuse_setxattr_in.size.
  op(21, 'SETXATTR', 1, st.fuse_setxattr_in, 1, R_NONE, 'set an extended attribute', { tail: DATA }),
  op(22, 'GETXATTR', 1, st.fuse_getxattr_in, 1, { kind: 'xattr' }, 'get an extended attribute (size 0: ask its length)'),
  op(23, 'LISTXATTR', 1, st.fuse_getxattr_in, 0, { kind: 'xattr', names: true }, 'list extended attribute names'),
  op(24, 'REMOVEXATTR', 1, null, 1, R_NONE, 'remove an extended attribute'),
  op(25, 'FLUSH', 1, st.fuse_flush_in, 0, R_NONE, 'close() of a file descriptor'),
  op(26, 'INIT', 0, st.fuse_init_in, 0, R(st.fuse_init_out), 'negotiate version and capabilities'),
  op(27, 'OPENDIR', 1, st.fuse_open_in, 0, R(st.fuse_open_out), 'open a directory'),
  op(28, 'READDIR', 1, st.fuse_read_in, 0, { kind: 'dirents', plus: false }, 'read directory entries'),
  op(29, 'RELEASEDIR', 1, st.fuse_release_in, 0, R_NONE, 'last close of an open directory'),
  op(30, 'FSYNCDIR', 2, st.fuse_fsync_in, 0, R_NONE, 'sync an open directory'),
  op(31, 'GETLK', 7, st.fuse_lk_in, 0, R(st.fuse_lk_out), 'test for a POSIX lock'),
  op(32, 'SETLK', 7, st.fuse_lk_in, 0, R_NONE, 'acquire or release a lock without waiting'),
  op(33, 'SETLKW', 7, st.fuse_lk_in, 0, R_NONE, 'acquire a lock, waiting'),
  op(34, 'ACCESS', 3, st.fuse_access_in, 0, R_NONE, 'check access permissions'),
  op(35, 'CREATE', 3, st.fuse_create_in, 1, R(st.fuse_entry_out, st.fuse_open_out), 'create and open a file'),
  // The interrupt's own unique is the target's unique | FUSE_INT_REQ_BIT. The kernel expects no
  // answer, but a server may reply EAGAIN (not ready yet: the kernel resends) or ENOSYS (no support).
  op(36, 'INTERRUPT', 7, st.fuse_interrupt_in, 0, R_NONE, 'interrupt the request named by unique', { noReply: true }),
  op(37, 'BMAP', 8, st.fuse_bmap_in, 0, R(st.fuse_bmap_out), 'map a file block to a device block (fuseblk)'),
  op(38, 'DESTROY', 8, null, 0, R_NONE, 'clean up before unmount (fuseblk, virtiofs)'),
  op(39, 'IOCTL', 11, st.fuse_ioctl_in, 0, { kind: 'ioctl' }, 'ioctl on an open file', { tail: DATA }),
  op(40, 'POLL', 11, st.fuse_poll_in, 0, R(st.fuse_poll_out), 'poll for I/O readiness'),
  // Kernel -> server: the data asked for by a FUSE_NOTIFY_RETRIEVE; unique is the notify_unique.
  op(41, 'NOTIFY_REPLY', 15, st.fuse_notify_retrieve_in, 0, R_NONE, 'data for a NOTIFY_RETRIEVE', { tail: DATA, noReply: true }),
  op(42, 'BATCH_FORGET', 16, st.fuse_batch_forget_in, 0, R_NONE, 'drop references to many nodeids',
    { tail: { kind: 'list', item: st.fuse_forget_one }, noReply: true }),
  op(43, 'FALLOCATE', 19, st.fuse_fallocate_in, 0, R_NONE, 'allocate or punch file space'),
  op(44, 'READDIRPLUS', 21, st.fuse_read_in, 0, { kind: 'dirents', plus: true }, 'read directory entries with attributes'),
  op(45, 'RENAME2', 23, st.fuse_rename2_in, 2, R_NONE, 'rename with RENAME_* flags'),
  op(46, 'LSEEK', 24, st.fuse_lseek_in, 0, R(st.fuse_lseek_out), 'SEEK_DATA / SEEK_HOLE'),
  op(47, 'COPY_FILE_RANGE', 28, st.fuse_copy_file_range_in, 0, R(st.fuse_write_out), 'server-side copy (32-bit result)'),
  op(48, 'SETUPMAPPING', 31, st.fuse_setupmapping_in, 0, R_NONE, 'map file range into the DAX window'),
  op(49, 'REMOVEMAPPING', 31, st.fuse_removemapping_in, 0, R_NONE, 'unmap DAX window ranges',
    { tail: { kind: 'list', item: st.fuse_removemapping_one } }),
  op(50, 'SYNCFS', 34, st.fuse_syncfs_in, 0, R_NONE, 'sync the whole file system'),
  op(51, 'TMPFILE', 37, st.fuse_create_in, 1, R(st.fuse_entry_out, st.fuse_open_out), 'create an unnamed file (O_TMPFILE)'),
  op(52, 'STATX', 39, st.fuse_statx_in, 0, R(st.fuse_statx_out), 'statx(2) attributes'),
  op(53, 'COPY_FILE_RANGE_64', 45, st.fuse_copy_file_range_in, 0, R(st.fuse_copy_file_range_out), 'server-side copy (64-bit result)'),
  op(4096, 'CUSE_INIT', 12, st.cuse_init_in, 0, { kind: 'cuse' }, 'CUSE device initialisation'),
] as const;

/** Every opcode of protocol 7.45, in number order. */
export const OPCODE_TABLE: readonly OpcodeInfo[] = ROWS;

/** An opcode name of the table, without FUSE_ (`LOOKUP`). */
export type OpcodeName = (typeof ROWS)[number]['name'];

export interface NotifyInfo {
  /** fuse_out_header.error value of a notify frame (its unique is 0). */
  readonly code: number;
  /** Name with the NOTIFY_ prefix, e.g. `NOTIFY_INVAL_ENTRY`. */
  readonly name: string;
  readonly minor: number;
  readonly struct: StructDesc | null;
  /** NUL-terminated names after the struct (their length is also in the struct's namelen). */
  readonly names: number;
  readonly tail: Tail;
  readonly doc: string;
}

const nt = (code: number, name: string, minor: number, struct: StructDesc | null, names: number, tail: Tail, doc: string): NotifyInfo =>
  ({ code, name, minor, struct, names, tail, doc });

/** Every notify code of protocol 7.45 (server -> kernel frames with unique 0). */
export const NOTIFY_TABLE: readonly NotifyInfo[] = [
  nt(1, 'NOTIFY_POLL', 11, st.fuse_notify_poll_wakeup_out, 0, NONE, 'wake up pollers of kh'),
  nt(2, 'NOTIFY_INVAL_INODE', 12, st.fuse_notify_inval_inode_out, 0, NONE, 'invalidate cached attributes and data of an inode'),
  nt(3, 'NOTIFY_INVAL_ENTRY', 12, st.fuse_notify_inval_entry_out, 1, NONE, 'invalidate a cached name'),
  nt(4, 'NOTIFY_STORE', 15, st.fuse_notify_store_out, 0, DATA, 'push data into the page cache'),
  nt(5, 'NOTIFY_RETRIEVE', 15, st.fuse_notify_retrieve_out, 0, NONE, 'ask for page cache data (answered by NOTIFY_REPLY)'),
  nt(6, 'NOTIFY_DELETE', 18, st.fuse_notify_delete_out, 1, NONE, 'a name was deleted'),
  nt(7, 'NOTIFY_RESEND', 40, null, 0, NONE, 'resend every request still waiting for a reply'),
  nt(8, 'NOTIFY_INC_EPOCH', 44, null, 0, NONE, 'bump the epoch: invalidate all cached dentries'),
  nt(9, 'NOTIFY_PRUNE', 45, st.fuse_notify_prune_out, 0, { kind: 'list', item: st.fuse_prune_nodeid }, 'drop unused inodes from the cache'),
];

const byOpcode = new Map(OPCODE_TABLE.map((o) => [o.opcode, o]));
const byName = new Map(OPCODE_TABLE.map((o) => [o.name, o]));
const notifyByCode = new Map(NOTIFY_TABLE.map((n) => [n.code, n]));

/** The table row of an opcode, or undefined. */
export function opcodeInfo(opcode: number): OpcodeInfo | undefined {
  return byOpcode.get(opcode);
}
/** The table row for a name (`LOOKUP` or `FUSE_LOOKUP`, any case). */
export function opcodeByName(name: string): OpcodeInfo | undefined {
  const up = name.toUpperCase();
  return byName.get(up) ?? byName.get(up.replace(/^FUSE_/, ''));
}
/** Printable name of an opcode; unknown ones print as `OPCODE-<n>`. */
export function opcodeName(opcode: number): string {
  return byOpcode.get(opcode)?.name ?? `OPCODE-${opcode}`;
}
/** The row of a notify code, or undefined. */
export function notifyInfo(code: number): NotifyInfo | undefined {
  return notifyByCode.get(code);
}
/** Printable name of a notify code; unknown ones print as `NOTIFY-<n>`. */
export function notifyName(code: number): string {
  return notifyByCode.get(code)?.name ?? `NOTIFY-${code}`;
}

/**
 * Opcode numbers by name, read off the table: `OP.LOOKUP === 1`. The one way to name an opcode
 * outside src/protocol (a misspelt name fails to compile).
 */
export const OP: Readonly<Record<OpcodeName, number>> = Object.freeze(
  Object.fromEntries(ROWS.map((o) => [o.name, o.opcode])) as Record<OpcodeName, number>,
);
/** OP, indexed by any string (for names that come from text, e.g. the filter language). */
export const Opcode: Readonly<Record<string, number>> = OP;

/**
 * Opcodes the server never answers (the table's noReply: FORGET, BATCH_FORGET, NOTIFY_REPLY) or
 * answers only sometimes (INTERRUPT: fs/fuse/dev.c queues no reply for it; the server may answer
 * EAGAIN/ENOSYS). A request of these is never "in flight".
 */
export const NO_REPLY_OPCODES: ReadonlySet<number> = new Set(OPCODE_TABLE.filter((o) => o.noReply).map((o) => o.opcode));

/** True for the opcodes of NO_REPLY_OPCODES. */
export function isNoReply(opcode: number): boolean {
  return NO_REPLY_OPCODES.has(opcode);
}
/** Notify codes by name without the prefix: `NotifyCode.INVAL_ENTRY === 3`. */
export const NotifyCode: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(NOTIFY_TABLE.map((n) => [n.name.replace(/^NOTIFY_/, ''), n.code])),
);

/** Compat sizes from the header (FUSE_COMPAT_*_SIZE) and the minors below which they apply. */
export const COMPAT_SIZES: ReadonlyArray<{ name: string; struct: StructDesc; minor: number; size: number }> = [
  { name: 'FUSE_COMPAT_ENTRY_OUT_SIZE', struct: st.fuse_entry_out, minor: 8, size: 120 },
  { name: 'FUSE_COMPAT_ATTR_OUT_SIZE', struct: st.fuse_attr_out, minor: 8, size: 96 },
  { name: 'FUSE_COMPAT_MKNOD_IN_SIZE', struct: st.fuse_mknod_in, minor: 11, size: 8 },
  { name: 'FUSE_COMPAT_WRITE_IN_SIZE', struct: st.fuse_write_in, minor: 8, size: 24 },
  { name: 'FUSE_COMPAT_STATFS_SIZE', struct: st.fuse_statfs_out, minor: 3, size: 48 },
  { name: 'FUSE_COMPAT_SETXATTR_IN_SIZE', struct: st.fuse_setxattr_in, minor: 32, size: 8 },
  { name: 'FUSE_COMPAT_INIT_OUT_SIZE', struct: st.fuse_init_out, minor: 4, size: 8 },
  { name: 'FUSE_COMPAT_22_INIT_OUT_SIZE', struct: st.fuse_init_out, minor: 22, size: 24 },
  // fuse_init_in: 8 bytes before 7.6, 16 until 7.35, 64 since 7.36 (FUSE_INIT_EXT).
  { name: 'init_in before 7.6', struct: st.fuse_init_in, minor: 5, size: 8 },
  { name: 'init_in before 7.36', struct: st.fuse_init_in, minor: 35, size: 16 },
  { name: 'create_in before 7.12 (fuse_open_in)', struct: st.fuse_create_in, minor: 11, size: 8 },
  { name: 'getattr: no input before 7.9', struct: st.fuse_getattr_in, minor: 8, size: 0 },
];

const FIELD_FORMATS = new Set(['nodeid', 'hex', 'octal', 'mode', 'errno', 'unique']);

/**
 * Checks the tables against themselves; returns the list of problems (empty when consistent).
 * Duplicate numbers or names, declared sizes that disagree with the fields, compat sizes, unknown
 * format names, brief paths that name no field, list tails without a `count` field.
 */
export function checkTables(): string[] {
  const problems: string[] = [];
  const seen = (what: string, keys: Array<string | number>) => {
    const s = new Set<string | number>();
    for (const k of keys) {
      if (s.has(k)) problems.push(`duplicate ${what} ${k}`);
      s.add(k);
    }
  };
  seen('opcode number', OPCODE_TABLE.map((o) => o.opcode));
  seen('opcode name', OPCODE_TABLE.map((o) => o.name));
  seen('notify code', NOTIFY_TABLE.map((n) => n.code));
  seen('notify name', NOTIFY_TABLE.map((n) => n.name));
  seen('struct name', st.ALL_STRUCTS.map((s) => s.name));
  for (const o of OPCODE_TABLE) {
    if (o.minor > 45) problems.push(`${o.name}: minor ${o.minor} is newer than 7.45`);
    if (o.tail.kind === 'list' && !o.request?.fields.some((f) => f.name === 'count')) problems.push(`${o.name}: list tail without a count field`);
    if (o.noReply && o.reply.kind !== 'none') problems.push(`${o.name}: noReply but has a reply layout`);
  }
  for (const n of NOTIFY_TABLE) {
    if (n.tail.kind === 'list' && !n.struct?.fields.some((f) => f.name === 'count')) problems.push(`${n.name}: list tail without a count field`);
    if (n.names && !n.struct?.fields.some((f) => f.name === 'namelen')) problems.push(`${n.name}: names without namelen`);
  }
  const structs = new Set<StructDesc>(st.ALL_STRUCTS);
  const used = [
    ...OPCODE_TABLE.flatMap((o) => [o.request, ...(o.reply.kind === 'structs' ? o.reply.structs : []), ...(o.tail.kind === 'list' ? [o.tail.item] : [])]),
    ...NOTIFY_TABLE.flatMap((n) => [n.struct, ...(n.tail.kind === 'list' ? [n.tail.item] : [])]),
  ];
  for (const s of used) if (s && !structs.has(s)) problems.push(`${s.name} is used by a table row but missing from ALL_STRUCTS`);
  for (const s of st.ALL_STRUCTS) {
    const size = st.sizeAt(s, 45);
    if (size !== s.size) problems.push(`${s.name}: fields add up to ${size} bytes, declared ${s.size}`);
    if (s.size % 8 !== 0 && !['fuse_removemapping_in'].includes(s.name)) problems.push(`${s.name}: size ${s.size} is not 64-bit aligned`);
    const leaves = st.layout(s, 45).leaves;
    for (const l of leaves) {
      if (l.fmt && !FIELD_FORMATS.has(l.fmt) && !FORMAT_SETS.has(l.fmt)) problems.push(`${s.name}.${l.path.join('.')}: unknown format ${l.fmt}`);
      const natural = st.PRIM_SIZE[l.type];
      if (l.offset % natural !== 0) problems.push(`${s.name}.${l.path.join('.')}: misaligned at ${l.offset}`);
    }
    for (const [path, , when] of s.brief ?? []) {
      for (const p of [path, ...(when ? [when[0]] : [])]) {
        if (!leaves.some((l) => l.path.join('.') === p)) problems.push(`${s.name}: brief names unknown field ${p}`);
      }
    }
    let prev = 0;
    for (const m of [0, 5, 8, 12, 22, 23, 35, 36, 45]) {
      const sz = st.sizeAt(s, m);
      if (sz < prev) problems.push(`${s.name}: size shrinks from ${prev} to ${sz} at 7.${m}`);
      prev = sz;
    }
  }
  for (const c of COMPAT_SIZES) {
    const got = st.sizeAt(c.struct, c.minor);
    if (got !== c.size) problems.push(`${c.name}: ${c.struct.name} at 7.${c.minor} is ${got} bytes, header says ${c.size}`);
  }
  if (st.sizeAt(st.fuse_init_out, 23) !== 64) problems.push('fuse_init_out must be 64 bytes from 7.23');
  return problems;
}

/** Throws if checkTables() finds a problem; run at start-up by the codec's users and by the test. */
export function assertTablesConsistent(): void {
  const problems = checkTables();
  if (problems.length) throw new Error(`FUSE protocol tables are inconsistent:\n  ${problems.join('\n  ')}`);
}
