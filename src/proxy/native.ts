/**
 * The fusetrace addon (native/, built by node-gyp into build/Release) as typed functions.
 * Every function throws an Error with `code` (errno name) and `errno` on failure.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { BatchInfo } from '../store/batch.js';

/** Options of `new Pump()`, see native/pump.h PumpOptions. */
export interface PumpOptions {
  /** Mounted /dev/fuse fd; the pump owns (and closes) it from start(). */
  devFd: number;
  /** Proxy end of the socketpair; the pump owns (and closes) it from start(). */
  sockFd: number;
  /** Largest frame the socket carries; also the read buffer size. */
  maxFrame: number;
  /** Bytes kept per frame, 0 = whole frames. */
  snaplen?: number;
  /** Bound of the queue to JS: frames beyond it pass but are counted as dropped. */
  queueBytes?: number;
  queueFrames?: number;
  /** INIT flag bits (flags | flags2 << 32) cleared in the kernel's INIT request. */
  initMask?: bigint;
  /** Clamp of fuse_init_out.max_write / max_pages in the server's INIT reply, 0 = none. */
  maxWriteLimit?: number;
  maxPagesLimit?: number;
  /** Keep at most one request unread in the socket (killability, see native/pump.h). */
  gate?: boolean;
  /** Accept a server's takeover request: it then reads /dev/fuse itself and records into a shared ring (native/ring.h). */
  inProcess?: boolean;
  /** Data bytes of that ring (rounded up to a power of two that holds two of the largest frame). */
  ringBytes?: number;
  /**
   * record --lossy: a full ring or queue drops frames (each request they belong to is named in
   * `lost`) instead of making the server wait for the recorder (backpressure, the default).
   */
  lossy?: boolean;
}

/** What drain() hands over. `frames` packs `count` frames, see frames.ts. */
export interface PumpDrain {
  frames: Buffer;
  count: number;
  /** Every seq below this has been drained (or dropped): frames can go to the store in seq order up to it. */
  watermark: number;
  procs: Array<[number, string]>;
  /** Totals since start: frames recorded, frame bytes seen, frames/bytes dropped (queue full). */
  recorded: number;
  bytes: number;
  dropped: number;
  droppedBytes: number;
  /** Uniques of the frames dropped since the last drain: their requests' records are incomplete (state `lost`). */
  lost: bigint[];
  /** Total dropped frames of requests whose unique could not be kept (the list overflowed). */
  lostUnnamed: number;
  /** Regions the queue allocated so far (native/frame_queue.h Region: a few per recording, refilled). */
  queueRegions: number;
  /** Bytes of them faulted in so far (fresh memory: each region's the first time it is filled that far). */
  queueFaulted: number;
}

/** One batch of a PumpBatchDrain: bytes [off, off + size) of its `frames`, the rest as batches rows hold it. */
export interface PumpBatch extends BatchInfo {
  off: number;
  size: number;
  /** batches.heads: the batch with the payloads of READ replies and WRITE requests cut off, or null when none was. */
  heads: Buffer | null;
}

/**
 * What drainBatches() hands over (native/batcher.h): the queued frames cut into the trace's
 * batches, in seq order, patch records applied or listed.
 */
export interface PumpBatchDrain extends Omit<PumpDrain, 'watermark'> {
  /** A drained region (recyclable: hand it to recycle() after the flush) or a sorted copy. */
  recyclable: boolean;
  batches: PumpBatch[];
  /** [seq, fwdNs, writeErrno] of notifications whose frame was handed over by an earlier drain. */
  patches: Array<[number, bigint, number]>;
  /** Frames held back for the next drain (their seq is at or past the watermark). */
  held: number;
}

/** The INIT exchange as the pump saw and changed it. */
export interface PumpInitInfo {
  requestSeen: boolean;
  replySeen: boolean;
  unique: bigint;
  kernelMajor: number;
  kernelMinor: number;
  kernelFlags: bigint;
  kernelFlagsForwarded: bigint;
  replyError: number;
  serverMajor: number;
  serverMinor: number;
  serverFlags: bigint;
  maxWrite: number;
  maxWriteForwarded: number;
  hasMaxPages: boolean;
  maxPages: number;
  maxPagesForwarded: number;
}

export interface PumpStatus {
  /** '' while running; 'unmount' (read gave ENODEV), 'server-gone', 'stopped' or 'error: ...'. */
  readerEnd: string;
  /** '' while running; 'eof' (the server closed its end), 'stopped' or 'error: ...'. */
  writerEnd: string;
  /** Frames not forwarded because their header length disagreed with the bytes received. */
  partial: number;
  /** Requests larger than the socket could carry, answered with EIO. */
  emsgsize: number;
  /** Times the reader waited for the server to take the previous request. */
  gateWaits: number;
  notifyBlockedNs: bigint;
  /** 'relay' (every frame crosses the socket) or 'in-process' (the server took /dev/fuse over, native/ring.h). */
  transport: 'relay' | 'in-process';
  /** Ring bytes a server thread reserved and never filled (it died in the middle of a record). */
  ringLost: number;
  /** Times the server (in-process) or the relay's reader waited for the recorder to make room: backpressure. */
  backpressureWaits: number;
  /** Total time spent in those waits, ns. */
  backpressureNs: number;
  init: PumpInitInfo;
}

export interface Pump {
  start(): void;
  /** Ends the threads and closes both fds (the last /dev/fuse fd closing aborts the connection). */
  stop(): void;
  drain(): PumpDrain;
  /**
   * Hands a drained `frames` Buffer back for the pump to fill again (instead of faulting in fresh
   * pages for every drain). Neither it nor any slice of it may be read afterwards: call it only once
   * no frame record refers to it any more (after the writer's flush). Other Buffers are ignored.
   */
  recycle(frames: Buffer): void;
  /** drain() cut into batches; `final` once the pump has stopped (nothing is held back then). */
  drainBatches(final?: boolean): PumpBatchDrain;
  status(): PumpStatus;
}

/** Options of `new Attach()`, see native/attach.h AttachOptions. */
export interface AttachOptions {
  /** The server process: every one of its threads is traced. */
  pid: number;
  /** fusectl connection whose /dev/fuse fds are recorded (fdinfo fuse_connection); 0 = any /dev/fuse fd. */
  conn?: number;
  /** Bytes kept per frame, 0 = whole frames. */
  snaplen?: number;
  queueBytes?: number;
  queueFrames?: number;
}

export interface AttachStatus {
  /** '' while tracing; 'exited' (every thread of the server is gone), 'detached', 'error: ...'. */
  end: string;
  /** Threads traced now. */
  threads: number;
  /** System call stops so far (two per call of any kind). */
  stops: number;
  /** splice(2) calls on the device, whose bytes never cross the server's memory: not recorded. */
  spliced: number;
}

/** The ptrace recorder of `fusetrace attach` (native/attach.h). */
export interface Attach {
  /** Seizes every thread; throws with code EPERM (no permission, or another tracer) or ESRCH. */
  start(): void;
  /** Detaches from every thread: the server runs on untraced. */
  stop(): void;
  drain(): PumpDrain;
  recycle(frames: Buffer): void;
  status(): AttachStatus;
}

/** One intercepted mount-family call, its pointer arguments read from the caller (native/supervisor.h). */
export interface MountRequest {
  /** The notification's cookie: every answer carries it. */
  id: bigint;
  /** The calling thread. */
  pid: number;
  syscall: 'mount' | 'umount2' | 'umount';
  /** mount: source (the fsname of a FUSE mount); null when the caller passed NULL. */
  source: string | null;
  /** As the caller passed it: may be relative to `cwd`. */
  target: string;
  fstype: string | null;
  /** mount: the data string (`fd=N,rootmode=...` for FUSE). */
  data: string | null;
  /** mount: mountflags; umount2: its flags. */
  flags: number;
  /** The caller's working directory and root (readlink of /proc/PID/cwd and /root). */
  cwd: string;
  root: string;
  /** Set when the arguments could not be read (the call is then failed with EFAULT). */
  error: string | null;
}

/** The seccomp user-notification supervisor (native/supervisor.h). */
export interface Supervisor {
  start(): void;
  /** Closes the listener: calls not yet answered, and later ones, fail with ENOSYS in the caller. */
  stop(): void;
  /** Answers `id`: errno > 0 fails the call, 0 returns 0, `cont` runs the call as made. Throws ENOENT when the caller is gone. */
  reply(id: bigint, errno: number, cont: boolean): void;
  /** Puts our `srcFd` at number `targetFd` in `pid` (ADDFD + SETFD, keeping the close-on-exec flag the caller's fd had). */
  addFd(id: bigint, pid: number, srcFd: number, targetFd: number): void;
}

/**
 * The replayer's end of a replay socket (native/replay_socket.cc), watched on the JS thread's event
 * loop: `onFrames(data, ends, status)` gets every message queued at once (frame i is
 * data[ends[i-1] .. ends[i])); status 0 while open, 1 after end-of-file, -errno after a failed read.
 */
export interface ReplaySocket {
  start(): void;
  /** Stops watching (call before closing the fd). */
  close(): void;
  /** sendmmsg(2) with MSG_DONTWAIT of frames[from..] in order: how many went (0: no room), or -errno. */
  sendBatch(frames: Buffer[], from: number): number;
}

interface Addon {
  version(): number;
  mountFuse(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount(target: string, flags: number): void;
  seqpacketPair(sndbuf: number): { fds: [number, number]; sndbuf: number; forced: boolean };
  recvFd(sock: number): number;
  setCloexec(fd: number, on: boolean): void;
  monotonicNs(): bigint;
  /** Every thread of this process to SCHED_BATCH (binding.cc BatchScheduling): threads changed, or -errno. */
  batchScheduling(): number;
  /** send(2) with MSG_DONTWAIT: bytes sent, or -errno (-EAGAIN when the socket's buffer is full). */
  sendNoWait(fd: number, frame: Buffer): number;
  Pump: new (opts: PumpOptions, onWake: () => void) => Pump;
  Attach: new (opts: AttachOptions, onWake: () => void) => Attach;
  Supervisor: new (listenerFd: number, onRequest: (r: MountRequest) => void, onEnd: () => void) => Supervisor;
  ReplaySocket: new (fd: number, maxFrame: number, onFrames: (data: Buffer, ends: Uint32Array, status: number) => void) => ReplaySocket;
}

function buildDir(): string {
  // src/proxy (tsx/vitest) or dist/src/proxy (compiled): walk up to the directory with binding.gyp.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp'))) return join(dir, 'build', 'Release');
    const parent = dirname(dir);
    if (parent === dir) throw new Error('fusetrace: cannot find binding.gyp above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

let addon: Addon | undefined;

/** The loaded addon. */
export function native(): Addon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    addon = require(join(buildDir(), 'fusetrace.node')) as Addon;
  }
  return addon;
}

/** The LD_PRELOAD library of in-process recording (native/preload.c). */
export function preloadPath(): string {
  return join(buildDir(), 'libfusetrace-preload.so');
}

/** Path of the exec helper that installs the seccomp filter (native/exec_helper.c). */
export function execHelperPath(): string {
  return join(buildDir(), 'fusetrace-exec');
}
