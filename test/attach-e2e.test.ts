// End-to-end tests of `fusetrace attach`: servers that mount by themselves and run before
// fusetrace comes (libfuse's passthrough_ll, gocryptfs on go-fuse, test/servers/stuck_fs), a
// scripted workload with payloads, then checks on the trace, on the server after the detach
// (serving, untraced, same fds), and on the tracepoint fallback.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample, buildServer } from './helpers/build.js';
import { CleanupRegistry, runDirect, waitExit, type DirectMount, type ExitInfo } from './helpers/mount.js';
import { gocryptfsArgs, gocryptfsInit } from './helpers/gocryptfs.js';
import { buildCli, CLI, dbIn, expectCompletePairing, readTrace } from './helpers/record.js';
import { IN_HEADER_SIZE, Opcode, OUT_HEADER_SIZE } from '../src/protocol/index.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());

beforeAll(() => {
  requireFuse();
  buildCli();
}, 120_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const FUSE_READ = Opcode.READ;
const FUSE_WRITE = Opcode.WRITE;

interface Attached {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<ExitInfo>;
}

/** Starts `fusetrace attach` and waits until it records (every thread seized). */
async function attach(db: string, target: string, extra: string[] = []): Promise<Attached> {
  const child = spawn(process.execPath, [CLI, '--db', db, 'attach', ...extra, target], { stdio: ['ignore', 'ignore', 'pipe'] });
  reg.process(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = waitExit(child);
  const deadline = Date.now() + 20_000;
  while (!/recording session \d+/.test(err)) {
    if (child.exitCode !== null) throw new Error(`attach exited early:\n${err}`);
    if (Date.now() > deadline) throw new Error(`attach not ready after 20 s:\n${err}`);
    await sleep(20);
  }
  return { child, stderr: () => err, exited };
}

/** Ctrl-C: detaches; resolves with the exit status. */
async function detach(a: Attached): Promise<ExitInfo> {
  a.child.kill('SIGINT');
  return await a.exited;
}

/**
 * What must be true of a server after the detach: no tracer, no thread stopped, its /dev/fuse fds
 * as before, and no fd of fusetrace's (the trace file in `work`). The rest of its fd table is its
 * own business: libfuse makes a splice pipe per new worker thread, go-fuse closes its mount socket.
 */
function expectUntouched(pid: number, fdsBefore: string[], work: string): void {
  expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^TracerPid:\s+0$/m);
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    expect(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3), `thread ${tid}`).not.toMatch(/[tT]/);
  }
  const after = fdTable(pid);
  const devices = (t: string[]) => t.filter((l) => l.endsWith(' /dev/fuse'));
  expect(devices(after)).toEqual(devices(fdsBefore));
  expect(after.filter((l) => l.includes(work))).toEqual([]);
}

function fdTable(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`).sort()) {
    try {
      out.push(`${fd} ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`);
    } catch {
      /* closed by the server meanwhile */
    }
  }
  return out;
}

/** A payload that cannot be mistaken for anything else in a frame. */
function payload(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Writes and reads back files with payloads, lists the directory. */
async function workload(mnt: string): Promise<Buffer> {
  const data = payload(48 * 1024, 3);
  writeFileSync(join(mnt, 'payload.bin'), data);
  expect((await readFile(join(mnt, 'payload.bin'))).equals(data)).toBe(true);
  expect(readdirSync(mnt)).toContain('payload.bin');
  return data;
}

/** The session's requests from the ledger. */
function requests(db: string): Array<{ op: number; state: string; outcome: string | null; path: string | null }> {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare('SELECT opcode AS op, state, outcome, path FROM requests ORDER BY seq').all() as Array<{ op: number; state: string; outcome: string | null; path: string | null }>;
  } finally {
    d.close();
  }
}

/** Runs the workload under attach and checks the trace and the server after the detach. */
async function attachAndCheck(m: DirectMount, work: string) {
  const db = dbIn(work);
  await workload(m.mountpoint); // the server's own set-up (worker threads, their pipes) before the attach
  const fdsBefore = fdTable(m.pid);
  const a = await attach(db, m.mountpoint);
  const data = await workload(m.mountpoint);
  await sleep(200); // the releases that follow close() are background requests
  expect((await detach(a)).code).toBe(0);
  expect(a.stderr()).toMatch(/session 1 in .*: \d+ frames, 0 dropped; attached with ptrace; detached: the server runs on untraced/);
  expectUntouched(m.pid, fdsBefore, work);
  // The server keeps serving, untraced.
  expect((await readFile(join(m.mountpoint, 'payload.bin'))).equals(data)).toBe(true);

  const t = readTrace(db);
  expect(JSON.parse(t.session.meta!)).toMatchObject({ attachedPid: m.pid, mechanism: 'ptrace' });
  const s = t.session as unknown as { origin: string; capture: string; end_reason: string };
  expect([s.origin, s.capture, s.end_reason]).toEqual(['attached', 'frames', 'detached']);
  expectCompletePairing(t.frames);
  // The payload crossed the device whole: in a WRITE request and in a READ reply.
  // fuse_in_header + fuse_write_in (40 bytes at minor >= 9) precede a WRITE's data.
  const inWrite = t.frames.filter((f) => f.dir === 0 && f.opcode === FUSE_WRITE).map((f) => f.data.subarray(IN_HEADER_SIZE + 40));
  expect(Buffer.concat(inWrite).includes(data.subarray(0, 4096))).toBe(true);
  const reads = new Set(t.frames.filter((f) => f.dir === 0 && f.opcode === FUSE_READ).map((f) => f.unique_id));
  const readReplies = t.frames.filter((f) => f.dir === 1 && reads.has(f.unique_id)).map((f) => f.data.subarray(OUT_HEADER_SIZE));
  expect(Buffer.concat(readReplies).includes(data.subarray(4096, 8192))).toBe(true);
  const reqs = requests(db);
  // The warm-up looked payload.bin up before the attach: while the kernel's entry stays cached the
  // session never sees its LOOKUP, and its nodeid shows as <nodeid:N> (a session from the middle).
  expect(reqs.filter((r) => r.path === '/payload.bin' || /^<nodeid:\d+>$/.test(r.path ?? '')).length).toBeGreaterThan(2);
  expect(reqs.every((r) => r.state === 'ok' || r.state === 'error')).toBe(true);
  // Replay refuses a session without a beginning, with the reason.
  const rp = spawnSync(process.execPath, [CLI, '--db', db, 'replay', '--', '/bin/true'], { encoding: 'utf8', timeout: 20_000 });
  expect(rp.status).toBe(2);
  expect(rp.stderr).toMatch(/recorded by fusetrace attach.*no FUSE_INIT and no beginning, so it cannot be replayed/);
}

describe('fusetrace attach', () => {
  it('records a running libfuse passthrough_ll: payloads, pairing, classification; the server runs on untouched', async () => {
    const work = reg.tempDir('fusetrace-attach-');
    const src = reg.tempDir('fusetrace-attach-src-');
    const m = await runDirect(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], reg.mountpoint('fusetrace-attach-mnt-'), { registry: reg });
    await attachAndCheck(m, work);
  });

  it('records a running gocryptfs (go-fuse, its own syscalls)', async () => {
    const work = reg.tempDir('fusetrace-attach-');
    const cipher = reg.tempDir('fusetrace-attach-cipher-');
    gocryptfsInit(cipher);
    const m = await runDirect('gocryptfs', gocryptfsArgs(cipher), reg.mountpoint('fusetrace-attach-mnt-'), { registry: reg });
    await attachAndCheck(m, work);
  });

  it('takes a reply to a request read before the attach (before-attach), and --duration detaches', async () => {
    const work = reg.tempDir('fusetrace-attach-');
    const m = await runDirect(buildServer('stuck_fs'), ['-f'], reg.mountpoint('fusetrace-attach-mnt-'), { registry: reg });
    // A READ the server takes before the attach and answers only once `wake` is read, after it.
    const held = spawn('cat', [join(m.mountpoint, 'held')], { stdio: 'ignore' });
    reg.process(held);
    await sleep(300);
    const a = await attach(dbIn(work), m.mountpoint, ['--duration', '1s']);
    await readFile(join(m.mountpoint, 'wake'));
    expect((await waitExit(held)).code).toBe(0);
    expect((await a.exited).code).toBe(0);
    expect(a.stderr()).toMatch(/detached: the server runs on untraced/);
    const reqs = requests(dbIn(work));
    expect(reqs).toContainEqual({ op: 0, state: 'unknown', outcome: 'before-attach', path: null });
    expect(reqs).toContainEqual({ op: FUSE_READ, state: 'ok', outcome: null, path: '/wake' });
    expect(readFileSync(`/proc/${m.pid}/status`, 'utf8')).toMatch(/^TracerPid:\s+0$/m);
  });

  it('falls back to the kernel tracepoints when forced: headers and timings, and says what the session lacks', async () => {
    const work = reg.tempDir('fusetrace-attach-');
    const src = reg.tempDir('fusetrace-attach-src-');
    const m = await runDirect(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], reg.mountpoint('fusetrace-attach-mnt-'), { registry: reg });
    const a = await attach(dbIn(work), m.mountpoint, ['--tracepoints']);
    expect(a.stderr()).toMatch(/recording the kernel's fuse tracepoints instead; the session lacks payloads, nodeids and paths/);
    await workload(m.mountpoint);
    await sleep(200);
    expect((await detach(a)).code).toBe(0);
    const t = readTrace(dbIn(work));
    const s = t.session as unknown as { origin: string; capture: string };
    expect([s.origin, s.capture]).toEqual(['attached', 'tracepoints']);
    expect(JSON.parse(t.session.meta!).lacks).toContain('payloads');
    // Headers only: every frame is cut like a snaplen capture, requests and replies pair up.
    expect(t.frames.every((f) => f.cap_len === (f.dir === 0 ? IN_HEADER_SIZE : OUT_HEADER_SIZE))).toBe(true);
    const ops = new Set(t.frames.filter((f) => f.dir === 0).map((f) => f.opcode));
    expect([...ops]).toEqual(expect.arrayContaining([FUSE_WRITE, FUSE_READ]));
    const reqs = requests(dbIn(work));
    expect(reqs.filter((r) => r.op === FUSE_WRITE).every((r) => r.state === 'ok')).toBe(true);
  });

  it('falls back to the tracepoints by itself when another tracer holds the server (strace -p)', async () => {
    const work = reg.tempDir('fusetrace-attach-');
    const m = await runDirect(buildServer('stuck_fs'), ['-f'], reg.mountpoint('fusetrace-attach-mnt-'), { registry: reg });
    const strace = spawn('strace', ['-f', '-p', String(m.pid), '-o', '/dev/null'], { stdio: 'ignore' });
    reg.process(strace);
    const deadline = Date.now() + 10_000;
    while (/^TracerPid:\s+0$/m.test(readFileSync(`/proc/${m.pid}/status`, 'utf8')) && Date.now() < deadline) await sleep(20);
    const a = await attach(dbIn(work), m.mountpoint);
    expect(a.stderr()).toMatch(/full frames are not available \(ptrace refused \(EPERM: no permission, or another tracer is attached\)\): recording the kernel's fuse tracepoints instead/);
    expect((await readFile(join(m.mountpoint, 'hello'), 'utf8'))).toBe('hello\n');
    await sleep(200);
    expect((await detach(a)).code).toBe(0);
    const t = readTrace(dbIn(work));
    expect((t.session as unknown as { capture: string }).capture).toBe('tracepoints');
    expect(t.frames.some((f) => f.dir === 0 && f.opcode === FUSE_READ)).toBe(true);
  });

  it('refuses a process that serves no FUSE mount, in one line', async () => {
    const r = spawnSync(process.execPath, [CLI, 'attach', String(process.pid)], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`fusetrace: process ${process.pid} holds no /dev/fuse fd: it is not a FUSE server (or its fds cannot be read: run as root)\n`);
  });
});
