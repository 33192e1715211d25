// The FUSE server families the mount interception is tested with (issue 11): one of each way a
// server can mount. Each case builds its server's argv (without the mountpoint, which comes last)
// in a fresh directory, and says what a reader sees through the mount.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildExample } from './build.js';
import { gocryptfsArgs, gocryptfsInit } from './gocryptfs.js';

export interface ServerCase {
  name: string;
  /** The server's argv without the mountpoint (appended last), built in a fresh directory. */
  setup(dir: string): string[];
  /** What a reader sees through the mount (compared between the direct and the intercepted run). */
  check(mnt: string): string;
  /** The tool must be installed (never skipped: a missing package fails the test). */
  bin?: string;
}

export const readTree = (mnt: string) => JSON.stringify(readdirSync(mnt).sort()) + readFileSync(join(mnt, 'a'), 'utf8');
export function source(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(src, { mode: 0o755 });
  chmodSync(src, 0o755);
  writeFileSync(join(src, 'a'), 'content of a\n', { mode: 0o644 });
  return src;
}

export const CASES: ServerCase[] = [
  { name: 'passthrough_ll (libfuse 3)', setup: (d) => [buildExample('passthrough_ll'), '-f', '-o', `source=${source(d)}`], check: readTree },
  { name: 'unionfs-fuse (libfuse 2)', bin: 'unionfs-fuse', setup: (d) => ['unionfs-fuse', '-f', source(d)], check: readTree },
  { name: 'mergerfs (static, own libfuse)', bin: 'mergerfs', setup: (d) => ['mergerfs', '-f', source(d)], check: readTree },
  {
    name: 'rclone mount (bazil, through fusermount3)',
    bin: 'rclone',
    setup: (d) => ['rclone', 'mount', '--config', '/dev/null', source(d)],
    check: readTree,
  },
  {
    // go-fuse through fusermount3. Debian 12's rclone 1.60.1 has mount2 as a hidden command:
    // `rclone help` lists only `mount`, but `rclone mount2 --help` documents it and it mounts.
    // After its mount go-fuse opens a file in its own mountpoint (pollHack), which replay serves
    // from a mount namespace of the server's own (src/replay/link.ts).
    name: 'rclone mount2 (go-fuse, through fusermount3)',
    bin: 'rclone',
    setup: (d) => ['rclone', 'mount2', '--config', '/dev/null', source(d)],
    check: readTree,
  },
  {
    name: 'gocryptfs (go-fuse; max_read)',
    bin: 'gocryptfs',
    setup: (d) => {
      const c = join(d, 'cipher');
      mkdirSync(c);
      gocryptfsInit(c);
      return ['gocryptfs', ...gocryptfsArgs(c)];
    },
    check: (mnt) => {
      writeFileSync(join(mnt, 'a'), 'written through gocryptfs\n');
      const out = readTree(mnt);
      rmSync(join(mnt, 'a'));
      return out;
    },
  },
  {
    name: 'fuse-overlayfs (allow_other and noatime set in its code)',
    bin: 'fuse-overlayfs',
    setup: (d) => {
      const upper = join(d, 'upper');
      const work = join(d, 'work');
      mkdirSync(upper);
      mkdirSync(work);
      return ['fuse-overlayfs', '-f', '-o', `lowerdir=${source(d)},upperdir=${upper},workdir=${work}`];
    },
    check: readTree,
  },
];

export function requireBin(bin?: string): void {
  if (!bin) return;
  const r = spawnSync('sh', ['-c', `command -v ${bin}`]);
  if (r.status !== 0) throw new Error(`${bin} is not installed (see .ci/run's apt-get line)`);
}

