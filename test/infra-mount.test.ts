import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry, cleanupMount, isMounted, mountAt, readMountInfo, runDirect, waitExit } from './helpers/mount.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => requireFuse());

describe('runDirect / cleanupMount', () => {
  it('mounts hello_ll directly, sees it in mountinfo, and stop() unmounts and reaps the server', async () => {
    const mnt = reg.mountpoint();
    const fs = await runDirect(buildExample('hello_ll'), ['-f'], mnt, { registry: reg });
    expect(isMounted(mnt)).toBe(true);
    expect(mountAt(mnt)?.fsType).toMatch(/^fuse/);
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    const exit = await fs.stop();
    expect(isMounted(mnt)).toBe(false);
    expect(exit).toEqual({ code: 0, signal: null });
  });

  it('reports a server that fails before mounting, with its output', async () => {
    const mnt = reg.mountpoint();
    await expect(runDirect(buildExample('hello_ll'), ['-f', '--no-such-option'], mnt, { registry: reg }))
      .rejects.toThrow(/exited .* before mounting[\s\S]*no-such-option/);
  });

  it('ends a wedged connection (stopped server, busy mount) through fusectl abort, not a lazy unmount', async () => {
    const mnt = reg.mountpoint();
    const fs = await runDirect(buildExample('hello_ll'), ['-f'], mnt, { registry: reg });
    readFileSync(join(mnt, 'hello'));
    process.kill(fs.pid, 'SIGSTOP');
    reg.defer(() => { try { process.kill(fs.pid, 'SIGCONT'); } catch { /* gone */ } });
    // A reader blocked on the stopped server pins the mount: umount(2) says EBUSY.
    const reader = reg.process(spawn('cat', [join(mnt, 'hello')], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 200));
    expect(reader.exitCode).toBeNull();
    const fusectlBefore = readMountInfo().some((m) => m.fsType === 'fusectl');
    expect(await cleanupMount(mnt)).toBe('abort');
    expect(isMounted(mnt)).toBe(false);
    expect(existsSync(mnt)).toBe(false);
    // fusectl is left as it was found.
    expect(readMountInfo().some((m) => m.fsType === 'fusectl')).toBe(fusectlBefore);
    const r = await waitExit(reader);
    expect(r.code).toBe(1); // cat: ECONNABORTED from the aborted connection
    process.kill(fs.pid, 'SIGCONT');
    const exit = await fs.stop();
    expect(exit.signal === null || exit.signal === 'SIGTERM').toBe(true);
  });
});
