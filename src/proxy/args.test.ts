import { describe, expect, it } from 'vitest';
import { classifyMountOptions, collectDashO, findMountpoint, MS_NODEV, MS_NOSUID, splitOptions } from './args.js';
import { frameLimits, initChanges, initMask } from './init.js';

describe('findMountpoint', () => {
  const dirs = new Set(['/mnt', '/src', 'rel']);
  const isDir = (p: string) => dirs.has(p);

  it('takes the last non-option argument that is a directory, skipping -o values', () => {
    expect(findMountpoint(['srv', '-f', '-o', 'source=/src', '/src', '/mnt'], isDir)).toEqual({ mountIndex: 5, mountpoint: '/mnt' });
    expect(findMountpoint(['srv', '/mnt', '-o', '/src'], isDir)).toEqual({ mountIndex: 1, mountpoint: '/mnt' });
    expect(findMountpoint(['srv', '/mnt', 'not-a-dir'], isDir)).toEqual({ mountIndex: 1, mountpoint: '/mnt' });
    expect(findMountpoint(['srv', '-f'], isDir)).toBeUndefined();
  });

  it('counts arguments after -- even when they look like options', () => {
    expect(findMountpoint(['srv', '--', '-weird'], (p) => p === '-weird')).toEqual({ mountIndex: 2, mountpoint: '-weird' });
  });

  it('--mountpoint picks the argument it names', () => {
    expect(findMountpoint(['srv', '/src', '/mnt'], isDir, '/src')).toEqual({ mountIndex: 1, mountpoint: '/src' });
    expect(findMountpoint(['srv', '/src'], isDir, '/other')).toBeUndefined();
  });
});

describe('mount options', () => {
  it('collects -o in both spellings and splits with \\, escapes', () => {
    expect(collectDashO(['srv', '-o', 'ro,fsname=a\\,b', '-oallow_other', '-d', '--', '-o', 'x'])).toEqual(['ro', 'fsname=a,b', 'allow_other']);
    expect(splitOptions('a,,b')).toEqual(['a', 'b']);
  });

  it('sorts options into MS_ flags, kernel options, names and libfuse-only leftovers', () => {
    const mo = classifyMountOptions(['ro', 'allow_other', 'default_permissions', 'fsname=myfs', 'subtype=t', 'clone_fd', 'max_idle_threads=4', 'suid', 'max_read=4096']);
    expect(mo.flags).toBe((MS_NOSUID | MS_NODEV | 1) & ~MS_NOSUID);
    expect(mo.kernel).toEqual(['allow_other', 'default_permissions', 'max_read=4096']);
    expect(mo.fsname).toBe('myfs');
    expect(mo.subtype).toBe('t');
    expect(mo.ignored).toEqual(['clone_fd', 'max_idle_threads=4']);
    expect(mo.all).not.toContain('clone_fd');
  });

  it('allow_root mounts with allow_other', () => {
    expect(classifyMountOptions(['allow_root']).kernel).toEqual(['allow_other']);
  });
});

describe('INIT policy', () => {
  it('masks passthrough, io_uring and the DAX bits (fuse.h 7.45 bit numbers)', () => {
    expect(initMask()).toBe((1n << 37n) | (1n << 41n) | (1n << 33n) | (1n << 26n));
  });

  it('frame limits leave room for the WRITE headers', () => {
    expect(frameLimits(256 * 4096 + 4096)).toEqual({ maxPages: 256, maxWrite: 256 * 4096 });
    expect(frameLimits(261600)).toEqual({ maxPages: 63, maxWrite: 63 * 4096 });
  });

  it('init_changes names the masked bits and keeps the originals', () => {
    const c = initChanges(
      { kernelFlags: (1n << 37n) | 1n, kernelFlagsForwarded: 1n, maxWrite: 1 << 20, maxWriteForwarded: 258048, hasMaxPages: true, maxPages: 256, maxPagesForwarded: 63 },
      261600,
    ) as Record<string, unknown>;
    expect(c).toMatchObject({ maskedFlags: ['FUSE_PASSTHROUGH'], maxWrite: { server: 1 << 20, forwarded: 258048 }, maxPages: { server: 256, forwarded: 63 }, clamped: true });
  });
});
