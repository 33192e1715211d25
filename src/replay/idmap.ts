/**
 * Translation of the identifiers a FUSE server chooses, from the recording to the live run.
 *
 * A server picks nodeid and generation (entry replies: LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE,
 * TMPFILE, READDIRPLUS entries), fh (OPEN, CREATE, OPENDIR, TMPFILE), inode numbers (fuse_attr.ino)
 * and directory cookies (fuse_dirent.off, given back in the next READDIR's offset). The kernel never
 * invents them: every request naming one was preceded by a reply that handed it out. So each
 * recorded value is bound to the live value at the reply that introduced it, and every later
 * request is rewritten through the binding. A request naming a value the live run never handed
 * out is not sent at all: libfuse's passthrough_ll, for one, turns nodeids and fhs straight into
 * pointers, and an unknown one would crash it instead of exposing the real divergence.
 *
 * Lifetimes follow the kernel's: a nodeid lives while its lookup count (one per entry reply,
 * fs/fuse/inode.c fuse_iget) is above zero and FORGET / BATCH_FORGET subtract from it; an fh lives
 * until RELEASE / RELEASEDIR. The root (FUSE_ROOT_ID = 1) is fixed and never forgotten.
 */
import { IN_HEADER_SIZE, OP } from '../protocol/index.js';
import { REQUEST_ID_FIELDS, U64Map, headerNodeidIsNode, type IdKind } from './ids.js';
import { readU64, writeU64 } from '../util/u64.js';

/** FUSE_ROOT_ID (fuse.h). */
const ROOT_ID = 1n;

interface NodeBinding {
  live: bigint;
  /** Lookup references the recording handed out and has not forgotten yet. */
  nlookup: bigint;
  /** Recorded inode number seen with this node, unbound with it. */
  ino?: bigint;
}

/** Why a request could not be translated: the kind and the recorded value nothing was bound to. */
export interface Untranslated {
  kind: IdKind;
  recorded: bigint;
}

export class IdMap {
  private readonly nodes = new U64Map<NodeBinding>();
  /** live nodeid -> recorded nodeid, to catch two recorded nodes the live server merged. */
  private readonly liveNodes = new U64Map<bigint>();
  private readonly generations = new U64Map<bigint>();
  /**
   * recorded fh -> the live fh of each open holding it, oldest first. Servers may hand out the
   * same fh for every open (0 is common for servers that keep no per-open state), so a RELEASE
   * ends one open, not the value. A server whose fh is a pointer (passthrough_ll) hands a value
   * out again once it freed it: the second open's reply can then be bound before the replay sent
   * the first open's RELEASE (the two were in flight together), while the live server gave the
   * second open a different fh. That RELEASE belongs to the first open (lives[0]); every other
   * request naming the fh is the newest open's.
   */
  private readonly fhs = new U64Map<{ lives: bigint[] }>();
  private readonly inos = new U64Map<bigint>();
  private readonly liveInos = new U64Map<bigint>();
  /** `${recorded fh}:${recorded cookie}` -> live cookie: cookies only mean something within one open directory. */
  private readonly cookies = new Map<string, bigint>();
  /**
   * recorded fh -> the live cookie of the last entry of its last directory reply, kept when the
   * recorded reply was cut by --snaplen: the kernel goes on reading from the last entry it got
   * (fs/fuse/readdir.c: ctx->pos = dirent->off), which the cut recording no longer shows.
   */
  private readonly cutDirEnd = new U64Map<bigint>();

  constructor() {
    this.nodes.set(ROOT_ID, { live: ROOT_ID, nlookup: 1n });
    this.liveNodes.set(ROOT_ID, ROOT_ID);
  }

  /**
   * Returns the request as the live server must see it, or the identifiers nothing is bound to.
   * `frame` is never modified; a copy is made only when something changes.
   */
  translateRequest(frame: Buffer, opcode: number): { frame: Buffer } | { missing: Untranslated } {
    // A copy only once something changes; `out` is the frame as the live server must see it.
    let out = frame;
    if (frame.length >= IN_HEADER_SIZE && headerNodeidIsNode(opcode)) {
      const rec = readU64(frame, 16);
      // nodeid 0 is legal in a few requests (e.g. kernel-internal STATFS on some paths); leave it.
      if (rec !== 0n) {
        const live = this.liveNodeid(rec);
        if (live === undefined) return { missing: { kind: 'nodeid', recorded: rec } };
        if (live !== rec) out = patched(frame, out, 16, live);
      }
    }
    // A view of the body only for the requests that name an id in it (most name only the header's nodeid).
    const fields = REQUEST_ID_FIELDS[opcode];
    if (fields === undefined && opcode !== OP.BATCH_FORGET) return { frame: out };
    const body = frame.subarray(IN_HEADER_SIZE);
    if (opcode === OP.BATCH_FORGET && body.length >= 8) {
      // fuse_batch_forget_in { count, dummy } then count x fuse_forget_one { nodeid, nlookup }.
      const count = body.readUInt32LE(0);
      for (let i = 0; i < count && 8 + 16 * i + 16 <= body.length; i++) {
        const off = IN_HEADER_SIZE + 8 + 16 * i;
        const rec = readU64(frame, off);
        const live = this.liveNodeid(rec);
        if (live === undefined) return { missing: { kind: 'nodeid', recorded: rec } };
        if (live !== rec) out = patched(frame, out, off, live);
      }
    }
    let recFh: bigint | undefined;
    for (const f of fields ?? []) {
      if (f.off + 8 > body.length) continue;
      if (f.when && !f.when(body)) continue;
      const rec = readU64(frame, IN_HEADER_SIZE + f.off);
      let live: bigint | undefined;
      if (f.kind === 'nodeid') live = this.liveNodeid(rec);
      else if (f.kind === 'fh') {
        recFh = rec;
        const lives = this.fhs.get(rec)?.lives;
        live = lives === undefined ? undefined : opcode === OP.RELEASE || opcode === OP.RELEASEDIR ? lives[0] : lives[lives.length - 1];
      } else {
        // Offset 0 starts a directory stream from the beginning: nothing to translate.
        live = rec === 0n ? 0n : this.cookies.get(`${recFh}:${rec}`) ?? (recFh === undefined ? undefined : this.cutDirEnd.get(recFh));
      }
      if (live === undefined) return { missing: { kind: f.kind, recorded: rec } };
      if (live !== rec) out = patched(frame, out, IN_HEADER_SIZE + f.off, live);
    }
    return { frame: out };
  }

  /** Bookkeeping once a request has been sent: FORGET drops lookups, RELEASE ends an fh. */
  noteSent(recordedFrame: Buffer, opcode: number): void {
    if (opcode !== OP.FORGET && opcode !== OP.BATCH_FORGET && opcode !== OP.RELEASE && opcode !== OP.RELEASEDIR) return;
    const body = recordedFrame.subarray(IN_HEADER_SIZE);
    if (opcode === OP.FORGET && body.length >= 8) {
      this.forget(readU64(recordedFrame, 16), readU64(body, 0));
    } else if (opcode === OP.BATCH_FORGET && body.length >= 8) {
      const count = body.readUInt32LE(0);
      for (let i = 0; i < count && 8 + 16 * i + 16 <= body.length; i++) {
        this.forget(readU64(body, 8 + 16 * i), readU64(body, 16 + 16 * i));
      }
    } else if ((opcode === OP.RELEASE || opcode === OP.RELEASEDIR) && body.length >= 8) {
      const fh = readU64(body, 0);
      const b = this.fhs.get(fh);
      b?.lives.shift();
      if (b && b.lives.length > 0) return;
      this.fhs.delete(fh);
      this.cutDirEnd.delete(fh);
      for (const key of this.cookies.keys()) if (key.startsWith(`${fh}:`)) this.cookies.delete(key);
    }
  }

  /**
   * An entry reply handed out recorded nodeid `rec` (one lookup reference); the live server
   * answered `live`. Returns a message when that contradicts what is bound, else null.
   */
  matchNodeid(rec: bigint, live: bigint): string | null {
    if (rec === 0n || live === 0n) return rec === live ? null : `nodeid ${hex(rec)} recorded, ${hex(live)} live`;
    const b = this.nodes.get(rec);
    if (b) {
      if (rec !== ROOT_ID) b.nlookup += 1n;
      return b.live === live ? null : `recorded nodeid ${hex(rec)} is live ${hex(b.live)}, but the server now answered ${hex(live)}`;
    }
    const other = this.liveNodes.get(live);
    if (other !== undefined && other !== rec) {
      return `live nodeid ${hex(live)} already stands for recorded ${hex(other)}, not ${hex(rec)}`;
    }
    this.nodes.set(rec, { live, nlookup: 1n });
    this.liveNodes.set(live, rec);
    return null;
  }

  /** Generations are per node, so they map as a function: the same recorded value, the same live value. */
  matchGeneration(rec: bigint, live: bigint): string | null {
    const b = this.generations.get(rec);
    if (b === undefined) {
      this.generations.set(rec, live);
      return null;
    }
    return b === live ? null : `generation ${rec} recorded was live ${b} before, now ${live}`;
  }

  /** Binds a recorded fh to the live one (OPEN/CREATE/OPENDIR replies); fhs are reused after RELEASE. */
  bindFh(rec: bigint, live: bigint): void {
    const b = this.fhs.get(rec);
    if (b) b.lives.push(live);
    else this.fhs.set(rec, { lives: [live] });
  }

  /** Inode numbers: a one-to-one mapping, released when the node that carried it is forgotten. */
  matchIno(rec: bigint, live: bigint, recNodeid?: bigint): string | null {
    if (recNodeid !== undefined) {
      const node = this.nodes.get(recNodeid);
      if (node) node.ino = rec;
    }
    const b = this.inos.get(rec);
    if (b !== undefined) return b === live ? null : `inode ${rec} recorded was live ${b} before, now ${live}`;
    const other = this.liveInos.get(live);
    if (other !== undefined && other !== rec) return `live inode ${live} already stands for recorded inode ${other}, not ${rec}`;
    this.inos.set(rec, live);
    this.liveInos.set(live, rec);
    return null;
  }

  /** Directory cookies of one open directory (by recorded fh). */
  matchCookie(recFh: bigint | undefined, rec: bigint, live: bigint): string | null {
    const key = `${recFh}:${rec}`;
    const b = this.cookies.get(key);
    if (b === undefined) {
      this.cookies.set(key, live);
      return null;
    }
    return b === live ? null : `directory offset ${rec} recorded was live ${b} before, now ${live}`;
  }

  /** A directory reply of open directory `recFh` was cut by --snaplen; `liveEnd` ends the live one. */
  noteCutDirReply(recFh: bigint, liveEnd: bigint | undefined): void {
    if (liveEnd === undefined) this.cutDirEnd.delete(recFh);
    else this.cutDirEnd.set(recFh, liveEnd);
  }

  /**
   * What a recorded identifier stands for live, by the name of the reply field holding it
   * (nodeid, generation, fh, ino, off: a directory cookie of the open directory `recFh`).
   */
  lookup(field: string, rec: bigint, recFh?: bigint): bigint | undefined {
    switch (field) {
      case 'nodeid':
        return rec === 0n ? 0n : this.nodes.get(rec)?.live;
      case 'generation':
        return this.generations.get(rec);
      case 'fh':
        return this.liveFh(rec);
      case 'ino':
        return this.inos.get(rec);
      case 'off':
        return this.cookies.get(`${recFh}:${rec}`);
      default:
        return undefined;
    }
  }

  /** The live nodeid of a recorded one, if bound. */
  liveNodeid(rec: bigint): bigint | undefined {
    return this.nodes.get(rec)?.live;
  }

  /** The live fh of a recorded one, if bound. */
  liveFh(rec: bigint): bigint | undefined {
    const lives = this.fhs.get(rec)?.lives;
    return lives?.[lives.length - 1];
  }

  private forget(rec: bigint, nlookup: bigint): void {
    if (rec === ROOT_ID) return;
    const b = this.nodes.get(rec);
    if (!b) return;
    b.nlookup -= nlookup;
    if (b.nlookup > 0n) return;
    this.nodes.delete(rec);
    if (this.liveNodes.get(b.live) === rec) this.liveNodes.delete(b.live);
    if (b.ino !== undefined) {
      const liveIno = this.inos.get(b.ino);
      this.inos.delete(b.ino);
      if (liveIno !== undefined) this.liveInos.delete(liveIno);
    }
  }
}

/** `out` (a copy of `frame` made on the first change) with the u64 at `off` set to `value`. */
function patched(frame: Buffer, out: Buffer, off: number, value: bigint): Buffer {
  const b = out === frame ? Buffer.from(frame) : out;
  writeU64(b, value, off);
  return b;
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}
