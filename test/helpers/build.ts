// Compiles the C FUSE servers the tests run: libfuse's shipped examples and our own test/servers.
//
// Binaries are cached in test/.tmp/build (git-ignored) and rebuilt when the source (or a header
// next to it) is newer. Two test files may build the same binary at once, so each build writes to a
// unique temporary name and rename(2)s it into place, which is atomic within one directory.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { repoRoot } from './fuse-env.js';

/** Where Debian's libfuse3-dev installs the example file systems. */
export const LIBFUSE_EXAMPLES_DIR = '/usr/share/doc/libfuse3-dev/examples';

/** Cache directory of compiled servers. */
export function buildDir(): string {
  return join(repoRoot(), 'test', '.tmp', 'build');
}

let fuseFlags: string[] | undefined;

function pkgConfigFuse3(): string[] {
  if (fuseFlags) return fuseFlags;
  const r = spawnSync('pkg-config', ['fuse3', '--cflags', '--libs'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`pkg-config fuse3 failed: ${r.error?.message ?? r.stderr.trim()}`);
  }
  fuseFlags = r.stdout.trim().split(/\s+/).filter(Boolean);
  return fuseFlags;
}

/** Newest mtime of the source and the headers beside it (examples include passthrough_helpers.h). */
function sourceMtime(source: string): number {
  let newest = statSync(source).mtimeMs;
  const dir = dirname(source);
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.h')) newest = Math.max(newest, statSync(join(dir, name)).mtimeMs);
  }
  return newest;
}

/** Compiles `source` to `<buildDir>/<outName>` unless an up-to-date binary is there; returns its path. */
export function compileFuseProgram(source: string, outName: string, extraFlags: string[] = []): string {
  if (!existsSync(source)) throw new Error(`FUSE server source not found: ${source}`);
  const dir = buildDir();
  mkdirSync(dir, { recursive: true });
  const out = join(dir, outName);
  if (existsSync(out) && statSync(out).mtimeMs >= sourceMtime(source)) return out;
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  const args = [
    '-O2', '-Wall', '-g',
    '-I', dirname(source),
    source, '-o', tmp,
    ...extraFlags,
    ...pkgConfigFuse3(),
    '-lpthread',
  ];
  const r = spawnSync('gcc', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`gcc ${args.join(' ')} failed:\n${r.error?.message ?? r.stderr}`);
  }
  renameSync(tmp, out);
  return out;
}

/** Builds libfuse's example NAME (hello, hello_ll, passthrough, passthrough_ll, notify_inval_inode, ...). */
export function buildExample(name: string): string {
  return compileFuseProgram(join(LIBFUSE_EXAMPLES_DIR, `${name}.c`), `example-${name}`);
}

/** Builds our own test server test/servers/NAME.c (interrupt_fs, splice_fs, ...). */
export function buildServer(name: string): string {
  return compileFuseProgram(join(repoRoot(), 'test', 'servers', `${name}.c`), `server-${name}`);
}
