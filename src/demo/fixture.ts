/**
 * Where the demo server lives, for `fusetrace demo`, tests and replays: a deterministic FUSE server
 * that needs nothing but Node. Importing this module has no side effects (server.ts runs when executed).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root: the first directory above this module holding package.json (works from dist/ and from src/ under vitest). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

/** The compiled demo server (tsc -p tsconfig.build.json puts it there; `npm ci` runs that as `prepare`). */
export function demoServerPath(): string {
  return join(packageRoot(), 'dist', 'src', 'demo', 'server.js');
}

/**
 * The demo server's argv: [node, server.js, mountpoint?]. With a mountpoint, for
 * `fusetrace record -- ...` (record mounts it and substitutes /dev/fd/3); without, for
 * `fusetrace replay SESSION -- ...` (the replayer appends /dev/fd/N when there is no mountpoint).
 */
export function demoServerArgv(mountpoint?: string): string[] {
  return [process.execPath, demoServerPath(), ...(mountpoint === undefined ? [] : [mountpoint])];
}

/** bin/fusetrace.js, to run the CLI as a child process. */
export function cliPath(): string {
  return join(packageRoot(), 'bin', 'fusetrace.js');
}
