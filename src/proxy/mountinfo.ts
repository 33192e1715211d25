/**
 * /proc/self/mountinfo, the one place fusetrace learns about mounts: never stat() a FUSE mountpoint
 * to find out (before INIT is answered that blocks on our own mount; on a wedged server it hangs).
 */
import { readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountEntry {
  mountId: number;
  /** st_dev "major:minor"; for FUSE the minor is the fusectl connection number. */
  device: string;
  mountPoint: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Decodes the octal escapes (\040 for space, ...) the kernel writes into mountinfo paths. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/self/mountinfo. */
export function readMountInfo(): MountEntry[] {
  return readMountInfoFile('/proc/self/mountinfo');
}

/** Parses a mountinfo file (another process's mount namespace: /proc/PID/mountinfo); [] if unreadable. */
export function readMountInfoFile(path: string): MountEntry[] {
  const out: MountEntry[] = [];
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    out.push({
      mountId: Number(f[0]),
      device: f[2],
      mountPoint: unescapeMountPath(f[4]),
      fsType: f[sep + 1],
      source: unescapeMountPath(f[sep + 2] ?? ''),
      superOptions: f[sep + 3] ?? '',
    });
  }
  return out;
}

/** Absolute path of `dir` resolving only its parent (never stats a possibly-FUSE `dir` itself). */
export function canonicalMountPath(dir: string): string {
  let parent = dirname(dir);
  try {
    parent = realpathSync(parent);
  } catch {
    /* keep as given */
  }
  return join(parent, basename(dir));
}
