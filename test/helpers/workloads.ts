// Workloads run against a mounted directory. Each returns what it observed, in a form that is
// equal for two runs over the same server (direct mount vs through `fusetrace record`), so the
// e2e tests can compare them with toEqual and the bench can time them.
//
// Data is deterministic (AES-256-CTR keystream from a seed), so two runs write the same bytes and
// the expected sha256 is known without keeping the data. Files are streamed in 1 MiB chunks,
// never held whole in memory.
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  chmodSync, closeSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync,
  rmdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync, writeSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from './mount.js';

const MiB = 1024 * 1024;

/** Yields `bytes` deterministic pseudo-random bytes for `seed`, in chunks of at most `chunk`. */
export function* deterministicChunks(bytes: number, seed = 'fusetrace', chunk = MiB): Generator<Buffer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  for (let left = bytes; left > 0; left -= chunk) {
    const n = Math.min(chunk, left);
    yield cipher.update(n === chunk ? zeros : zeros.subarray(0, n));
  }
}

/** sha256 (hex) of the deterministic data for (bytes, seed). */
export function deterministicSha256(bytes: number, seed = 'fusetrace'): string {
  const h = createHash('sha256');
  for (const c of deterministicChunks(bytes, seed)) h.update(c);
  return h.digest('hex');
}

/** Writes the deterministic data to `path` (outside or inside a mount); returns its sha256. */
export function writeDeterministicFile(path: string, bytes: number, seed = 'fusetrace'): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (const c of deterministicChunks(bytes, seed)) {
      h.update(c);
      let off = 0;
      while (off < c.length) off += writeSync(fd, c, off);
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** Streams `path` and returns its sha256 and size. */
export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const fh = await open(path, 'r');
  const h = createHash('sha256');
  const buf = Buffer.alloc(MiB);
  let bytes = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { sha256: h.digest('hex'), bytes };
}

/** What copyInOut observed. Every sha256 equals `expected` when the file system is correct. */
export interface CopyResult {
  bytes: number;
  /** sha256 of the data generated and written into the mount. */
  expected: string;
  /** sha256 of the file read back from the mount. */
  readBack: string;
  /** sha256 of the copy made from the mount to a local temp file. */
  copiedOut: string;
  /** Size stat() reports for the file in the mount. */
  statSize: number;
}

/**
 * Workload (a): writes `mb` MiB of deterministic random data into `mountDir/name` in 1 MiB chunks,
 * reads it back, copies it out to a temp file outside the mount and hashes each step.
 * Removes the file from the mount afterwards unless `keep`.
 */
export async function copyInOut(mountDir: string, opts: { mb: number; seed?: string; name?: string; keep?: boolean }): Promise<CopyResult> {
  const bytes = opts.mb * MiB;
  const inMount = join(mountDir, opts.name ?? 'copy-in-out.bin');
  const h = createHash('sha256');
  const w = await open(inMount, 'w');
  try {
    for (const c of deterministicChunks(bytes, opts.seed)) {
      h.update(c);
      await w.write(c, 0, c.length);
    }
  } finally {
    await w.close();
  }
  const expected = h.digest('hex');
  const readBack = (await sha256File(inMount)).sha256;
  const outDir = makeTempDir('fusetrace-copy-');
  try {
    const out = join(outDir, 'copy.bin');
    const r = await open(inMount, 'r');
    const o = await open(out, 'w');
    try {
      const buf = Buffer.alloc(MiB);
      for (;;) {
        const { bytesRead } = await r.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        await o.write(buf, 0, bytesRead);
      }
    } finally {
      await r.close();
      await o.close();
    }
    const copiedOut = (await sha256File(out)).sha256;
    const statSize = lstatSync(inMount).size;
    if (!opts.keep) unlinkSync(inMount);
    return { bytes, expected, readBack, copiedOut, statSize };
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

/** Runs a command to completion and returns its stdout (throws on non-zero exit). */
function runCapture(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString());
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}): ${err.trim()}`));
    });
  });
}

/**
 * Creates a deterministic tree under `root`: `dirs` directories per level, `depth` levels, `files`
 * files per directory with sizes 0..4 KiB, a symlink per directory and a few mode variations.
 * Works on a plain directory (a server's source tree) or through a mount. Returns the file count.
 */
export function populateTree(root: string, opts: { depth?: number; dirs?: number; files?: number } = {}): number {
  const depth = opts.depth ?? 2;
  const dirs = opts.dirs ?? 3;
  const files = opts.files ?? 5;
  let count = 0;
  const walk = (dir: string, level: number) => {
    for (let f = 0; f < files; f++) {
      const p = join(dir, `file-${level}-${f}.txt`);
      writeFileSync(p, `level ${level} file ${f}\n`.repeat((f * 37 + level * 11) % 200));
      if (f % 3 === 1) chmodSync(p, 0o600);
      if (f % 3 === 2) chmodSync(p, 0o755);
      count++;
    }
    symlinkSync(`file-${level}-0.txt`, join(dir, 'link-to-first'));
    if (level >= depth) return;
    for (let d = 0; d < dirs; d++) {
      const sub = join(dir, `dir-${level}-${d}`);
      mkdirSync(sub);
      walk(sub, level + 1);
    }
  };
  mkdirSync(root, { recursive: true });
  walk(root, 0);
  return count;
}

/**
 * Workload (b): `ls -lRn` of `dir`, run with `dir` as the working directory so paths are relative.
 * Times are blanked (--time-style=+ prints an empty time): atime/mtime legitimately differ
 * between two runs over fresh copies of a tree. Owners are numeric, locale is C.
 */
export async function lsTree(dir: string): Promise<string> {
  const out = await runCapture('ls', ['-lRn', '--time-style=+', '.'], dir);
  return out.replace(/ +/g, ' ');
}

/** A listing + lstat summary of one directory after one phase of fileChurn. */
export interface ChurnPhase {
  phase: string;
  entries: number;
  /** Sum of st_nlink over the entries (hard links show here). */
  links: number;
  /** sha256 over the sorted "name mode nlink size" lines. */
  digest: string;
  /** First lines of that listing, for a readable diff when digests differ. */
  sample: string[];
}

function summarize(dir: string, phase: string): ChurnPhase {
  const lines: string[] = [];
  let links = 0;
  for (const name of readdirSync(dir).sort()) {
    const st = lstatSync(join(dir, name));
    links += st.nlink;
    lines.push(`${name} ${(st.mode & 0o7777).toString(8)} ${st.nlink} ${st.size}`);
  }
  return {
    phase,
    entries: lines.length,
    links,
    digest: createHash('sha256').update(lines.join('\n')).digest('hex'),
    sample: lines.slice(0, 5),
  };
}

/**
 * Workload (c): in `dir/churn`, creates `count` files (default 2,000), renames them, hard-links
 * every other one, chmods them, then removes everything, with a listing/stat summary after each
 * phase. Uses synchronous fs calls: one system call at a time, the same order on every run.
 */
export function fileChurn(dir: string, count = 2000): ChurnPhase[] {
  const base = join(dir, 'churn');
  const name = (prefix: string, i: number) => join(base, `${prefix}-${String(i).padStart(5, '0')}`);
  mkdirSync(base);
  const phases: ChurnPhase[] = [];
  for (let i = 0; i < count; i++) writeFileSync(name('file', i), 'x'.repeat(i % 300));
  phases.push(summarize(base, 'create'));
  for (let i = 0; i < count; i++) renameSync(name('file', i), name('renamed', i));
  phases.push(summarize(base, 'rename'));
  for (let i = 0; i < count; i += 2) linkSync(name('renamed', i), name('link', i));
  phases.push(summarize(base, 'link'));
  for (let i = 0; i < count; i++) chmodSync(name('renamed', i), [0o600, 0o640, 0o444, 0o755][i % 4]);
  phases.push(summarize(base, 'chmod'));
  for (let i = 0; i < count; i++) {
    unlinkSync(name('renamed', i));
    if (i % 2 === 0) unlinkSync(name('link', i));
  }
  phases.push(summarize(base, 'remove'));
  rmdirSync(base);
  return phases;
}

/**
 * Creates `count` small files (default 20,000) under `root` in directories of `perDir` names,
 * for the metadata-heavy workload. Meant for a server's source directory, before mounting.
 * With `linksPerFile` > 1 each file gets that many hard-linked names (all counted in `count`):
 * servers like passthrough_ll hold one fd per distinct inode, and a container may not allow
 * more than ~20,000 fds.
 */
export function makeManyFiles(root: string, count = 20_000, perDir = 500, linksPerFile = 1): void {
  let first = '';
  for (let i = 0; i < count; i++) {
    const d = join(root, `d${String(Math.floor(i / perDir)).padStart(3, '0')}`);
    if (i % perDir === 0) mkdirSync(d, { recursive: true });
    const p = join(d, `f${String(i).padStart(5, '0')}`);
    if (i % linksPerFile === 0 || i % perDir === 0) {
      writeFileSync(p, String(i));
      first = p;
    } else {
      linkSync(first, p);
    }
  }
}

/** What findStat observed. */
export interface FindStatResult {
  entries: number;
  /** sha256 of the sorted `find -printf` output (type, mode, links, size, path). */
  digest: string;
}

/**
 * Workload (d): `find . -printf '%y %m %n %s %P'` over `dir`: one LOOKUP/GETATTR per entry
 * (find lstat()s everything to print it) and READDIR(PLUS) for every directory.
 */
export async function findStat(dir: string): Promise<FindStatResult> {
  const out = await runCapture('find', ['.', '-printf', '%y %m %n %s %P\\n'], dir);
  const lines = out.split('\n').filter(Boolean).sort();
  return { entries: lines.length, digest: createHash('sha256').update(lines.join('\n')).digest('hex') };
}

/** What sequentialRead observed. */
export interface SequentialReadResult {
  bytes: number;
  /** Present when asked for (hashing costs CPU the bench does not want to measure). */
  sha256?: string;
}

/**
 * Workload (e): reads `path` front to back with `blockSize` read(2) calls (default 1 MiB; the
 * kernel splits them into READ requests of at most max_pages pages).
 */
export function sequentialRead(path: string, opts: { blockSize?: number; hash?: boolean } = {}): SequentialReadResult {
  const buf = Buffer.alloc(opts.blockSize ?? MiB);
  const h = opts.hash ? createHash('sha256') : undefined;
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h?.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return h ? { bytes, sha256: h.digest('hex') } : { bytes };
}
