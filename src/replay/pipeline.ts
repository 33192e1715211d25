/**
 * Sending requests early: where the recording has request B after the reply to A, the walk
 * normally waits for A's live reply before sending B, one server round trip per request. When B
 * cannot depend on A, waiting only costs time: in a metadata-heavy session (stat after stat) most
 * requests are independent lookups and getattrs. So while the walk waits for a reply, it looks
 * ahead (a bounded window) and sends the requests that cannot depend on anything still pending.
 * Replies are still awaited and compared in the recorded order, so the report does not depend on
 * which requests went early.
 *
 * B may go before A is answered when:
 * - neither is a barrier (requests that change the namespace or global state, or whose effect
 *   this module cannot scope to a node or handle: create/link/unlink/rename, INIT, DESTROY,
 *   INTERRUPT, BATCH_FORGET, locks, ioctl, poll, anything unknown), and nothing unanswered is one;
 * - they share no node or handle unless both only read it (READERS);
 * - B names no node or handle that A hands out in its recorded reply (LOOKUP's entry, OPEN's fh),
 *   so B's identifiers translate the same now as after A's reply;
 * - B's identifiers all translate now (idmap.ts).
 */
import { layout, structs } from '../protocol/index.js';
import { OP, OUT_HEADER, isNoReply } from './ids.js';
import type { SendEvent } from './plan.js';
import { touchOf, type Touch } from './race.js';
import { readU64 } from '../util/u64.js';

/** Requests that only read the node or handle they name. */
const READERS: ReadonlySet<number> = new Set([
  OP.LOOKUP, OP.GETATTR, OP.READ, OP.READDIR, OP.READDIRPLUS, OP.READLINK, OP.STATFS, OP.GETXATTR, OP.LISTXATTR,
  OP.ACCESS, OP.STATX, OP.LSEEK,
].filter((x): x is number => typeof x === 'number'));

/** Requests whose effect is scoped to the nodes and handles they name (the rest are barriers). */
const SCOPED: ReadonlySet<number> = new Set([
  ...READERS, OP.FORGET, OP.SETATTR, OP.WRITE, OP.OPEN, OP.OPENDIR, OP.RELEASE, OP.RELEASEDIR, OP.FLUSH, OP.FSYNC,
  OP.FSYNCDIR, OP.FALLOCATE, OP.SETXATTR, OP.REMOVEXATTR,
].filter((x): x is number => typeof x === 'number'));

/** fuse_entry_out.nodeid and fuse_open_out.fh: what LOOKUP and OPEN/OPENDIR hand out, from the codec's layouts. */
const ENTRY_NODEID_AT = OUT_HEADER + fieldOffset(structs.fuse_entry_out, 'nodeid');
const OPEN_FH_AT = OUT_HEADER + fieldOffset(structs.fuse_open_out, 'fh');

function fieldOffset(desc: Parameters<typeof layout>[0], name: string): number {
  const leaf = layout(desc).leaves.find((l) => l.path.length === 1 && l.path[0] === name);
  if (!leaf) throw new Error(`replay/pipeline.ts: ${desc.name} has no field ${name}`);
  return leaf.offset;
}

/** What ordering needs to know about one request. */
export interface OrderTouch extends Touch {
  barrier: boolean;
  reader: boolean;
  /** Nodes and handles its recorded reply hands out (null: the reply is not read yet, so unknown). */
  binds: bigint[] | null;
}

/** The ordering view of a request (computed once per event). */
export function orderTouch(ev: SendEvent): OrderTouch {
  // The plan has read what most requests name already (for races); no object spread: one shape.
  const t = ev.touch ?? touchOf(ev.frame.data, ev.opcode, ev.frame.unique, ev.frame.seq);
  return {
    unique: t.unique, seq: t.seq, opcode: t.opcode, nodes: t.nodes, fhs: t.fhs,
    barrier: !SCOPED.has(ev.opcode), reader: READERS.has(ev.opcode), binds: bindsOf(ev),
  };
}

/** Nodes and handles the recorded reply of `ev` hands out (null while that reply is not read). */
export function bindsOf(ev: SendEvent): bigint[] | null {
  const at = ev.opcode === OP.LOOKUP ? ENTRY_NODEID_AT : ev.opcode === OP.OPEN || ev.opcode === OP.OPENDIR ? OPEN_FH_AT : -1;
  if (at < 0 || isNoReply(ev.opcode)) return [];
  if (!ev.reply) return null;
  const d = ev.reply.data;
  // An error reply hands out nothing.
  return d.length >= at + 8 && ev.reply.error === 0 ? [readU64(d, at)] : [];
}

/**
 * True when `later` must wait for `pending` (sent and not yet walked past, or earlier and unsent).
 * `bound(id)`: the nodeid is already bound to a live one; a LOOKUP that hands it out again binds
 * it to the same live node, unless a FORGET ends it first (so a FORGET always waits).
 */
export function mustFollow(pending: OrderTouch, later: OrderTouch, bound: (nodeid: bigint) => boolean): boolean {
  if (pending.barrier || later.barrier) return true;
  if (pending.binds === null) return true;
  for (const b of pending.binds) {
    if (later.fhs.includes(b)) return true;
    if (later.nodes.includes(b) && (later.opcode === OP.FORGET || pending.opcode !== OP.LOOKUP || !bound(b))) return true;
  }
  if (pending.reader && later.reader) return false;
  for (const n of pending.nodes) if (n !== 0n && later.nodes.includes(n)) return true;
  for (const h of pending.fhs) if (later.fhs.includes(h)) return true;
  return false;
}
