/**
 * Struct descriptors of the FUSE wire protocol (include/uapi/linux/fuse.h, 7.45), declared once.
 * Every field names its type and, where the header's changelog says so, the protocol minor that
 * added it. Decoding, encoding, formatFields() and the one-line printer all walk these descriptors.
 *
 * Sizes that depend on the negotiated minor follow one rule: a field whose `minor` is newer than the
 * connection's is absent only if it grew the struct (it sits after every older field). Fields that
 * took over padding carry `replaced: <minor the padding dates from>` and never change the size. The consistency check in
 * opcodes.ts verifies the result against the header's FUSE_COMPAT_*_SIZE constants.
 */
import { readU64 } from '../util/u64.js';

/** Wire types; all little-endian (FUSE runs in the host's byte order, and we only record on LE hosts). */
export type PrimType = 'u8' | 'u16' | 'u32' | 'u64' | 'i32' | 'i64';

export const PRIM_SIZE: Record<PrimType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, i32: 4, i64: 8 };

/**
 * How a field prints: a flag set or enum name from flags.ts, or one of
 * `nodeid` (n<id>), `hex`, `octal`, `mode` (type + octal perms), `errno`, `unique`.
 */
export type FieldFormat = string;

export interface FieldDesc {
  /** Field name as in fuse.h. */
  readonly name: string;
  /** A primitive type or a nested struct. */
  readonly type: PrimType | StructDesc;
  /** Array length for `uint32_t spare[6]` style fields. */
  readonly count?: number;
  /** Protocol minor that introduced the field (absent: present since 7.0/7.1). */
  readonly minor?: number;
  /** When the field took the place of padding: the minor since which that padding existed. Sizing
   * uses it instead of `minor`, so a renamed pad never changes the struct's size. */
  readonly replaced?: number;
  readonly fmt?: FieldFormat;
}

/** One item of a struct's one-line summary: a dotted field path, the label printed before it ('' prints
 * the value alone) and optionally a condition: show it only if `field & mask` is non-zero (SETATTR
 * shows size only when FATTR_SIZE is in valid). */
export type BriefItem = readonly [path: string, label: string, when?: readonly [field: string, mask: number]];

export interface StructDesc {
  /** C name, e.g. `fuse_entry_out`. */
  readonly name: string;
  /** sizeof() at protocol 7.45. */
  readonly size: number;
  readonly fields: readonly FieldDesc[];
  /** Word printed before the brief in one-line output (`entry`, `attr`, ...), if any. */
  readonly label?: string;
  /** Fields shown in the one-line printer, in order. */
  readonly brief?: readonly BriefItem[];
}

/** Decoded struct values: numbers for u8..u32/i32, bigint for u64/i64, arrays for `count` fields,
 * nested objects for nested structs. */
export type Value = number | bigint | Value[] | Fields;
export interface Fields {
  [name: string]: Value;
}

const F = (name: string, type: PrimType | StructDesc, opts: Omit<FieldDesc, 'name' | 'type'> = {}): FieldDesc => ({
  name, type, ...opts,
});
const S = (name: string, size: number, fields: FieldDesc[], extra: Pick<StructDesc, 'label' | 'brief'> = {}): StructDesc => ({
  name, size, fields, ...extra,
});

// ---- headers ----

export const fuse_in_header = S('fuse_in_header', 40, [
  F('len', 'u32'), F('opcode', 'u32'), F('unique', 'u64', { fmt: 'unique' }), F('nodeid', 'u64', { fmt: 'nodeid' }),
  F('uid', 'u32'), F('gid', 'u32'), F('pid', 'u32'),
  // 7.38: length of the extensions after the arguments, in 8-byte units (was padding).
  F('total_extlen', 'u16', { minor: 38, replaced: 0 }), F('padding', 'u16'),
]);

export const fuse_out_header = S('fuse_out_header', 16, [
  F('len', 'u32'), F('error', 'i32', { fmt: 'errno' }), F('unique', 'u64', { fmt: 'unique' }),
]);

// ---- building blocks ----

export const fuse_attr = S('fuse_attr', 88, [
  F('ino', 'u64'), F('size', 'u64'), F('blocks', 'u64'), F('atime', 'u64'), F('mtime', 'u64'), F('ctime', 'u64'),
  F('atimensec', 'u32'), F('mtimensec', 'u32'), F('ctimensec', 'u32'), F('mode', 'u32', { fmt: 'mode' }),
  F('nlink', 'u32'), F('uid', 'u32'), F('gid', 'u32'), F('rdev', 'u32'),
  F('blksize', 'u32', { minor: 9 }),
  // 7.9 added it as padding; 7.32 named it flags (FUSE_ATTR_SUBMOUNT).
  F('flags', 'u32', { minor: 9, fmt: 'attr' }),
], { brief: [['ino', 'ino'], ['mode', ''], ['size', 'size']] });

export const fuse_sx_time = S('fuse_sx_time', 16, [F('tv_sec', 'i64'), F('tv_nsec', 'u32'), F('__reserved', 'i32')]);

export const fuse_statx = S('fuse_statx', 256, [
  F('mask', 'u32', { fmt: 'statx' }), F('blksize', 'u32'), F('attributes', 'u64', { fmt: 'hex' }), F('nlink', 'u32'),
  F('uid', 'u32'), F('gid', 'u32'), F('mode', 'u16', { fmt: 'mode' }), F('__spare0', 'u16', { count: 1 }),
  F('ino', 'u64'), F('size', 'u64'), F('blocks', 'u64'), F('attributes_mask', 'u64', { fmt: 'hex' }),
  F('atime', fuse_sx_time), F('btime', fuse_sx_time), F('ctime', fuse_sx_time), F('mtime', fuse_sx_time),
  F('rdev_major', 'u32'), F('rdev_minor', 'u32'), F('dev_major', 'u32'), F('dev_minor', 'u32'),
  F('__spare2', 'u64', { count: 14 }),
]);

export const fuse_kstatfs = S('fuse_kstatfs', 80, [
  F('blocks', 'u64'), F('bfree', 'u64'), F('bavail', 'u64'), F('files', 'u64'), F('ffree', 'u64'),
  F('bsize', 'u32'), F('namelen', 'u32'),
  F('frsize', 'u32', { minor: 4 }), F('padding', 'u32', { minor: 4 }), F('spare', 'u32', { count: 6, minor: 4 }),
]);

export const fuse_file_lock = S('fuse_file_lock', 24, [
  F('start', 'u64'), F('end', 'u64'), F('type', 'u32', { fmt: 'lockType' }), F('pid', 'u32'),
], { brief: [['type', ''], ['start', 'start'], ['end', 'end'], ['pid', 'pid']] });

// ---- request and reply bodies ----

export const fuse_entry_out = S('fuse_entry_out', 128, [
  F('nodeid', 'u64', { fmt: 'nodeid' }), F('generation', 'u64'), F('entry_valid', 'u64'), F('attr_valid', 'u64'),
  F('entry_valid_nsec', 'u32'), F('attr_valid_nsec', 'u32'), F('attr', fuse_attr),
], { label: 'entry', brief: [['nodeid', ''], ['generation', 'gen'], ['attr.mode', ''], ['attr.size', 'size']] });

export const fuse_forget_in = S('fuse_forget_in', 8, [F('nlookup', 'u64')], { brief: [['nlookup', 'nlookup']] });
export const fuse_forget_one = S('fuse_forget_one', 16, [F('nodeid', 'u64', { fmt: 'nodeid' }), F('nlookup', 'u64')]);
export const fuse_batch_forget_in = S('fuse_batch_forget_in', 8, [F('count', 'u32'), F('dummy', 'u32')], {
  brief: [['count', 'count']],
});

export const fuse_getattr_in = S('fuse_getattr_in', 16, [
  F('getattr_flags', 'u32', { minor: 9, fmt: 'getattr' }), F('dummy', 'u32', { minor: 9 }), F('fh', 'u64', { minor: 9 }),
], { brief: [['getattr_flags', 'flags'], ['fh', 'fh', ['getattr_flags', 1]]] });

export const fuse_attr_out = S('fuse_attr_out', 104, [
  F('attr_valid', 'u64'), F('attr_valid_nsec', 'u32'), F('dummy', 'u32'), F('attr', fuse_attr),
], { label: 'attr', brief: [['attr.ino', 'ino'], ['attr.mode', ''], ['attr.size', 'size']] });

export const fuse_statx_in = S('fuse_statx_in', 24, [
  F('getattr_flags', 'u32', { fmt: 'getattr' }), F('reserved', 'u32'), F('fh', 'u64'),
  F('sx_flags', 'u32', { fmt: 'at' }), F('sx_mask', 'u32', { fmt: 'statx' }),
], { brief: [['getattr_flags', 'flags'], ['fh', 'fh', ['getattr_flags', 1]], ['sx_flags', 'flags'], ['sx_mask', 'mask']] });

export const fuse_statx_out = S('fuse_statx_out', 288, [
  F('attr_valid', 'u64'), F('attr_valid_nsec', 'u32'), F('flags', 'u32'), F('spare', 'u64', { count: 2 }),
  F('stat', fuse_statx),
], { label: 'statx', brief: [['stat.ino', 'ino'], ['stat.mode', ''], ['stat.size', 'size']] });

export const fuse_mknod_in = S('fuse_mknod_in', 16, [
  F('mode', 'u32', { fmt: 'mode' }), F('rdev', 'u32'),
  F('umask', 'u32', { minor: 12, fmt: 'octal' }), F('padding', 'u32', { minor: 12 }),
], { brief: [['mode', ''], ['rdev', 'rdev'], ['umask', 'umask']] });

export const fuse_mkdir_in = S('fuse_mkdir_in', 8, [
  F('mode', 'u32', { fmt: 'mode' }), F('umask', 'u32', { minor: 12, replaced: 0, fmt: 'octal' }),
], { brief: [['mode', 'mode'], ['umask', 'umask']] });

export const fuse_rename_in = S('fuse_rename_in', 8, [F('newdir', 'u64', { fmt: 'nodeid' })], {
  brief: [['newdir', 'newdir']],
});
export const fuse_rename2_in = S('fuse_rename2_in', 16, [
  F('newdir', 'u64', { fmt: 'nodeid' }), F('flags', 'u32', { fmt: 'rename' }), F('padding', 'u32'),
], { brief: [['newdir', 'newdir'], ['flags', 'flags']] });
export const fuse_link_in = S('fuse_link_in', 8, [F('oldnodeid', 'u64', { fmt: 'nodeid' })], {
  brief: [['oldnodeid', 'old']],
});

export const fuse_setattr_in = S('fuse_setattr_in', 88, [
  F('valid', 'u32', { fmt: 'fattr' }), F('padding', 'u32'), F('fh', 'u64', { minor: 3, replaced: 0 }),
  F('size', 'u64'), F('lock_owner', 'u64', { minor: 9, replaced: 0, fmt: 'hex' }),
  F('atime', 'u64'), F('mtime', 'u64'), F('ctime', 'u64', { minor: 23, replaced: 0 }),
  F('atimensec', 'u32'), F('mtimensec', 'u32'), F('ctimensec', 'u32', { minor: 23, replaced: 0 }),
  F('mode', 'u32', { fmt: 'mode' }), F('unused4', 'u32'), F('uid', 'u32'), F('gid', 'u32'), F('unused5', 'u32'),
], {
  brief: [
    ['valid', 'valid'], ['fh', 'fh', ['valid', 1 << 6]], ['size', 'size', ['valid', 1 << 3]], ['mode', 'mode', ['valid', 1 << 0]],
    ['uid', 'uid', ['valid', 1 << 1]], ['gid', 'gid', ['valid', 1 << 2]], ['atime', 'atime', ['valid', 1 << 4]],
    ['mtime', 'mtime', ['valid', 1 << 5]], ['ctime', 'ctime', ['valid', 1 << 10]],
  ],
});

export const fuse_open_in = S('fuse_open_in', 8, [
  F('flags', 'u32', { fmt: 'open' }), F('open_flags', 'u32', { minor: 33, replaced: 0, fmt: 'openIn' }),
], { brief: [['flags', 'flags'], ['open_flags', 'open_flags']] });

export const fuse_create_in = S('fuse_create_in', 16, [
  F('flags', 'u32', { fmt: 'open' }), F('mode', 'u32', { fmt: 'mode' }),
  // 7.12 grew CREATE's input from fuse_open_in (8 bytes) to this struct.
  F('umask', 'u32', { minor: 12, fmt: 'octal' }), F('open_flags', 'u32', { minor: 12, fmt: 'openIn' }),
], { brief: [['flags', 'flags'], ['mode', 'mode'], ['umask', 'umask'], ['open_flags', 'open_flags']] });

export const fuse_open_out = S('fuse_open_out', 16, [
  F('fh', 'u64'), F('open_flags', 'u32', { fmt: 'fopen' }), F('backing_id', 'i32', { minor: 40, replaced: 0 }),
], { label: 'open', brief: [['fh', 'fh'], ['open_flags', 'flags'], ['backing_id', 'backing_id']] });

export const fuse_release_in = S('fuse_release_in', 24, [
  F('fh', 'u64'), F('flags', 'u32', { fmt: 'open' }), F('release_flags', 'u32', { minor: 8, replaced: 0, fmt: 'release' }),
  F('lock_owner', 'u64', { minor: 8, fmt: 'hex' }),
], { brief: [['fh', 'fh'], ['flags', 'flags'], ['release_flags', 'release_flags'], ['lock_owner', 'owner']] });

export const fuse_flush_in = S('fuse_flush_in', 24, [
  F('fh', 'u64'), F('unused', 'u32'), F('padding', 'u32'), F('lock_owner', 'u64', { fmt: 'hex' }),
], { brief: [['fh', 'fh'], ['lock_owner', 'owner']] });

export const fuse_read_in = S('fuse_read_in', 40, [
  F('fh', 'u64'), F('offset', 'u64'), F('size', 'u32'), F('read_flags', 'u32', { fmt: 'read' }),
  F('lock_owner', 'u64', { minor: 9, fmt: 'hex' }), F('flags', 'u32', { minor: 9, fmt: 'open' }),
  F('padding', 'u32', { minor: 9 }),
], { brief: [['fh', 'fh'], ['offset', 'off'], ['size', 'size'], ['read_flags', 'read_flags'], ['flags', 'flags']] });

export const fuse_write_in = S('fuse_write_in', 40, [
  F('fh', 'u64'), F('offset', 'u64'), F('size', 'u32'), F('write_flags', 'u32', { fmt: 'write' }),
  F('lock_owner', 'u64', { minor: 9, fmt: 'hex' }), F('flags', 'u32', { minor: 9, fmt: 'open' }),
  F('padding', 'u32', { minor: 9 }),
], { brief: [['fh', 'fh'], ['offset', 'off'], ['size', 'size'], ['write_flags', 'write_flags'], ['flags', 'flags']] });

export const fuse_write_out = S('fuse_write_out', 8, [F('size', 'u32'), F('padding', 'u32')], {
  brief: [['size', 'size']],
});

export const fuse_statfs_out = S('fuse_statfs_out', 80, [F('st', fuse_kstatfs)], {
  label: 'statfs',
  brief: [['st.blocks', 'blocks'], ['st.bfree', 'bfree'], ['st.bavail', 'bavail'], ['st.files', 'files'], ['st.ffree', 'ffree'], ['st.bsize', 'bsize'], ['st.namelen', 'namelen']],
});

export const fuse_fsync_in = S('fuse_fsync_in', 16, [
  F('fh', 'u64'), F('fsync_flags', 'u32', { fmt: 'fsync' }), F('padding', 'u32'),
], { brief: [['fh', 'fh'], ['fsync_flags', 'flags']] });

export const fuse_setxattr_in = S('fuse_setxattr_in', 16, [
  F('size', 'u32'), F('flags', 'u32', { fmt: 'xattr' }),
  // Only sent when the server set FUSE_SETXATTR_EXT in INIT (7.33); otherwise 8 bytes.
  F('setxattr_flags', 'u32', { minor: 33, fmt: 'setxattrExt' }), F('padding', 'u32', { minor: 33 }),
], { brief: [['size', 'size'], ['flags', 'flags'], ['setxattr_flags', 'setxattr_flags']] });

export const fuse_getxattr_in = S('fuse_getxattr_in', 8, [F('size', 'u32'), F('padding', 'u32')], {
  brief: [['size', 'size']],
});
export const fuse_getxattr_out = S('fuse_getxattr_out', 8, [F('size', 'u32'), F('padding', 'u32')], {
  label: 'xattr', brief: [['size', 'size']],
});

export const fuse_lk_in = S('fuse_lk_in', 48, [
  F('fh', 'u64'), F('owner', 'u64', { fmt: 'hex' }), F('lk', fuse_file_lock),
  F('lk_flags', 'u32', { minor: 9, replaced: 0, fmt: 'lk' }), F('padding', 'u32'),
], { brief: [['fh', 'fh'], ['owner', 'owner'], ['lk.type', ''], ['lk.start', 'start'], ['lk.end', 'end'], ['lk_flags', 'flags']] });
export const fuse_lk_out = S('fuse_lk_out', 24, [F('lk', fuse_file_lock)], {
  label: 'lk', brief: [['lk.type', ''], ['lk.start', 'start'], ['lk.end', 'end'], ['lk.pid', 'pid']],
});

export const fuse_access_in = S('fuse_access_in', 8, [F('mask', 'u32', { fmt: 'access' }), F('padding', 'u32')], {
  brief: [['mask', 'mask']],
});

export const fuse_init_in = S('fuse_init_in', 64, [
  F('major', 'u32'), F('minor', 'u32'),
  F('max_readahead', 'u32', { minor: 6 }), F('flags', 'u32', { minor: 6, fmt: 'init' }),
  F('flags2', 'u32', { minor: 36, fmt: 'init2' }), F('unused', 'u32', { count: 11, minor: 36 }),
], { brief: [['major', 'major'], ['minor', 'minor'], ['max_readahead', 'max_readahead'], ['flags', 'flags'], ['flags2', 'flags2']] });

export const fuse_init_out = S('fuse_init_out', 64, [
  F('major', 'u32'), F('minor', 'u32'),
  F('max_readahead', 'u32', { minor: 6, replaced: 5 }), F('flags', 'u32', { minor: 5, fmt: 'init' }),
  F('max_background', 'u16', { minor: 13, replaced: 5 }), F('congestion_threshold', 'u16', { minor: 13, replaced: 5 }),
  F('max_write', 'u32', { minor: 5 }),
  F('time_gran', 'u32', { minor: 23 }),
  F('max_pages', 'u16', { minor: 28, replaced: 23 }), F('map_alignment', 'u16', { minor: 31, replaced: 23 }),
  F('flags2', 'u32', { minor: 36, replaced: 23, fmt: 'init2' }),
  F('max_stack_depth', 'u32', { minor: 40, replaced: 23 }),
  F('request_timeout', 'u16', { minor: 43, replaced: 23 }),
  F('unused', 'u16', { count: 11, minor: 23 }),
], {
  label: 'init',
  brief: [['major', 'major'], ['minor', 'minor'], ['max_write', 'max_write'], ['max_pages', 'max_pages'], ['flags', 'flags'], ['flags2', 'flags2']],
});

export const cuse_init_in = S('cuse_init_in', 16, [
  F('major', 'u32'), F('minor', 'u32'), F('unused', 'u32'), F('flags', 'u32', { fmt: 'cuseInit' }),
], { brief: [['major', 'major'], ['minor', 'minor'], ['flags', 'flags']] });
export const cuse_init_out = S('cuse_init_out', 72, [
  F('major', 'u32'), F('minor', 'u32'), F('unused', 'u32'), F('flags', 'u32', { fmt: 'cuseInit' }),
  F('max_read', 'u32'), F('max_write', 'u32'), F('dev_major', 'u32'), F('dev_minor', 'u32'),
  F('spare', 'u32', { count: 10 }),
], { label: 'cuse', brief: [['major', 'major'], ['minor', 'minor'], ['dev_major', 'dev_major'], ['dev_minor', 'dev_minor'], ['max_write', 'max_write']] });

export const fuse_interrupt_in = S('fuse_interrupt_in', 8, [F('unique', 'u64', { fmt: 'unique' })], {
  brief: [['unique', 'unique']],
});
export const fuse_bmap_in = S('fuse_bmap_in', 16, [F('block', 'u64'), F('blocksize', 'u32'), F('padding', 'u32')], {
  brief: [['block', 'block'], ['blocksize', 'blocksize']],
});
export const fuse_bmap_out = S('fuse_bmap_out', 8, [F('block', 'u64')], { brief: [['block', 'block']] });

export const fuse_ioctl_in = S('fuse_ioctl_in', 32, [
  F('fh', 'u64'), F('flags', 'u32', { fmt: 'ioctl' }), F('cmd', 'u32', { fmt: 'hex' }), F('arg', 'u64', { fmt: 'hex' }),
  F('in_size', 'u32'), F('out_size', 'u32'),
], { brief: [['fh', 'fh'], ['cmd', 'cmd'], ['arg', 'arg'], ['flags', 'flags'], ['in_size', 'in'], ['out_size', 'out']] });
export const fuse_ioctl_iovec = S('fuse_ioctl_iovec', 16, [F('base', 'u64', { fmt: 'hex' }), F('len', 'u64')]);
export const fuse_ioctl_out = S('fuse_ioctl_out', 16, [
  F('result', 'i32'), F('flags', 'u32', { fmt: 'ioctl' }), F('in_iovs', 'u32'), F('out_iovs', 'u32'),
], { label: 'ioctl', brief: [['result', 'result'], ['flags', 'flags'], ['in_iovs', 'in_iovs'], ['out_iovs', 'out_iovs']] });

export const fuse_poll_in = S('fuse_poll_in', 24, [
  F('fh', 'u64'), F('kh', 'u64'), F('flags', 'u32', { fmt: 'poll' }),
  F('events', 'u32', { minor: 21, replaced: 0, fmt: 'pollEvents' }),
], { brief: [['fh', 'fh'], ['kh', 'kh'], ['flags', 'flags'], ['events', 'events']] });
export const fuse_poll_out = S('fuse_poll_out', 8, [F('revents', 'u32', { fmt: 'pollEvents' }), F('padding', 'u32')], {
  brief: [['revents', 'revents']],
});

export const fuse_fallocate_in = S('fuse_fallocate_in', 32, [
  F('fh', 'u64'), F('offset', 'u64'), F('length', 'u64'), F('mode', 'u32', { fmt: 'falloc' }), F('padding', 'u32'),
], { brief: [['fh', 'fh'], ['offset', 'off'], ['length', 'len'], ['mode', 'mode']] });

export const fuse_dirent = S('fuse_dirent', 24, [
  F('ino', 'u64'), F('off', 'u64'), F('namelen', 'u32'), F('type', 'u32', { fmt: 'direntType' }),
]);
/** fuse_direntplus: a full fuse_entry_out then a fuse_dirent (the name follows, 8-byte aligned). */
export const fuse_direntplus = S('fuse_direntplus', 152, [F('entry_out', fuse_entry_out), F('dirent', fuse_dirent)]);

export const fuse_notify_poll_wakeup_out = S('fuse_notify_poll_wakeup_out', 8, [F('kh', 'u64')], {
  brief: [['kh', 'kh']],
});
export const fuse_notify_inval_inode_out = S('fuse_notify_inval_inode_out', 24, [
  F('ino', 'u64', { fmt: 'nodeid' }), F('off', 'i64'), F('len', 'i64'),
], { brief: [['ino', ''], ['off', 'off'], ['len', 'len']] });
export const fuse_notify_inval_entry_out = S('fuse_notify_inval_entry_out', 16, [
  F('parent', 'u64', { fmt: 'nodeid' }), F('namelen', 'u32'), F('flags', 'u32', { minor: 38, replaced: 0, fmt: 'invalEntry' }),
], { brief: [['parent', 'parent'], ['flags', 'flags']] });
export const fuse_notify_delete_out = S('fuse_notify_delete_out', 24, [
  F('parent', 'u64', { fmt: 'nodeid' }), F('child', 'u64', { fmt: 'nodeid' }), F('namelen', 'u32'), F('padding', 'u32'),
], { brief: [['parent', 'parent'], ['child', 'child']] });
export const fuse_notify_store_out = S('fuse_notify_store_out', 24, [
  F('nodeid', 'u64', { fmt: 'nodeid' }), F('offset', 'u64'), F('size', 'u32'), F('padding', 'u32'),
], { brief: [['nodeid', ''], ['offset', 'off'], ['size', 'size']] });
export const fuse_notify_retrieve_out = S('fuse_notify_retrieve_out', 32, [
  F('notify_unique', 'u64', { fmt: 'unique' }), F('nodeid', 'u64', { fmt: 'nodeid' }), F('offset', 'u64'),
  F('size', 'u32'), F('padding', 'u32'),
], { brief: [['notify_unique', 'notify_unique'], ['nodeid', ''], ['offset', 'off'], ['size', 'size']] });
export const fuse_notify_retrieve_in = S('fuse_notify_retrieve_in', 40, [
  F('dummy1', 'u64'), F('offset', 'u64'), F('size', 'u32'), F('dummy2', 'u32'), F('dummy3', 'u64'), F('dummy4', 'u64'),
], { brief: [['offset', 'off'], ['size', 'size']] });
export const fuse_notify_prune_out = S('fuse_notify_prune_out', 16, [
  F('count', 'u32'), F('padding', 'u32'), F('spare', 'u64'),
], { brief: [['count', 'count']] });
/** One nodeid of a FUSE_NOTIFY_PRUNE list (the header declares a bare uint64_t array). */
export const fuse_prune_nodeid = S('fuse_prune_nodeid', 8, [F('nodeid', 'u64', { fmt: 'nodeid' })]);

export const fuse_lseek_in = S('fuse_lseek_in', 24, [
  F('fh', 'u64'), F('offset', 'u64'), F('whence', 'u32', { fmt: 'whence' }), F('padding', 'u32'),
], { brief: [['fh', 'fh'], ['offset', 'off'], ['whence', '']] });
export const fuse_lseek_out = S('fuse_lseek_out', 8, [F('offset', 'u64')], { brief: [['offset', 'off']] });

export const fuse_copy_file_range_in = S('fuse_copy_file_range_in', 56, [
  F('fh_in', 'u64'), F('off_in', 'u64'), F('nodeid_out', 'u64', { fmt: 'nodeid' }), F('fh_out', 'u64'),
  F('off_out', 'u64'), F('len', 'u64'), F('flags', 'u64', { fmt: 'hex' }),
], { brief: [['fh_in', 'fh'], ['off_in', 'off'], ['nodeid_out', 'to'], ['fh_out', 'fh'], ['off_out', 'off'], ['len', 'len']] });
export const fuse_copy_file_range_out = S('fuse_copy_file_range_out', 8, [F('bytes_copied', 'u64')], {
  brief: [['bytes_copied', 'copied']],
});

export const fuse_setupmapping_in = S('fuse_setupmapping_in', 40, [
  F('fh', 'u64'), F('foffset', 'u64'), F('len', 'u64'), F('flags', 'u64', { fmt: 'setupmapping' }), F('moffset', 'u64'),
], { brief: [['fh', 'fh'], ['foffset', 'foff'], ['len', 'len'], ['flags', 'flags'], ['moffset', 'moff']] });
export const fuse_removemapping_in = S('fuse_removemapping_in', 4, [F('count', 'u32')], { brief: [['count', 'count']] });
export const fuse_removemapping_one = S('fuse_removemapping_one', 16, [F('moffset', 'u64'), F('len', 'u64')]);
export const fuse_syncfs_in = S('fuse_syncfs_in', 8, [F('padding', 'u64')]);

/** Header of each request extension (7.38), found in the last total_extlen * 8 bytes of a request. */
export const fuse_ext_header = S('fuse_ext_header', 8, [F('size', 'u32'), F('type', 'u32')]);

/** Every descriptor, for the consistency check and for lookups by name. */
export const ALL_STRUCTS: readonly StructDesc[] = [
  fuse_in_header, fuse_out_header, fuse_attr, fuse_sx_time, fuse_statx, fuse_kstatfs, fuse_file_lock,
  fuse_entry_out, fuse_forget_in, fuse_forget_one, fuse_batch_forget_in, fuse_getattr_in, fuse_attr_out,
  fuse_statx_in, fuse_statx_out, fuse_mknod_in, fuse_mkdir_in, fuse_rename_in, fuse_rename2_in, fuse_link_in,
  fuse_setattr_in, fuse_open_in, fuse_create_in, fuse_open_out, fuse_release_in, fuse_flush_in, fuse_read_in,
  fuse_write_in, fuse_write_out, fuse_statfs_out, fuse_fsync_in, fuse_setxattr_in, fuse_getxattr_in,
  fuse_getxattr_out, fuse_lk_in, fuse_lk_out, fuse_access_in, fuse_init_in, fuse_init_out, cuse_init_in,
  cuse_init_out, fuse_interrupt_in, fuse_bmap_in, fuse_bmap_out, fuse_ioctl_in, fuse_ioctl_iovec, fuse_ioctl_out,
  fuse_poll_in, fuse_poll_out, fuse_fallocate_in, fuse_dirent, fuse_direntplus, fuse_notify_poll_wakeup_out,
  fuse_notify_inval_inode_out, fuse_notify_inval_entry_out, fuse_notify_delete_out, fuse_notify_store_out,
  fuse_notify_retrieve_out, fuse_notify_retrieve_in, fuse_notify_prune_out, fuse_prune_nodeid, fuse_lseek_in,
  fuse_lseek_out, fuse_copy_file_range_in, fuse_copy_file_range_out, fuse_setupmapping_in, fuse_removemapping_in,
  fuse_removemapping_one, fuse_syncfs_in, fuse_ext_header,
];

// ---- layout engine ----

/** A primitive field at a byte offset, with its path through nested structs. */
export interface Leaf {
  readonly path: readonly string[];
  readonly type: PrimType;
  readonly count?: number;
  readonly offset: number;
  readonly size: number;
  readonly fmt?: FieldFormat;
}

/** Fields present in the layout of `desc` at protocol `minor` (see the rule at the top of the file). */
function presentFields(desc: StructDesc, minor: number): readonly FieldDesc[] {
  let last = -1;
  desc.fields.forEach((f, i) => {
    if ((f.replaced ?? f.minor ?? 0) <= minor) last = i;
  });
  return desc.fields.slice(0, last + 1);
}

const layoutCache = new Map<StructDesc, Map<number, { leaves: Leaf[]; size: number }>>();

/** The flattened layout of a struct at a protocol minor: its leaves and its size in bytes. */
export function layout(desc: StructDesc, minor = 45): { leaves: readonly Leaf[]; size: number } {
  let perDesc = layoutCache.get(desc);
  if (!perDesc) layoutCache.set(desc, (perDesc = new Map()));
  const hit = perDesc.get(minor);
  if (hit) return hit;
  const leaves: Leaf[] = [];
  let offset = 0;
  for (const f of presentFields(desc, minor)) {
    if (typeof f.type === 'string') {
      const size = PRIM_SIZE[f.type] * (f.count ?? 1);
      leaves.push({ path: [f.name], type: f.type, count: f.count, offset, size, fmt: f.fmt });
      offset += size;
    } else {
      const inner = layout(f.type, minor);
      for (const l of inner.leaves) leaves.push({ ...l, path: [f.name, ...l.path], offset: offset + l.offset });
      offset += inner.size;
    }
  }
  const result = { leaves, size: offset };
  perDesc.set(minor, result);
  return result;
}

/** sizeof(desc) as spoken at protocol `minor`. */
export function sizeAt(desc: StructDesc, minor = 45): number {
  return layout(desc, minor).size;
}

function readPrim(buf: Buffer, off: number, type: PrimType): number | bigint {
  switch (type) {
    case 'u8': return buf.readUInt8(off);
    case 'u16': return buf.readUInt16LE(off);
    case 'u32': return buf.readUInt32LE(off);
    case 'i32': return buf.readInt32LE(off);
    case 'u64': return readU64(buf, off);
    case 'i64': return buf.readBigInt64LE(off);
  }
}

function writePrim(buf: Buffer, off: number, type: PrimType, v: Value | undefined): void {
  const isBig = type === 'u64' || type === 'i64';
  const x = v === undefined ? (isBig ? 0n : 0) : v;
  if (typeof x === 'object') throw new TypeError(`expected a number for a ${type} field`);
  switch (type) {
    case 'u8': buf.writeUInt8(Number(x) & 0xff, off); break;
    case 'u16': buf.writeUInt16LE(Number(x) & 0xffff, off); break;
    case 'u32': buf.writeUInt32LE(Number(BigInt(x) & 0xffffffffn), off); break;
    case 'i32': buf.writeInt32LE(Number(BigInt.asIntN(32, BigInt(x))), off); break;
    case 'u64': buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(x)), off); break;
    case 'i64': buf.writeBigInt64LE(BigInt.asIntN(64, BigInt(x)), off); break;
  }
}

function setPath(target: Fields, path: readonly string[], v: Value): void {
  let t = target;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i];
    if (typeof t[k] !== 'object' || Array.isArray(t[k])) t[k] = {};
    t = t[k] as Fields;
  }
  t[path[path.length - 1]] = v;
}

/** The value at a dotted path (`attr.mode`) of decoded fields, or undefined. */
export function getPath(fields: Fields, path: string | readonly string[]): Value | undefined {
  const parts = typeof path === 'string' ? path.split('.') : path;
  let v: Value | undefined = fields;
  for (const p of parts) {
    if (v === undefined || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = (v as Fields)[p];
  }
  return v;
}

/**
 * Decode the leaves of `desc` that fit entirely in `len` bytes at `off` (never reads past `buf`).
 * Returns the values and how many bytes the decoded leaves cover (a multiple of whole fields).
 */
export function decodeStruct(buf: Buffer, off: number, desc: StructDesc, size: number, minor = 45): { values: Fields; covered: number } {
  const values: Fields = {};
  let covered = 0;
  const avail = Math.min(size, Math.max(0, buf.length - off));
  for (const leaf of layout(desc, minor).leaves) {
    if (leaf.offset + leaf.size > avail) break;
    const at = off + leaf.offset;
    if (leaf.count !== undefined) {
      const w = PRIM_SIZE[leaf.type];
      const arr: Value[] = [];
      for (let i = 0; i < leaf.count; i++) arr.push(readPrim(buf, at + i * w, leaf.type));
      setPath(values, leaf.path, arr);
    } else {
      setPath(values, leaf.path, readPrim(buf, at, leaf.type));
    }
    covered = leaf.offset + leaf.size;
  }
  return { values, covered };
}

/** Encode the leaves of `desc` at `minor` that fit in `size` bytes; missing values encode as 0. */
export function encodeStruct(desc: StructDesc, values: Fields, size: number, minor = 45): Buffer {
  const out = Buffer.alloc(size);
  for (const leaf of layout(desc, minor).leaves) {
    if (leaf.offset + leaf.size > size) break;
    const v = getPath(values, leaf.path);
    if (leaf.count !== undefined) {
      const w = PRIM_SIZE[leaf.type];
      const arr = Array.isArray(v) ? v : [];
      for (let i = 0; i < leaf.count; i++) writePrim(out, leaf.offset + i * w, leaf.type, arr[i]);
    } else {
      writePrim(out, leaf.offset, leaf.type, v);
    }
  }
  return out;
}
