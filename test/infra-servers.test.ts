// Every scenario of the test servers, proven on a DIRECT mount (no fusetrace in between), so
// that a difference seen through `fusetrace record` is fusetrace's.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildServer } from './helpers/build.js';
import { CleanupRegistry, cleanupMount, isMounted, runDirect, waitExit } from './helpers/mount.js';
import { gocryptfsArgs, gocryptfsInit } from './helpers/gocryptfs.js';
import { sha256File, writeDeterministicFile } from './helpers/workloads.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => requireFuse());

async function interruptFs(extra: string[] = []) {
  const mnt = reg.mountpoint();
  const fs = await runDirect(buildServer('interrupt_fs'), ['-f', '--delay-ms=300', '--wait-ms=10000', ...extra], mnt, { registry: reg });
  const stats = () => Object.fromEntries(
    readFileSync(join(mnt, 'stats'), 'utf8').trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]),
  ) as Record<string, number>;
  return { mnt, fs, stats };
}

/** Runs sigread: one read(2) of `file`, SIGINT to the reader after `delayMs`. */
function sigread(file: string, delayMs: number): string {
  const r = spawnSync(buildServer('sigread'), [file, String(delayMs)], { encoding: 'utf8', timeout: 20_000 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('interrupt_fs on a direct mount', () => {
  it('lists its scenario files', async () => {
    const { mnt } = await interruptFs();
    expect(readdirSync(mnt).sort()).toEqual([
      'blackhole', 'ctl_inval_entry', 'ctl_inval_inode', 'ctl_retrieve', 'ctl_store', 'data', 'eio', 'retrieved',
      'slow', 'slow_eagain', 'slow_eintr', 'slow_ignore', 'stats',
    ]);
  });

  it('slow_eintr: the INTERRUPT is answered EINTR and read(2) fails with EINTR', async () => {
    const { mnt, stats } = await interruptFs();
    expect(sigread(join(mnt, 'slow_eintr'), 200)).toMatch(/^error EINTR signal=1 ms=(\d+)$/);
    expect(stats()).toMatchObject({ interrupts: 1, eagain_sent: 0 });
  });

  it('slow_ignore: the server answers normally after the INTERRUPT and read(2) gets the data', async () => {
    const { mnt, stats } = await interruptFs();
    expect(sigread(join(mnt, 'slow_ignore'), 200)).toMatch(/^data 12 slow answer\\x0a signal=1 ms=\d+$/);
    expect(stats()).toMatchObject({ interrupts: 1 });
  });

  it('slow_eagain: the first INTERRUPT is answered EAGAIN, the kernel sends it again, then EINTR', async () => {
    const { mnt, stats } = await interruptFs();
    expect(sigread(join(mnt, 'slow_eagain'), 200)).toMatch(/^error EINTR signal=1/);
    expect(stats()).toMatchObject({ interrupts: 2, eagain_sent: 1 });
  });

  it('a cat of slow_eintr killed with SIGINT dies by the signal and the server sees the INTERRUPT', async () => {
    const { mnt, stats } = await interruptFs();
    const cat = reg.process(spawn('cat', [join(mnt, 'slow_eintr')], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 300));
    expect(cat.exitCode).toBeNull();
    cat.kill('SIGINT');
    expect(await waitExit(cat)).toEqual({ code: null, signal: 'SIGINT' });
    expect(stats().interrupts).toBe(1);
  });

  it('slow answers after --delay-ms, eio answers EIO', async () => {
    const { mnt } = await interruptFs();
    const t0 = Date.now();
    expect(readFileSync(join(mnt, 'slow'), 'utf8')).toBe('slow answer\n');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(() => readFileSync(join(mnt, 'eio'))).toThrow(expect.objectContaining({ code: 'EIO' }));
  });

  it('notifications: INVAL_INODE, INVAL_ENTRY, STORE, and RETRIEVE answered by a NOTIFY_REPLY', async () => {
    const { mnt, stats } = await interruptFs();
    const data = join(mnt, 'data');
    const ctl = (name: string) => expect(readFileSync(join(mnt, name), 'utf8')).toBe('ok\n');
    expect(readFileSync(data, 'utf8')).toMatch(/^generation 0 +\n$/);
    expect(readFileSync(data, 'utf8')).toMatch(/^generation 0 +\n$/);
    expect(stats()).toMatchObject({ data_reads: 1, data_lookups: 1 }); // kept in the page cache
    ctl('ctl_inval_inode');
    expect(readFileSync(data, 'utf8')).toMatch(/^generation 1 +\n$/);
    expect(stats()).toMatchObject({ data_reads: 2, data_generation: 1 });
    ctl('ctl_store');
    expect(readFileSync(data, 'utf8')).toMatch(/^stored by notify 1 +\n$/);
    expect(stats().data_reads).toBe(2); // served from what NOTIFY_STORE put in the page cache
    ctl('ctl_retrieve');
    expect(readFileSync(join(mnt, 'retrieved'), 'utf8')).toMatch(/^stored by notify 1 +\n$/);
    expect(stats().retrieve_replies).toBe(1);
    statSync(data);
    expect(stats().data_lookups).toBe(1);
    ctl('ctl_inval_entry');
    statSync(data);
    expect(stats().data_lookups).toBe(2);
  });

  it('blackhole: a WRITE never answered keeps the writer waiting until the connection is aborted', async () => {
    const { mnt, fs } = await interruptFs();
    const writer = reg.process(spawn('sh', ['-c', `echo hi > ${join(mnt, 'blackhole')}`], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 500));
    expect(writer.exitCode).toBeNull();
    expect(await cleanupMount(mnt)).toBe('abort');
    expect((await waitExit(writer)).code).not.toBe(0);
    expect(isMounted(mnt)).toBe(false);
    await fs.exited;
  });
});

describe('splice_fs on a direct mount', () => {
  it('serves a 4 MiB file correctly with splice-write replies larger than 61 KiB', async () => {
    const dir = reg.tempDir();
    const src = join(dir, 'source.bin');
    const sha = writeDeterministicFile(src, 4 << 20, 'splice');
    const trace = join(dir, 'strace.out');
    const mnt = reg.mountpoint();
    await runDirect('strace', ['-f', '-e', 'trace=splice', '-o', trace, buildServer('splice_fs'), '-f', `--source=${src}`], mnt, { registry: reg });
    expect(statSync(join(mnt, 'big')).size).toBe(4 << 20);
    expect(await sha256File(join(mnt, 'big'))).toEqual({ sha256: sha, bytes: 4 << 20 });
    // The reply goes pipe -> /dev/fuse with SPLICE_F_MOVE: 16-byte header + data.
    const sizes = [...readFileSync(trace, 'utf8').matchAll(/splice\(\d+, NULL, \d+, NULL, (\d+), SPLICE_F_MOVE\) = (\d+)/g)]
      .map((m) => Number(m[2]));
    expect(sizes.length).toBeGreaterThan(0);
    expect(Math.max(...sizes)).toBeGreaterThan(61 * 1024);
  });

  it('--direct-io turns one read(2) of 1 MiB into large READs, same bytes', async () => {
    const dir = reg.tempDir();
    const src = join(dir, 'source.bin');
    const sha = writeDeterministicFile(src, 3 << 20, 'splice-dio');
    const mnt = reg.mountpoint();
    await runDirect(buildServer('splice_fs'), ['-f', '--direct-io', `--source=${src}`], mnt, { registry: reg });
    expect(await sha256File(join(mnt, 'big'))).toEqual({ sha256: sha, bytes: 3 << 20 });
  });
});

describe('gocryptfs (go-fuse) on a direct mount', () => {
  it('initialises a cipher dir, mounts in the foreground, and encrypts what is written', async () => {
    const cipher = reg.tempDir('fusetrace-cipher-');
    gocryptfsInit(cipher);
    const mnt = reg.mountpoint();
    const fs = await runDirect('gocryptfs', gocryptfsArgs(cipher), mnt, { registry: reg });
    writeFileSync(join(mnt, 'secret.txt'), 'plain text\n');
    expect(readFileSync(join(mnt, 'secret.txt'), 'utf8')).toBe('plain text\n');
    const stored = readdirSync(cipher).filter((n) => !n.startsWith('gocryptfs.'));
    expect(stored).toHaveLength(1);
    expect(stored[0]).not.toContain('secret');
    expect(readFileSync(join(cipher, stored[0])).includes('plain text')).toBe(false);
    expect(await fs.stop()).toEqual({ code: 0, signal: null });
  });
});
