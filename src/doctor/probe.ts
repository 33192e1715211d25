import { closeSync, mkdtempSync, readSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeRequest, formatFlags, INIT_FLAG, INIT_FLAGS, OP } from '../protocol/index.js';
import { classifyMountOptions } from '../proxy/args.js';
import { initMask } from '../proxy/init.js';
import { mountAsRoot, mountWithFusermount, unmountFuse, type FuseMount } from '../proxy/mount.js';

/** What the kernel offered in a real FUSE_INIT request. */
export interface KernelInit {
  major: number;
  minor: number;
  /** flags | flags2 << 32 as offered (flags2 only with FUSE_INIT_EXT). */
  flags: bigint;
  /** The offered capabilities fusetrace clears before the server sees them (proxy/init.ts). */
  masked: string;
}

/** Bytes of one read from /dev/fuse: the kernel refuses buffers under FUSE_MIN_READ_BUFFER (8192). */
const READ_BUFFER = 64 * 1024;

/**
 * Mounts a FUSE connection on a temporary directory the way `record` would (mount(2) as root,
 * fusermount3 otherwise), reads the kernel's INIT request and unmounts without answering it.
 * The mountpoint is never touched while mounted: with INIT unanswered, any access would block on
 * our own mount (the self-deadlock hazard of record).
 */
export async function probeKernelInit(): Promise<KernelInit> {
  const dir = mkdtempSync(join(tmpdir(), 'fusetrace-doctor-'));
  let mount: FuseMount | undefined;
  try {
    const mo = classifyMountOptions([]);
    mount = process.getuid?.() === 0 ? mountAsRoot(dir, mo, 'fusetrace-doctor') : await mountWithFusermount(dir, mo, 'fusetrace-doctor');
    const buf = Buffer.alloc(READ_BUFFER);
    // INIT is queued when the mount is made (fs/fuse/inode.c fuse_send_init), so this read returns at once.
    const n = readSync(mount.devFd, buf, 0, buf.length, null);
    const res = decodeRequest(buf.subarray(0, n));
    const frame = res.frame;
    const init = frame?.args[0];
    if (!frame || frame.opcode !== OP.INIT || !init) throw new Error('the first frame from /dev/fuse was not FUSE_INIT');
    const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : 0n);
    const lo = big(init.flags);
    const flags = lo | ((lo & INIT_FLAG.FUSE_INIT_EXT) !== 0n ? big(init.flags2) << 32n : 0n);
    const masked = flags & initMask();
    return {
      major: Number(init.major),
      minor: Number(init.minor),
      flags,
      masked: masked === 0n ? 'none' : formatFlags(INIT_FLAGS, masked),
    };
  } finally {
    if (mount) {
      try {
        await unmountFuse(mount);
      } finally {
        closeSync(mount.devFd);
      }
    }
    rmdirSync(dir);
  }
}
