import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry, runDirect } from './helpers/mount.js';
import {
  copyInOut, deterministicSha256, fileChurn, findStat, lsTree, makeManyFiles, populateTree, sequentialRead,
  writeDeterministicFile,
} from './helpers/workloads.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => requireFuse());

async function passthrough() {
  const src = reg.tempDir('fusetrace-src-');
  const mnt = reg.mountpoint();
  const fs = await runDirect(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, { registry: reg });
  return { src, mnt, fs };
}

describe('workloads on a direct passthrough_ll mount', () => {
  it('copyInOut: 64 MiB in and out with matching sha256', async () => {
    const { mnt } = await passthrough();
    const r = await copyInOut(mnt, { mb: 64 });
    expect(r.expected).toBe(deterministicSha256(64 * 1024 * 1024));
    expect(r).toEqual({ bytes: 64 << 20, expected: r.expected, readBack: r.expected, copiedOut: r.expected, statSize: 64 << 20 });
    // Another seed gives other data: the checksum really depends on the bytes.
    expect(deterministicSha256(1 << 20, 'other')).not.toBe(deterministicSha256(1 << 20));
  });

  it('lsTree: the mount lists exactly what the source tree holds', async () => {
    const { src, mnt } = await passthrough();
    expect(populateTree(join(src, 'tree'))).toBe(5 * (1 + 3 + 9));
    expect(await lsTree(join(mnt, 'tree'))).toContain('link-to-first -> file-0-0.txt');
    const viaMount = await lsTree(join(mnt, 'tree'));
    expect(viaMount).toBe(await lsTree(join(src, 'tree')));
    expect(viaMount).toMatch(/-rwxr-xr-x 1 \d+ \d+ \d+ file-2-2\.txt/);
    expect(viaMount).toMatch(/link-to-first -> file-0-0\.txt/);
  });

  it('fileChurn: 2,000 files through every phase, same summaries as on the source file system', async () => {
    const { src, mnt } = await passthrough();
    const viaMount = fileChurn(mnt);
    expect(viaMount.map((p) => [p.phase, p.entries, p.links])).toEqual([
      ['create', 2000, 2000], ['rename', 2000, 2000], ['link', 3000, 5000], ['chmod', 3000, 5000], ['remove', 0, 0],
    ]);
    expect(viaMount).toEqual(fileChurn(src));
  });

  it('findStat and sequentialRead see the source tree', async () => {
    const { src, mnt } = await passthrough();
    makeManyFiles(join(src, 'many'), 2000, 500);
    const sha = writeDeterministicFile(join(src, 'big.bin'), 8 << 20);
    const r = await findStat(mnt);
    expect(r.entries).toBe(2000 + 4 + 1 + 1 + 1); // files, 4 dirs, many/, big.bin, the root
    expect(r).toEqual(await findStat(src));
    expect(sequentialRead(join(mnt, 'big.bin'), { hash: true })).toEqual({ bytes: 8 << 20, sha256: sha });
  });
});
