/**
 * The demo FUSE server, written on fusetrace's own codec (src/protocol), so the demo needs no
 * libfuse and no compiler: only Node and /dev/fuse.
 *
 *   node dist/src/demo/server.js MOUNTPOINT     (mounts by itself, like any FUSE server)
 *   node dist/src/demo/server.js /dev/fd/N      (an fd that is already a FUSE connection)
 *
 * Given a directory it mounts it the way libfuse does (mount(2) with fd=N,... as root, fusermount3
 * otherwise: src/proxy/mount.ts); under `fusetrace record` or `replay` that mount is intercepted
 * and fd N becomes fusetrace's socket (src/proxy/intercept.ts). Given /dev/fd/N it serves that fd
 * (the fallback where mount interception is unavailable, and `replay` without a mountpoint). Each read()
 * of the socket returns exactly one request frame and each write() sends one reply frame, like
 * /dev/fuse itself (fs/fuse/dev.c fuse_dev_do_read / fuse_dev_do_write).
 *
 * Event loop: one fs.read() at a time runs in libuv's threadpool on the blocking fd and returns one
 * message; replies go out with fs.writeSync on the main thread. A delayed reply is a timer and a
 * parked request is an entry in `parked`, so the loop keeps reading while requests wait — that is
 * how a FUSE_INTERRUPT for a waiting READ is seen at all.
 *
 * The tree and what each file does are in tree.ts. Unknown or unsupported opcodes are answered
 * -ENOSYS (the kernel then stops sending most of them: fc->no_* flags).
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { classifyMountOptions } from '../proxy/args.js';
import { mountAsRoot, mountWithFusermount, unmountFuse, type FuseMount } from '../proxy/mount.js';
import { buildReply, decodeRequest, Opcode, type DecodedFrame, type Fields } from '../protocol/index.js';
import { INIT_FLAG } from '../protocol/flags.js';
import { errnoNumber } from '../protocol/errno.js';
import { ANYWAY_MS, DEMO_EPOCH, FIRST_DYNAMIC_NODEID, SLOW_MS, attrOf, buildTree, type DemoNode } from './tree.js';

/** Largest frame we accept: a WRITE of max_write bytes plus headers, with a page to spare. */
export const MAX_WRITE = 1024 * 1024;
const READ_BUFFER = MAX_WRITE + 4096 + 4096;
/** Highest protocol minor this server speaks: the codec's (fuse.h 7.45). */
const SERVER_MINOR = 45;
/** Cache validity for entries and attributes: long, so the kernel's requests depend on the workload only, not on timing. */
const VALID_SECS = 3600n;
/** INIT flags we ask for, when the kernel offers them. No FUSE_SPLICE_*: replies are plain write()s.
 * FUSE_MAX_PAGES lets max_write reach 1 MiB (fs/fuse/inode.c process_init_reply). */
const WANT_FLAGS = INIT_FLAG.FUSE_BIG_WRITES | INIT_FLAG.FUSE_MAX_PAGES | INIT_FLAG.FUSE_PARALLEL_DIROPS;
const FOPEN_DIRECT_IO = 1;

const errno = (name: string): number => -(errnoNumber(name) ?? 5);
const ENOENT = errno('ENOENT');
const EIO = errno('EIO');
const EINTR = errno('EINTR');
const ENOSYS = errno('ENOSYS');
const EACCES = errno('EACCES');
const ENOTDIR = errno('ENOTDIR');
const EISDIR = errno('EISDIR');
const EEXIST = errno('EEXIST');
const EPERM = errno('EPERM');
const EPROTO = errno('EPROTO');
const EBADF = errno('EBADF');

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);
const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : 0n);
const align8 = (n: number) => (n + 7) & ~7;

/** A READ that waits: for a timer, for an INTERRUPT, or forever. */
interface Parked {
  behaviour: 'slow' | 'wait-eintr' | 'wait-anyway' | 'never';
  timer?: NodeJS.Timeout;
  answer: () => void;
}

/** One served connection. Exported for tests that drive it over a socketpair. */
export class DemoServer {
  private readonly nodes = buildTree();
  private nextNodeid = FIRST_DYNAMIC_NODEID;
  private nextFh = 1n;
  /** Open file handles -> nodeid. */
  private readonly handles = new Map<bigint, bigint>();
  private readonly parked = new Map<bigint, Parked>();
  /** Negotiated minor (INIT); replies are laid out for it. */
  private minor = SERVER_MINOR;
  private flags: bigint | undefined;
  /** Counts, printed on stderr at exit only with FUSETRACE_DEMO_DEBUG. */
  readonly counts = { requests: 0, interrupts: 0, forgets: 0, enosys: 0 };
  done = false;

  constructor(private readonly send: (frame: Buffer) => void) {}

  /** Handles one request frame; never throws on its bytes. */
  handle(buf: Buffer): void {
    const res = decodeRequest(buf, { minor: this.minor, flags: this.flags });
    const f = res.frame;
    if (!f || f.opcode === undefined) return; // not even a header: nothing to answer
    this.counts.requests++;
    if (res.errors.some((e) => e.kind === 'unknown-opcode')) {
      // An opcode newer than our table: fuse.h's answer to what a server does not implement.
      this.counts.enosys++;
      return this.error(f, ENOSYS);
    }
    if (!res.ok && f.opcode !== Opcode.INIT) {
      // A malformed request still gets an answer, so the kernel's waiter is not left hanging.
      if (f.opcode !== Opcode.FORGET && f.opcode !== Opcode.BATCH_FORGET && f.opcode !== Opcode.INTERRUPT) this.error(f, EPROTO);
      return;
    }
    try {
      this.dispatch(f);
    } catch (err) {
      process.stderr.write(`demo server: ${f.name} ${f.unique}: ${err instanceof Error ? err.stack : String(err)}\n`);
      this.error(f, EIO);
    }
  }

  private reply(f: DecodedFrame, args: Fields[] = [], extra: { data?: Buffer; dirents?: Parameters<typeof buildReply>[0]['dirents']; argSizes?: number[] } = {}): void {
    this.send(buildReply({ unique: f.unique, opcode: f.opcode, args, minor: this.minor, ...extra }));
  }

  private error(f: DecodedFrame, err: number): void {
    this.send(buildReply({ unique: f.unique, error: err }));
  }

  private node(nodeid: bigint | undefined): DemoNode | undefined {
    return nodeid === undefined ? undefined : this.nodes.get(nodeid);
  }

  private entry(n: DemoNode): Fields {
    return { nodeid: n.nodeid, generation: 0n, entry_valid: VALID_SECS, attr_valid: VALID_SECS, attr: attrOf(n, this.nodes) as Fields };
  }

  private attrOut(n: DemoNode): Fields {
    return { attr_valid: VALID_SECS, attr: attrOf(n, this.nodes) as Fields };
  }

  private statxOut(n: DemoNode): Fields {
    const at = attrOf(n, this.nodes);
    const time = { tv_sec: DEMO_EPOCH, tv_nsec: 0 };
    // STATX_BASIC_STATS (0x7ff) | STATX_BTIME (0x800), include/uapi/linux/stat.h.
    const stat = {
      mask: 0xfff, blksize: at.blksize, nlink: at.nlink, uid: at.uid, gid: at.gid, mode: at.mode, ino: at.ino, size: at.size,
      blocks: at.blocks, atime: time, btime: time, ctime: time, mtime: time,
    } as Fields;
    return { attr_valid: VALID_SECS, stat };
  }

  private dispatch(f: DecodedFrame): void {
    const a = f.args[0] ?? {};
    const n = this.node(f.nodeid);
    switch (f.opcode) {
      case Opcode.INIT:
        return this.init(f, a);
      case Opcode.DESTROY:
        // Sent before the connection goes away (fuseblk and virtiofs only): answer, then stop.
        this.reply(f);
        this.done = true;
        return;
      case Opcode.FORGET:
      case Opcode.BATCH_FORGET:
        // Never answered (fuse.h: "no reply"). The tree keeps its nodes: nodeids are never reused,
        // so replays see the same numbers.
        this.counts.forgets++;
        return;
      case Opcode.INTERRUPT:
        return this.interrupt(big(a.unique));
      case Opcode.LOOKUP: {
        if (!n) return this.error(f, ENOENT);
        if (!n.dir) return this.error(f, ENOTDIR);
        const child = this.node(n.children.get(f.names[0] ?? ''));
        return child ? this.reply(f, [this.entry(child)]) : this.error(f, ENOENT);
      }
      case Opcode.GETATTR:
        return n ? this.reply(f, [this.attrOut(n)]) : this.error(f, ENOENT);
      case Opcode.STATX:
        // statx(2) asking for more than the basic stats (node's fs.stat asks for btime) comes as STATX (7.39).
        return n ? this.reply(f, [this.statxOut(n)]) : this.error(f, ENOENT);
      case Opcode.SETATTR:
        return this.setattr(f, n, a);
      case Opcode.OPEN:
      case Opcode.OPENDIR: {
        if (!n) return this.error(f, ENOENT);
        if (f.opcode === Opcode.OPENDIR && !n.dir) return this.error(f, ENOTDIR);
        if (f.opcode === Opcode.OPEN && n.dir) return this.error(f, EISDIR);
        const accmode = num(a.flags) & 3;
        if (accmode !== 0 && !n.writable) return this.error(f, EACCES);
        return this.reply(f, [{ fh: this.openFh(n), open_flags: n.directIo ? FOPEN_DIRECT_IO : 0 }]);
      }
      case Opcode.CREATE:
        return this.create(f, n, a);
      case Opcode.READ:
        return this.read(f, n, a);
      case Opcode.WRITE: {
        if (!n || n.dir) return this.error(f, EBADF);
        if (!n.writable) return this.error(f, EACCES);
        const data = f.data ?? Buffer.alloc(0);
        const off = num(a.offset);
        const end = off + data.length;
        const grown = end > n.content.length ? Buffer.concat([n.content, Buffer.alloc(end - n.content.length)]) : n.content;
        data.copy(grown, off);
        n.content = grown;
        return this.reply(f, [{ size: data.length }]);
      }
      case Opcode.READDIR:
        return this.readdir(f, n, a);
      case Opcode.RELEASE:
      case Opcode.RELEASEDIR:
        this.handles.delete(big(a.fh));
        return this.reply(f);
      case Opcode.FLUSH:
      case Opcode.FSYNC:
      case Opcode.FSYNCDIR:
      case Opcode.ACCESS:
        return n ? this.reply(f) : this.error(f, ENOENT);
      case Opcode.STATFS:
        return this.reply(f, [{ st: { blocks: 1024n, bfree: 512n, bavail: 512n, files: 1000n, ffree: 900n, bsize: 4096, namelen: 255, frsize: 4096 } }]);
      case Opcode.UNLINK: {
        if (!n || !n.dir) return this.error(f, ENOENT);
        const id = n.children.get(f.names[0] ?? '');
        if (id === undefined) return this.error(f, ENOENT);
        // Only files created during the run may go: the fixed tree is the demo.
        if (id < FIRST_DYNAMIC_NODEID) return this.error(f, EPERM);
        n.children.delete(f.names[0]!);
        this.nodes.delete(id);
        return this.reply(f);
      }
      default:
        // GETXATTR, MKDIR, IOCTL, ...: not part of the demo. ENOSYS makes the kernel remember that
        // for most of them (fc->no_getxattr etc.), which keeps later runs' request streams equal.
        this.counts.enosys++;
        return this.error(f, ENOSYS);
    }
  }

  private openFh(n: DemoNode): bigint {
    const fh = this.nextFh++;
    this.handles.set(fh, n.nodeid);
    return fh;
  }

  /** INIT: answer with min(kernel minor, ours); ask only for flags the kernel offered. */
  private init(f: DecodedFrame, a: Fields): void {
    const major = num(a.major);
    if (major !== 7) {
      // fuse.h: a kernel with a newer major waits for a reply naming ours, then sends INIT again.
      this.send(buildReply({ unique: f.unique, opcode: Opcode.INIT, args: [{ major: 7, minor: SERVER_MINOR }], argSizes: [8] }));
      return;
    }
    const kernelMinor = num(a.minor);
    this.minor = Math.min(kernelMinor, SERVER_MINOR);
    const offered = big(a.flags) | (big(a.flags) & INIT_FLAG.FUSE_INIT_EXT ? big(a.flags2) << 32n : 0n);
    const flags = offered & WANT_FLAGS;
    this.flags = flags;
    // fuse_init_out's size follows the minor (FUSE_COMPAT_INIT_OUT_SIZE, FUSE_COMPAT_22_INIT_OUT_SIZE).
    const size = this.minor < 5 ? 8 : this.minor < 23 ? 24 : 64;
    this.reply(f, [{
      major: 7, minor: this.minor, max_readahead: num(a.max_readahead), flags: Number(flags & 0xffffffffn),
      max_background: 16, congestion_threshold: 12, max_write: MAX_WRITE, time_gran: 1, max_pages: MAX_WRITE / 4096,
    }], { argSizes: [size] });
  }

  private interrupt(target: bigint): void {
    this.counts.interrupts++;
    const p = this.parked.get(target);
    // Not parked (already answered, or never read): nothing to do. fuse.h allows answering EAGAIN
    // "if the filesystem cannot find the original request"; the kernel then resends the INTERRUPT,
    // which only makes sense when the request may still arrive — here it cannot.
    if (!p) return;
    if (p.behaviour === 'wait-eintr') {
      this.parked.delete(target);
      p.answer();
    }
    // slow / wait-anyway / never: the interrupt is noted and ignored; the reply comes as planned.
  }

  private setattr(f: DecodedFrame, n: DemoNode | undefined, a: Fields): void {
    if (!n) return this.error(f, ENOENT);
    const valid = num(a.valid);
    const FATTR_MODE = 1;
    const FATTR_SIZE = 8;
    if (valid & (FATTR_MODE | FATTR_SIZE) && !n.writable) return this.error(f, EPERM);
    if (valid & FATTR_SIZE) {
      const size = num(a.size);
      n.content = size <= n.content.length ? Buffer.from(n.content.subarray(0, size)) : Buffer.concat([n.content, Buffer.alloc(size - n.content.length)]);
    }
    if (valid & FATTR_MODE) n.perm = num(a.mode) & 0o7777;
    // Times, owners: ignored, so attributes stay fixed (determinism beats fidelity here).
    this.reply(f, [this.attrOut(n)]);
  }

  private create(f: DecodedFrame, dir: DemoNode | undefined, a: Fields): void {
    if (!dir || !dir.dir) return this.error(f, ENOENT);
    const name = f.names[0] ?? '';
    if (dir.children.has(name)) return this.error(f, EEXIST);
    const nodeid = this.nextNodeid++;
    const n: DemoNode = {
      nodeid, parent: dir.nodeid, name, dir: false, perm: num(a.mode) & 0o777 & ~num(a.umask), content: Buffer.alloc(0),
      writable: true, read: 'data', directIo: false, children: new Map(),
    };
    this.nodes.set(nodeid, n);
    dir.children.set(name, nodeid);
    this.reply(f, [this.entry(n), { fh: this.openFh(n), open_flags: 0 }]);
  }

  private read(f: DecodedFrame, n: DemoNode | undefined, a: Fields): void {
    if (!n) return this.error(f, ENOENT);
    if (n.dir) return this.error(f, EISDIR);
    const off = num(a.offset);
    const size = num(a.size);
    const data = () => this.reply(f, [], { data: n.content.subarray(Math.min(off, n.content.length), Math.min(off + size, n.content.length)) });
    const unique = f.unique;
    const park = (behaviour: Parked['behaviour'], answer: () => void, delayMs?: number) => {
      const p: Parked = { behaviour, answer };
      if (delayMs !== undefined) {
        p.timer = setTimeout(() => {
          this.parked.delete(unique);
          answer();
        }, delayMs);
      }
      this.parked.set(unique, p);
    };
    // The scenario is the first READ (offset 0); the reader's next READ, at end-of-file, is ordinary,
    // so each scenario is one request.
    const behaviour = n.read === 'eio' || off === 0 ? n.read : 'data';
    switch (behaviour) {
      case 'data':
        return data();
      case 'eio':
        return this.error(f, EIO);
      case 'slow':
        return park('slow', data, SLOW_MS);
      case 'wait-anyway':
        return park('wait-anyway', data, ANYWAY_MS);
      case 'wait-eintr':
        return park('wait-eintr', () => this.error(f, EINTR));
      case 'never':
        return park('never', () => undefined);
    }
  }

  private readdir(f: DecodedFrame, n: DemoNode | undefined, a: Fields): void {
    if (!n) return this.error(f, ENOENT);
    if (!n.dir) return this.error(f, ENOTDIR);
    const DT_DIR = 4;
    const DT_REG = 8;
    const all = [
      { ino: n.nodeid, name: '.', type: DT_DIR },
      { ino: n.parent, name: '..', type: DT_DIR },
      ...[...n.children.entries()].map(([name, id]) => ({ ino: id, name, type: this.nodes.get(id)?.dir ? DT_DIR : DT_REG })),
    ];
    const size = num(a.size);
    const dirents: Array<{ ino: bigint; off: bigint; type: number; name: string }> = [];
    let used = 0;
    // fuse_dirent.off is the offset of the *next* entry: the kernel passes it back as fuse_read_in.offset.
    for (let i = num(a.offset); i < all.length; i++) {
      const e = all[i]!;
      const rec = align8(24 + Buffer.byteLength(e.name));
      if (used + rec > size) break;
      used += rec;
      dirents.push({ ino: e.ino, off: BigInt(i + 1), type: e.type, name: e.name });
    }
    this.reply(f, [], { dirents });
  }

  /** Parked requests (for the debug line at exit). */
  get parkedCount(): number {
    return this.parked.size;
  }

  /** Stops the timers of parked requests (end of the connection). */
  stop(): void {
    for (const p of this.parked.values()) if (p.timer) clearTimeout(p.timer);
    this.parked.clear();
  }
}

/** The fd in `/dev/fd/N`, or undefined. */
function fdFromArg(arg: string | undefined): number | undefined {
  const m = /^\/dev\/fd\/(\d+)$/.exec(arg ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Serves the connection on `fd` until end-of-file (the proxy closed its end: unmount or abort). */
export function serve(fd: number): Promise<number> {
  return new Promise((resolve) => {
    const debug = !!process.env.FUSETRACE_DEMO_DEBUG;
    let ended = false;
    const end = (status: number, why: string) => {
      if (ended) return;
      ended = true;
      server.stop();
      if (debug) process.stderr.write(`demo server: ${why}; ${JSON.stringify(server.counts)}\n`);
      resolve(status);
    };
    const server = new DemoServer((frame) => {
      try {
        fs.writeSync(fd, frame);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: the kernel (or the replayer) no longer waits for this unique: the reply is dropped,
        // which is its business (fs/fuse/dev.c request_find). EPIPE/ECONNRESET/ENODEV: the other side is gone.
        if (code === 'ENOENT') return;
        end(code === 'EPIPE' || code === 'ECONNRESET' || code === 'ENODEV' ? 0 : 1, `write: ${code}`);
      }
    });
    const buf = Buffer.alloc(READ_BUFFER);
    const next = () => {
      if (ended) return;
      fs.read(fd, buf, 0, buf.length, null, (err, n) => {
        if (ended) return;
        if (err) {
          if (err.code === 'EINTR' || err.code === 'EAGAIN') return next();
          // ENODEV: a real /dev/fuse after unmount; ECONNRESET: the peer closed.
          return end(err.code === 'ENODEV' || err.code === 'ECONNRESET' ? 0 : 1, `read: ${err.code}`);
        }
        if (n === 0) return end(0, 'end-of-file');
        // Copy: the buffer is reused for the next read while a parked request keeps its frame.
        server.handle(Buffer.from(buf.subarray(0, n)));
        if (server.done) return end(0, 'DESTROY');
        next();
      });
    };
    next();
  });
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Mounts `dir` as libfuse would, with the demo's name as fsname and subtype. */
async function mountSelf(dir: string): Promise<FuseMount> {
  const mo = classifyMountOptions([]);
  const name = 'fusetrace-demo';
  return process.getuid?.() === 0 ? mountAsRoot(dir, mo, name) : mountWithFusermount(dir, mo, name);
}

/** Entry point: `node server.js MOUNTPOINT` or `node server.js /dev/fd/N`. */
async function main(): Promise<void> {
  const arg = process.argv[2];
  let fd = fdFromArg(arg);
  let mount: FuseMount | undefined;
  if (fd === undefined && arg !== undefined && process.argv.length === 3 && isDirectory(arg)) {
    mount = await mountSelf(arg);
    fd = mount.devFd;
    // Ended by a signal: unmount as libfuse's fuse_session_unmount does (the read then ends).
    const unmount = () => void unmountFuse(mount!).catch(() => undefined);
    process.on('SIGTERM', unmount);
    process.on('SIGINT', unmount);
  }
  if (fd === undefined || process.argv.length !== 3) {
    process.stderr.write(
      'usage: server.js MOUNTPOINT | /dev/fd/N\n' +
        'Run it through `fusetrace demo`, `fusetrace record -- node server.js MOUNTPOINT` or `fusetrace replay SESSION -- node server.js`.\n',
    );
    process.exitCode = 2;
    return;
  }
  // exit() rather than returning: after a write error a read may still sit in the threadpool.
  process.exit(await serve(fd));
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  void main();
}
