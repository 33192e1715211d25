// `fusetrace diff` and `fusetrace query` on real recordings: test/servers/tunable_fs recorded twice
// with the same workload, once as it is ("base") and once with a READ delay, a zero entry timeout
// (a LOOKUP per listed entry) and one file failing with EIO ("slow"). The recordings are made once
// for the file; the registry unmounts and stops everything even when a test fails.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from './helpers/build.js';
import { repoRoot, requireFuse } from './helpers/fuse-env.js';
import { CleanupRegistry, runCommand, unmount } from './helpers/mount.js';
import { buildCli, CLI, recorder } from './helpers/record.js';
import { main } from '../src/cli/main.js';
import { opcodeName } from '../src/protocol/index.js';
import { TraceReader } from '../src/store/reader.js';

const reg = new CleanupRegistry();
let db: string;
let dir: string;

/** The same workload for both sessions: list, read five files, read the one that may fail, list again. */
async function workload(mnt: string): Promise<void> {
  const script = `ls -l ${mnt} >/dev/null; for f in f00 f01 f02 f03 f04; do cat ${mnt}/$f >/dev/null; done; cat ${mnt}/f05 >/dev/null 2>&1; ls -l ${mnt} >/dev/null`;
  const r = await runCommand('sh', ['-c', script], 20_000);
  if (r.code !== 0 || r.timedOut) throw new Error(`workload failed: ${r.stderr}`);
}

async function record(name: string, serverArgs: string[]): Promise<void> {
  const server = buildServer('tunable_fs');
  const mnt = reg.mountpoint();
  const rec = await recorder(reg)(server, ['-f', ...serverArgs], mnt, db, { extra: ['--name', name] });
  await workload(mnt);
  await unmount(mnt);
  const exit = await rec.exited;
  if (exit.code !== 0) throw new Error(`record ${name} exited ${JSON.stringify(exit)}:\n${rec.stderr()}`);
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The real CLI in a child process (bin/fusetrace.js from dist/): for the exit status and the streams as a shell sees them. */
function spawnCli(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, '--db', db, ...args], { encoding: 'utf8', cwd: dir, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The CLI's main() in this process with stdout and stderr captured: the same code path without a
 * Node start-up per call (about a second each on a busy 2-core machine).
 */
async function fusetrace(...args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const saved = { out: process.stdout.write, err: process.stderr.write, code: process.exitCode };
  process.stdout.write = ((s: string | Uint8Array) => out.push(String(s)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => err.push(String(s)) > 0) as typeof process.stderr.write;
  process.exitCode = undefined;
  try {
    const status = await main(['--db', db, ...args]);
    return { status, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    process.exitCode = saved.code;
  }
}

/** The bytes of the trace file and its WAL: what `query` must never change. */
function fileDigest(): string {
  const h = createHash('sha256');
  for (const f of [db, `${db}-wal`]) if (existsSync(f)) h.update(readFileSync(f));
  return h.digest('hex');
}

beforeAll(async () => {
  requireFuse();
  buildCli();
  dir = reg.tempDir('fusetrace-diff-');
  db = join(dir, 'trace.db');
  await record('base', []);
  await record('slow', ['--read-delay-ms=30', '--timeout=0', '--fail=f05']);
}, 120_000);
afterAll(() => reg.cleanup());

describe('fusetrace diff on two recordings of one workload', () => {
  it('puts the slower READs at the top of the report', () => {
    const r = spawnCli('diff', 'base', 'slow');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^A base \(session 1: \d+ requests/);
    expect(lines[1]).toMatch(/^B slow \(session 2: \d+ requests/);
    expect(lines[2]).toMatch(/^most changed: READ \+\d/);
    const table = lines.findIndex((l) => /^ {2}OP +COUNT A → B/.test(l));
    expect(lines[table + 1]).toMatch(/^ {2}READ /);
    expect(r.stdout).toMatch(/appeared +READ +EIO +0 → 1/);
    expect(r.stdout).toMatch(/LOOKUPs per directory entry listed \(lookups_per_dirent\)/);
  });

  it('fits the report to the terminal, in colour unless NO_COLOR', () => {
    // `script` gives the CLI a pseudo-terminal of 20 rows.
    const run = (env: NodeJS.ProcessEnv) =>
      spawnSync('script', ['-qec', `stty rows 20 cols 160; ${process.execPath} ${CLI} --db ${db} diff base slow`, '/dev/null'], { encoding: 'utf8', env: { ...process.env, ...env } });
    const plain = run({ NO_COLOR: '1' });
    expect(plain.status).toBe(0);
    const lines = plain.stdout.replace(/\r/g, '').trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(18);
    expect(lines[2]).toMatch(/^most changed: READ \+/);
    expect(plain.stdout).toMatch(/\(\d+ more opcodes; --json or a pipe shows all\)/);
    expect(lines[lines.length - 1]).toMatch(/^ {2}\(\d+ more lines; a pipe or --json shows all\)$/);
    expect(plain.stdout).not.toContain('\x1b[');
    const NO_COLOR = undefined;
    expect(run({ NO_COLOR }).stdout).toMatch(/\x1b\[31m {2}READ /);
  });

  it('reports every figure in --json: latency, errors that appeared, LOOKUPs per listed entry', async () => {
    const r = await fusetrace('diff', 'base', 'slow', '--json');
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d.ops[0].op).toBe('READ');
    const read = d.ops[0];
    // 30 ms of delay against a server that answers from memory.
    expect(read.p99_ns.b).toBeGreaterThanOrEqual(30e6);
    expect(read.p99_ns.b / read.p99_ns.a).toBeGreaterThan(1.2);
    expect(read.time_ns.b - read.time_ns.a).toBeGreaterThan(5 * 30e6);
    const lookup = d.ops.find((o: { op: string }) => o.op === 'LOOKUP');
    expect(lookup.count.b).toBeGreaterThan(lookup.count.a ?? 0);
    const amp = d.amplification.find((m: { name: string }) => m.name === 'lookups_per_dirent');
    expect(amp.b).toBeGreaterThan(amp.a);
    expect(d.errors).toContainEqual({ op: 'READ', err: 'EIO', errno: 5, a: 0, b: 1, kind: 'appeared' });
    expect(d.paths.map((p: { key: string }) => p.key)).toContain('/f00');
    expect(d.processes[0].key).toBe('cat');
    expect(d.fail_if).toBeNull();
  });

  it('exits 1 when a --fail-if threshold trips, 0 when none does', async () => {
    const tripped = spawnCli('diff', 'base', 'slow', '--fail-if', 'p99(READ) > 1.2x || errors > 0');
    expect(tripped.status).toBe(1);
    expect(tripped.stderr).toMatch(/^fusetrace: --fail-if tripped: p99\(READ\) > 1\.2x \([^)]+ → [\d.]+ms: [\d.]+x\); errors > 0 \(\d+ → \d+: \d+\)\n$/);
    expect((await fusetrace('diff', 'base', 'slow', '--fail-if', 'new_errors > 0', '--json')).status).toBe(1);
    // The same thresholds the other way round: B is the fast one.
    const back = await fusetrace('diff', 'slow', 'base', '--fail-if', 'p99(READ) > 1.2x || lookups_per_dirent > 1.5x');
    expect(back.stderr).toBe('');
    expect(back.status).toBe(0);
    const json = JSON.parse((await fusetrace('diff', 'slow', 'base', '--json', '--fail-if', 'p99(READ) < 0.5x')).stdout);
    expect(json.fail_if).toMatchObject({ expression: 'p99(READ) < 0.5x', tripped: true });
  });

  it('takes FILE:SESSION and a filter', () => {
    const r = spawnSync(process.execPath, [CLI, '--db', join(dir, 'none.db'), 'diff', `${db}:1`, `${db}:slow`, '--filter', 'op==READ', '--json'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const d = JSON.parse(r.stdout);
    expect(d.ops.map((o: { op: string }) => o.op)).toEqual(['READ']);
    expect(d.a.label).toBe(`${db}:1`);
  });

  it.each([
    [['diff', 'base', 'nosuch'], /^fusetrace: no session "nosuch" in .*trace\.db \(fusetrace sessions lists them\)\n$/],
    [['diff', 'base', '/nonexistent/old.db:1'], /^fusetrace: no trace file at \/nonexistent\/old\.db \(in '\/nonexistent\/old\.db:1'; FILE:SESSION names a session of another trace file\)\n$/],
    [['diff', 'base', 'slow', '--fail-if', 'p99(READ) > 20'], /^fusetrace: bad --fail-if:\n {2}p99\(READ\) > 20\n {14}\^ p99 needs a time unit \(ns, us, ms, s\) at column 13, e\.g\. 20ms, or a factor such as 1\.2x\n$/],
  ])('refuses %j with one message and status 2', async (args, message) => {
    const r = await fusetrace(...args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
  });
});

/** The `fusetrace query "SELECT ..."` lines of the README's query section (its refusal example aside). */
function readmeQueries(): string[] {
  const readme = readFileSync(join(repoRoot(), 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### `fusetrace query'), readme.indexOf('\n### ', readme.indexOf('### `fusetrace query') + 5));
  return [...section.matchAll(/^ {4}(?:\$ )?fusetrace query "((?:[^"\\]|\\.)*)"/gm)].map((m) => m[1]!.replace(/\\"/g, '"')).filter((q) => /^SELECT/i.test(q));
}

describe('fusetrace query', () => {
  it('answers the examples of the README', async () => {
    const queries = readmeQueries();
    expect(queries.length).toBeGreaterThanOrEqual(4);
    for (const q of queries) {
      const r = await fusetrace('query', q);
      expect({ q, stderr: r.stderr, status: r.status }).toEqual({ q, stderr: '', status: 0 });
      expect(r.stdout.trimEnd().split('\n').length, q).toBeGreaterThan(1);
    }
  });

  it('lists the slowest LOOKUPs by path as the ledger has them', async () => {
    const r = await fusetrace('query', "SELECT path, dur_ns FROM requests WHERE session = 2 AND op = 'LOOKUP' ORDER BY dur_ns DESC LIMIT 10", '--json');
    expect(r.status).toBe(0);
    const raw = new Database(db, { readonly: true });
    try {
      const want = raw.prepare('SELECT path, dur_ns FROM requests WHERE session = 2 AND opcode = 1 ORDER BY dur_ns DESC LIMIT 10').all();
      expect(want.length).toBe(10);
      expect(r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual(want);
    } finally {
      raw.close();
    }
  });

  it('decodes names, offsets and sizes from the request frames, and prints CSV', async () => {
    const r = await fusetrace('query', "SELECT op, name, \"offset\", size, bytes FROM requests WHERE session = 1 AND op IN ('LOOKUP', 'READ') AND path = '/f02' ORDER BY seq", '--csv');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\r\n');
    expect(lines[0]).toBe('op,name,offset,size,bytes');
    expect(lines).toContain('READ,,0,131072,4096');
    const s = await fusetrace('query', 'SELECT name, transport, requests > 0 AS has_requests FROM sessions ORDER BY id');
    expect(s.stdout).toBe('name\ttransport\thas_requests\nbase\tin-process\t1\nslow\tin-process\t1\n');
  });

  it('the frames view holds every frame of the batches, its bytes and fields, in seq order', async () => {
    const r = await fusetrace('query', 'SELECT session, seq, dir, op, unique_id, error, len, cap_len, hex(data) AS data, write_errno, t_ns >= 0 AS after_start FROM frames ORDER BY session, seq', '--json');
    expect(r.status, r.stderr).toBe(0);
    const got = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const raw = new Database(db, { readonly: true });
    try {
      const reader = new TraceReader(raw);
      const want = reader.listSessions().flatMap((s) =>
        [...reader.frames(s.id)].map((f) => ({
          session: s.id,
          seq: f.seq,
          dir: f.dir === 0 ? 'rx' : 'tx',
          op: f.dir === 0 ? opcodeName(f.opcode!) : null,
          unique_id: Number(f.unique),
          error: f.error,
          len: f.len,
          cap_len: f.data.length,
          data: f.data.toString('hex').toUpperCase(),
          write_errno: f.writeErrno,
          after_start: 1,
        })),
      );
      expect(want.length).toBeGreaterThan(100);
      expect(got).toEqual(want);
      const two = await fusetrace('query', 'SELECT session, seq FROM frames WHERE session = 2 ORDER BY seq', '--json');
      expect(two.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual(want.filter((f) => f.session === 2).map((f) => ({ session: 2, seq: f.seq })));
    } finally {
      raw.close();
    }
  });

  it.each([
    ['UPDATE requests SET dur_ns = 0', /^fusetrace: UPDATE is refused: query only reads/],
    ['DELETE FROM main.frames', /^fusetrace: DELETE is refused: query only reads/],
    ["ATTACH 'x.db' AS x", /^fusetrace: ATTACH is refused: query only reads/],
    ['PRAGMA user_version = 7', /^fusetrace: PRAGMA user_version = \.\.\. is refused: query only reads/],
    ['PRAGMA query_only = 0', /^fusetrace: PRAGMA query_only = \.\.\. is refused/],
    ['PRAGMA journal_mode(delete)', /^fusetrace: PRAGMA journal_mode\(\.\.\.\) is refused/],
    ['WITH x AS (SELECT 1) UPDATE main.requests SET dur_ns = 0 RETURNING seq', /^fusetrace: WITH is refused: query only reads/],
    ['SELECT 1; DELETE FROM frames', /^fusetrace: query runs one statement at a time/],
    ['SELECT nope FROM requests', /^fusetrace: SQL error: no such column: nope \(views: sessions, requests, frames/],
  ])('refuses %j with one line and leaves the file byte for byte as it was', async (sql, message) => {
    const before = fileDigest();
    // The first case goes through a real process: what a shell sees, status and one line.
    const r = sql.startsWith('UPDATE') ? spawnCli('query', sql) : await fusetrace('query', sql);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(fileDigest()).toBe(before);
    expect(existsSync(join(dir, 'x.db'))).toBe(false);
  });
});
