/**
 * Redacting recorded frames: the codec decodes each frame into its parts (codec.ts), the parts
 * that carry names or contents are replaced, and the frame is encoded again with its length
 * fields made consistent (fuse_*_header.len, fuse_dirent.namelen and the dirent padding, the
 * notifications' namelen), so every decoder still parses the result. Headers, structs, opcodes,
 * uniques, nodeids, errors and sizes of data are never touched.
 *
 * What each class replaces:
 *   names     names in requests (LOOKUP, CREATE, MKDIR, RENAME, LINK, UNLINK, ...), READDIR and
 *             READDIRPLUS entries, NOTIFY_INVAL_ENTRY / NOTIFY_DELETE names -> NameHasher tokens
 *   data      READ reply and WRITE request payloads, IOCTL data, NOTIFY_STORE / NOTIFY_REPLY data -> zeros
 *   xattrs    SETXATTR / GETXATTR values -> zeros; xattr names outside system./security. -> tokens;
 *             request extensions (the security context) -> zeros
 *   symlinks  SYMLINK targets and READLINK replies -> the target's components as tokens
 * With any class, bytes the layout does not explain (a reply to an unknown request, an unknown
 * opcode, trailing bytes) are zeroed: nothing unrecognised passes through.
 */
import {
  Opcode, SessionDecoder, encode, layout, opcodeInfo, structs, type DecodedFrame, type Part,
} from '../protocol/index.js';
import type { NameHasher } from './names.js';

/** The redaction classes, in the order `--redact` lists them. */
export const REDACT_CLASSES = ['names', 'data', 'xattrs', 'symlinks'] as const;
export type RedactClass = (typeof REDACT_CLASSES)[number];

/** What a part of a frame holds, for deciding whether a class covers it. */
type Content = 'file-name' | 'symlink-target' | 'xattr-name' | 'xattr-names' | 'xattr-value' | 'data' | 'unknown' | 'keep';

const XATTR_OPS = new Set([Opcode.GETXATTR, Opcode.SETXATTR, Opcode.REMOVEXATTR]);
const DATA_REPLY_OPS = new Set([Opcode.READ, Opcode.IOCTL]);

/** What the i-th name part of a request holds. */
function requestName(opcode: number, i: number): Content {
  if (opcode === Opcode.SYMLINK && i === 1) return 'symlink-target'; // fs/fuse/dir.c fuse_symlink: name, then target
  if (XATTR_OPS.has(opcode)) return 'xattr-name';
  return 'file-name';
}

/** What a bytes part holds. */
function bytesContent(frame: DecodedFrame, role: string): Content {
  if (role === 'pad') return 'keep';
  if (role === 'ext') return 'xattr-value'; // FUSE_SECURITY_CTX: the new file's xattr name and value
  if (role !== 'data') return 'unknown';
  if (frame.kind === 'notify') return 'data';
  const op = frame.opcode;
  if (op === undefined) return 'unknown';
  if (frame.kind === 'request') return op === Opcode.SETXATTR ? 'xattr-value' : 'data';
  if (op === Opcode.READLINK) return 'symlink-target';
  if (op === Opcode.GETXATTR) return 'xattr-value';
  if (op === Opcode.LISTXATTR) return 'xattr-names';
  if (DATA_REPLY_OPS.has(op) || op === Opcode.NOTIFY_REPLY) return 'data';
  // A reply of a known opcode whose layout has no data (CUSE device info): kept.
  return opcodeInfo(op)?.reply.kind === 'cuse' ? 'keep' : 'unknown';
}

const CLASS_OF: Record<Exclude<Content, 'unknown' | 'keep'>, RedactClass> = {
  'file-name': 'names',
  'symlink-target': 'symlinks',
  'xattr-name': 'xattrs',
  'xattr-names': 'xattrs',
  'xattr-value': 'xattrs',
  data: 'data',
};

const align8 = (n: number): number => (n + 7) & ~7;

/** Where a frame's length sits: fuse_in_header.len and fuse_out_header.len (both the first field). */
const LEN_AT = layout(structs.fuse_in_header).leaves.find((l) => l.path[0] === 'len')!.offset;
if (LEN_AT !== layout(structs.fuse_out_header).leaves.find((l) => l.path[0] === 'len')!.offset) throw new Error('fuse_in_header.len and fuse_out_header.len differ in offset');

/** Redacts the frames of one session, in order (the decoder learns INIT and pairs replies as it goes). */
export class FrameRedactor {
  private readonly decoder = new SessionDecoder();

  constructor(
    private readonly classes: ReadonlySet<RedactClass>,
    private readonly hasher: NameHasher,
  ) {}

  /** The redacted bytes of a frame and its new full length (`len` grows or shrinks with the names). */
  redact(dir: 0 | 1, data: Buffer, len: number): { data: Buffer; len: number } {
    const res = this.decoder.decode(dir === 0 ? 'rx' : 'tx', data);
    if (!res.frame || this.classes.size === 0) return { data, len };
    const parts = this.rewrite(res.frame);
    if (parts === null) return { data, len };
    const out = encode({ parts });
    const newLen = len + (out.length - data.length);
    if (out.length >= LEN_AT + 4) out.writeUInt32LE(newLen, LEN_AT);
    return { data: out, len: newLen };
  }

  private covers(c: Content): boolean {
    if (c === 'keep') return false;
    if (c === 'unknown') return true;
    return this.classes.has(CLASS_OF[c]);
  }

  /** The frame's parts with the covered ones replaced, or null when nothing changed. */
  private rewrite(frame: DecodedFrame): Part[] | null {
    const parts = frame.parts.slice();
    let changed = false;
    let nameIndex = 0;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (p.kind === 'struct') continue;
      if (p.kind === 'name') {
        const content = frame.kind === 'request' ? requestName(frame.opcode!, nameIndex++) : 'file-name';
        if (!this.covers(content)) continue;
        const text = p.bytes.toString('utf8');
        const bytes = Buffer.from(content === 'symlink-target' ? this.hasher.path(text) : content === 'xattr-name' ? this.hasher.xattrName(text) : this.hasher.name(text), 'utf8');
        parts[i] = { ...p, bytes };
        if (frame.kind !== 'request') fixNameLength(parts, i, bytes.length, p.bytes.length);
        changed = true;
        continue;
      }
      const content = bytesContent(frame, p.role);
      if (!this.covers(content)) continue;
      parts[i] = { ...p, bytes: this.replaceBytes(content, p.bytes) };
      changed = true;
    }
    return changed ? parts : null;
  }

  private replaceBytes(content: Content, bytes: Buffer): Buffer {
    if (content === 'symlink-target') return Buffer.from(this.hasher.path(bytes.toString('utf8')), 'utf8');
    if (content === 'xattr-names') {
      // LISTXATTR: NUL-terminated names, one after another.
      const names = bytes.toString('utf8').split('\0');
      const last = names.pop();
      return Buffer.from([...names.map((n) => this.hasher.xattrName(n)), last ?? ''].join('\0'), 'utf8');
    }
    return Buffer.alloc(bytes.length);
  }
}

/**
 * A reply's or notification's name changed length: the struct before it says how long it is
 * (fuse_dirent.namelen; notify namelen), and a dirent's padding after it re-aligns the next record.
 */
function fixNameLength(parts: Part[], i: number, newLen: number, oldLen: number): void {
  const before = parts[i - 1];
  if (before?.kind === 'struct' && 'namelen' in before.values) {
    parts[i - 1] = { ...before, values: { ...before.values, namelen: newLen } };
  }
  if (before?.kind !== 'struct' || before.desc !== structs.fuse_dirent) return;
  const after = parts[i + 1];
  // fuse_dirent and fuse_entry_out are multiples of 8 bytes: padding depends on the name alone.
  const oldPad = align8(oldLen) - oldLen;
  const newPad = align8(newLen) - newLen;
  const hadPad = after?.kind === 'bytes' && after.role === 'pad';
  // The last record's padding may have been cut by the reply's size: keep it cut.
  const full = hadPad ? after.bytes.length === oldPad : oldPad === 0;
  const pad: Part = { kind: 'bytes', role: 'pad', bytes: Buffer.alloc(full ? newPad : 0) };
  if (hadPad) parts[i + 1] = pad;
  else if (full && newPad > 0) parts.splice(i + 1, 0, pad);
}
