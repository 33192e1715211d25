// `fusetrace bundle --redact` on a real recording: libfuse's passthrough_ll under `fusetrace record`,
// a workload with distinctive file names, file contents, a symlink and an xattr. The bundle's bytes
// hold none of them (the original's do), every frame still decodes as well as the original did,
// and `stats` gives the same answer: byte for byte when names are kept, through the name tokens
// when they are not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { TraceReader } from '../src/store/reader.js';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry } from './helpers/mount.js';
import { buildCli, recorder } from './helpers/record.js';
import { runCli } from './demo-helpers.js';
import { SessionDecoder } from '../src/protocol/index.js';
import { NameHasher } from '../src/redact/names.js';

const reg = new CleanupRegistry();
afterAll(() => reg.cleanup());

const DATA_READ = 'CONFIDENTIAL-PAYLOAD-'.repeat(200);
const DATA_WRITTEN = 'WRITTEN-SECRET-BYTES-'.repeat(100);
const XATTR_VALUE = 'TOPSECRET-XATTR-VALUE';
let work = '';
let db = '';
let secrets: string[] = [];

beforeAll(async () => {
  requireFuse();
  buildCli();
  work = reg.tempDir('fusetrace-bundle-test-');
  const src = join(work, 'customer-acme-src');
  fs.mkdirSync(join(src, 'Zanzibar-Project'), { recursive: true });
  // Written beside the mount, not through it: its first read through FUSE is not in the page cache.
  fs.writeFileSync(join(src, 'Zanzibar-Project', 'ledger-of-secrets.txt'), DATA_READ);
  const mnt = reg.mountpoint();
  db = join(work, 'trace.db');
  const rec = await recorder(reg)(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`, '-o', 'xattr'], mnt, db);
  const p = (rel: string) => join(mnt, 'Zanzibar-Project', rel);
  expect(fs.readFileSync(p('ledger-of-secrets.txt'), 'utf8')).toBe(DATA_READ);
  fs.writeFileSync(p('memo-to-board.md'), DATA_WRITTEN);
  fs.symlinkSync('ledger-of-secrets.txt', p('shortcut-to-vault'));
  expect(fs.readlinkSync(p('shortcut-to-vault'))).toBe('ledger-of-secrets.txt');
  const py = spawnSync('python3', ['-c', `import os,sys; os.setxattr(sys.argv[1], 'user.clearance-level', b'${XATTR_VALUE}'); print(os.getxattr(sys.argv[1], 'user.clearance-level').decode()); print(os.listxattr(sys.argv[1]))`, p('memo-to-board.md')], { encoding: 'utf8' });
  expect(py.stdout, py.stderr).toContain(XATTR_VALUE);
  fs.renameSync(p('memo-to-board.md'), p('renamed-dossier.md'));
  expect(spawnSync('ls', ['-la', join(mnt, 'Zanzibar-Project')]).status).toBe(0);
  expect(spawnSync('umount', [mnt]).status).toBe(0);
  await rec.exited;
  secrets = ['Zanzibar-Project', 'ledger-of-secrets', 'memo-to-board', 'shortcut-to-vault', 'renamed-dossier', 'clearance-level', 'customer-acme-src',
    basename(mnt), 'CONFIDENTIAL-PAYLOAD', 'WRITTEN-SECRET-BYTES', XATTR_VALUE];
}, 120_000);

/** The bytes of a trace file and of its -wal, if any: everything a reader of the files would get. */
function fileBytes(file: string): Buffer {
  return Buffer.concat([file, `${file}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
}

/** How many frames of the latest session decode with an error, and how many there are. */
function decodeErrors(file: string): { frames: number; errors: number } {
  const h = new Database(file, { readonly: true });
  try {
    const r = new TraceReader(h);
    const rows = [...r.frames(r.latestSessionId()!)];
    const d = new SessionDecoder();
    return { frames: rows.length, errors: rows.filter((r) => !d.decode(r.dir === 0 ? 'rx' : 'tx', r.data).ok).length };
  } finally {
    h.close();
  }
}

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args, 60_000);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

describe('fusetrace bundle --redact', () => {
  it('removes every name, data byte, xattr value and symlink target, and keeps frames decodable and stats equal', async () => {
    const original = fileBytes(db);
    for (const s of secrets) expect(original.includes(Buffer.from(s)), `the original trace holds ${s}`).toBe(true);

    const bundle = join(work, 'shared.db');
    const r = await runCli(['--db', db, 'bundle', '-o', bundle, '--redact', 'all', '--salt', 'issue-17'], 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/redacted: names, data, xattrs, symlinks/);
    expect(fs.existsSync(`${bundle}-wal`)).toBe(false);
    const shared = fileBytes(bundle);
    for (const s of secrets) expect(shared.includes(Buffer.from(s)), `the bundle still holds ${s}`).toBe(false);

    // Every frame parses as well as it did before (lengths and namelen fields were kept consistent).
    const before = decodeErrors(db);
    expect(decodeErrors(bundle)).toEqual(before);
    expect(before.frames).toBeGreaterThan(40);

    // stats: the same numbers, paths through the same tokens the bundle used.
    const hasher = new NameHasher({ salt: 'issue-17' });
    const a = JSON.parse(await cli(['--db', db, 'stats', '--json'])) as Record<string, unknown>;
    const b = JSON.parse(await cli(['--db', bundle, 'stats', '--json'])) as Record<string, unknown>;
    const mapped = JSON.parse(JSON.stringify(a), (k, v) => (k === 'path' && typeof v === 'string' ? hasher.path(v) : v)) as Record<string, unknown>;
    expect(b).toEqual(mapped);
    expect(JSON.stringify(b)).toContain(hasher.path('/Zanzibar-Project/renamed-dossier.md'));

    // show and export read it; show --frames decodes every frame.
    const frames = await cli(['--db', bundle, 'show', '--frames']);
    expect(frames).toContain(`"${hasher.name('ledger-of-secrets.txt')}"`);
    expect(frames).not.toMatch(/undecodable/);
    const readlink = frames.split('\n').find((l) => / tx \d+ OK "/.test(l) && l.includes(hasher.name('ledger-of-secrets.txt')));
    expect(readlink, 'the READLINK reply names the hashed target').toBeDefined();
    await cli(['--db', bundle, 'export', '--format', 'jsonl']);
  }, 120_000);

  it('without names: stats is byte for byte the original, names stay, contents go', async () => {
    const bundle = join(work, 'contents.db');
    expect((await runCli(['--db', db, 'bundle', '-o', bundle, '--redact', 'data,xattrs,symlinks'], 60_000)).code).toBe(0);
    expect(await cli(['--db', bundle, 'stats'])).toBe(await cli(['--db', db, 'stats']));
    const shared = fileBytes(bundle);
    expect(shared.includes(Buffer.from('ledger-of-secrets'))).toBe(true);
    for (const s of ['CONFIDENTIAL-PAYLOAD', 'WRITTEN-SECRET-BYTES', XATTR_VALUE]) expect(shared.includes(Buffer.from(s)), s).toBe(false);
  }, 60_000);

  it('refuses a bad class or an existing file with one line and status 2', async () => {
    const bad = await runCli(['--db', db, 'bundle', '-o', join(work, 'x.db'), '--redact', 'names,passwords'], 30_000);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("fusetrace: unknown --redact class 'passwords' (expected names, data, xattrs, symlinks or all)\n");
    const exists = await runCli(['--db', db, 'bundle', '-o', db, '--redact', 'all'], 30_000);
    expect(exists.code).toBe(2);
    expect(exists.stderr).toBe(`fusetrace: ${db} exists; a bundle is always a new file\n`);
    expect(fs.existsSync(join(work, 'x.db'))).toBe(false);
  }, 60_000);
});
