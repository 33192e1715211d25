/**
 * Replies of a fixed layout compared in place, without decoding: fuse_out_header alone (UNLINK,
 * RELEASE, FLUSH, RENAME, an error) or followed by fixed structs (LOOKUP's fuse_entry_out,
 * GETATTR's fuse_attr_out, OPEN's fuse_open_out, WRITE's fuse_write_out, ...), which are most
 * replies of a metadata session. Each field is read at its offset in the codec's layout
 * (src/protocol structs.ts layout()) and judged by the rule the comparison would apply to it in
 * the decoded tree (compare.ts: the same path, the same `@dir`/`@file` type from the enclosing
 * struct's `mode`), so the verdict is the one compareTrees gives.
 *
 * It only ever says "equal": a reply of another length, a field that differs, a layout it does
 * not cover is left to the full comparison, which decodes both replies and names the difference.
 */
import { layout, opcodeInfo, type PrimType, type StructDesc } from '../protocol/index.js';
import { ruleFor, type NormRule, type RuleMode, type TranslateCheck } from './compare.js';
import { OUT_HEADER } from './ids.js';
import { readU64 } from '../util/u64.js';

/** S_IFMT (stat.h): the file type bits of fuse_attr.mode. */
const S_IFMT = 0o170000;

/** One leaf of the reply tree at its byte offset in the frame. */
interface Field {
  offset: number;
  prim: PrimType;
  /** Elements of an array field (1 for a plain one). */
  count: number;
  width: number;
  /** Its path in the reply tree (replyTree in engine.ts): struct key, then the field path. */
  segs: string[];
  /** Offset of the `mode` whose file type selects `@dir`/`@file` rules for it; -1: none (type 0). */
  typeAt: number;
  /** The rule's mode by file type (filled on first use). */
  modes: Map<number, RuleMode>;
}

/** A fixed reply layout: its length and fields; `offsetOf('entry_out.nodeid')` for the ids the replay learns. */
export interface FixedLayout {
  /** Whole frame length (header included). */
  size: number;
  /** True for an error reply: the header only, nothing to learn. */
  error: boolean;
  fields: Field[];
  offsets: Map<string, number>;
}

/** The error reply: fuse_out_header only. */
const ERROR_LAYOUT: FixedLayout = { size: OUT_HEADER, error: true, fields: [], offsets: new Map() };

/** The tree key of a struct (engine.ts treeKey): its fuse.h name without `fuse_`. */
function structKey(desc: StructDesc): string {
  return desc.name.replace(/^(fuse_|cuse_)/, '');
}

/** Fixed-layout comparison under one rule list (one replay). */
export class FixedReplies {
  private readonly layouts = new Map<number, FixedLayout | null>();
  private readonly errorModes = new Map<number, RuleMode>();

  constructor(private readonly rules: readonly NormRule[]) {}

  /**
   * The layout of a successful reply to `opcode` at protocol `minor`, or null when it is not a
   * fixed one (data, names, directory entries, INIT's length-dependent reply, STATX).
   */
  layoutOf(opcode: number, minor: number): FixedLayout | null {
    const key = opcode * 256 + minor;
    let l = this.layouts.get(key);
    if (l === undefined) {
      l = buildLayout(opcode, minor);
      this.layouts.set(key, l);
    }
    return l;
  }

  /**
   * The layout both frames have when they are equal under the rules in every field but those
   * compared through the id translation (checked by idsEqual once the reply's ids are learned);
   * null when they are not, or when the layout is not a fixed one: the full comparison decides.
   */
  sameExceptIds(opcode: number, minor: number, rec: Buffer, live: Buffer): FixedLayout | null {
    if (rec.length < OUT_HEADER || live.length < OUT_HEADER) return null;
    // fuse_out_header.len must describe the frame, as the codec checks.
    if (rec.readUInt32LE(0) !== rec.length || live.readUInt32LE(0) !== live.length) return null;
    const recErr = rec.readInt32LE(4);
    const liveErr = live.readInt32LE(4);
    if (recErr !== 0 || liveErr !== 0) {
      if (rec.length !== OUT_HEADER || live.length !== OUT_HEADER) return null;
      // The codec flags errors outside -511..0; both sides must be in range to be judged here.
      if (recErr > 0 || recErr <= -512 || liveErr > 0 || liveErr <= -512) return null;
      const mode = this.errorMode();
      if (mode === 'ignore') return ERROR_LAYOUT;
      if (mode === 'translate' || recErr !== liveErr) return null;
      return ERROR_LAYOUT;
    }
    const l = this.layoutOf(opcode, minor);
    if (!l || rec.length !== l.size || live.length !== l.size) return null;
    for (const f of l.fields) {
      const mode = this.modeOf(f, rec);
      if (mode === 'ignore' || mode === 'translate') continue;
      // exact, and `length` (which on numbers is exact): equal values are equal bytes.
      const end = f.offset + f.width * f.count;
      for (let i = f.offset; i < end; i++) if (rec[i] !== live[i]) return null;
    }
    return l;
  }

  /** The translated fields of a layout sameExceptIds accepted, checked through `check` (compare.ts leafEqual). */
  idsEqual(l: FixedLayout, rec: Buffer, live: Buffer, check: TranslateCheck): boolean {
    for (const f of l.fields) {
      if (this.modeOf(f, rec) !== 'translate') continue;
      const kind = f.segs[f.segs.length - 1];
      for (let k = 0; k < f.count; k++) {
        const at = f.offset + k * f.width;
        if (check(kind, readId(rec, at, f.prim), readId(live, at, f.prim), '') !== null) return false;
      }
    }
    return true;
  }

  private modeOf(f: Field, rec: Buffer): RuleMode {
    const type = f.typeAt < 0 ? 0 : rec.readUInt32LE(f.typeAt) & S_IFMT;
    let m = f.modes.get(type);
    if (m === undefined) {
      m = ruleFor(this.rules, f.segs, type)?.mode ?? 'exact';
      f.modes.set(type, m);
    }
    return m;
  }

  private errorMode(): RuleMode {
    let m = this.errorModes.get(0);
    if (m === undefined) {
      m = ruleFor(this.rules, ['error'], 0)?.mode ?? 'exact';
      this.errorModes.set(0, m);
    }
    return m;
  }
}

/** An identifier field as the decoded tree holds it, as a bigint (compare.ts leafEqual: BigInt(value)). */
function readId(b: Buffer, at: number, prim: PrimType): bigint {
  switch (prim) {
    case 'u8': return BigInt(b.readUInt8(at));
    case 'u16': return BigInt(b.readUInt16LE(at));
    case 'u32': return BigInt(b.readUInt32LE(at));
    case 'i32': return BigInt(b.readInt32LE(at));
    case 'u64': return readU64(b, at);
    case 'i64': return b.readBigInt64LE(at);
  }
}

const PRIM_WIDTH: Record<PrimType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, i32: 4, i64: 8 };

function buildLayout(opcode: number, minor: number): FixedLayout | null {
  const info = opcodeInfo(opcode);
  if (!info) return null;
  // INIT's reply is decoded by its length; STATX's ids are learned from a struct the replay does
  // not read in place. Both keep the full comparison.
  if (info.name === 'INIT' || info.name === 'CUSE_INIT' || info.name === 'STATX') return null;
  const shape = info.reply;
  const structs = shape.kind === 'none' ? [] : shape.kind === 'structs' ? shape.structs : null;
  if (!structs) return null;
  const fields: Field[] = [];
  const offsets = new Map<string, number>();
  const keys = new Set<string>();
  let at = OUT_HEADER;
  for (const desc of structs) {
    const key = structKey(desc);
    // Two structs of one name get numbered keys in the tree (replyTree): not covered here.
    if (keys.has(key)) return null;
    keys.add(key);
    const { leaves, size } = layout(desc, minor);
    const leafAt = new Map(leaves.map((lf) => [lf.path.join('.'), lf]));
    for (const lf of leaves) {
      // The file type comes from the innermost enclosing object with a numeric `mode` (compare.ts).
      let typeAt = -1;
      for (let k = lf.path.length - 1; k >= 0 && typeAt < 0; k--) {
        const m = leafAt.get([...lf.path.slice(0, k), 'mode'].join('.'));
        if (m && m.count === undefined && m.type !== 'u64' && m.type !== 'i64') {
          // Only a u32 mode is read in place (fuse_attr.mode); any other keeps the full comparison.
          if (m.type !== 'u32') return null;
          typeAt = at + m.offset;
        }
      }
      const segs = [key, ...lf.path];
      fields.push({ offset: at + lf.offset, prim: lf.type, count: lf.count ?? 1, width: PRIM_WIDTH[lf.type], segs, typeAt, modes: new Map() });
      offsets.set(segs.join('.'), at + lf.offset);
    }
    at += size;
  }
  return { size: at, error: false, fields, offsets };
}
