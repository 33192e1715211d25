/**
 * The ledger on real recorded sessions: `fusetrace record` (the real CLI, from dist/) in front of
 * real FUSE servers (test/servers/interrupt_fs, libfuse's passthrough_ll), real processes reading
 * and writing, then the `requests` rows the recorder wrote incrementally, which must equal the ones
 * rebuildLedger computes from the frames alone.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample, buildServer } from './helpers/build.js';
import { CleanupRegistry, abortConnection, isMounted, waitExit, type ExitInfo } from './helpers/mount.js';
import { openTraceDb } from '../src/store/db.js';
import { rebuildLedger } from '../src/store/ledger.js';
import { checkChromeTrace } from '../src/cli/export-trace-format.fixture.js';
import { buildCli, CLI } from './helpers/record.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(() => {
  requireFuse();
  buildCli();
}, 120_000);

interface Recording {
  child: ChildProcess;
  exited: Promise<ExitInfo>;
  stderr: () => string;
}

/** `fusetrace --db DB record -- SERVER ARGS... MNT`, waiting until INIT is answered. */
async function record(server: string, args: string[], mnt: string, db: string): Promise<Recording> {
  const logPath = join(reg.tempDir('fusetrace-ledgerlog-'), 'stderr');
  const fd = fs.openSync(logPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [CLI, '--db', db, 'record', '--', server, ...args, mnt], { stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  reg.mount(mnt);
  reg.process(child);
  const exited = waitExit(child);
  const stderr = () => fs.readFileSync(logPath, 'utf8');
  const deadline = Date.now() + 15_000;
  while (!isMounted(mnt)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`fusetrace exited early:\n${stderr()}`);
    if (Date.now() > deadline) throw new Error(`no mount at ${mnt} after 15 s:\n${stderr()}`);
    await sleep(20);
  }
  await Promise.race([
    stat(mnt),
    sleep(10_000).then(() => {
      throw new Error(`INIT not answered within 10 s:\n${stderr()}`);
    }),
  ]);
  return { child, exited, stderr };
}

/** The FUSE server under fusetrace: fusetrace's only child. */
function serverPidOf(pid: number): number {
  const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  if (kids.length !== 1) throw new Error(`expected one child of fusetrace ${pid}, got ${kids.join(',')}`);
  return kids[0];
}

/** A WRITE to interrupt_fs's blackhole, which the server never answers; the writer waits. */
async function blackholeWriter(mnt: string): Promise<ChildProcess> {
  const writer = reg.process(spawn('sh', ['-c', `echo hi > ${join(mnt, 'blackhole')}`], { stdio: 'ignore' }));
  await sleep(500);
  expect(writer.exitCode).toBeNull();
  return writer;
}

interface Row {
  seq: number;
  unique_id: number;
  opcode: number;
  nodeid: number | null;
  path: string | null;
  pid: number | null;
  comm: string | null;
  errno: number | null;
  state: string;
  outcome: string | null;
  background: number;
  interrupt_seq: number | null;
  dur_ns: number | null;
}

/**
 * The ledger of the file's last session: what the recorder wrote incrementally, then rebuilt from
 * the frames alone; the two must agree row for row.
 */
function ledgerOf(dbFile: string): { rows: Row[]; endReason: string | null } {
  const db = openTraceDb(dbFile);
  try {
    const session = db.prepare('SELECT max(id) FROM sessions').pluck().get() as number;
    const all = () => db.prepare('SELECT * FROM requests WHERE session = ? ORDER BY seq').all(session) as Row[];
    const recorded = all();
    rebuildLedger(db, session);
    const rows = all();
    // `record` runs the ledger inside each flush: its rows exist and equal a rebuild from the frames.
    expect(recorded.length).toBeGreaterThan(0);
    expect(rows).toEqual(recorded);
    const endReason = db.prepare('SELECT end_reason FROM sessions WHERE id = ?').pluck().get(session) as string | null;
    return { rows, endReason };
  } finally {
    db.close();
  }
}

/** sigread: one read(2) of `file`, SIGINT to the reader after `delayMs`; prints what read(2) returned. */
function sigread(file: string, delayMs: number): string {
  const r = spawnSync(buildServer('sigread'), [file, String(delayMs)], { encoding: 'utf8', timeout: 20_000 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}

const READ = 15, WRITE = 16, FORGET = 2, BATCH_FORGET = 42, NOTIFY_REPLY = 41, RENAME = 12, CREATE = 35, LOOKUP = 1, INIT = 26;
const EINTR = 4, EIO = 5;

describe('ledger on recorded sessions', () => {
  it('interrupt_fs: eintr, answered anyway, eagain, EIO, notifications, and a WRITE aborted with the connection', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const db = join(work, 'trace.db');
    const rec = await record(buildServer('interrupt_fs'), ['-f', '--delay-ms=300', '--wait-ms=10000'], mnt, db);
    expect(sigread(join(mnt, 'slow_eintr'), 200)).toMatch(/^error EINTR/);
    expect(sigread(join(mnt, 'slow_ignore'), 200)).toMatch(/^data /);
    expect(sigread(join(mnt, 'slow_eagain'), 200)).toMatch(/^error EINTR/);
    expect(() => fs.readFileSync(join(mnt, 'eio'))).toThrow(expect.objectContaining({ code: 'EIO' }));
    // The kernel must know `data` first, or it refuses the notifications about it (ENOENT).
    expect(fs.readFileSync(join(mnt, 'data'), 'utf8')).toMatch(/^generation 0/);
    const ctl = (name: string) => expect(fs.readFileSync(join(mnt, name), 'utf8')).toBe('ok\n');
    ctl('ctl_inval_inode');
    fs.readFileSync(join(mnt, 'data'), 'utf8');
    ctl('ctl_store');
    ctl('ctl_retrieve'); // the kernel answers with a NOTIFY_REPLY from its page cache
    // The proxy forwards notifications on a thread of their own: wait until the answer came back.
    for (let i = 0; i < 100 && fs.readFileSync(join(mnt, 'retrieved'), 'utf8') === ''; i++) await sleep(30);
    expect(fs.readFileSync(join(mnt, 'retrieved'), 'utf8')).not.toBe('');
    ctl('ctl_inval_entry');
    // A WRITE the server never answers; the writer waits until the connection is aborted.
    const writer = reg.process(spawn('sh', ['-c', `echo hi > ${join(mnt, 'blackhole')}`], { stdio: 'ignore' }));
    await sleep(500);
    expect(writer.exitCode).toBeNull();
    expect(await abortConnection(mnt)).toBe(true);
    expect((await waitExit(writer)).code).not.toBe(0);
    await rec.exited;
    expect(spawnSync('umount', [mnt]).status).toBe(0);

    const { rows, endReason } = ledgerOf(db);
    const reads = (name: string) => rows.filter((r) => r.opcode === READ && r.path === `/${name}`);
    const one = (name: string) => {
      const list = reads(name);
      expect(list.length, `READs of /${name}`).toBe(1);
      return list[0];
    };
    expect(one('slow_eintr')).toMatchObject({ state: 'interrupted', outcome: 'eintr', errno: EINTR });
    expect(one('slow_eintr').interrupt_seq).not.toBeNull();
    expect(one('slow_ignore')).toMatchObject({ state: 'interrupted', outcome: 'answered', errno: 0 });
    expect(one('slow_eagain')).toMatchObject({ state: 'interrupted', outcome: 'eagain', errno: EINTR });
    expect(one('eio')).toMatchObject({ state: 'error', errno: EIO, outcome: null });
    // The readers are the sigread processes: pid and comm from the procs table.
    expect(one('slow_eintr').comm).toBe(basename(buildServer('sigread')).slice(0, 15)); // TASK_COMM_LEN
    expect(one('slow_eintr').background).toBe(0);

    const notes = rows.filter((r) => r.state === 'notify');
    expect(notes.map((r) => r.outcome)).toEqual(expect.arrayContaining(['inval_inode', 'inval_entry', 'store', 'retrieve', 'retrieve_reply']));
    expect(notes.find((r) => r.outcome === 'inval_entry')!.path).toBe('/data');
    expect(notes.find((r) => r.outcome === 'inval_inode')!.path).toBe('/data');
    expect(notes.find((r) => r.opcode === NOTIFY_REPLY)!.path).toBe('/data');
    expect(notes.filter((r) => r.opcode === 0).map((r) => r.errno)).toEqual([0, 0, 0, 0]); // accepted by the kernel

    const blackhole = rows.filter((r) => r.opcode === WRITE && r.path === '/blackhole');
    expect(blackhole.length).toBe(1);
    expect(endReason).not.toBeNull();
    expect(blackhole[0]).toMatchObject({ state: 'aborted', outcome: endReason, errno: null, dur_ns: null });

    expect(rows.find((r) => r.opcode === INIT)).toMatchObject({ state: 'ok', background: 1 });
    // Nothing left unplaced, and INTERRUPTs are not rows of their own.
    expect(rows.filter((r) => r.state === 'unknown' || r.state === 'unanswered')).toEqual([]);
    expect(rows.filter((r) => r.opcode === 36)).toEqual([]);

    // export, through the real CLI, on this recorded session.
    const jsonl = spawnSync(process.execPath, [CLI, '--db', db, 'export', '--format', 'jsonl'], { encoding: 'utf8' });
    expect(jsonl.status, jsonl.stderr).toBe(0);
    const lines = jsonl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length).toBe(rows.length);
    expect(lines.find((l) => l.path === '/slow_eintr' && l.op === 'READ')).toMatchObject({ state: 'interrupted', outcome: 'eintr', err: 'EINTR' });
    const out = join(work, 'trace.json');
    const perfetto = spawnSync(process.execPath, [CLI, '--db', db, 'export', '--format', 'perfetto', '-o', out], { encoding: 'utf8' });
    expect(perfetto.status, perfetto.stderr).toBe(0);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as { traceEvents: Array<Record<string, any>> };
    expect(checkChromeTrace(doc)).toEqual([]);
    const intr = doc.traceEvents.filter((e) => e.ph === 'i' && e.name === 'INTERRUPT');
    expect(intr.length).toBe(4); // slow_eintr, slow_ignore, and slow_eagain's two
    expect(doc.traceEvents.filter((e) => e.ph === 'i' && e.name === 'INTERRUPT answered EAGAIN').length).toBe(1);
    const sigreadName = doc.traceEvents.find((e) => e.ph === 'M' && e.name === 'thread_name' && String(e.args.name).startsWith('server-sigread'));
    expect(sigreadName).toBeDefined();
    const stuck = doc.traceEvents.find((e) => e.ph === 'X' && e.name === 'WRITE' && e.args.path === '/blackhole')!;
    expect(stuck.cat).toBe('aborted');
  }, 60_000);

  it('a server crash leaves its outstanding WRITE aborted; a killed recorder leaves it unanswered', async () => {
    const work = reg.tempDir();
    const args = ['-f', '--delay-ms=300', '--wait-ms=10000'];
    // 1. The server dies by SIGSEGV with a WRITE outstanding.
    const mnt1 = reg.mountpoint();
    const db1 = join(work, 'crash.db');
    const rec1 = await record(buildServer('interrupt_fs'), args, mnt1, db1);
    const writer1 = await blackholeWriter(mnt1);
    process.kill(serverPidOf(rec1.child.pid!), 'SIGSEGV');
    expect((await rec1.exited).code).toBe(139);
    expect((await waitExit(writer1)).code).not.toBe(0);
    const crash = ledgerOf(db1);
    expect(crash.endReason).toBe('server-crash');
    expect(crash.rows.filter((r) => r.opcode === WRITE)).toMatchObject([{ path: '/blackhole', state: 'aborted', outcome: 'server-crash', errno: null }]);

    // 2. fusetrace itself is SIGKILLed: the session has no end, the WRITE stays unanswered.
    const mnt2 = reg.mountpoint();
    const db2 = join(work, 'killed.db');
    const rec2 = await record(buildServer('interrupt_fs'), args, mnt2, db2);
    const writer2 = await blackholeWriter(mnt2);
    await sleep(300); // past the recorder's 100 ms commit period
    rec2.child.kill('SIGKILL');
    await rec2.exited;
    expect((await waitExit(writer2)).code).not.toBe(0);
    const killed = ledgerOf(db2);
    expect(killed.endReason).toBeNull();
    expect(killed.rows.filter((r) => r.opcode === WRITE)).toMatchObject([{ path: '/blackhole', state: 'unanswered', outcome: null }]);
  }, 60_000);

  it('passthrough_ll: paths across a directory rename, a re-created name, an unlinked open file; FORGETs', async () => {
    const work = reg.tempDir();
    const src = join(work, 'src');
    fs.mkdirSync(src);
    const mnt = reg.mountpoint();
    const db = join(work, 'trace.db');
    const rec = await record(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`, '-o', 'cache=never'], mnt, db);
    const p = (rel: string) => join(mnt, rel);
    fs.mkdirSync(p('a'));
    fs.writeFileSync(p('a/f1'), 'one');
    fs.renameSync(p('a'), p('b'));
    fs.appendFileSync(p('b/f1'), 'more');
    fs.writeFileSync(p('b/f2'), 'two');
    fs.unlinkSync(p('b/f1'));
    fs.writeFileSync(p('b/f1'), 'again');
    const keep = fs.openSync(p('b/keep'), 'w');
    fs.unlinkSync(p('b/keep'));
    fs.writeSync(keep, 'still open');
    fs.closeSync(keep);
    for (let i = 0; i < 20; i++) fs.writeFileSync(p(`b/t${i}`), 'x');
    for (let i = 0; i < 20; i++) fs.unlinkSync(p(`b/t${i}`));
    fs.statSync(p('b/f2'));
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    await rec.exited;

    const { rows } = ledgerOf(db);
    const writes = rows.filter((r) => r.opcode === WRITE && r.pid === process.pid);
    expect(writes.map((r) => r.path)).toEqual([
      '/a/f1',
      '/b/f1',
      '/b/f2',
      '/b/f1',
      '/b/keep (deleted)',
      ...Array.from({ length: 20 }, (_, i) => `/b/t${i}`),
    ]);
    expect(writes.every((r) => r.state === 'ok')).toBe(true);
    const comm = fs.readFileSync('/proc/self/comm', 'utf8').trim();
    expect(writes[0].comm).toBe(comm);
    const rename = rows.find((r) => r.opcode === RENAME);
    expect(rename).toMatchObject({ path: '/a', state: 'ok' });
    const creates = rows.filter((r) => r.opcode === CREATE).map((r) => r.path);
    expect(creates.slice(0, 4)).toEqual(['/a/f1', '/b/f2', '/b/f1', '/b/keep']);
    // The re-created /b/f1 is a new inode: its first WRITE names it, not "(deleted)".
    expect(rows.filter((r) => r.path === '/b/f1 (deleted)' && r.opcode === WRITE)).toEqual([]);
    // Unlinked files are forgotten: FORGETs (or BATCH_FORGETs) are noreply rows.
    const forgets = rows.filter((r) => r.opcode === FORGET || r.opcode === BATCH_FORGET);
    expect(forgets.length).toBeGreaterThan(0);
    expect(forgets.every((r) => r.state === 'noreply')).toBe(true);
    // Every LOOKUP after the rename resolves under /b, none under /a.
    const renameSeq = rename!.seq;
    expect(rows.filter((r) => r.opcode === LOOKUP && r.seq > renameSeq && r.path!.startsWith('/a/'))).toEqual([]);
    expect(rows.some((r) => r.path !== null && r.path.includes('<nodeid:'))).toBe(false);
    expect(rows.filter((r) => r.state === 'unknown')).toEqual([]);
  }, 60_000);
});
