/**
 * The one exchange the proxy changes: FUSE_INIT.
 *
 * Kernel -> server: capability bits that only work when the server holds a real /dev/fuse fd are
 * cleared, so the server never relies on them:
 *  - FUSE_PASSTHROUGH: backing files are registered with FUSE_DEV_IOC_BACKING_OPEN on /dev/fuse;
 *  - FUSE_OVER_IO_URING: io_uring commands are issued on the /dev/fuse fd;
 *  - FUSE_HAS_INODE_DAX, FUSE_MAP_ALIGNMENT: DAX windows set up by FUSE_SETUPMAPPING on a
 *    virtio-fs device;
 * (FUSE_DEV_IOC_CLONE, used by libfuse's clone_fd, has no INIT bit: on a socket the ioctl fails and
 * libfuse keeps using the one fd.)
 *
 * Server -> kernel: max_write and max_pages are clamped when the socket cannot carry the largest
 * frame they allow: a WRITE request is fuse_in_header (40) + fuse_write_in (40) + max_write bytes,
 * a READ reply fuse_out_header (16) + up to max_pages pages.
 */
import { INIT_FLAG } from '../protocol/flags.js';

/** Bits cleared in the kernel's INIT request, by name (fuse.h 7.45). */
export const MASKED_INIT_FLAGS = ['FUSE_PASSTHROUGH', 'FUSE_OVER_IO_URING', 'FUSE_HAS_INODE_DAX', 'FUSE_MAP_ALIGNMENT'] as const;

/** The mask as one u64 (flags | flags2 << 32). */
export function initMask(): bigint {
  let m = 0n;
  for (const name of MASKED_INIT_FLAGS) {
    const bit = INIT_FLAG[name];
    if (bit === undefined) throw new Error(`protocol/flags.ts has no ${name}`);
    m |= bit;
  }
  return m;
}

/** fuse_in_header + fuse_write_in, in front of the data of a WRITE request. */
export const WRITE_OVERHEAD = 80;
export const PAGE_SIZE = 4096;

/** The INIT reply limits that let every frame fit in `maxFrame` bytes. */
export function frameLimits(maxFrame: number): { maxPages: number; maxWrite: number } {
  const maxPages = Math.floor((maxFrame - WRITE_OVERHEAD) / PAGE_SIZE);
  return { maxPages, maxWrite: maxPages * PAGE_SIZE };
}

/** Names of the bits set in `v`. */
function flagNames(v: bigint): string[] {
  return Object.entries(INIT_FLAG)
    .filter(([, bit]) => (v & bit) !== 0n)
    .map(([n]) => n);
}

/** What the INIT exchange looked like, as the pump reports it (see native.ts PumpInitInfo). */
export interface InitSeen {
  kernelFlags: bigint;
  kernelFlagsForwarded: bigint;
  maxWrite: number;
  maxWriteForwarded: number;
  hasMaxPages: boolean;
  maxPages: number;
  maxPagesForwarded: number;
}

/** The sessions.init_changes JSON: what the proxy changed and the original values. */
export function initChanges(seen: InitSeen, maxFrame: number): object {
  const masked = seen.kernelFlags & ~seen.kernelFlagsForwarded;
  return {
    maskedFlags: flagNames(masked),
    kernelFlags: '0x' + seen.kernelFlags.toString(16),
    kernelFlagsForwarded: '0x' + seen.kernelFlagsForwarded.toString(16),
    maxWrite: { server: seen.maxWrite, forwarded: seen.maxWriteForwarded },
    maxPages: seen.hasMaxPages ? { server: seen.maxPages, forwarded: seen.maxPagesForwarded } : null,
    clamped: seen.maxWrite !== seen.maxWriteForwarded || seen.maxPages !== seen.maxPagesForwarded,
    maxFrame,
  };
}
