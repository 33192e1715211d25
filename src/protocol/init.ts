/**
 * What INIT negotiated, and a stateful decoder for a whole session that learns it: the negotiated
 * minor and flags change how later frames decode (compat sizes, FUSE_SETXATTR_EXT), and replies
 * are paired with their requests by unique.
 */
import { INIT_FLAG } from './flags.js';
import { decodeReply, decodeRequest, KERNEL_MINOR, type DecodeContext, type DecodedFrame, type DecodeResult, type Direction } from './codec.js';
import { Opcode, opcodeInfo } from './opcodes.js';

export interface InitInfo {
  /** Version the kernel offered in the INIT request. */
  kernelMajor: number;
  kernelMinor: number;
  /** Version the server answered with. */
  serverMajor: number;
  serverMinor: number;
  /** The minor both speak: min(kernelMinor, serverMinor) when the majors match. */
  minor: number;
  /** What the kernel offered: flags | flags2 << 32 (flags2 only with FUSE_INIT_EXT, 7.36). */
  kernelFlags: bigint;
  /** What the server enabled, as the kernel reads it: flags | flags2 << 32, flags2 counted only if
   * the server set FUSE_INIT_EXT (fs/fuse/inode.c process_init_reply). */
  flags: bigint;
  maxReadahead: number;
  maxWrite: number;
  /** 0 unless FUSE_MAX_PAGES was set (the kernel then uses its default). */
  maxPages: number;
  maxBackground: number;
  congestionThreshold: number;
  timeGran: number;
  mapAlignment: number;
  maxStackDepth: number;
  requestTimeout: number;
  /** The reply's error (non-zero: the server refused INIT). */
  error: number;
}

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);
const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : 0n);

function asFrame(x: Buffer | DecodedFrame, dir: Direction): DecodedFrame | undefined {
  if (!Buffer.isBuffer(x)) return x;
  return (dir === 'rx' ? decodeRequest(x) : decodeReply(x, { opcode: Opcode.INIT })).frame;
}

/**
 * The outcome of INIT from its request and reply frames (raw or decoded). Returns undefined when the
 * request is not an INIT or either frame is too short to carry a version.
 */
export function negotiateInit(request: Buffer | DecodedFrame, reply: Buffer | DecodedFrame): InitInfo | undefined {
  const req = asFrame(request, 'rx');
  const rep = asFrame(reply, 'tx');
  if (!req || !rep || req.opcode !== Opcode.INIT) return undefined;
  const i = req.args[0];
  if (!i || i.minor === undefined) return undefined;
  const o = rep.args[0] ?? {};
  const kernelFlags = big(i.flags) | (big(i.flags) & INIT_FLAG.FUSE_INIT_EXT ? big(i.flags2) << 32n : 0n);
  const replyFlags = big(o.flags);
  const flags = replyFlags | (replyFlags & INIT_FLAG.FUSE_INIT_EXT ? big(o.flags2) << 32n : 0n);
  const kernelMajor = num(i.major);
  const kernelMinor = num(i.minor);
  const serverMajor = num(o.major);
  const serverMinor = num(o.minor);
  return {
    kernelMajor, kernelMinor, serverMajor, serverMinor,
    minor: serverMajor === kernelMajor ? Math.min(kernelMinor, serverMinor) : kernelMinor,
    kernelFlags, flags,
    maxReadahead: num(o.max_readahead), maxWrite: num(o.max_write), maxPages: num(o.max_pages),
    maxBackground: num(o.max_background), congestionThreshold: num(o.congestion_threshold),
    timeGran: num(o.time_gran), mapAlignment: num(o.map_alignment), maxStackDepth: num(o.max_stack_depth),
    requestTimeout: num(o.request_timeout), error: rep.error ?? 0,
  };
}

/**
 * How to decode a recorded session's frames after INIT, from what the session kept of it: the
 * negotiated minor is the smaller of the two sides' (fuse_lowlevel.c do_init, fs/fuse/inode.c
 * process_init_reply), the flags are the server's as the kernel read them. Unknown parts stay unset.
 */
export function sessionContext(s: { kernelMinor: number | null; serverMinor: number | null; initFlags: bigint | null }): DecodeContext {
  const ctx: DecodeContext = {};
  if (s.kernelMinor !== null && s.serverMinor !== null) ctx.minor = Math.min(s.kernelMinor, s.serverMinor);
  if (s.initFlags !== null) ctx.flags = BigInt.asUintN(64, s.initFlags);
  return ctx;
}

/** A decoded frame plus, for replies, the request it answers. */
export interface SessionDecodeResult extends DecodeResult {
  /** For a reply: the request with the same unique, if it was seen. */
  request?: DecodedFrame;
}

/**
 * Decodes the frames of one session in order: learns the negotiated minor and flags from INIT and
 * pairs every reply with its request by unique. Never throws on bytes.
 */
export class SessionDecoder {
  /** Requests waiting for a reply, by unique. */
  private readonly pending = new Map<bigint, DecodedFrame>();
  private initRequest?: DecodedFrame;
  /** The INIT outcome once the INIT reply was seen. */
  init?: InitInfo;

  constructor(private minor = KERNEL_MINOR, private flags?: bigint) {}

  decode(dir: Direction, buf: Buffer): SessionDecodeResult {
    if (dir === 'rx') {
      // INIT decodes by length; everything after it at the negotiated minor.
      const res = decodeRequest(buf, { minor: this.minor, flags: this.flags });
      const f = res.frame;
      if (f) {
        if (f.opcode === Opcode.INIT) this.initRequest = f;
        // FORGET, BATCH_FORGET and NOTIFY_REPLY are never answered. INTERRUPT usually is not either,
        // but stays pending so that an EAGAIN/ENOSYS answer to it pairs up.
        const info = opcodeInfo(f.opcode!);
        if (!info?.noReply || f.opcode === Opcode.INTERRUPT) this.pending.set(f.unique, f);
      }
      return res;
    }
    const unique = buf.length >= 16 ? buf.readBigUInt64LE(8) : undefined;
    const request = unique === undefined || unique === 0n ? undefined : this.pending.get(unique);
    const res = decodeReply(buf, { minor: this.minor, flags: this.flags, request, opcode: request?.opcode });
    if (request && unique !== undefined) this.pending.delete(unique);
    if (request?.opcode === Opcode.INIT && res.frame && this.initRequest) {
      this.init = negotiateInit(this.initRequest, res.frame);
      if (this.init && this.init.error === 0) {
        this.minor = this.init.minor;
        this.flags = this.init.flags;
      }
    }
    return { ...res, request };
  }

  /** Requests that expect a reply and have not had one (yet); INTERRUPTs are left out. */
  unanswered(): DecodedFrame[] {
    return [...this.pending.values()].filter((f) => f.opcode !== Opcode.INTERRUPT);
  }
}
