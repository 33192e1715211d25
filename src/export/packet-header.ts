/**
 * The header fusetrace puts before each FUSE frame in a pcapng packet (LINKTYPE_USER0). Declared
 * once as a table: the exporter writes it from this table and the Wireshark dissector is generated
 * from it (wireshark.ts), so the two cannot disagree. Little-endian, like the FUSE frame after it.
 *
 * The header carries what the frame alone does not: where and when it crossed the proxy, the
 * errno of its forwarding write, the requesting process, and the pairing the trace already knows
 * (the other frame's packet number and the request's duration), so a dissector needs no state
 * and single-pass `tshark` filters on `fuse.time` and `fuse.response_in` work.
 */

export type HeaderType = 'u8' | 'u16' | 'u32' | 'i32' | 'u64' | 'comm';

export interface HeaderField {
  /** Field name; the Wireshark field is `fuse.<name>`. */
  readonly name: string;
  readonly type: HeaderType;
  readonly offset: number;
  /** One line for the dissector's field description and for readers of this file. */
  readonly doc: string;
}

/** Header version written in `version`; a dissector refuses (shows raw) anything newer. */
export const PACKET_HEADER_VERSION = 1;

/** Bits of `flags`. */
export const HeaderFlag = {
  /** fwd_ns is known: the frame was forwarded (frames.fwd_ns not NULL). */
  FORWARDED: 1,
  /** The frame was cut (by --snaplen, or to Wireshark's largest packet): the FUSE bytes are shorter than their header's len. */
  TRUNCATED: 2,
  /** `partner` names the other frame of the exchange (the reply of a request, the request of a reply). */
  PAIRED: 4,
} as const;

/** Length of the FUSE comm string (TASK_COMM_LEN in include/linux/sched.h). */
export const COMM_LEN = 16;

/** Every field, in wire order. */
export const PACKET_HEADER: readonly HeaderField[] = [
  { name: 'hdr_len', type: 'u16', offset: 0, doc: 'length of this header; the FUSE frame starts after it' },
  { name: 'version', type: 'u8', offset: 2, doc: 'header version' },
  { name: 'dir', type: 'u8', offset: 3, doc: '0 kernel to server (request), 1 server to kernel (reply or notification)' },
  { name: 'flags', type: 'u32', offset: 4, doc: '1 forwarded, 2 truncated (snaplen, or the 256 KiB packet limit), 4 paired' },
  { name: 'unique', type: 'u64', offset: 8, doc: 'fuse_in_header.unique / fuse_out_header.unique' },
  { name: 'ts_ns', type: 'u64', offset: 16, doc: 'read by the proxy, ns since the session started' },
  { name: 'fwd_ns', type: 'u64', offset: 24, doc: 'forwarding write returned, ns since the session started' },
  { name: 'write_errno', type: 'i32', offset: 32, doc: 'errno of the forwarding write (ENOENT: the kernel no longer knew the unique)' },
  { name: 'pid', type: 'u32', offset: 36, doc: 'requesting process (fuse_in_header.pid of the request)' },
  { name: 'opcode', type: 'u32', offset: 40, doc: 'opcode of the request (a reply carries the opcode it answers; 0 unknown or notification)' },
  { name: 'seq', type: 'u32', offset: 44, doc: 'frames.seq in the trace file' },
  { name: 'partner', type: 'u32', offset: 48, doc: 'packet number of the reply (in a request) or of the request (in a reply)' },
  { name: 'minor', type: 'u8', offset: 52, doc: 'negotiated protocol minor (struct sizes depend on it)' },
  { name: 'xattr_size_query', type: 'u8', offset: 53, doc: '1 when a GETXATTR/LISTXATTR reply answers a size query (fuse_getxattr_out)' },
  { name: 'reserved', type: 'u16', offset: 54, doc: 'zero' },
  { name: 'time_ns', type: 'u64', offset: 56, doc: 'in a reply: ns from its request to it' },
  { name: 'init_flags', type: 'u64', offset: 64, doc: 'negotiated INIT flags | flags2 << 32' },
  { name: 'session', type: 'u32', offset: 72, doc: 'session id in the trace file' },
  { name: 'reserved2', type: 'u32', offset: 76, doc: 'zero' },
  { name: 'comm', type: 'comm', offset: 80, doc: 'process name of pid (/proc/PID/comm when first seen)' },
];

/** The header's size in bytes. */
export const PACKET_HEADER_LEN = 80 + COMM_LEN;

/** Values of one header; `comm` is a string, 64-bit fields are bigints. */
export type HeaderValues = Record<string, number | bigint | string>;

/** The header's bytes from its values (missing fields are 0). */
export function encodePacketHeader(values: HeaderValues): Buffer {
  const out = Buffer.alloc(PACKET_HEADER_LEN);
  for (const f of PACKET_HEADER) {
    const v = values[f.name] ?? 0;
    switch (f.type) {
      case 'u8': out.writeUInt8(Number(v), f.offset); break;
      case 'u16': out.writeUInt16LE(Number(v), f.offset); break;
      case 'u32': out.writeUInt32LE(Number(v) >>> 0, f.offset); break;
      case 'i32': out.writeInt32LE(Number(v), f.offset); break;
      case 'u64': out.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), f.offset); break;
      case 'comm': Buffer.from(String(v), 'utf8').subarray(0, COMM_LEN - 1).copy(out, f.offset); break;
    }
  }
  return out;
}

/** Checks the table against itself (no overlap, no gap, ends at PACKET_HEADER_LEN); [] when consistent. */
export function checkPacketHeader(): string[] {
  const size = { u8: 1, u16: 2, u32: 4, i32: 4, u64: 8, comm: COMM_LEN } as const;
  const problems: string[] = [];
  let at = 0;
  for (const f of PACKET_HEADER) {
    if (f.offset !== at) problems.push(`${f.name} at ${f.offset}, expected ${at}`);
    if (f.offset % Math.min(size[f.type], 8) !== 0) problems.push(`${f.name} misaligned`);
    at = f.offset + size[f.type];
  }
  if (at !== PACKET_HEADER_LEN) problems.push(`fields end at ${at}, header is ${PACKET_HEADER_LEN}`);
  return problems;
}
