/**
 * Where the identifiers a FUSE server chooses sit in the frames, so the replayer can translate them
 * between the recording and the live run by patching bytes in place: everything it does not
 * translate reaches the server byte for byte as the kernel sent it.
 *
 * Layouts are those of include/uapi/linux/fuse.h (7.45); offsets are into the frame body, after the
 * 40-byte fuse_in_header (requests) or the 16-byte fuse_out_header (replies).
 */

import { FUSE_INT_REQ_BIT, IN_HEADER_SIZE, OUT_HEADER_SIZE, Opcode, opcodeInfo } from '../protocol/index.js';

export { FUSE_INT_REQ_BIT };
/** sizeof(struct fuse_in_header) / sizeof(struct fuse_out_header). */
export const IN_HEADER = IN_HEADER_SIZE;
export const OUT_HEADER = OUT_HEADER_SIZE;

/** Opcode numbers by name, from the codec's one opcode table. */
export const OP = Opcode;

/** Requests the server never answers (FORGET, BATCH_FORGET, NOTIFY_REPLY: the opcode table's noReply). */
export function isNoReply(opcode: number): boolean {
  return opcodeInfo(opcode)?.noReply ?? false;
}

/** What kind of server-chosen identifier a request body field holds. */
export type IdKind = 'nodeid' | 'fh' | 'dircookie';

/** One identifier field in a request body; `when` tells whether it is valid in this frame. */
export interface IdField {
  off: number;
  kind: IdKind;
  /** Some fh fields are only meaningful with a flag set (GETATTR's FUSE_GETATTR_FH, SETATTR's FATTR_FH). */
  when?: (body: Buffer) => boolean;
}

/** fuse_getattr_in.getattr_flags & FUSE_GETATTR_FH (fuse.h: getattr flags). */
const getattrFh = (b: Buffer): boolean => b.length >= 4 && (b.readUInt32LE(0) & 1) !== 0;
/** fuse_setattr_in.valid & FATTR_FH (1 << 6). */
const setattrFh = (b: Buffer): boolean => b.length >= 4 && (b.readUInt32LE(0) & (1 << 6)) !== 0;

/**
 * Identifier fields of request bodies by opcode. fuse_in_header.nodeid is translated for every
 * request except INIT/INTERRUPT/NOTIFY_REPLY/BATCH_FORGET/DESTROY (those carry no node there).
 */
export const REQUEST_ID_FIELDS: Readonly<Record<number, readonly IdField[]>> = {
  [OP.GETATTR]: [{ off: 8, kind: 'fh', when: getattrFh }], // fuse_getattr_in.fh
  [OP.SETATTR]: [{ off: 8, kind: 'fh', when: setattrFh }], // fuse_setattr_in.fh
  [OP.STATX]: [{ off: 8, kind: 'fh', when: getattrFh }], // fuse_statx_in.fh
  [OP.RENAME]: [{ off: 0, kind: 'nodeid' }], // fuse_rename_in.newdir
  [OP.RENAME2]: [{ off: 0, kind: 'nodeid' }], // fuse_rename2_in.newdir
  [OP.LINK]: [{ off: 0, kind: 'nodeid' }], // fuse_link_in.oldnodeid
  [OP.READ]: [{ off: 0, kind: 'fh' }], // fuse_read_in.fh
  [OP.WRITE]: [{ off: 0, kind: 'fh' }], // fuse_write_in.fh
  [OP.RELEASE]: [{ off: 0, kind: 'fh' }], // fuse_release_in.fh
  [OP.RELEASEDIR]: [{ off: 0, kind: 'fh' }],
  [OP.FSYNC]: [{ off: 0, kind: 'fh' }], // fuse_fsync_in.fh
  [OP.FSYNCDIR]: [{ off: 0, kind: 'fh' }],
  [OP.FLUSH]: [{ off: 0, kind: 'fh' }], // fuse_flush_in.fh
  // fuse_read_in.offset of a directory read is a cookie the server chose (fuse_dirent.off).
  [OP.READDIR]: [{ off: 0, kind: 'fh' }, { off: 8, kind: 'dircookie' }],
  [OP.READDIRPLUS]: [{ off: 0, kind: 'fh' }, { off: 8, kind: 'dircookie' }],
  [OP.GETLK]: [{ off: 0, kind: 'fh' }], // fuse_lk_in.fh
  [OP.SETLK]: [{ off: 0, kind: 'fh' }],
  [OP.SETLKW]: [{ off: 0, kind: 'fh' }],
  [OP.IOCTL]: [{ off: 0, kind: 'fh' }], // fuse_ioctl_in.fh
  [OP.POLL]: [{ off: 0, kind: 'fh' }], // fuse_poll_in.fh (kh is the kernel's own handle)
  [OP.FALLOCATE]: [{ off: 0, kind: 'fh' }], // fuse_fallocate_in.fh
  [OP.LSEEK]: [{ off: 0, kind: 'fh' }], // fuse_lseek_in.fh
  // fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, ...
  [OP.COPY_FILE_RANGE]: [{ off: 0, kind: 'fh' }, { off: 16, kind: 'nodeid' }, { off: 24, kind: 'fh' }],
  [OP.COPY_FILE_RANGE_64]: [{ off: 0, kind: 'fh' }, { off: 16, kind: 'nodeid' }, { off: 24, kind: 'fh' }],
  [OP.SETUPMAPPING]: [{ off: 0, kind: 'fh' }], // fuse_setupmapping_in.fh
};

/** Requests whose fuse_in_header.nodeid is not a node (or is 0 by definition). */
export function headerNodeidIsNode(opcode: number): boolean {
  return !(opcode === OP.INIT || opcode === OP.INTERRUPT || opcode === OP.NOTIFY_REPLY ||
    opcode === OP.BATCH_FORGET || opcode === OP.DESTROY);
}

/** Replies that start with a fuse_entry_out: the server hands the kernel a new lookup reference. */
export function repliesWithEntry(opcode: number): boolean {
  return opcode === OP.LOOKUP || opcode === OP.MKNOD || opcode === OP.MKDIR || opcode === OP.SYMLINK ||
    opcode === OP.LINK || opcode === OP.CREATE || opcode === OP.TMPFILE;
}

/** Replies that carry a fuse_open_out, and where in the body (CREATE/TMPFILE: after the entry). */
export function openOutOffset(opcode: number): number | undefined {
  if (opcode === OP.OPEN || opcode === OP.OPENDIR) return 0;
  if (opcode === OP.CREATE || opcode === OP.TMPFILE) return SIZEOF_ENTRY_OUT;
  return undefined;
}

/** sizeof(struct fuse_entry_out) = 128; its fuse_attr starts at 40. */
export const SIZEOF_ENTRY_OUT = 128;
export const ENTRY_ATTR_OFF = 40;
/** sizeof(struct fuse_dirent) without the name = FUSE_NAME_OFFSET. */
export const DIRENT_NAME_OFF = 24;

/** One directory entry of a READDIR / READDIRPLUS reply, with byte offsets into the body. */
export interface DirentPos {
  /** Offset of the fuse_entry_out (READDIRPLUS only). */
  entryOff?: number;
  /** Offset of the fuse_dirent. */
  direntOff: number;
  name: Buffer;
}

/**
 * Walks a READDIR(PLUS) reply body: entries are FUSE_DIRENT_ALIGN'ed (8 bytes). Stops at the first
 * malformed entry instead of throwing: the comparison reports the raw bytes then.
 */
export function direntPositions(body: Buffer, plus: boolean): DirentPos[] {
  const out: DirentPos[] = [];
  let p = 0;
  const head = plus ? SIZEOF_ENTRY_OUT : 0;
  while (p + head + DIRENT_NAME_OFF <= body.length) {
    const d = p + head;
    const namelen = body.readUInt32LE(d + 16);
    if (d + DIRENT_NAME_OFF + namelen > body.length) break;
    out.push({ entryOff: plus ? p : undefined, direntOff: d, name: body.subarray(d + DIRENT_NAME_OFF, d + DIRENT_NAME_OFF + namelen) });
    p = d + ((DIRENT_NAME_OFF + namelen + 7) & ~7);
  }
  return out;
}

/** Reads a u64 at `off` if it is inside `b`. */
export function u64At(b: Buffer, off: number): bigint | undefined {
  return off + 8 <= b.length ? b.readBigUInt64LE(off) : undefined;
}
