// `fusetrace doctor` on the real machine: as root where everything is in place, and as an ordinary
// user inside a private mount namespace where /dev/fuse is a 0600 node (no access) or a 0666 node
// (access), so the host's /dev/fuse is never changed (helpers/as-user.ts).
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { requireFuse, repoRoot } from './helpers/fuse-env.js';
import { CleanupRegistry, readMountInfo } from './helpers/mount.js';
import { join } from 'node:path';
import { asUser } from './helpers/as-user.js';

requireFuse();
const CLI = join(repoRoot(), 'bin', 'fusetrace.js');
const reg = new CleanupRegistry();
afterAll(() => reg.cleanup());

const NOBODY = 65534;

function doctorAsUser(devMode: string): { status: number | null; stdout: string; stderr: string } {
  const dbDir = reg.tempDir('fusetrace-doctor-db-');
  spawnSync('chown', [`${NOBODY}:${NOBODY}`, dbDir]);
  const u = asUser(NOBODY, [process.execPath, CLI, '--db', join(dbDir, 't.db'), 'doctor'], { devMode });
  try {
    const r = spawnSync(u.cmd, u.args, { encoding: 'utf8', timeout: 30_000, cwd: dbDir });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    u.cleanup();
  }
}

describe('fusetrace doctor', () => {
  it('as root on this machine: recording can work, with a real INIT read from a test mount', () => {
    const before = readMountInfo().length;
    const r = spawnSync(process.execPath, [CLI, 'doctor'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ok {4}\/dev\/fuse: character device, mode \d+, read\/write for this user$/m);
    expect(r.stdout).toMatch(/^ok {4}privileges: running as root: mounts with mount\(2\)$/m);
    expect(r.stdout).toMatch(/^ok {4}kernel protocol: a test mount got FUSE 7\.(\d+); masked from servers: /m);
    // The library record preloads into servers really loads into a program here.
    expect(r.stdout).toMatch(/^ok {4}in-process recording: /m);
    // A real FUSE mount(2) of the exec helper's probe went through user notification and ADDFD.
    expect(r.stdout).toMatch(/^ok {4}mount interception: a FUSE mount\(2\) was intercepted \(fuse\.fusetrace-probe \/ fd=\d+\) and answered with ADDFD/m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('recording can work on this machine');
    expect(readMountInfo().length).toBe(before); // the test mount is gone
  });

  it('as an ordinary user without access to /dev/fuse: exit 1 with the exact advice', () => {
    const r = doctorAsUser('0600');
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(
      'FAIL  /dev/fuse: mode 600, not read/write for uid 65534  -> chmod 0666 /dev/fuse (the usual mode; fusermount3 opens it with your own permissions), or run as root',
    );
    expect(r.stdout).toContain('FAIL  kernel protocol: a test mount failed: skipped: no way to mount (see above)');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('recording cannot work here: 2 check(s) failed');
  });

  it('as an ordinary user with a usable /dev/fuse: fusermount3 mounts, INIT is read, exit 0', () => {
    const r = doctorAsUser('0666');
    expect(r.stdout).toContain('ok    /dev/fuse: character device, mode 666, read/write for this user');
    expect(r.stdout).toContain('ok    privileges: not root: mounts through /usr/bin/fusermount3 (setuid root)');
    expect(r.stdout).toMatch(/^ok {4}kernel protocol: a test mount got FUSE 7\.\d+; masked from servers: /m);
    // As an ordinary user the filter comes with no_new_privs; notification and ADDFD work alike.
    expect(r.stdout).toMatch(/^ok {4}mount interception: /m);
    expect(r.status).toBe(0);
  });
});
