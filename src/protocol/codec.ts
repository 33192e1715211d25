/**
 * Decode and encode FUSE frames. Pure functions over Buffers; they never throw on bytes from the
 * kernel or a server. A decoded frame is a list of parts (header, structs, names, data, raw bytes)
 * that encode() concatenates back, so encode(decode(x)) is byte-identical to x, including bytes the
 * decoder did not understand; the typed fields (args, names, data, items, dirents) are views of
 * those parts, and editing a struct's values (INIT masking) changes what encode() writes.
 */
import { INIT_FLAG } from './flags.js';
import { notifyInfo, notifyName, opcodeInfo, opcodeName, type OpcodeInfo, type Tail } from './opcodes.js';
import {
  decodeStruct, encodeStruct, fuse_dirent, fuse_entry_out, fuse_ext_header, fuse_in_header, fuse_interrupt_in, fuse_ioctl_iovec,
  fuse_ioctl_out, fuse_out_header, fuse_getxattr_out, fuse_write_in, cuse_init_out, layout, sizeAt, type Fields, type StructDesc,
} from './structs.js';

/** The protocol minor the codec speaks when nothing else is known. */
export const KERNEL_MINOR = 45;
export const KERNEL_MAJOR = 7;
/** sizeof(struct fuse_in_header): 40. */
export const IN_HEADER_SIZE = fuse_in_header.size;
/** sizeof(struct fuse_out_header): 16. */
export const OUT_HEADER_SIZE = fuse_out_header.size;
/**
 * Where a FUSE_INTERRUPT frame names the request it interrupts: fuse_interrupt_in.unique, right
 * after fuse_in_header (fs/fuse/dev.c fuse_read_interrupt).
 */
export const INTERRUPT_TARGET_OFFSET = IN_HEADER_SIZE + layout(fuse_interrupt_in).leaves.find((l) => l.path[0] === 'unique')!.offset;
/**
 * The unique an INTERRUPT request frame names (fuse_interrupt_in.unique), or, when the frame was
 * cut short (--snaplen), the one its own unique implies (target | FUSE_INT_REQ_BIT).
 */
export function interruptTargetOf(frame: Buffer, unique: bigint): bigint {
  return frame.length >= INTERRUPT_TARGET_OFFSET + 8 ? frame.readBigUInt64LE(INTERRUPT_TARGET_OFFSET) : interruptTarget(unique);
}
/** Bytes of a WRITE request before its data: fuse_in_header + fuse_write_in (40 + 40 since 7.9). */
export const WRITE_HEADERS_SIZE = IN_HEADER_SIZE + fuse_write_in.size;
/** The kernel marks a FUSE_INTERRUPT's own unique with this bit (fs/fuse/fuse_i.h): its unique is
 * the interrupted request's unique | FUSE_INT_REQ_BIT, and a reply to the INTERRUPT (EAGAIN/ENOSYS)
 * carries it. Ordinary uniques step by 2 (FUSE_REQ_ID_STEP), so this bit is free in them. */
export const FUSE_INT_REQ_BIT = 1n;
/** True for the unique of a FUSE_INTERRUPT and of a reply to one (ordinary uniques are even). */
export function isInterruptUnique(unique: bigint): boolean {
  return (unique & FUSE_INT_REQ_BIT) !== 0n;
}
/** The unique of the request that an INTERRUPT (or a reply to the INTERRUPT) is about. */
export function interruptTarget(unique: bigint): bigint {
  return unique & ~FUSE_INT_REQ_BIT;
}
/** Set in the unique of a request the kernel resent after FUSE_NOTIFY_RESEND (7.40). */
export const FUSE_UNIQUE_RESEND = 1n << 63n;
/** nodeid of the root directory. */
export const FUSE_ROOT_ID = 1n;

/** Where a frame came from: rx = read from /dev/fuse (kernel -> server), tx = written to it. */
export type Direction = 'rx' | 'tx';

export interface DecodeContext {
  /** Negotiated protocol minor (min of both INIT minors); default 45. INIT itself decodes by length. */
  minor?: number;
  /** Negotiated INIT flags (flags | flags2 << 32): FUSE_SETXATTR_EXT decides fuse_setxattr_in's size.
   * Unknown: the size is inferred from the frame. */
  flags?: bigint;
}

export interface ReplyContext extends DecodeContext {
  /** Opcode of the request this reply answers (looked up by unique). */
  opcode?: number;
  /** The decoded request, if known: a GETXATTR/LISTXATTR reply's layout depends on its size. */
  request?: DecodedFrame;
}

export type DecodeErrorKind =
  | 'short' // fewer bytes than the header, a struct, a list or the header's len need
  | 'bad-length' // fuse_*_header.len disagrees with the frame, or a size field with its payload
  | 'unknown-opcode' // request opcode not in the 7.45 table
  | 'unknown-notify' // notify code not in the 7.45 table
  | 'unpaired' // reply whose request (opcode) is unknown: body kept raw
  | 'bad-name' // a name without its NUL, or disagreeing with its namelen
  | 'bad-error' // reply error outside -511..0 (the kernel rejects it), or a body after an error
  | 'trailing'; // bytes after everything the layout describes (kept raw)

export interface DecodeError {
  readonly kind: DecodeErrorKind;
  readonly message: string;
}

/** One piece of a frame, in wire order. encode() concatenates them. */
export type Part =
  | { kind: 'struct'; role: 'header' | 'arg' | 'item' | 'dirent' | 'ext'; desc: StructDesc; minor: number; size: number; values: Fields }
  | { kind: 'name'; bytes: Buffer; nul: boolean }
  | { kind: 'bytes'; role: 'data' | 'pad' | 'tail' | 'ext'; bytes: Buffer };

export interface Dirent {
  ino: bigint;
  off: bigint;
  type: number;
  name: string;
  /** READDIRPLUS: the entry_out before the dirent. */
  entry?: Fields;
}

export interface ExtInfo {
  /** fuse_ext_header.type: 0..31 security context (FUSE_SECURITY_CTX), 32 FUSE_EXT_GROUPS. */
  type: number;
  /** Total size including the 8-byte header. */
  size: number;
  payload: Buffer;
}

export interface DecodedFrame {
  dir: Direction;
  kind: 'request' | 'reply' | 'notify';
  /** fuse_in_header.unique / fuse_out_header.unique (0 for notify frames). */
  unique: bigint;
  /** Request: its opcode. Reply: the answered request's opcode, if known. */
  opcode?: number;
  /** Opcode name (`LOOKUP`, `OPCODE-99`) or notify name (`NOTIFY_POLL`, `NOTIFY-99`). */
  name: string;
  /** Request header fields. */
  nodeid?: bigint;
  uid?: number;
  gid?: number;
  pid?: number;
  /** Reply: fuse_out_header.error (0 or a negative errno). Notify: the notify code. */
  error?: number;
  /** fuse_*_header.len as sent. */
  len: number;
  header: Fields;
  /** Fixed structs after the header, in order (CREATE reply: entry_out, open_out). */
  args: Fields[];
  /** NUL-terminated names, decoded as UTF-8 (bytes stay in parts). */
  names: string[];
  /** Opaque payload: WRITE/READ data, SETXATTR value, READLINK target, ... */
  data?: Buffer;
  /** List items: BATCH_FORGET forgets, REMOVEMAPPING ranges, PRUNE nodeids, IOCTL iovecs. */
  items: Fields[];
  /** READDIR/READDIRPLUS reply entries. */
  dirents?: Dirent[];
  /** Request extensions (7.38 total_extlen). */
  ext: ExtInfo[];
  parts: Part[];
}

export interface DecodeResult {
  /** True when the frame decoded with no error at all. */
  ok: boolean;
  /** The first error, if any. */
  error?: DecodeError;
  errors: DecodeError[];
  /** The (possibly partial) record; absent only when even the header is incomplete. */
  frame?: DecodedFrame;
  /** The bytes given. */
  raw: Buffer;
}

const align8 = (n: number) => (n + 7) & ~7;

/** Cursor over one frame that records parts and errors. */
class Reader {
  pos: number;
  end: number;
  readonly parts: Part[] = [];
  readonly errors: DecodeError[] = [];
  constructor(readonly buf: Buffer, pos: number, end: number) {
    this.pos = pos;
    this.end = end;
  }
  get left(): number {
    return this.end - this.pos;
  }
  err(kind: DecodeErrorKind, message: string): void {
    this.errors.push({ kind, message });
  }
  /** Decode `size` bytes as `desc`; a short body yields the whole fields that fit, the rest raw. */
  struct(desc: StructDesc, size: number, minor: number, role: Extract<Part, { kind: 'struct' }>['role'] = 'arg'): Fields | undefined {
    if (size === 0) return undefined;
    const avail = Math.min(size, this.left);
    const { values, covered } = decodeStruct(this.buf.subarray(0, this.end), this.pos, desc, avail, minor);
    if (covered > 0) this.parts.push({ kind: 'struct', role, desc, minor, size: covered, values });
    this.pos += covered;
    if (avail < size) {
      this.err('short', `${desc.name}: need ${size} bytes, have ${avail}`);
      this.rest('tail');
    }
    return covered > 0 ? values : undefined;
  }
  /** A NUL-terminated name; without a NUL the rest is taken as the name and `bad-name` recorded. */
  name(what: string): string {
    const nul = this.buf.subarray(this.pos, this.end).indexOf(0);
    const n = nul < 0 ? this.left : nul;
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.parts.push({ kind: 'name', bytes, nul: nul >= 0 });
    this.pos += n + (nul >= 0 ? 1 : 0);
    if (nul < 0) this.err('bad-name', `${what}: no NUL terminator`);
    return bytes.toString('utf8');
  }
  bytes(n: number, role: Extract<Part, { kind: 'bytes' }>['role']): Buffer {
    const take = Math.max(0, Math.min(n, this.left));
    const b = this.buf.subarray(this.pos, this.pos + take);
    if (take > 0) this.parts.push({ kind: 'bytes', role, bytes: b });
    this.pos += take;
    return b;
  }
  rest(role: Extract<Part, { kind: 'bytes' }>['role']): Buffer {
    return this.bytes(this.left, role);
  }
  /** Whatever is left is not described by the layout: keep it raw and say so. */
  trailing(what: string): void {
    if (this.left > 0) {
      this.err('trailing', `${this.left} bytes after ${what}`);
      this.rest('tail');
    }
  }
}

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);

function emptyFrame(dir: Direction, kind: DecodedFrame['kind'], header: Fields, parts: Part[]): DecodedFrame {
  return {
    dir, kind, unique: header.unique as bigint, name: '', len: header.len as number, header, args: [], names: [],
    items: [], ext: [], parts,
  };
}

/** Checks fuse_*_header.len against the buffer; returns where the body ends. */
function bodyEnd(buf: Buffer, len: number, headerSize: number, errors: DecodeError[]): number {
  if (len === buf.length) return len;
  if (len > buf.length) {
    errors.push({ kind: 'short', message: `header says ${len} bytes, frame has ${buf.length}` });
    return buf.length;
  }
  errors.push({ kind: 'bad-length', message: `header says ${len} bytes, frame has ${buf.length}` });
  return len >= headerSize ? len : buf.length;
}

function finish(r: Reader, frame: DecodedFrame, rawEnd: number): DecodeResult {
  // Bytes beyond the header's len (bad-length) stay in the frame as a raw tail.
  if (rawEnd < r.buf.length) r.parts.push({ kind: 'bytes', role: 'tail', bytes: r.buf.subarray(rawEnd) });
  return { ok: r.errors.length === 0, error: r.errors[0], errors: r.errors, frame, raw: r.buf };
}

/** Reads `tail` (data or a counted list) after the fixed struct and names. */
function readTail(r: Reader, tail: Tail, arg: Fields | undefined, frame: DecodedFrame, what: string): void {
  if (tail.kind === 'data') {
    frame.data = r.rest('data');
  } else if (tail.kind === 'list') {
    const count = num(arg?.count);
    const need = count * tail.item.size;
    if (need > r.left) r.err('short', `${what}: count ${count} needs ${need} bytes, have ${r.left}`);
    for (let i = 0; i < count && r.left >= tail.item.size; i++) {
      const v = r.struct(tail.item, tail.item.size, KERNEL_MINOR, 'item');
      if (v) frame.items.push(v);
    }
  }
}

/** Size of a request's fixed struct, which for a few opcodes depends on more than the minor. */
function requestArgSize(info: OpcodeInfo, desc: StructDesc, r: Reader, ctx: DecodeContext, minor: number): number {
  switch (info.name) {
    case 'INIT':
    case 'CUSE_INIT':
      // INIT is decoded by its length: 8 bytes before 7.6, 16 until 7.35, 64 since 7.36.
      return Math.min(r.left, desc.size);
    case 'SETXATTR': {
      if (ctx.flags !== undefined) return ctx.flags & INIT_FLAG.FUSE_SETXATTR_EXT ? 16 : 8;
      if (minor < 33) return 8;
      // Unknown negotiation: the layout whose size field accounts exactly for the value wins.
      for (const size of [8, 16]) {
        if (r.left < size) continue;
        const valueSize = r.buf.readUInt32LE(r.pos);
        const nul = r.buf.subarray(r.pos + size, r.end).indexOf(0);
        if (nul >= 0 && r.left - size - nul - 1 === valueSize) return size;
      }
      return 8;
    }
    default:
      return sizeAt(desc, minor);
  }
}

/** INIT and CUSE_INIT: decoded by their length, whatever minor the session negotiated. */
function isInit(name: string): boolean {
  return name === 'INIT' || name === 'CUSE_INIT';
}

/** Decode a frame read from /dev/fuse: a request, INTERRUPT, FORGET or NOTIFY_REPLY. */
export function decodeRequest(buf: Buffer, ctx: DecodeContext = {}): DecodeResult {
  const minor = ctx.minor ?? KERNEL_MINOR;
  if (buf.length < IN_HEADER_SIZE) {
    const e: DecodeError = { kind: 'short', message: `${buf.length} bytes, fuse_in_header needs ${IN_HEADER_SIZE}` };
    return { ok: false, error: e, errors: [e], raw: buf };
  }
  const errors: DecodeError[] = [];
  const { values: header } = decodeStruct(buf, 0, fuse_in_header, IN_HEADER_SIZE, minor);
  const len = header.len as number;
  const end = bodyEnd(buf, len, IN_HEADER_SIZE, errors);
  const r = new Reader(buf, IN_HEADER_SIZE, end);
  r.errors.push(...errors);
  r.parts.push({ kind: 'struct', role: 'header', desc: fuse_in_header, minor, size: IN_HEADER_SIZE, values: header });
  const frame = emptyFrame('rx', 'request', header, r.parts);
  const opcode = header.opcode as number;
  Object.assign(frame, { opcode, name: opcodeName(opcode), nodeid: header.nodeid, uid: header.uid, gid: header.gid, pid: header.pid });

  // Extensions (7.38) sit at the very end: split them off before walking the arguments.
  let extStart = end;
  const extlen = minor >= 38 ? (header.total_extlen as number) * 8 : 0;
  if (extlen > 0) {
    if (extlen > end - IN_HEADER_SIZE) r.err('bad-length', `total_extlen ${extlen} bytes exceeds the ${end - IN_HEADER_SIZE}-byte body`);
    else extStart = end - extlen;
  }
  r.end = extStart;

  const info = opcodeInfo(opcode);
  if (!info) {
    r.err('unknown-opcode', `opcode ${opcode} is not in protocol 7.${KERNEL_MINOR}`);
    r.rest('tail');
  } else {
    let arg: Fields | undefined;
    // INIT comes before any negotiation: it is laid out at the sender's own minor, which its length
    // tells (requestArgSize), never at the session's negotiated one. Decoded at a go-fuse server's
    // minor 28, a kernel 6.18 INIT lost flags2 and the rest ("trailing: 48 bytes after INIT").
    const argMinor = isInit(info.name) ? KERNEL_MINOR : minor;
    if (info.request) {
      arg = r.struct(info.request, requestArgSize(info, info.request, r, ctx, argMinor), argMinor);
      if (arg) frame.args.push(arg);
    }
    for (let i = 0; i < info.names; i++) {
      if (r.left === 0) {
        r.err('bad-name', `${info.name}: name ${i + 1} of ${info.names} missing`);
        break;
      }
      frame.names.push(r.name(`${info.name} name ${i + 1}`));
    }
    readTail(r, info.tail, arg, frame, info.name);
    // Payload sizes announced by the fixed struct must match what came.
    const announced = info.name === 'IOCTL' ? arg?.in_size : ['WRITE', 'SETXATTR', 'NOTIFY_REPLY'].includes(info.name) ? arg?.size : undefined;
    if (announced !== undefined && frame.data && frame.data.length !== num(announced)) {
      r.err('bad-length', `${info.name}: size field says ${num(announced)} bytes, payload has ${frame.data.length}`);
    }
    r.trailing(info.name);
  }

  if (extStart < end) {
    r.end = end;
    while (r.left > 0) {
      if (r.left < fuse_ext_header.size) {
        r.err('short', `extension header needs 8 bytes, have ${r.left}`);
        r.rest('ext');
        break;
      }
      const size = r.buf.readUInt32LE(r.pos);
      if (size < fuse_ext_header.size || size > r.left || size % 8 !== 0) {
        r.err('bad-length', `extension size ${size} with ${r.left} bytes left`);
        r.rest('ext');
        break;
      }
      const h = r.struct(fuse_ext_header, fuse_ext_header.size, minor, 'ext')!;
      const payload = r.bytes(size - fuse_ext_header.size, 'ext');
      frame.ext.push({ type: h.type as number, size, payload });
    }
  }
  return finish(r, frame, end);
}

/**
 * True when a reply to `opcode` decodes differently with its decoded request (ReplyContext.request):
 * the `xattr` replies (GETXATTR, LISTXATTR), whose request's size 0 asks for the length only.
 * Callers that decode many replies decode the request only for these.
 */
export function replyNeedsRequest(opcode: number): boolean {
  return opcodeInfo(opcode)?.reply.kind === 'xattr';
}

/** Decode a frame written to /dev/fuse: a reply (needs the request's opcode) or a notify (unique 0). */
export function decodeReply(buf: Buffer, ctx: ReplyContext = {}): DecodeResult {
  const minor = ctx.minor ?? KERNEL_MINOR;
  if (buf.length < OUT_HEADER_SIZE) {
    const e: DecodeError = { kind: 'short', message: `${buf.length} bytes, fuse_out_header needs ${OUT_HEADER_SIZE}` };
    return { ok: false, error: e, errors: [e], raw: buf };
  }
  const errors: DecodeError[] = [];
  const { values: header } = decodeStruct(buf, 0, fuse_out_header, OUT_HEADER_SIZE, minor);
  const end = bodyEnd(buf, header.len as number, OUT_HEADER_SIZE, errors);
  const r = new Reader(buf, OUT_HEADER_SIZE, end);
  r.errors.push(...errors);
  r.parts.push({ kind: 'struct', role: 'header', desc: fuse_out_header, minor, size: OUT_HEADER_SIZE, values: header });
  const error = header.error as number;
  if (header.unique === 0n) return decodeNotify(r, header, error, minor, end);

  const frame = emptyFrame('tx', 'reply', header, r.parts);
  frame.error = error;
  const opcode = ctx.opcode ?? ctx.request?.opcode;
  frame.opcode = opcode;
  frame.name = opcode === undefined ? 'REPLY' : opcodeName(opcode);
  if (error > 0 || error <= -512) r.err('bad-error', `error ${error} is outside -511..0`);
  if (error !== 0) {
    if (r.left > 0) {
      r.err('bad-error', `${r.left} bytes of body after error ${error}`);
      r.rest('tail');
    }
    return finish(r, frame, end);
  }
  const info = opcode === undefined ? undefined : opcodeInfo(opcode);
  if (!info) {
    if (r.left > 0) {
      r.err(opcode === undefined ? 'unpaired' : 'unknown-opcode', opcode === undefined ? 'reply to an unknown request: body kept raw' : `opcode ${opcode} is not in protocol 7.${KERNEL_MINOR}`);
      frame.data = r.rest('data');
    }
    return finish(r, frame, end);
  }
  const shape = info.reply;
  switch (shape.kind) {
    case 'none':
      break;
    case 'structs':
      for (const desc of shape.structs) {
        // INIT's reply is decoded by its length (8, 24 or 64 bytes, FUSE_COMPAT_*INIT_OUT_SIZE).
        const size = isInit(info.name) ? Math.min(r.left, desc.size) : sizeAt(desc, minor);
        const v = r.struct(desc, size, isInit(info.name) ? KERNEL_MINOR : minor);
        if (v) frame.args.push(v);
      }
      break;
    case 'data':
      frame.data = r.rest('data');
      break;
    case 'xattr': {
      const reqSize = ctx.request?.args[0]?.size;
      if (reqSize !== undefined && num(reqSize) === 0) {
        const v = r.struct(fuse_getxattr_out, fuse_getxattr_out.size, minor);
        if (v) frame.args.push(v);
      } else {
        frame.data = r.rest('data');
        if (reqSize !== undefined && frame.data.length > num(reqSize)) {
          r.err('bad-length', `${frame.data.length} bytes for a ${num(reqSize)}-byte buffer`);
        }
        if (shape.names) {
          // LISTXATTR: a list of NUL-terminated names.
          frame.names = frame.data.toString('utf8').split('\0').slice(0, -1);
        }
      }
      break;
    }
    case 'dirents':
      frame.dirents = readDirents(r, shape.plus, minor);
      break;
    case 'ioctl': {
      const out = r.struct(fuse_ioctl_out, fuse_ioctl_out.size, minor);
      if (out) frame.args.push(out);
      if (out && num(out.flags) & 4 /* FUSE_IOCTL_RETRY */) {
        const n = num(out.in_iovs) + num(out.out_iovs);
        if (n * fuse_ioctl_iovec.size > r.left) r.err('short', `${n} iovecs need ${n * 16} bytes, have ${r.left}`);
        for (let i = 0; i < n && r.left >= fuse_ioctl_iovec.size; i++) {
          frame.items.push(r.struct(fuse_ioctl_iovec, fuse_ioctl_iovec.size, minor, 'item')!);
        }
      } else if (r.left > 0) {
        frame.data = r.rest('data');
      }
      break;
    }
    case 'cuse': {
      const v = r.struct(cuse_init_out, cuse_init_out.size, minor);
      if (v) frame.args.push(v);
      if (r.left > 0) {
        frame.data = r.rest('data'); // "DEVNAME=..." and other NUL-separated device info strings
        frame.names = frame.data.toString('utf8').split('\0').filter(Boolean);
      }
      break;
    }
  }
  r.trailing(`${info.name} reply`);
  return finish(r, frame, end);
}

/** READDIR / READDIRPLUS buffers: records padded to 8 bytes (FUSE_DIRENT_ALIGN). */
function readDirents(r: Reader, plus: boolean, minor: number): Dirent[] {
  const out: Dirent[] = [];
  const fixed = (plus ? fuse_entry_out.size : 0) + fuse_dirent.size;
  while (r.left > 0) {
    if (r.left < fixed) {
      r.err('short', `${r.left} bytes left, a ${plus ? 'direntplus' : 'dirent'} needs ${fixed}`);
      r.rest('tail');
      break;
    }
    const entry = plus ? r.struct(fuse_entry_out, fuse_entry_out.size, minor, 'dirent') : undefined;
    const d = r.struct(fuse_dirent, fuse_dirent.size, minor, 'dirent')!;
    const namelen = num(d.namelen);
    if (namelen > r.left) {
      r.err('short', `dirent name of ${namelen} bytes, ${r.left} left`);
      r.rest('tail');
      break;
    }
    const nameBytes = r.buf.subarray(r.pos, r.pos + namelen);
    r.parts.push({ kind: 'name', bytes: nameBytes, nul: false });
    r.pos += namelen;
    const pad = align8(fixed + namelen) - (fixed + namelen);
    // The last record's padding may be cut by the reply size; keep what is there.
    r.bytes(pad, 'pad');
    out.push({ ino: d.ino as bigint, off: d.off as bigint, type: num(d.type), name: nameBytes.toString('utf8'), ...(entry ? { entry } : {}) });
  }
  return out;
}

function decodeNotify(r: Reader, header: Fields, code: number, minor: number, end: number): DecodeResult {
  const frame = emptyFrame('tx', 'notify', header, r.parts);
  frame.error = code;
  frame.name = notifyName(code);
  const info = notifyInfo(code);
  if (!info) {
    r.err('unknown-notify', `notify code ${code} is not in protocol 7.${KERNEL_MINOR}`);
    if (r.left > 0) frame.data = r.rest('data');
    return finish(r, frame, end);
  }
  let arg: Fields | undefined;
  if (info.struct) {
    arg = r.struct(info.struct, info.struct.size, minor);
    if (arg) frame.args.push(arg);
  }
  for (let i = 0; i < info.names; i++) {
    const name = r.name(info.name);
    frame.names.push(name);
    const namelen = num(arg?.namelen);
    const got = r.parts[r.parts.length - 1];
    if (got.kind === 'name' && got.bytes.length !== namelen) {
      r.err('bad-name', `${info.name}: namelen ${namelen}, name has ${got.bytes.length} bytes`);
    }
  }
  readTail(r, info.tail, arg, frame, info.name);
  if (info.name === 'NOTIFY_STORE' && frame.data && arg && frame.data.length !== num(arg.size)) {
    r.err('bad-length', `NOTIFY_STORE: size field says ${num(arg.size)} bytes, payload has ${frame.data.length}`);
  }
  r.trailing(info.name);
  return finish(r, frame, end);
}

/** Decode either direction. */
export function decodeFrame(dir: Direction, buf: Buffer, ctx: ReplyContext = {}): DecodeResult {
  return dir === 'rx' ? decodeRequest(buf, ctx) : decodeReply(buf, ctx);
}

/** Bytes of one part. */
function encodePart(p: Part): Buffer {
  switch (p.kind) {
    case 'struct': return encodeStruct(p.desc, p.values, p.size, p.minor);
    case 'name': return p.nul ? Buffer.concat([p.bytes, Buffer.alloc(1)]) : p.bytes;
    case 'bytes': return p.bytes;
  }
}

/**
 * The frame's bytes: its parts concatenated. With `fixLength` the header's len is rewritten to the
 * real length (for frames built or edited by hand); without it, len is written as decoded, so
 * encode(decode(x).frame) equals x byte for byte.
 */
export function encode(frame: Pick<DecodedFrame, 'parts'>, opts: { fixLength?: boolean } = {}): Buffer {
  const out = Buffer.concat(frame.parts.map(encodePart));
  if (opts.fixLength && out.length >= 4) out.writeUInt32LE(out.length, 0);
  return out;
}

// ---- building frames by hand (tests, the replayer's fake kernel, INIT rewriting) ----

const structPart = (desc: StructDesc, values: Fields, minor: number, role: Extract<Part, { kind: 'struct' }>['role'] = 'arg', size = sizeAt(desc, minor)): Part =>
  ({ kind: 'struct', role, desc, minor, size, values });
const namePart = (s: string | Buffer): Part => ({ kind: 'name', bytes: typeof s === 'string' ? Buffer.from(s, 'utf8') : s, nul: true });

export interface RequestSpec {
  opcode: number;
  unique: bigint;
  nodeid?: bigint;
  uid?: number;
  gid?: number;
  pid?: number;
  /** The fixed struct's values (missing fields are 0). */
  arg?: Fields;
  /** Override the fixed struct's size (INIT of an old kernel: 8 or 16). */
  argSize?: number;
  names?: Array<string | Buffer>;
  data?: Buffer;
  items?: Fields[];
  /** Raw extension bytes (already 8-byte aligned); sets total_extlen. */
  ext?: Buffer;
  minor?: number;
}

/** A request frame as the kernel would send it; len is computed. Unknown opcodes get just a header. */
export function buildRequest(spec: RequestSpec): Buffer {
  const minor = spec.minor ?? KERNEL_MINOR;
  const info = opcodeInfo(spec.opcode);
  const header: Fields = {
    len: 0, opcode: spec.opcode, unique: spec.unique, nodeid: spec.nodeid ?? 0n, uid: spec.uid ?? 0, gid: spec.gid ?? 0,
    pid: spec.pid ?? 0, total_extlen: spec.ext ? spec.ext.length / 8 : 0, padding: 0,
  };
  const parts: Part[] = [structPart(fuse_in_header, header, minor, 'header')];
  if (info?.request) parts.push(structPart(info.request, spec.arg ?? {}, minor, 'arg', spec.argSize ?? sizeAt(info.request, minor)));
  for (const n of spec.names ?? []) parts.push(namePart(n));
  if (info?.tail.kind === 'list') {
    const item = info.tail.item;
    for (const it of spec.items ?? []) parts.push(structPart(item, it, minor, 'item'));
  }
  if (spec.data) parts.push({ kind: 'bytes', role: 'data', bytes: spec.data });
  if (spec.ext) parts.push({ kind: 'bytes', role: 'ext', bytes: spec.ext });
  return encode({ parts }, { fixLength: true });
}

export interface ReplySpec {
  unique: bigint;
  /** 0 or a negative errno. */
  error?: number;
  /** The answered request's opcode: picks the reply structs. */
  opcode?: number;
  /** Values of the reply structs in order (CREATE: [entry_out, open_out]). */
  args?: Fields[];
  /** Override struct sizes (old-minor replies, INIT of 24 bytes). */
  argSizes?: number[];
  data?: Buffer;
  items?: Fields[];
  dirents?: Array<{ ino: bigint; off: bigint; type: number; name: string; entry?: Fields }>;
  minor?: number;
}

/** A reply frame as a server would write it; len is computed. An error reply is the header alone. */
export function buildReply(spec: ReplySpec): Buffer {
  const minor = spec.minor ?? KERNEL_MINOR;
  const header: Fields = { len: 0, error: spec.error ?? 0, unique: spec.unique };
  const parts: Part[] = [structPart(fuse_out_header, header, minor, 'header')];
  const info = spec.opcode === undefined ? undefined : opcodeInfo(spec.opcode);
  if (!spec.error && info) {
    const shape = info.reply;
    const structs: StructDesc[] =
      shape.kind === 'structs' ? [...shape.structs]
        : shape.kind === 'ioctl' ? [fuse_ioctl_out]
          : shape.kind === 'cuse' ? [cuse_init_out]
            : shape.kind === 'xattr' && spec.args?.length ? [fuse_getxattr_out] : [];
    structs.forEach((desc, i) => {
      if (spec.args?.[i] !== undefined || shape.kind === 'structs') {
        parts.push(structPart(desc, spec.args?.[i] ?? {}, minor, 'arg', spec.argSizes?.[i] ?? sizeAt(desc, minor)));
      }
    });
    for (const it of spec.items ?? []) parts.push(structPart(fuse_ioctl_iovec, it, minor, 'item'));
    for (const d of spec.dirents ?? []) {
      const plus = shape.kind === 'dirents' && shape.plus;
      if (plus) parts.push(structPart(fuse_entry_out, d.entry ?? {}, minor, 'dirent'));
      const name = Buffer.from(d.name, 'utf8');
      parts.push(structPart(fuse_dirent, { ino: d.ino, off: d.off, namelen: name.length, type: d.type }, minor, 'dirent'));
      parts.push({ kind: 'name', bytes: name, nul: false });
      const fixed = (plus ? fuse_entry_out.size : 0) + fuse_dirent.size + name.length;
      if (align8(fixed) > fixed) parts.push({ kind: 'bytes', role: 'pad', bytes: Buffer.alloc(align8(fixed) - fixed) });
    }
  }
  if (spec.data) parts.push({ kind: 'bytes', role: 'data', bytes: spec.data });
  return encode({ parts }, { fixLength: true });
}

export interface NotifySpec {
  arg?: Fields;
  names?: string[];
  data?: Buffer;
  items?: Fields[];
}

/** A notify frame (unique 0, the code in fuse_out_header.error); len is computed, and namelen is
 * filled in from the name when not given. */
export function buildNotify(code: number, spec: NotifySpec = {}): Buffer {
  const header: Fields = { len: 0, error: code, unique: 0n };
  const parts: Part[] = [structPart(fuse_out_header, header, KERNEL_MINOR, 'header')];
  const info = notifyInfo(code);
  if (info?.struct) {
    const arg = { ...(spec.arg ?? {}) };
    if (spec.names?.length && arg.namelen === undefined) arg.namelen = Buffer.byteLength(spec.names[0], 'utf8');
    if (info.tail.kind === 'list' && arg.count === undefined) arg.count = spec.items?.length ?? 0;
    if (info.tail.kind === 'data' && arg.size === undefined && spec.data) arg.size = spec.data.length;
    parts.push(structPart(info.struct, arg, KERNEL_MINOR));
  }
  for (const n of spec.names ?? []) parts.push(namePart(n));
  if (info?.tail.kind === 'list') for (const it of spec.items ?? []) parts.push(structPart(info.tail.item, it, KERNEL_MINOR, 'item'));
  if (spec.data) parts.push({ kind: 'bytes', role: 'data', bytes: spec.data });
  return encode({ parts }, { fixLength: true });
}
