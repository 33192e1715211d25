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
 * The demo server's argv: [node, server.js, mountpoint]. Give it to `fusetrace record -- ...` with
 * the mountpoint, or to `fusetrace replay SESSION -- ...` (the replayer appends or substitutes
 * /dev/fd/N). The mountpoint defaults to /dev/fd/3, what record and replay hand the server.
 */
export function demoServerArgv(mountpoint = '/dev/fd/3'): string[] {
  return [process.execPath, demoServerPath(), mountpoint];
}

/** bin/fusetrace.js, to run the CLI as a child process. */
export function cliPath(): string {
  return join(packageRoot(), 'bin', 'fusetrace.js');
}
