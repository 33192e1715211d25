import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { FUSE_MISSING_MESSAGE, fuseUnavailableReason, repoRoot, requireFuse } from './helpers/fuse-env.js';
import { buildDir, buildExample, compileFuseProgram, LIBFUSE_EXAMPLES_DIR } from './helpers/build.js';
import { CleanupRegistry } from './helpers/mount.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());

describe('requireFuse', () => {
  it('finds /dev/fuse, libfuse3-dev, gcc and fusermount3 on this machine, and names the packages otherwise', () => {
    expect(fuseUnavailableReason()).toBeNull();
    expect(() => requireFuse()).not.toThrow();
    expect(FUSE_MISSING_MESSAGE).toBe('FUSE tests need /dev/fuse and libfuse3-dev (apt-get install fuse3 libfuse3-dev pkg-config)');
    expect(statSync(join(repoRoot(), 'package.json')).isFile()).toBe(true);
  });
});

describe('buildExample / compileFuseProgram', () => {
  it('compiles every libfuse example the tests use, and caches the binary', () => {
    requireFuse();
    for (const name of ['hello', 'hello_ll', 'passthrough', 'passthrough_ll', 'passthrough_fh', 'notify_inval_inode', 'notify_store_retrieve']) {
      const bin = buildExample(name);
      const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
      expect(help.stdout + help.stderr, name).toMatch(/usage|options/i);
      const before = statSync(bin).mtimeMs;
      expect(buildExample(name)).toBe(bin);
      expect(statSync(bin).mtimeMs).toBe(before);
    }
  });

  it('rebuilds when the source is newer, through a temporary name renamed into place', () => {
    requireFuse();
    const dir = reg.tempDir();
    const src = join(dir, 'hello.c');
    copyFileSync(join(LIBFUSE_EXAMPLES_DIR, 'hello.c'), src);
    const outName = `infra-test-hello-${process.pid}`;
    reg.defer(() => rmSync(join(buildDir(), outName), { force: true }));
    utimesSync(src, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
    const bin = compileFuseProgram(src, outName);
    const first = statSync(bin).mtimeMs;
    expect(compileFuseProgram(src, outName)).toBe(bin);
    expect(statSync(bin).mtimeMs).toBe(first);
    utimesSync(src, new Date(), new Date(Date.now() + 60_000));
    compileFuseProgram(src, outName);
    expect(statSync(bin).mtimeMs).toBeGreaterThan(first);
    expect(readdirSync(buildDir()).filter((n) => n.startsWith(`${outName}.tmp-`))).toEqual([]);
  });

  it('reports a compile error with gcc output', () => {
    requireFuse();
    const dir = reg.tempDir();
    const src = join(dir, 'broken.c');
    copyFileSync(join(LIBFUSE_EXAMPLES_DIR, 'hello.c'), src);
    spawnSync('sh', ['-c', `echo 'this is not C;' >> ${src}`]);
    expect(() => compileFuseProgram(src, `infra-test-broken-${process.pid}`)).toThrow(/gcc .* failed:[\s\S]*error/);
  });
});
