/**
 * The Wireshark Lua dissector for `export --format pcapng`, generated from src/protocol's tables
 * (opcodes, struct layouts at every protocol minor, flag sets, enums, errnos) and from the packet
 * header table (packet-header.ts), so it can never disagree with the codec. The decoding logic
 * (wireshark-runtime.ts) mirrors codec.ts and reads only these tables.
 *
 * Field names follow `show --json`'s decoded fields (print.ts formatFields): the field
 * `fuse_read_in.offset` there is `fuse.read_in.offset` here (Wireshark field names take no second
 * `fuse_`), labelled `fuse_read_in.offset`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  ALL_STRUCTS, ERRNOS, FORMAT_SETS, INIT_FLAG, IOCTL_FLAGS, NOTIFY_TABLE, OPCODE_TABLE, KERNEL_MINOR, Opcode, layout,
  type ReplyShape, type StructDesc, type Tail,
} from '../protocol/index.js';
import { packageRoot } from '../demo/fixture.js';
import { COMM_LEN, PACKET_HEADER, PACKET_HEADER_LEN, PACKET_HEADER_VERSION } from './packet-header.js';
import { LUA_RUNTIME } from './wireshark-runtime.js';

type LuaValue = string | number | bigint | boolean | null | undefined | LuaValue[] | { [k: string]: LuaValue };

/** A JavaScript value as a Lua literal (arrays become sequences, objects keyed tables). */
export function lua(v: LuaValue): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v); // JSON string escapes are valid Lua escapes for ASCII
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'nil';
  if (Array.isArray(v)) return `{${v.map(lua).join(',')}}`;
  return `{${Object.entries(v)
    .filter(([, x]) => x !== undefined)
    // Numeric keys (opcodes, errnos) stay numbers: OPCODES[15], not OPCODES["15"].
    .map(([k, x]) => `${/^\d+$/.test(k) ? `[${k}]` : /^[A-Za-z_]\w*$/.test(k) ? k : `[${JSON.stringify(k)}]`}=${lua(x)}`)
    .join(',')}}`;
}

/** A struct's layouts: one per protocol minor at which it changes (fields are added, never moved). */
function structLayouts(s: StructDesc): LuaValue {
  const out: LuaValue[] = [];
  let prev = '';
  for (let minor = 0; minor <= KERNEL_MINOR; minor++) {
    const l = layout(s, minor);
    const leaves = l.leaves.map((x) => ({ p: x.path.join('.'), t: x.type, o: x.offset, s: x.size, n: x.count, fmt: x.fmt }));
    const key = JSON.stringify(leaves);
    if (key === prev) continue;
    prev = key;
    out.push({ since: minor, size: l.size, leaves });
  }
  // brief: the one-line printer's summary items (print.ts briefStruct): [path, label, [when field, mask]].
  return { label: s.label, brief: s.brief?.map(([p, label, when]) => [p, label, when ? [when[0], when[1]] : undefined]), layouts: out };
}

const tail = (t: Tail): LuaValue => (t.kind === 'list' ? { kind: 'list', item: t.item.name } : { kind: t.kind });

function reply(r: ReplyShape): LuaValue {
  switch (r.kind) {
    case 'structs': return { kind: 'structs', structs: r.structs.map((s) => s.name) };
    case 'data': return { kind: 'data', text: r.text ?? false };
    case 'xattr': return { kind: 'xattr', names: r.names ?? false };
    case 'dirents': return { kind: 'dirents', plus: r.plus };
    default: return { kind: r.kind };
  }
}

/** Flag sets and enums; bit values as numbers (all below 2^53). */
function formats(): LuaValue {
  const out: Record<string, LuaValue> = {};
  for (const [name, set] of FORMAT_SETS) {
    out[name] = set.kind === 'flags'
      ? {
        kind: 'flags',
        bits: set.bits.map(([n, b]) => [n, Number(b)]),
        field: set.field ? { mask: Number(set.field.mask), values: set.field.values.map(([n, b]) => [n, Number(b)]) } : undefined,
      }
      : { kind: 'enum', values: set.values.map(([n, b]) => [n, Number(b)]) };
  }
  return out;
}

/** The generated tables, as Lua statements. */
function tables(): string {
  const errnos: Record<string, LuaValue> = {};
  for (const [n, name] of ERRNOS) if (errnos[n] === undefined) errnos[n] = name;
  const opcodes: Record<string, LuaValue> = {};
  for (const o of OPCODE_TABLE) {
    opcodes[o.opcode] = { name: o.name, req: o.request?.name, names: o.names, tail: tail(o.tail), reply: reply(o.reply) };
  }
  const notifies: Record<string, LuaValue> = {};
  for (const n of NOTIFY_TABLE) notifies[n.code] = { name: n.name, struct: n.struct?.name, names: n.names, tail: tail(n.tail) };
  const structs: Record<string, LuaValue> = {};
  for (const s of ALL_STRUCTS) structs[s.name] = structLayouts(s);
  const lines = [
    `local HEADER = ${lua(PACKET_HEADER.map((f) => ({ name: f.name, type: f.type, offset: f.offset, doc: f.doc })))}`,
    `local HEADER_LEN = ${PACKET_HEADER_LEN}`,
    `local HEADER_VERSION = ${PACKET_HEADER_VERSION}`,
    `local COMM_LEN = ${COMM_LEN}`,
    `local KERNEL_MINOR = ${KERNEL_MINOR}`,
    `local STRUCTS = ${lua(structs)}`,
    `local OPCODES = ${lua(opcodes)}`,
    `local NOTIFIES = ${lua(notifies)}`,
    `local FORMATS = ${lua(formats())}`,
    `local ERRNOS = ${lua(errnos)}`,
    `local OP = ${lua({ INIT: Opcode.INIT, CUSE_INIT: Opcode.CUSE_INIT, SETXATTR: Opcode.SETXATTR })}`,
    `local SETXATTR_EXT = ${Number(INIT_FLAG.FUSE_SETXATTR_EXT)}`,
    `local IOCTL_RETRY = ${Number(IOCTL_FLAGS.bits.find(([n]) => n === 'FUSE_IOCTL_RETRY')![1])}`,
  ];
  return lines.join('\n');
}

/** The whole dissector source. Deterministic: the same tables give the same bytes. */
export function generateDissector(): string {
  return [
    '-- fusetrace: Wireshark dissector for `fusetrace export --format pcapng` (LINKTYPE_USER0).',
    '-- GENERATED by src/export/wireshark.ts from src/protocol\'s tables: do not edit; `fusetrace wireshark` rewrites it.',
    '-- Use: tshark -X lua_script:THIS_FILE -r trace.pcapng, or `fusetrace wireshark --install`.',
    '',
    tables(),
    '',
    LUA_RUNTIME,
  ].join('\n');
}

/** Where the package keeps the generated dissector. */
export function dissectorPath(): string {
  return path.join(packageRoot(), 'dist', 'wireshark', 'fusetrace.lua');
}

/** Writes `text` to `file` unless it already holds exactly that (atomically: a reader never sees half a file). */
export function writeIfChanged(file: string, text: string): boolean {
  try {
    if (fs.readFileSync(file, 'utf8') === text) return false;
  } catch {
    /* missing: write it */
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
  return true;
}

/**
 * Wireshark's personal Lua plugin folder: what `tshark -G folders` calls "Personal Lua Plugins",
 * else the default of Wireshark >= 2.5 on Linux (~/.local/lib/wireshark/plugins).
 */
export function personalPluginDir(): string {
  const r = spawnSync('tshark', ['-G', 'folders'], { encoding: 'utf8', timeout: 10_000 });
  const line = r.status === 0 ? r.stdout.split('\n').find((l) => l.startsWith('Personal Lua Plugins:')) : undefined;
  const dir = line?.slice(line.indexOf(':') + 1).trim();
  return dir || path.join(os.homedir(), '.local', 'lib', 'wireshark', 'plugins');
}
