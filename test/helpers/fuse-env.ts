// Preconditions for tests that mount real FUSE filesystems.
//
// A FUSE test must never be skipped silently in CI: when the machine cannot run it, the test
// fails with one line that says what to install. Call requireFuse() in beforeAll (or at the top
// of a test) of every file that mounts something.
import { accessSync, closeSync, constants, existsSync, openSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FUSE_MISSING_MESSAGE =
  'FUSE tests need /dev/fuse and libfuse3-dev (apt-get install fuse3 libfuse3-dev pkg-config)';

let checked: string | null | undefined;

/** Returns why FUSE tests cannot run here, or null when they can. Cached per process. */
export function fuseUnavailableReason(): string | null {
  if (checked !== undefined) return checked;
  checked = probe();
  return checked;
}

function probe(): string | null {
  // Opening /dev/fuse read-write is what every mount does first (libfuse lib/mount.c);
  // a node that exists but is not usable (container without the device cgroup rule) fails here.
  try {
    const fd = openSync('/dev/fuse', constants.O_RDWR);
    closeSync(fd);
  } catch (err) {
    return `/dev/fuse is not usable: ${(err as Error).message}`;
  }
  const pc = spawnSync('pkg-config', ['--exists', 'fuse3'], { stdio: 'ignore' });
  if (pc.error || pc.status !== 0) return 'pkg-config does not know fuse3 (libfuse3-dev missing?)';
  const cc = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
  if (cc.error || cc.status !== 0) return 'gcc is missing';
  if (!existsSync('/usr/bin/fusermount3') && !onPath('fusermount3')) return 'fusermount3 is missing (package fuse3)';
  return null;
}

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      /* not in this directory */
    }
  }
  return false;
}

/** Throws (never skips) when /dev/fuse, libfuse3-dev, pkg-config or gcc is missing. */
export function requireFuse(): void {
  const reason = fuseUnavailableReason();
  if (reason !== null) throw new Error(`${FUSE_MISSING_MESSAGE}: ${reason}`);
}

/** The repository root (the directory holding package.json), from source or from dist/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the fusetrace repository root');
    dir = parent;
  }
}
