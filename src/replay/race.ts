/**
 * Races: requests the recording had in flight together that touch the same object, where at least
 * one changes it. A multi-threaded server may run such requests in either order (fs/fuse/dev.c
 * hands them to whichever server thread reads next), so when a replay's reply to one of them
 * differs, that is a `race` (the recording caught one order, the replay another), not a
 * regression. The replay still sends them together, in the recorded read order; it only classifies.
 */
import { IN_HEADER, OP, REQUEST_ID_FIELDS, U64Map, headerNodeidIsNode } from './ids.js';
import { readU64 } from '../util/u64.js';

/** What one recorded request touches, as the recording named it (recorded ids, not translated). */
export interface Touch {
  unique: bigint;
  seq: number;
  opcode: number;
  /** fuse_in_header.nodeid and node fields of the body (RENAME newdir, LINK oldnodeid, ...). */
  nodes: bigint[];
  /** File handles the body names. */
  fhs: bigint[];
}

/**
 * Requests that change what other requests on the same node or handle answer: file data and size
 * (WRITE, SETATTR's truncate, FALLOCATE, COPY_FILE_RANGE), directory entries (create, link,
 * unlink, rename against LOOKUP and READDIR on the parent) and extended attributes.
 */
const MUTATES: ReadonlySet<number> = new Set([
  OP.WRITE, OP.SETATTR, OP.FALLOCATE, OP.COPY_FILE_RANGE, OP.COPY_FILE_RANGE_64,
  OP.CREATE, OP.MKNOD, OP.MKDIR, OP.SYMLINK, OP.LINK, OP.UNLINK, OP.RMDIR, OP.RENAME, OP.RENAME2, OP.TMPFILE,
  OP.SETXATTR, OP.REMOVEXATTR,
].filter((x): x is number => typeof x === 'number'));

/** The nodes and handles a recorded request frame names. */
export function touchOf(frame: Buffer, opcode: number, unique: bigint, seq: number): Touch {
  const t: Touch = { unique, seq, opcode, nodes: [], fhs: [] };
  if (frame.length >= IN_HEADER && headerNodeidIsNode(opcode)) t.nodes.push(readU64(frame, 16));
  for (const f of REQUEST_ID_FIELDS[opcode] ?? []) {
    const at = IN_HEADER + f.off;
    if (frame.length < at + 8) continue;
    if (f.when && !f.when(frame.subarray(IN_HEADER))) continue;
    if (f.kind === 'nodeid') t.nodes.push(readU64(frame, at));
    else if (f.kind === 'fh') t.fhs.push(readU64(frame, at));
  }
  return t;
}

/** True when a and b touch a common node or handle and at least one of them changes it. */
export function conflicts(a: Touch, b: Touch): boolean {
  if (!MUTATES.has(a.opcode) && !MUTATES.has(b.opcode)) return false;
  for (const n of a.nodes) if (n !== 0n && b.nodes.includes(n)) return true;
  for (const h of a.fhs) if (b.fhs.includes(h)) return true;
  return false;
}

/**
 * Follows the recording's requests in flight (sent, reply not seen yet) in seq order and records,
 * for each request, the conflicting requests that were in flight with it. Only conflicting pairs are
 * kept, so memory stays proportional to what is in flight, not to the session.
 */
export class OverlapTracker {
  private readonly open = new U64Map<{ touch: Touch; races: Touch[] }>();

  /** A request reached the server; returns the list its conflicting overlaps will be added to. */
  sent(touch: Touch): Touch[] {
    const races: Touch[] = [];
    for (const o of this.open.values()) {
      if (!conflicts(o.touch, touch)) continue;
      races.push(o.touch);
      o.races.push(touch);
    }
    this.open.set(touch.unique, { touch, races });
    return races;
  }

  /** The request's reply was seen (or it expects none): it no longer overlaps what comes after. */
  done(unique: bigint): void {
    this.open.delete(unique);
  }
}
