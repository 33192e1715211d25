/**
 * Printing decoded frames: a one-line form for lists (`rx 42 LOOKUP n1 "foo" pid 1234`,
 * `tx 42 ENOENT 0.31ms`) and an every-field form for detail views. Both read the struct
 * descriptors' `brief`, `label` and `fmt`, the flag tables and the errno table; nothing here knows
 * an opcode by name except READLINK's text payload.
 */
import { errnoName } from './errno.js';
import { FORMAT_SETS, INIT_FLAGS, formatEnum, formatFlags, formatMode } from './flags.js';
import { layout, getPath, type Fields, type StructDesc, type Value } from './structs.js';
import { opcodeInfo } from './opcodes.js';
import type { DecodedFrame, DecodeResult, Part } from './codec.js';

/** A value formatted the way a field's `fmt` says. */
export function formatValue(v: Value | undefined, fmt?: string): string {
  if (v === undefined) return '';
  if (Array.isArray(v)) return `[${v.map((x) => formatValue(x, fmt)).join(', ')}]`;
  if (typeof v === 'object') return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));
  switch (fmt) {
    case undefined: return v.toString();
    case 'nodeid': return `n${v}`;
    case 'unique': return v.toString();
    case 'hex': return `0x${v.toString(16)}`;
    case 'octal': return `0${v.toString(8)}`;
    case 'mode': return formatMode(v);
    case 'errno': return Number(v) === 0 ? '0' : `${errnoName(Number(v))} (${v})`;
  }
  const set = FORMAT_SETS.get(fmt);
  if (!set) return v.toString();
  return set.kind === 'flags' ? formatFlags(set, v) : formatEnum(set, v);
}

const fmtOf = (desc: StructDesc, path: string): string | undefined =>
  layout(desc).leaves.find((l) => l.path.join('.') === path)?.fmt;

/** A struct's one-line summary from its descriptor's `brief`; zero flag words are left out. */
export function briefStruct(desc: StructDesc, values: Fields): string {
  const out: string[] = [];
  for (const [path, label, when] of desc.brief ?? []) {
    const v = getPath(values, path);
    if (v === undefined) continue;
    if (when && !(BigInt(getPath(values, when[0]) as number | bigint ?? 0) & BigInt(when[1]))) continue;
    const fmt = fmtOf(desc, path);
    const set = fmt ? FORMAT_SETS.get(fmt) : undefined;
    const zero = typeof v === 'bigint' ? v === 0n : v === 0;
    if (zero && ((set?.kind === 'flags' && !set.field) || fmt === 'hex' || path === 'backing_id' || path === 'flags2')) continue;
    let text = formatValue(v, fmt);
    if (fmt === 'init2') continue; // printed with flags below
    if (fmt === 'init') {
      // INIT flags print as one 64-bit set: flags | flags2 << 32 (fuse.h 7.36, FUSE_INIT_EXT).
      const flags2 = getPath(values, 'flags2');
      const all = BigInt(v as number) | (flags2 === undefined ? 0n : BigInt(flags2 as number) << 32n);
      text = formatFlags(INIT_FLAGS, all);
    }
    out.push(label ? `${label} ${text}` : text);
  }
  return out.join(' ');
}

const quote = (s: string) => JSON.stringify(s);
const MAX_LISTED = 8;

function listNames(names: string[]): string {
  const shown = names.slice(0, MAX_LISTED).map(quote).join(' ');
  return names.length > MAX_LISTED ? `${shown} +${names.length - MAX_LISTED}` : shown;
}

/** Structs of a frame after its header, with their descriptors. */
function argParts(frame: DecodedFrame): Array<Extract<Part, { kind: 'struct' }>> {
  return frame.parts.filter((p): p is Extract<Part, { kind: 'struct' }> => p.kind === 'struct' && p.role === 'arg');
}

export interface LineOptions {
  /** Time from request to reply, printed after a reply as milliseconds. */
  durNs?: number | bigint;
}

/**
 * One line for a frame: `rx <unique> <OPCODE> n<nodeid> [names] [key fields] pid <pid>` for what the
 * kernel sent, `tx <unique> <OK|ERRNO> [reply summary] [<ms>ms]` for what the server wrote, and
 * `tx 0 NOTIFY_<CODE> [fields]` for notifications.
 */
export function formatLine(frame: DecodedFrame, opts: LineOptions = {}): string {
  const out: string[] = [frame.dir, frame.unique.toString()];
  if (frame.kind === 'request') {
    out.push(frame.name, `n${frame.nodeid}`);
    if (frame.names.length) out.push(frame.names.map(quote).join(' '));
    for (const p of argParts(frame)) {
      const b = briefStruct(p.desc, p.values);
      if (b) out.push(b);
    }
    if (frame.items.length) out.push(itemsBrief(frame.items));
    if (frame.data?.length) out.push(`${frame.data.length} bytes`);
    if (frame.ext.length) out.push(`ext ${frame.ext.map((e) => e.type).join(',')}`);
    out.push(`pid ${frame.pid}`);
  } else if (frame.kind === 'notify') {
    out.push(frame.name);
    for (const p of argParts(frame)) {
      const b = briefStruct(p.desc, p.values);
      if (b) out.push(b);
    }
    if (frame.names.length) out.push(frame.names.map(quote).join(' '));
    if (frame.items.length) out.push(itemsBrief(frame.items));
    if (frame.data) out.push(`${frame.data.length} bytes`);
  } else {
    out.push(errnoName(frame.error ?? 0));
    if (!frame.error) out.push(...replyBrief(frame));
  }
  if (opts.durNs !== undefined && frame.kind === 'reply') out.push(`${(Number(opts.durNs) / 1e6).toFixed(2)}ms`);
  return out.filter(Boolean).join(' ');
}

function itemsBrief(items: Fields[]): string {
  const shown = items.slice(0, MAX_LISTED).map((it) => {
    if (it.nodeid !== undefined && it.nlookup !== undefined) return `n${it.nodeid}/${it.nlookup}`;
    if (it.nodeid !== undefined) return `n${it.nodeid}`;
    return Object.values(it).map((v) => formatValue(v)).join('/');
  });
  return shown.join(' ') + (items.length > MAX_LISTED ? ` +${items.length - MAX_LISTED}` : '');
}

function replyBrief(frame: DecodedFrame): string[] {
  const out: string[] = [];
  for (const p of argParts(frame)) {
    const b = briefStruct(p.desc, p.values);
    out.push([p.desc.label, b].filter(Boolean).join(' '));
  }
  if (frame.dirents) out.push(`${frame.dirents.length} entries${frame.dirents.length ? ' ' + listNames(frame.dirents.map((d) => d.name)) : ''}`);
  if (frame.items.length) out.push(`iovs ${itemsBrief(frame.items)}`);
  if (frame.data) {
    const info = frame.opcode === undefined ? undefined : opcodeInfo(frame.opcode);
    if (info?.reply.kind === 'data' && info.reply.text) out.push(quote(frame.data.toString('utf8')));
    else if (frame.names.length) out.push(listNames(frame.names));
    else out.push(`${frame.data.length} bytes`);
  }
  return out;
}

const HEX_PREVIEW = 32;

/** Every field of a frame as [name, value] rows, in wire order, for detail views. Struct fields are
 * named `<c struct>.<field path>`; repeated structs get an index (`fuse_forget_one[1].nodeid`). */
export function formatFields(frameOrResult: DecodedFrame | DecodeResult): Array<[string, string]> {
  const result = 'raw' in frameOrResult ? frameOrResult : undefined;
  const frame = result ? result.frame : (frameOrResult as DecodedFrame);
  const rows: Array<[string, string]> = [];
  if (!frame) {
    for (const e of result?.errors ?? []) rows.push(['error', `${e.kind}: ${e.message}`]);
    rows.push(['raw', hexPreview(result!.raw)]);
    return rows;
  }
  rows.push(['frame', `${frame.dir} ${frame.kind} ${frame.name}`]);
  const counts = new Map<string, number>();
  let names = 0;
  for (const p of frame.parts) {
    if (p.kind === 'struct') {
      let prefix = p.desc.name;
      if (p.role === 'item' || p.role === 'dirent' || p.role === 'ext') {
        const n = counts.get(prefix) ?? 0;
        counts.set(prefix, n + 1);
        prefix = `${prefix}[${n}]`;
      }
      for (const leaf of layout(p.desc, p.minor).leaves) {
        if (leaf.offset + leaf.size > p.size) break;
        rows.push([`${prefix}.${leaf.path.join('.')}`, formatValue(getPath(p.values, leaf.path), leaf.fmt)]);
      }
    } else if (p.kind === 'name') {
      rows.push([`name[${names++}]`, quote(p.bytes.toString('utf8')) + (p.nul ? '' : ' (no NUL)')]);
    } else {
      rows.push([p.role, hexPreview(p.bytes)]);
    }
  }
  for (const e of result?.errors ?? []) rows.push(['error', `${e.kind}: ${e.message}`]);
  return rows;
}

function hexPreview(b: Buffer): string {
  const head = b.subarray(0, HEX_PREVIEW).toString('hex');
  return `${b.length} bytes${b.length ? ': ' + head + (b.length > HEX_PREVIEW ? '…' : '') : ''}`;
}
