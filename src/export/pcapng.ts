/**
 * The pcapng blocks fusetrace writes (draft-ietf-opsawg-pcapng): a Section Header Block, one
 * Interface Description Block per session and one Enhanced Packet Block per frame. Little-endian
 * throughout (the byte-order magic says so to readers), nanosecond timestamps (if_tsresol 9).
 * Pure functions over Buffers: the caller decides where the bytes go.
 */

/** Block types (pcapng section 4). */
const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Option codes: opt_endofopt, opt_comment, shb_userappl, if_name, if_description, if_tsresol, epb_flags. */
const OPT_END = 0;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;

/** epb_flags bits 0-1: the packet's direction (01 inbound, 10 outbound). */
export const EPB_INBOUND = 1;
export const EPB_OUTBOUND = 2;

/**
 * The largest packet Wireshark reads for a link type it has no larger limit for
 * (WTAP_MAX_PACKET_SIZE_STANDARD): a file with a longer one is "damaged or corrupt" to it, and it
 * stops reading there. FUSE frames reach 1 MiB + headers (max_write), so longer ones are cut.
 */
export const MAX_PACKET = 262144;

/** LINKTYPE_USER0 (tcpdump.org link-layer header types): private use, no registration needed. */
export const LINKTYPE_USER0 = 147;

const pad4 = (n: number): number => (n + 3) & ~3;

type Option = readonly [code: number, value: Buffer];

function options(list: readonly Option[]): Buffer {
  if (list.length === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for (const [code, value] of list) {
    const head = Buffer.alloc(4);
    head.writeUInt16LE(code, 0);
    head.writeUInt16LE(value.length, 2);
    parts.push(head, value, Buffer.alloc(pad4(value.length) - value.length));
  }
  const end = Buffer.alloc(4);
  end.writeUInt16LE(OPT_END, 0); // opt_endofopt, length 0
  parts.push(end);
  return Buffer.concat(parts);
}

/** A block: type, total length, body (already 32-bit aligned), total length again. */
function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(total, 4);
  body.copy(out, 8);
  out.writeUInt32LE(total, total - 4);
  return out;
}

/** The Section Header Block that starts the file; `application` goes into shb_userappl. */
export function sectionHeader(application: string): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  fixed.writeUInt16LE(1, 4); // major
  fixed.writeUInt16LE(0, 6); // minor
  fixed.writeBigInt64LE(-1n, 8); // section length: not given (we stream)
  return block(SHB, Buffer.concat([fixed, options([[SHB_USERAPPL, Buffer.from(application, 'utf8')]])]));
}

/** An Interface Description Block: one per session, timestamps in nanoseconds. */
export function interfaceDescription(linktype: number, name: string, description: string): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(linktype, 0);
  fixed.writeUInt32LE(MAX_PACKET, 4); // snaplen
  return block(
    IDB,
    Buffer.concat([
      fixed,
      options([
        [IF_NAME, Buffer.from(name, 'utf8')],
        [IF_DESCRIPTION, Buffer.from(description, 'utf8')],
        [IF_TSRESOL, Buffer.from([9])],
      ]),
    ]),
  );
}

export interface PacketSpec {
  /** Index of the IDB (0 for the first). */
  iface: number;
  /** Nanoseconds since the Unix epoch (if_tsresol 9). */
  timeNs: bigint;
  /** The captured bytes. */
  data: Buffer;
  /** The packet's length before capture cut it (>= data.length). */
  origLen: number;
  /** EPB_INBOUND or EPB_OUTBOUND, or 0 for unknown. */
  direction: number;
  comment?: string;
}

/** An Enhanced Packet Block. */
export function enhancedPacket(p: PacketSpec): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32LE(p.iface, 0);
  fixed.writeUInt32LE(Number(p.timeNs >> 32n), 4);
  fixed.writeUInt32LE(Number(p.timeNs & 0xffffffffn), 8);
  fixed.writeUInt32LE(p.data.length, 12);
  fixed.writeUInt32LE(Math.max(p.origLen, p.data.length), 16);
  const flags = Buffer.alloc(4);
  flags.writeUInt32LE(p.direction, 0);
  const opts: Option[] = [];
  if (p.direction) opts.push([EPB_FLAGS, flags]);
  if (p.comment) opts.push([OPT_COMMENT, Buffer.from(p.comment, 'utf8')]);
  const padding = Buffer.alloc(pad4(p.data.length) - p.data.length);
  return block(EPB, Buffer.concat([fixed, p.data, padding, options(opts)]));
}
