// End-to-end tests of `fusetrace replay`: sessions recorded by the real `fusetrace record` CLI
// (real mounts, real libfuse servers, real SQLite traces), replayed by the real CLI against the
// same servers on a socketpair (no mount). Every mount and process is registered for cleanup,
// so a failing test still unmounts (never lazily) and stops what it started, by PID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TraceReader } from '../src/store/reader.js';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample, buildServer } from './helpers/build.js';
import { CleanupRegistry, isMounted, unmount, waitExit } from './helpers/mount.js';
import { buildCli, CLI } from './helpers/record.js';

const reg = new CleanupRegistry();
afterAll(() => reg.cleanup());

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let passthrough = '';
let interruptFs = '';
let sigread = '';

beforeAll(() => {
  requireFuse();
  buildCli();
  passthrough = buildExample('passthrough_ll');
  interruptFs = buildServer('interrupt_fs');
  sigread = buildServer('sigread');
}, 120_000);

/**
 * Records one session: `fusetrace record -- SERVER ARGS MNT`, runs `workload(mnt)`, unmounts with
 * fusermount3 -u and waits for fusetrace to commit and exit.
 */
async function recordSession(db: string, server: string, args: string[], workload: (mnt: string) => Promise<void>, recordFlags: string[] = []): Promise<void> {
  const mnt = reg.mountpoint('fusetrace-replay-mnt-');
  const log = join(reg.tempDir('fusetrace-replay-log-'), 'record.log');
  const fd = openSync(log, 'w');
  const child = spawn(process.execPath, [CLI, '--db', db, 'record', ...recordFlags, '--', server, ...args, mnt], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  reg.process(child);
  const exited = waitExit(child);
  const deadline = Date.now() + 15_000;
  while (!isMounted(mnt)) {
    if (child.exitCode !== null) throw new Error(`fusetrace record exited early:\n${readFileSync(log, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`no mount after 15 s:\n${readFileSync(log, 'utf8')}`);
    await sleep(20);
  }
  await stat(mnt); // waits for INIT
  await workload(mnt);
  // Let the kernel's background work (releases, forgets) reach the server before unmounting.
  spawnSync('sync');
  await sleep(300);
  await unmount(mnt);
  const exit = await Promise.race([exited, sleep(15_000).then(() => null)]);
  if (!exit) throw new Error(`fusetrace record did not exit after the unmount:\n${readFileSync(log, 'utf8')}`);
  if (exit.code !== 0) throw new Error(`fusetrace record exited ${exit.code ?? exit.signal}:\n${readFileSync(log, 'utf8')}`);
  if (!/ended by unmount/.test(readFileSync(log, 'utf8'))) throw new Error(`fusetrace record did not end by the unmount:\n${readFileSync(log, 'utf8')}`);
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `fusetrace --db DB replay ARGS` to completion (bounded: a hang fails the test, never wedges it). */
function replay(db: string, args: string[], timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, '--db', db, 'replay', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    reg.process(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`replay did not finish in ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface JsonResult {
  unique: string;
  op: string;
  request: string;
  outcome: string;
  recordedReply?: string;
  liveReply?: string;
  diffs: Array<{ field: string; recorded: string; live: string }>;
  note?: string;
  interrupts?: string[];
}
interface JsonReport {
  counts: Record<string, number>;
  firstDivergence: number | null;
  results: JsonResult[];
  unexpected: unknown[];
  order: string[] | null;
  serverExit: { code: number | null; signal: string | null; early: boolean; asRecorded: boolean; compared: boolean; recorded: { code: number | null; signal: string | null } | null };
  ok: boolean;
}

// ---------------------------------------------------------------------------------------------
// passthrough_ll: a real workload, replayed on fresh copies of the backing directory

/** The backing directory as it was when the recording started. */
function initialTree(dir: string, variant: 'same' | 'changed-data' | 'missing-file' = 'same'): void {
  mkdirSync(join(dir, 'docs'), { recursive: true });
  writeFileSync(join(dir, 'readme.txt'), variant === 'changed-data' ? 'fusetrace replay READMX\n' : 'fusetrace replay README\n');
  if (variant !== 'missing-file') writeFileSync(join(dir, 'docs', 'notes.txt'), 'first line\nsecond line\n');
  writeFileSync(join(dir, 'docs', 'big.bin'), Buffer.alloc(70_000, 7));
}

/** Creates, writes, reads, renames, readdirs and unlinks through the mount, one step at a time. */
async function passthroughWorkload(mnt: string): Promise<void> {
  readdirSync(mnt);
  readFileSync(join(mnt, 'readme.txt'));
  readFileSync(join(mnt, 'docs', 'notes.txt'));
  readFileSync(join(mnt, 'docs', 'big.bin'));
  // An idle second in the recording, for --timing recorded.
  await sleep(1000);
  mkdirSync(join(mnt, 'work'));
  for (let i = 0; i < 5; i++) writeFileSync(join(mnt, 'work', `f${i}.txt`), `content of file ${i}\n`.repeat(i + 1));
  writeFileSync(join(mnt, 'work', 'large.bin'), Buffer.alloc(200_000, 0x5a));
  readFileSync(join(mnt, 'work', 'f3.txt'));
  renameSync(join(mnt, 'work', 'f1.txt'), join(mnt, 'work', 'renamed.txt'));
  readdirSync(join(mnt, 'work'), { withFileTypes: true });
  statSync(join(mnt, 'work', 'renamed.txt'));
  readFileSync(join(mnt, 'work', 'large.bin'));
  unlinkSync(join(mnt, 'work', 'f0.txt'));
  unlinkSync(join(mnt, 'work', 'f2.txt'));
  readdirSync(join(mnt, 'work'));
  await readFile(join(mnt, 'work', 'renamed.txt'));
  rmSync(join(mnt, 'work'), { recursive: true });
  readdirSync(mnt);
}

describe('fusetrace replay of a passthrough_ll session', () => {
  let db = '';
  let work = '';

  /**
   * A fresh copy of the initial backing directory for one replay (the test's sessionStart reset),
   * always at the same path: the server's command line is part of the report.
   */
  function freshCopy(variant: Parameters<typeof initialTree>[1] = 'same'): string {
    const dir = join(work, 'copy');
    rmSync(dir, { recursive: true, force: true });
    initialTree(dir, variant);
    return dir;
  }

  beforeAll(async () => {
    work = reg.tempDir('fusetrace-replay-pt-');
    db = join(work, 'trace.db');
    const src = join(work, 'src');
    initialTree(src);
    await recordSession(db, passthrough, ['-f', '-o', `source=${src}`], passthroughWorkload);
  }, 60_000);

  it('replays against the same server on a fresh copy: 0 divergences, exit 0, 20 times with identical reports', async () => {
    const reports: string[] = [];
    for (let i = 0; i < 20; i++) {
      const copy = freshCopy();
      const r = await replay(db, ['--report', 'json', '--', passthrough, '-f', '-o', `source=${copy}`]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const rep = JSON.parse(r.stdout) as JsonReport;
      expect(rep.ok).toBe(true);
      expect(rep.counts.diverged).toBe(0);
      expect(rep.counts.missing).toBe(0);
      expect(rep.counts.unexpected).toBe(0);
      expect(rep.counts.skipped).toBe(0);
      // The replay ended as the unmount did (ENODEV at the server's next read), and passthrough_ll
      // exited 0 as when recorded, not 1 ("short read on fuse device").
      expect(rep.serverExit).toMatchObject({ code: 0, signal: null, early: false, compared: true, asRecorded: true, recorded: { code: 0, signal: null } });
      // The workload's requests really were replayed and compared.
      const ops = new Set(rep.results.map((x) => x.op));
      for (const op of ['INIT', 'LOOKUP', 'CREATE', 'WRITE', 'READ', 'RENAME', 'UNLINK', 'RMDIR', 'MKDIR']) expect(ops).toContain(op);
      expect(ops.has('READDIR') || ops.has('READDIRPLUS')).toBe(true);
      expect(rep.counts.matched).toBeGreaterThan(40);
      reports.push(r.stdout);
    }
    expect(new Set(reports).size).toBe(1);
  }, 300_000);

  it('a server answering one request differently (different file data): exit 1, that READ named first', async () => {
    const copy = freshCopy('changed-data');
    const r = await replay(db, ['--', passthrough, '-f', '-o', `source=${copy}`]);
    expect(r.code).toBe(1);
    const first = /^first divergence: unique (\d+) (\S+) (.*)$/m.exec(r.stdout);
    expect(first, r.stdout).not.toBeNull();
    expect(first![2]).toBe('READ');
    expect(r.stdout).toMatch(/! data +\d+ bytes "fusetrace replay README\\n" +\d+ bytes "fusetrace replay READMX\\n"/);
    expect(r.stdout).toMatch(/result: DIVERGED/);

    const j = await replay(db, ['--report', 'json', '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
    expect(j.code).toBe(1);
    const rep = JSON.parse(j.stdout) as JsonReport;
    const x = rep.results[rep.firstDivergence!];
    expect(x.unique).toBe(first![1]);
    expect(x.outcome).toBe('diverged');
    expect(x.diffs.map((d) => d.field)).toEqual(['data']);
    expect(rep.counts.diverged).toBe(1);
  });

  it('a file missing on the server: exit 1, the LOOKUP that now fails is named first and its dependants are skipped', async () => {
    const r = await replay(db, ['--report', 'json', '--', passthrough, '-f', '-o', `source=${freshCopy('missing-file')}`]);
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as JsonReport;
    const x = rep.results[rep.firstDivergence!];
    expect(x.op).toBe('LOOKUP');
    expect(x.request).toContain('"notes.txt"');
    expect(x.recordedReply).toMatch(/^OK entry/);
    expect(x.liveReply).toBe('ENOENT');
    // OPEN/READ of the node the live server never handed out are not sent (passthrough_ll would
    // dereference an unknown nodeid), and say why.
    const skipped = rep.results.filter((y) => y.outcome === 'skipped');
    expect(skipped.length).toBeGreaterThan(0);
    for (const y of skipped) expect(y.note).toMatch(/never handed out/);
  });

  it('--data length and --rule change the comparison, and the report lists the rules in effect', async () => {
    const r = await replay(db, ['--data', 'length', '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ {2}length: data {2}\(--data length\)$/m);
    expect(r.stdout).toMatch(/^ {2}ignore: atime .*\(timestamps differ/m);
    const ino = await replay(db, ['--rule', 'ino=exact', '--', passthrough, '-f', '-o', `source=${freshCopy()}`]);
    // A fresh copy has fresh inode numbers: compared exactly, they differ.
    expect(ino.code).toBe(1);
    expect(ino.stdout).toMatch(/! \S*ino /);
  });

  it('the JUnit report is structurally valid JUnit XML: one testcase per request, failures carry the diff', async () => {
    const out = join(work, 'junit.xml');
    const r = await replay(db, ['--report', 'junit', '-o', out, '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/report in /);
    const xml = readFileSync(out, 'utf8');
    const doc = parseXml(xml);
    const suites = doc;
    expect(suites.name).toBe('testsuites');
    const suite = suites.children.filter((c) => c.name === 'testsuite');
    expect(suite.length).toBe(1);
    const cases = suite[0].children.filter((c) => c.name === 'testcase');
    for (const c of cases) {
      expect(c.attrs.classname).toMatch(/^fusetrace\.replay\.session\d+/);
      expect(c.attrs.name).toMatch(/^unique \d+ /);
    }
    const failed = cases.filter((c) => c.children.some((x) => x.name === 'failure'));
    const skipped = cases.filter((c) => c.children.some((x) => x.name === 'skipped'));
    for (const [el, n] of [[suites, cases.length], [suite[0], cases.length]] as const) {
      expect(Number(el.attrs.tests)).toBe(n);
      expect(Number(el.attrs.failures)).toBe(failed.length);
      expect(Number(el.attrs.skipped)).toBe(skipped.length);
      expect(Number(el.attrs.errors)).toBe(0);
    }
    expect(failed.length).toBe(1);
    const failure = failed[0].children.find((x) => x.name === 'failure')!;
    expect(failed[0].attrs.name).toMatch(/ READ /);
    expect(failure.attrs.type).toBe('diverged');
    expect(failure.attrs.message).toMatch(/data/);
    expect(failure.text).toMatch(/data: recorded \d+ bytes "fusetrace replay README\\n", live \d+ bytes "fusetrace replay READMX\\n"/);
    // One testcase per compared request: the JSON report of the same replay counts them.
    const j = await replay(db, ['--report', 'json', '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
    expect(cases.length).toBe((JSON.parse(j.stdout) as JsonReport).counts.compared);
  });

  it('RANGE and --filter compare only the selected requests (the requests before them are still replayed)', async () => {
    const all = JSON.parse((await replay(db, ['--report', 'json', '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`])).stdout) as JsonReport;
    const read = all.results[all.firstDivergence!];
    expect(read.op).toBe('READ');
    const reads = all.results.filter((x) => x.op === 'READ').length;
    // Only that READ (and INIT, always): it diverges.
    for (const sel of [['1', read.unique], ['--range', read.unique]]) {
      const r = await replay(db, ['--report', 'json', ...sel, '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
      expect(r.code).toBe(1);
      const rep = JSON.parse(r.stdout) as JsonReport;
      expect(rep.results.map((x) => x.op)).toEqual(['INIT', 'READ']);
      expect(rep.counts.diverged).toBe(1);
      expect(rep.counts.replayed).toBeGreaterThan(2);
    }
    // Everything before it: nothing that differs is compared, or even sent.
    const before = await replay(db, ['--report', 'json', '1', `2-${BigInt(read.unique) - 2n}`, '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
    expect(before.code).toBe(0);
    // A filter over the request ledger (built from the frames if the trace has none yet).
    const f = await replay(db, ['--report', 'json', '--filter', 'op==READ', '--', passthrough, '-f', '-o', `source=${freshCopy('changed-data')}`]);
    expect(f.code).toBe(1);
    const fr = JSON.parse(f.stdout) as JsonReport;
    expect(fr.results.filter((x) => x.op !== 'INIT').every((x) => x.op === 'READ')).toBe(true);
    expect(fr.results.filter((x) => x.op === 'READ').length).toBe(reads);
    const both = await replay(db, ['--filter', 'op==READ', '1', '5-9', '--', passthrough]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--filter and RANGE exclude each other/);
  });

  it('--timing recorded keeps the recorded gaps, xN divides them', async () => {
    const gapsMs = (() => {
      const t = new Database(db, { readonly: true });
      const r = new TraceReader(t);
      const fwd = r.listSessions().flatMap((s) => [...r.frames(s.id)].filter((f) => f.dir === 0 && f.fwdNs !== null).map((f) => f.fwdNs!));
      const row = { a: fwd.reduce((x, y) => (y < x ? y : x)), b: fwd.reduce((x, y) => (y > x ? y : x)) };
      t.close();
      return Number(row.b - row.a) / 1e6;
    })();
    expect(gapsMs).toBeGreaterThan(1000); // the workload's idle second is in there
    const timed = async (timing: string): Promise<number> => {
      const t0 = Date.now();
      const r = await replay(db, ['--timing', timing, '--', passthrough, '-f', '-o', `source=${freshCopy()}`]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return Date.now() - t0;
    };
    const recorded = await timed('recorded');
    const fast = await timed('x1000');
    expect(recorded).toBeGreaterThan(gapsMs);
    expect(fast).toBeLessThan(recorded);
  });

  it('a server that goes to the background (no -f) is replayed there and does not outlive the replay', async () => {
    const copy = freshCopy();
    const t0 = Date.now();
    const r = await replay(db, ['--', passthrough, '-o', `source=${copy}`], 30_000);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/result: all replies matched/);
    // The background process read end-of-file once the replay closed its socket, and ended.
    const holders = (): number[] =>
      readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`source=${copy}`);
        } catch {
          return false;
        }
      });
    const deadline = Date.now() + 5000;
    while (holders().length > 0 && Date.now() < deadline) await sleep(50);
    expect(holders()).toEqual([]);
  });

  it('usage and environment errors exit 2 with one line', async () => {
    const noServer = await replay(db, ['1']);
    expect(noServer.code).toBe(2);
    expect(noServer.stderr.trim()).toMatch(/^fusetrace: replay needs the server command after --/);
    const badTiming = await replay(db, ['--timing', 'fast', '--', passthrough]);
    expect(badTiming.code).toBe(2);
    expect(badTiming.stderr.trim().split('\n')).toHaveLength(1);
    const noSession = await replay(db, ['99', '--', passthrough]);
    expect(noSession.code).toBe(2);
    expect(noSession.stderr).toMatch(/no session "?99/);
    const missing = await replay(db, ['--', join(work, 'no-such-server')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/server not found/);
  });
});

// ---------------------------------------------------------------------------------------------
// interrupt_fs: interrupted reads, injected interrupts, in-flight permutations

/** Runs sigread: one read(2) of `file`, SIGINT to the reader after `delayMs`. */
function runSigread(file: string, delayMs: number): string {
  const r = spawnSync(sigread, [file, String(delayMs)], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`sigread ${file} failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe('fusetrace replay of interrupted requests (interrupt_fs)', () => {
  let db = '';
  const args = ['-f', '--wait-ms=400'];

  beforeAll(async () => {
    const work = reg.tempDir('fusetrace-replay-intr-');
    db = join(work, 'trace.db');
    await recordSession(db, interruptFs, args, async (mnt) => {
      // Interrupted while the server holds the READ: EINTR, EAGAIN-then-EINTR, answered anyway.
      expect(runSigread(join(mnt, 'slow_eintr'), 100)).toMatch(/^error EINTR/);
      expect(runSigread(join(mnt, 'slow_eagain'), 100)).toMatch(/^error EINTR/);
      expect(runSigread(join(mnt, 'slow_ignore'), 100)).toMatch(/^data 12/);
      // Not interrupted: answered after --wait-ms.
      expect(readFileSync(join(mnt, 'slow_eintr'), 'utf8')).toBe('slow answer\n');
    });
  }, 60_000);

  it('a recorded interrupted read replays with the INTERRUPT at the same point and the same outcome, 20/20', async () => {
    const reports: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await replay(db, ['--report', 'json', '--', interruptFs, ...args]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const rep = JSON.parse(r.stdout) as JsonReport;
      expect(rep.ok).toBe(true);
      const reads = rep.results.filter((x) => x.op === 'READ');
      const interrupted = reads.filter((x) => x.interrupts);
      // slow_eintr (one INTERRUPT, EINTR), slow_eagain (INTERRUPT, EAGAIN, INTERRUPT, EINTR), slow_ignore (data).
      expect(interrupted.map((x) => [x.recordedReply, x.outcome, x.interrupts!.length])).toEqual([
        ['EINTR', 'matched', 1],
        ['EINTR', 'matched', 2],
        ['OK 12 bytes', 'matched', 1],
      ]);
      for (const x of interrupted) {
        // Sent at the recorded point (about 100 ms after the READ, as sigread signalled it), never late.
        for (const line of x.interrupts!) {
          const ms = Number(/INTERRUPT (\d+) ms after sending \(as recorded\)/.exec(line)?.[1]);
          expect(ms).toBeGreaterThanOrEqual(95);
          expect(ms).toBeLessThan(200);
        }
        expect(x.note ?? '').not.toMatch(/not sent/);
      }
      // Timer lateness on a busy machine is reported on stderr; it must stay far below the
      // server's own --wait-ms, or the point in the event order would not be the same.
      const late = /INTERRUPT went out (\d+) ms after/.exec(r.stderr);
      if (late) expect(Number(late[1])).toBeLessThan(300);
      reports.push(r.stdout);
    }
    expect(new Set(reports).size).toBe(1);
  }, 300_000);

  it('--interrupt on a read that was not interrupted produces the server\'s EINTR path', async () => {
    const plain = JSON.parse((await replay(db, ['--report', 'json', '--', interruptFs, ...args])).stdout) as JsonReport;
    const read = plain.results.find((x) => x.op === 'READ' && !x.interrupts && x.recordedReply === 'OK 12 bytes');
    expect(read).toBeDefined();
    for (const point of ['50ms', 'sent']) {
      const r = await replay(db, ['--report', 'json', '--interrupt', `${read!.unique}@${point}`, '--', interruptFs, ...args]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const rep = JSON.parse(r.stdout) as JsonReport;
      const x = rep.results.find((y) => y.unique === read!.unique)!;
      expect(x.outcome).toBe('injected');
      expect(x.liveReply).toBe('EINTR');
      expect(x.recordedReply).toBe('OK 12 bytes');
      expect(x.interrupts).toEqual([point === 'sent' ? 'INTERRUPT right after sending (--interrupt)' : 'INTERRUPT 50 ms after sending (--interrupt)']);
      expect(rep.counts.injected).toBe(1);
    }
    const bad = await replay(db, ['--interrupt', '999999', '--', interruptFs, ...args]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/sends no request with unique 999999/);
  });
});

describe('fusetrace replay --seed (interrupt_fs, reads in flight together)', () => {
  let db = '';
  const args = ['-f', '--delay-ms=200'];

  beforeAll(async () => {
    const work = reg.tempDir('fusetrace-replay-seed-');
    db = join(work, 'trace.db');
    await recordSession(db, interruptFs, args, async (mnt) => {
      // Eight readers at once: the server parks each READ for 200 ms, so all are in flight together.
      const file = join(mnt, 'slow');
      await stat(file);
      const readers = Array.from({ length: 8 }, () =>
        new Promise<void>((resolve, reject) => {
          const c = spawn('cat', [file], { stdio: ['ignore', 'ignore', 'inherit'] });
          c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
        }),
      );
      await Promise.all(readers);
    });
  }, 60_000);

  it('a server that stops answering is reported as a hang, not waited for forever', async () => {
    const t0 = Date.now();
    // The same server, now parking every READ of `slow` for a minute.
    const r = await replay(db, ['--report', 'json', '--reply-timeout', '300', '--', interruptFs, '-f', '--delay-ms=60000']);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.code).toBe(1);
    const rep = JSON.parse(r.stdout) as JsonReport;
    const x = rep.results[rep.firstDivergence!];
    expect(x.op).toBe('READ');
    expect(x.outcome).toBe('missing');
    expect(x.note).toMatch(/no reply within \d+ ms \(hang\)/);
    expect(rep.counts.missing).toBeGreaterThan(0);
  });

  it('the same seed gives the same order, a different seed a different one, and all still match', async () => {
    const run = async (seed: string): Promise<JsonReport> => {
      const r = await replay(db, ['--report', 'json', '--seed', seed, '--', interruptFs, ...args]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return JSON.parse(r.stdout) as JsonReport;
    };
    const plain = JSON.parse((await replay(db, ['--report', 'json', '--', interruptFs, ...args])).stdout) as JsonReport;
    expect(plain.order).toBeNull();
    const a1 = await run('1');
    const a2 = await run('1');
    const b = await run('2');
    expect(a1.order).not.toBeNull();
    expect(a1.order).toEqual(a2.order);
    expect(b.order).not.toEqual(a1.order);
    // A permutation: the same requests, in another order.
    expect([...b.order!].sort()).toEqual([...a1.order!].sort());
    expect(a1.counts.diverged + b.counts.diverged).toBe(0);
  });
});

describe('fusetrace replay of notifications (interrupt_fs)', () => {
  it('expects each recorded notification where the recording saw it, NOTIFY_REPLY included', async () => {
    const work = reg.tempDir('fusetrace-replay-notify-');
    const db = join(work, 'trace.db');
    await recordSession(db, interruptFs, ['-f'], async (mnt) => {
      readFileSync(join(mnt, 'data'));
      readFileSync(join(mnt, 'ctl_inval_inode')); // NOTIFY_INVAL_INODE
      readFileSync(join(mnt, 'ctl_store')); // NOTIFY_STORE
      readFileSync(join(mnt, 'ctl_retrieve')); // NOTIFY_RETRIEVE, answered by the kernel's NOTIFY_REPLY
      readFileSync(join(mnt, 'ctl_inval_entry')); // NOTIFY_INVAL_ENTRY
      readFileSync(join(mnt, 'data'));
    });
    const r = await replay(db, ['--report', 'json', '--', interruptFs, '-f']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as JsonReport;
    expect(rep.counts.notifications).toBe(4);
    expect(rep.counts.notificationsMatched).toBe(4);
    expect(rep.results.some((x) => x.op === 'NOTIFY_REPLY' && x.outcome === 'sent')).toBe(true);
  });
});

describe('fusetrace replay of a session recorded with --snaplen', () => {
  it('marks requests and replies whose payload was cut as not comparable, never as matched', async () => {
    const work = reg.tempDir('fusetrace-replay-snap-');
    const db = join(work, 'trace.db');
    const src = join(work, 'src');
    initialTree(src);
    await recordSession(db, passthrough, ['-f', '-o', `source=${src}`], passthroughWorkload, ['--snaplen', '256']);
    const copy = join(work, 'copy');
    initialTree(copy);
    const r = await replay(db, ['--report', 'json', '--', passthrough, '-f', '-o', `source=${copy}`]);
    const rep = JSON.parse(r.stdout) as JsonReport;
    expect(rep.counts.uncomparable).toBeGreaterThan(0);
    const cut = rep.results.filter((x) => x.outcome === 'uncomparable');
    expect(cut.map((x) => x.op)).toContain('WRITE');
    expect(cut.map((x) => x.op)).toContain('READ');
    for (const x of cut) expect(x.note).toMatch(/cut by --snaplen \(\d+ of \d+ bytes recorded\)|which no whole recorded reply handed out \(replies were cut by --snaplen\)/);
    // Everything short enough to be whole is still compared, and matches.
    expect(rep.counts.matched).toBeGreaterThan(20);
    expect(rep.counts.diverged).toBe(0);
    expect(r.code).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// A small structural XML reader for the JUnit check: elements, attributes, text; throws on
// anything not well-formed (unbalanced tags, bad attribute syntax, stray '<' or '&').

interface XmlEl {
  name: string;
  attrs: Record<string, string>;
  children: XmlEl[];
  text: string;
}

function unescapeXml(s: string): string {
  if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(s)) throw new Error(`bad entity in ${JSON.stringify(s.slice(0, 80))}`);
  return s
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCodePoint(Number(d)))
    .replace(/&amp;/g, '&');
}

function parseXml(xml: string): XmlEl {
  let s = xml.replace(/^\uFEFF/, '');
  const decl = /^<\?xml[^?]*\?>\s*/.exec(s);
  if (!decl) throw new Error('missing XML declaration');
  s = s.slice(decl[0].length);
  const stack: XmlEl[] = [];
  let root: XmlEl | undefined;
  let i = 0;
  while (i < s.length) {
    if (s[i] !== '<') {
      const end = s.indexOf('<', i);
      const text = s.slice(i, end < 0 ? s.length : end);
      if (stack.length === 0) {
        if (text.trim()) throw new Error('text outside the root element');
      } else stack[stack.length - 1].text += unescapeXml(text);
      i = end < 0 ? s.length : end;
      continue;
    }
    if (s.startsWith('</', i)) {
      const m = /^<\/([A-Za-z_][\w.-]*)\s*>/.exec(s.slice(i));
      if (!m) throw new Error(`bad end tag at ${i}`);
      const top = stack.pop();
      if (!top || top.name !== m[1]) throw new Error(`</${m[1]}> does not close <${top?.name}>`);
      i += m[0].length;
      continue;
    }
    const m = /^<([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"<]*")*)\s*(\/?)>/.exec(s.slice(i));
    if (!m) throw new Error(`bad start tag at ${i}: ${s.slice(i, i + 60)}`);
    const attrs: Record<string, string> = {};
    for (const a of m[2].matchAll(/([A-Za-z_][\w.-]*)="([^"]*)"/g)) {
      if (a[1] in attrs) throw new Error(`duplicate attribute ${a[1]}`);
      attrs[a[1]] = unescapeXml(a[2]);
    }
    const el: XmlEl = { name: m[1], attrs, children: [], text: '' };
    if (stack.length > 0) stack[stack.length - 1].children.push(el);
    else if (root) throw new Error('two root elements');
    else root = el;
    if (!m[3]) stack.push(el);
    i += m[0].length;
  }
  if (stack.length > 0) throw new Error(`<${stack[stack.length - 1].name}> is not closed`);
  if (!root) throw new Error('no root element');
  return root;
}
