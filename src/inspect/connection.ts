/**
 * A FUSE mount and its kernel connection, found without touching the mount: the mount from
 * /proc/self/mountinfo, the connection from fusectl (Documentation/filesystems/fuse.rst, "Control
 * filesystem"). fusectl names each connection by the superblock's device number (fs/fuse/control.c
 * uses fc->dev): for `fuse` (anonymous superblock, st_dev 0:N) that is N; for `fuseblk` it is the
 * kernel's dev_t, major << 20 | minor.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { UserError } from '../errors.js';
import { canonicalMountPath, readMountInfo, type MountEntry } from '../proxy/mountinfo.js';

/** Where fusectl is mounted on every distribution that mounts it. */
export const FUSECTL_DIR = '/sys/fs/fuse/connections';

/** True for the filesystem types a FUSE superblock has in mountinfo. */
export function isFuseType(fsType: string): boolean {
  return fsType === 'fuse' || fsType === 'fuseblk' || fsType.startsWith('fuse.') || fsType.startsWith('fuseblk.');
}

/** The fusectl connection number of a mountinfo `major:minor` device. */
export function connectionId(device: string): number {
  const [major, minor] = device.split(':').map(Number);
  return major === 0 ? minor : major * 2 ** 20 + minor;
}

/** The mount `path` is on: the longest mountpoint that is a prefix of it (the topmost if stacked). */
function mountOf(path: string, mounts: MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const mp = m.mountPoint;
    const under = path === mp || mp === '/' || path.startsWith(mp + sep);
    if (under && (!best || mp.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/**
 * The FUSE mount that `path` (the mountpoint, or any path below it) is on. The path is resolved
 * lexically first: realpath(3) of a path inside a hung mount would itself hang. Only when that
 * finds no FUSE mount are the parent's symlinks resolved (never the path itself).
 */
export function findFuseMount(path: string): MountEntry {
  const mounts = readMountInfo();
  const lexical = resolve(path);
  let m = mountOf(lexical, mounts);
  if (!m || !isFuseType(m.fsType)) m = mountOf(canonicalMountPath(lexical), mounts) ?? m;
  if (!m) throw new UserError(`${path}: no mount found in /proc/self/mountinfo`);
  if (!isFuseType(m.fsType)) {
    throw new UserError(`${path} is not on a FUSE mount (it is on ${m.fsType} mounted at ${m.mountPoint})`);
  }
  return m;
}

/** The connection's counters (fs/fuse/control.c). */
export interface ConnectionInfo {
  id: number;
  dir: string;
  /** Requests allocated and not yet finished (fc->num_waiting): queued, being served, or background. */
  waiting: number;
  max_background: number;
  congestion_threshold: number;
}

function readCounter(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new UserError(`permission denied reading ${file}: run as root or as the mount's owner`);
    }
    throw err;
  }
}

/** Reads fusectl's files for connection `id`; a one-line error when fusectl is not mounted. */
export function readConnection(id: number): ConnectionInfo {
  const fusectlMounted = readMountInfo().some((m) => m.fsType === 'fusectl' && m.mountPoint === FUSECTL_DIR);
  if (!fusectlMounted) {
    throw new UserError(`fusectl is not mounted, so the connection cannot be inspected: mount -t fusectl none ${FUSECTL_DIR}`);
  }
  const dir = `${FUSECTL_DIR}/${id}`;
  if (!existsSync(dir)) throw new UserError(`no fusectl connection ${id} in ${FUSECTL_DIR} (the mount went away?)`);
  return {
    id,
    dir,
    waiting: readCounter(`${dir}/waiting`),
    max_background: readCounter(`${dir}/max_background`),
    congestion_threshold: readCounter(`${dir}/congestion_threshold`),
  };
}

/**
 * Aborts the connection: every request waiting for the server ends with ECONNABORTED, later ones
 * fail with ENOTCONN, and the server's next read of the device returns ENODEV (fs/fuse/dev.c,
 * fuse_abort_conn). The mount stays until it is unmounted.
 */
export function abortConnection(conn: ConnectionInfo): void {
  try {
    writeFileSync(`${conn.dir}/abort`, '1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new UserError(`permission denied writing ${conn.dir}/abort: run as root or as the mount's owner`);
    throw err;
  }
}
