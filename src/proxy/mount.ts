/**
 * Mounting and unmounting the /dev/fuse connection the proxy owns.
 *
 * As root: open /dev/fuse and mount(2) with fd=,rootmode=,user_id=,group_id= (fs/fuse/inode.c),
 * like libfuse's lib/mount.c fuse_mount_sys. As an ordinary user: fusermount3 does the mount and
 * passes the fd back over the _FUSE_COMMFD socket with SCM_RIGHTS (lib/mount.c
 * fuse_mount_fusermount, util/fusermount.c send_fd).
 *
 * Nothing here touches the mountpoint after the mount: a stat/realpath of our own mount before
 * the server has answered INIT blocks this process on itself. Mount state comes from
 * /proc/self/mountinfo.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import type { MountOptions } from './args.js';
import { native } from './native.js';

export { canonicalMountPath, readMountInfo, type MountEntry } from './mountinfo.js';
import { readMountInfo, type MountEntry } from './mountinfo.js';

/** The topmost mount on `path` (canonical), or undefined. */
export function mountAt(path: string): MountEntry | undefined {
  const all = readMountInfo().filter((m) => m.mountPoint === path);
  return all[all.length - 1];
}

/** How the connection was mounted, and how to undo it. */
export interface FuseMount {
  /** The /dev/fuse fd the proxy pumps. */
  devFd: number;
  mountpoint: string;
  /** 'mount' (root, mount(2)) or 'fusermount3'. */
  via: 'mount' | 'fusermount3';
  /** The mount(2) data string or fusermount3 -o string, for the session meta. */
  options: string;
}

/** Builds the comma-separated option string; commas inside values are escaped as libfuse does. */
function joinOptions(opts: string[]): string {
  return opts.join(',');
}

/** Mounts /dev/fuse on `mountpoint` with mount(2) (needs CAP_SYS_ADMIN). */
export function mountAsRoot(mountpoint: string, mo: MountOptions, progName: string): FuseMount {
  const st = statSync(mountpoint); // before the mount: still the directory underneath
  const devFd = openSync('/dev/fuse', 'r+');
  // fs/fuse/inode.c: rootmode is the root inode's file type in octal, user_id/group_id the owner
  // whose requests pass without allow_other.
  const data = [
    `fd=${devFd}`,
    `rootmode=${(st.mode & 0o170000).toString(8)}`,
    `user_id=${process.getuid!()}`,
    `group_id=${process.getgid!()}`,
    ...mo.kernel,
  ];
  const fstype = `fuse.${mo.subtype ?? progName}`;
  const source = mo.fsname ?? progName;
  try {
    native().mountFuse(source, mountpoint, fstype, mo.flags, joinOptions(data));
  } catch (err) {
    closeSync(devFd);
    throw err;
  }
  return { devFd, mountpoint, via: 'mount', options: joinOptions(data) };
}

/** umount2(2) flag: detach now, finish when no longer busy (include/linux/fs.h). */
export const MNT_DETACH = 2;

/** Result of a short child process. */
interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function waitChild(child: ReturnType<typeof spawn>): Promise<ChildResult> {
  return new Promise((resolve) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ code: null, signal: null, stderr: String(err) }));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/**
 * Mounts through fusermount3 (setuid root): it mounts, then sends the /dev/fuse fd over the
 * socket named by _FUSE_COMMFD and exits.
 */
export async function mountWithFusermount(mountpoint: string, mo: MountOptions, progName: string): Promise<FuseMount> {
  const opts = [...mo.all];
  if (!mo.fsname) opts.push(`fsname=${progName}`);
  if (!mo.subtype) opts.push(`subtype=${progName}`);
  return fusermountMount(mountpoint, joinOptions(opts));
}

/**
 * Runs the real fusermount3 with `-o optString` on `mountpoint` and receives the mounted /dev/fuse
 * fd over _FUSE_COMMFD (lib/mount.c fuse_mount_fusermount). Rejects with fusermount3's message.
 */
export async function fusermountMount(mountpoint: string, optString: string): Promise<FuseMount> {
  // Small buffers suffice: one message with one fd.
  const pair = native().seqpacketPair(65536);
  const [ours, theirs] = pair.fds;
  const child = spawn('fusermount3', ['-o', optString, '--', mountpoint], {
    stdio: ['ignore', 'inherit', 'pipe', theirs],
    env: { ...process.env, _FUSE_COMMFD: '3' },
  });
  closeSync(theirs); // else recvmsg never sees end-of-file when fusermount3 fails
  const done = waitChild(child);
  let devFd: number;
  try {
    devFd = await new Promise<number>((resolve, reject) => {
      // recvFd blocks this thread until fusermount3 sends or exits; it runs in its own process.
      setImmediate(() => {
        try {
          resolve(native().recvFd(ours));
        } catch (err) {
          reject(err);
        }
      });
    });
  } catch {
    const r = await done;
    closeSync(ours);
    throw new Error(`fusermount3 failed${r.code !== null ? ` (exit ${r.code})` : ''}: ${r.stderr.trim() || 'no fd received'}`);
  }
  closeSync(ours);
  const r = await done;
  if (r.code !== 0) {
    closeSync(devFd);
    throw new Error(`fusermount3 failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  return { devFd, mountpoint, via: 'fusermount3', options: optString };
}

/**
 * Unmounts without MNT_DETACH (a lazy unmount would hide a busy mount and expose the directory
 * underneath). Throws with the reason (EBUSY ...) when it cannot. `flags` are umount2's, for a
 * server whose own unmount fusetrace performs (libfuse unmounts with MNT_DETACH at exit).
 */
export async function unmountFuse(m: Pick<FuseMount, 'mountpoint' | 'via'>, flags = 0): Promise<void> {
  if (m.via === 'mount') {
    native().umount(m.mountpoint, flags);
    return;
  }
  // fusermount3 -z is its MNT_DETACH (util/fusermount.c); only a server's own lazy unmount asks for it.
  const lazy = flags & MNT_DETACH ? ['-z'] : [];
  for (let attempt = 1; ; attempt++) {
    const child = spawn('fusermount3', ['-u', ...lazy, '--', m.mountpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    const r = await waitChild(child);
    if (r.code === 0) return;
    // fusermount3 looks the mount up in /etc/mtab (/proc/self/mounts), which the kernel does not
    // read out atomically: while other mounts come and go (propagated from the parent namespace),
    // a line can be missed, and it says "entry for X not found in /etc/mtab" for a mount that is
    // there (seen beside other mounting work). Ask again; a mount that is really gone (a second
    // look at mountinfo agrees) was unmounted by someone else, which is all the caller wants.
    const notFound = /not found in/.test(r.stderr);
    if (notFound && attempt < UNMOUNT_NOT_FOUND_TRIES) {
      await new Promise((res) => setTimeout(res, 20 * attempt));
      continue;
    }
    if (notFound && !mountAt(m.mountpoint) && !mountAt(m.mountpoint)) return;
    throw new Error(`fusermount3 -u: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
}

/** How often fusermount3 -u is asked when it cannot find the mount in /etc/mtab (see unmountFuse). */
const UNMOUNT_NOT_FOUND_TRIES = 4;
