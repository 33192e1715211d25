/**
 * nodeid -> path, as the kernel's dentry cache would name it, replayed from the frames.
 *
 * The kernel learns a nodeid from an entry reply (LOOKUP, CREATE, MKDIR, MKNOD, SYMLINK, LINK,
 * TMPFILE, each READDIRPLUS entry) and counts it (fuse_inode.nlookup); FORGET/BATCH_FORGET give the
 * count back, and at zero the server may reuse the nodeid for another file. So the resolver keeps,
 * per nodeid, its lookup count and its names (parent nodeid + name; more than one after LINK), and
 * per (parent, name) the nodeid it names. A path is computed by walking parents at the moment it is
 * asked for, so RENAME of a directory renames its whole subtree at once, and each request shows the
 * path as of its time. nodeid 1 (FUSE_ROOT_ID) is "/" and is never forgotten.
 *
 * It is plain state with no I/O: the ledger carries one across add() batches and rebuild uses a fresh one.
 */

import { RENAME_EXCHANGE } from './ledger-wire.js';
import { u64Key, type U64Key } from '../util/u64.js';

/** FUSE_ROOT_ID. */
export const ROOT_NODEID = 1n;

/** How a nodeid the trace never named shows inside a path: its number, e.g. `<nodeid:42>/a/b`. */
function unknownNode(nodeid: bigint): string {
  return `<nodeid:${nodeid}>`;
}

/** Walks deeper than this are cycles in corrupt data (a real tree is far shallower: PATH_MAX is 4096). */
const MAX_DEPTH = 2048;

/** One name of a node: the directory it is in (as given and as a key) and the name in it. */
interface Name {
  parent: bigint;
  parentKey: U64Key;
  name: string;
}

interface Node {
  /**
   * The kernel's lookup count for this nodeid (sum of entry replies minus FORGET nlookup). A number:
   * the kernel counts one per entry reply, so it stays far below 2^53; a FORGET of more than that
   * (corrupt data) drives it below zero, as the exact count would.
   */
  nlookup: number;
  /** Current names, most recent last; a LINK adds one, UNLINK/RENAME over it removes one. */
  names: Name[];
  /** The last name it had once all names are gone (unlinked but still open): shown with " (deleted)". */
  gone: Name | null;
}

/**
 * Nodeids are Map keys through u64Key (util/u64.ts): bench derive on a find+stat trace, the resolver
 * took about 30% of the derivation with bigint keys, bigint lookup counts and `${parent}/${name}`
 * dentry keys (a bigint to decimal string at every lookup).
 */
export class PathResolver {
  private readonly nodes = new Map<U64Key, Node>();
  /** parent -> name -> nodeid: what each (parent, name) means now. */
  private readonly dentries = new Map<U64Key, Map<string, bigint>>();

  /** Path of a nodeid as of now; null for nodeid 0 (no inode: INIT, BATCH_FORGET, STATFS on old kernels). */
  path(nodeid: bigint): string | null {
    if (nodeid === 0n) return null;
    return this.walk(nodeid, 0);
  }

  /** Path of `name` inside directory `parent` (what LOOKUP, CREATE, UNLINK, ... name). */
  childPath(parent: bigint, name: string): string {
    const dir = parent === 0n ? unknownNode(0n) : this.walk(parent, 0);
    return dir === '/' ? `/${name}` : `${dir}/${name}`;
  }

  /** Number of nodeids currently known (for tests and memory accounting). */
  get size(): number {
    return this.nodes.size;
  }

  /** Lookup count of a nodeid, 0n when unknown (tests). */
  nlookup(nodeid: bigint): bigint {
    return BigInt(this.nodes.get(u64Key(nodeid))?.nlookup ?? 0);
  }

  /**
   * An accepted entry reply: `name` in `parent` is `nodeid`, and the kernel's lookup count went up
   * by one. nodeid 0 is a negative entry (cached ENOENT) and names nothing. "." and ".." never
   * become names (LOOKUP of ".." comes from NFS export's get_parent; READDIRPLUS lists both).
   */
  entry(parent: bigint, name: string, nodeid: bigint): void {
    if (nodeid === 0n) return;
    const node = this.node(nodeid);
    node.nlookup += 1;
    if (nodeid === ROOT_NODEID || name === '.' || name === '..' || name === '') return;
    this.bind(parent, name, nodeid, node);
  }

  /** An accepted TMPFILE reply: an unnamed file in `parent`, shown as `<parent>/(tmpfile) (deleted)`. */
  tmpfile(parent: bigint, nodeid: bigint): void {
    if (nodeid === 0n) return;
    const node = this.node(nodeid);
    node.nlookup += 1;
    if (node.names.length === 0) node.gone = { parent, parentKey: u64Key(parent), name: '(tmpfile)' };
  }

  /** FORGET / one BATCH_FORGET entry: at zero the nodeid is free for reuse, and forgets its names. */
  forget(nodeid: bigint, nlookup: bigint): void {
    if (nodeid === ROOT_NODEID) return;
    const k = u64Key(nodeid);
    const node = this.nodes.get(k);
    if (!node) return;
    node.nlookup -= Number(nlookup);
    if (node.nlookup > 0) return;
    for (const n of node.names) {
      const dir = this.dentries.get(n.parentKey);
      if (dir !== undefined && dir.get(n.name) === nodeid) this.unname(dir, n.parentKey, n.name);
    }
    this.nodes.delete(k);
  }

  /** An accepted UNLINK or RMDIR (or NOTIFY_DELETE): the name is gone; the nodeid lives on while open. */
  remove(parent: bigint, name: string): void {
    const pk = u64Key(parent);
    const dir = this.dentries.get(pk);
    const nodeid = dir?.get(name);
    if (nodeid === undefined) return;
    this.unname(dir!, pk, name);
    this.unbind(nodeid, parent, name);
  }

  /**
   * An accepted RENAME / RENAME2. A name that already existed at the destination is replaced
   * (its nodeid loses that name); RENAME_EXCHANGE swaps the two names.
   */
  rename(olddir: bigint, oldname: string, newdir: bigint, newname: string, flags = 0): void {
    const src = this.lookup(olddir, oldname);
    const dst = this.lookup(newdir, newname);
    if ((flags & RENAME_EXCHANGE) !== 0) {
      if (src !== undefined) this.unbindQuiet(src, olddir, oldname);
      if (dst !== undefined) this.unbindQuiet(dst, newdir, newname);
      this.forgetName(olddir, oldname);
      this.forgetName(newdir, newname);
      if (src !== undefined) this.bind(newdir, newname, src, this.node(src));
      if (dst !== undefined) this.bind(olddir, oldname, dst, this.node(dst));
      return;
    }
    if (src === undefined) {
      // The source was never named in the trace: the destination name now means something else.
      if (dst !== undefined) this.remove(newdir, newname);
      return;
    }
    if (src === dst) return; // rename onto a hard link of itself is a no-op (rename(2))
    if (dst !== undefined) this.remove(newdir, newname);
    this.forgetName(olddir, oldname);
    this.unbindQuiet(src, olddir, oldname);
    this.bind(newdir, newname, src, this.node(src));
  }

  private node(nodeid: bigint): Node {
    const k = u64Key(nodeid);
    let node = this.nodes.get(k);
    if (!node) {
      node = { nlookup: 0, names: [], gone: null };
      this.nodes.set(k, node);
    }
    return node;
  }

  /** What (parent, name) means now. */
  private lookup(parent: bigint, name: string): bigint | undefined {
    return this.dentries.get(u64Key(parent))?.get(name);
  }

  /** (parent, name) means nothing any more. */
  private forgetName(parent: bigint, name: string): void {
    const pk = u64Key(parent);
    const dir = this.dentries.get(pk);
    if (dir !== undefined) this.unname(dir, pk, name);
  }

  /** Deletes a name from its directory's map, and the map once empty (a directory forgotten leaves nothing behind). */
  private unname(dir: Map<string, bigint>, pk: U64Key, name: string): void {
    dir.delete(name);
    if (dir.size === 0) this.dentries.delete(pk);
  }

  /** Makes (parent, name) mean nodeid, taking the name away from whatever it meant before. */
  private bind(parent: bigint, name: string, nodeid: bigint, node: Node): void {
    const pk = u64Key(parent);
    let dir = this.dentries.get(pk);
    if (dir === undefined) {
      dir = new Map();
      this.dentries.set(pk, dir);
    }
    const prev = dir.get(name);
    if (prev !== undefined && prev !== nodeid) this.unbind(prev, parent, name);
    dir.set(name, nodeid);
    const i = indexOfName(node.names, pk, name);
    if (i >= 0) node.names.splice(i, 1);
    node.names.push({ parent, parentKey: pk, name });
    node.gone = null;
  }

  /** Removes one name of nodeid; with none left, remembers it as the "(deleted)" name. */
  private unbind(nodeid: bigint, parent: bigint, name: string): void {
    const node = this.nodes.get(u64Key(nodeid));
    if (!node) return;
    const pk = u64Key(parent);
    const i = indexOfName(node.names, pk, name);
    if (i >= 0) node.names.splice(i, 1);
    if (node.names.length === 0) node.gone = { parent, parentKey: pk, name };
  }

  /** Removes one name without marking the node deleted (it is about to get another). */
  private unbindQuiet(nodeid: bigint, parent: bigint, name: string): void {
    const node = this.nodes.get(u64Key(nodeid));
    if (!node) return;
    const i = indexOfName(node.names, u64Key(parent), name);
    if (i >= 0) node.names.splice(i, 1);
  }

  private walk(nodeid: bigint, depth: number): string {
    if (nodeid === ROOT_NODEID) return '/';
    const node = this.nodes.get(u64Key(nodeid));
    if (!node || depth > MAX_DEPTH) return unknownNode(nodeid);
    const named = node.names.length > 0 ? node.names[node.names.length - 1] : node.gone;
    if (!named) return unknownNode(nodeid);
    const dir = this.walk(named.parent, depth + 1);
    const p = dir === '/' ? `/${named.name}` : `${dir}/${named.name}`;
    return node.names.length > 0 ? p : `${p} (deleted)`;
  }
}

/** Index of the name (parent, name) in `names`, -1 when absent. */
function indexOfName(names: readonly Name[], parentKey: U64Key, name: string): number {
  for (let i = 0; i < names.length; i++) if (names[i].parentKey === parentKey && names[i].name === name) return i;
  return -1;
}
