/**
 * `fusetrace demo`'s engine: records the demo server (server.ts) through the real `fusetrace record`
 * in a temporary directory, drives a scripted workload that produces every request lifecycle the
 * ledger knows (ok, error, slow, interrupted: eintr / answered, aborted at the session's end),
 * ends the recording, and leaves nothing behind: no mount, no directory, no process.
 *
 * Processes: the recorder (`node bin/fusetrace.js record ...`, in its own process group so that a
 * terminal's Ctrl-C reaches only us, and we end the recording in order) and the short-lived reader
 * children. Each is stopped by the PID we got from spawn(), never by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, readdir, stat, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { openTraceDb } from '../store/db.js';
import { rebuildLedger } from '../store/ledger.js';
import { TraceReader } from '../store/reader.js';
import { mountAt, unmountFuse } from '../proxy/mount.js';
import { cliPath, demoServerArgv } from './fixture.js';

export interface DemoOptions {
  /** Trace file (created if missing); the demo adds one session named `demo`. */
  dbPath: string;
  /** Progress lines (default: stderr, prefixed `fusetrace demo: `). */
  log?: (line: string) => void;
}

/** What a demo run did, for the CLI's summary and for tests. */
export interface DemoResult {
  session: number;
  dbPath: string;
  /** The temporary directory (removed by now) and the mountpoint inside it. */
  tempDir: string;
  mountpoint: string;
  /** PIDs of every process the demo started or caused: the recorder, the demo server (the recorder's child), the readers. */
  pids: { recorder: number; server: number | null; readers: number[] };
  /** How the recorder exited. */
  recorderExit: { code: number | null; signal: NodeJS.Signals | null };
  /** What the recorder printed (stdout and stderr). */
  recorderLog: string;
  /** True when record left the aborted mount behind (its reader still held a file) and the demo unmounted it. */
  unmountedByDemo: boolean;
  /** Request rows by ledger state and outcome, e.g. { 'interrupted/eintr': 1, ok: 60 }. */
  states: Record<string, number>;
  elapsedMs: number;
}

/** The user interrupted the demo (SIGINT); everything it started was stopped and removed. */
export class DemoInterrupted extends Error {
  constructor() {
    super('interrupted: the recording was ended and the temporary mount removed');
    this.name = 'DemoInterrupted';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `p`, or undefined after `ms`; the timer is cleared either way, so it never holds the process open. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every `everyMs` until it holds or `timeoutMs` passes; returns whether it held. */
async function until(cond: () => boolean, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(everyMs);
  }
}

/** A child we started, with its exit as a promise. */
interface Started {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
  output(): string;
}

function start(cmd: string, args: string[], opts: { detached?: boolean } = {}): Started {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached ?? false });
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const s: Started = {
    child,
    pid: child.pid,
    done: false,
    output: () => out,
    exited: new Promise((r) => {
      child.once('exit', (code, signal) => {
        s.done = true;
        r({ code, signal });
      });
    }),
  };
  return s;
}

/** A reader child: one readFileSync of `file`; prints `data N` or `error CODE`. Node, so the demo needs nothing else. */
const READER = `const fs=require('fs');try{const b=fs.readFileSync(process.argv[1]);console.log('data '+b.length)}catch(e){console.log('error '+e.code);process.exitCode=1}`;

/** Syscall numbers of read(2) and friends (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h). */
const READ_SYSCALLS = process.arch === 'arm64' ? [63, 65, 67, 69, 286] : [0, 17, 19, 295, 327];

/**
 * True when `pid` is blocked in a read of `file` (from /proc/PID/syscall: number, then the fd),
 * i.e. its READ request has reached the kernel's queue. Undefined when /proc cannot tell.
 */
function blockedReading(pid: number, file: string): boolean | undefined {
  let sc: string;
  try {
    sc = readFileSync(`/proc/${pid}/syscall`, 'utf8').trim();
  } catch {
    return undefined;
  }
  const [nr, fdHex] = sc.split(' ');
  if (!READ_SYSCALLS.includes(Number(nr)) || fdHex === undefined) return false;
  try {
    return readlinkSync(`/proc/${pid}/fd/${Number(BigInt(fdHex))}`) === file;
  } catch {
    return false;
  }
}

/** Starts a reader of `file` and resolves once its READ is with the server. */
async function startReader(file: string): Promise<Started> {
  const r = start(process.execPath, ['-e', READER, file]);
  const t0 = Date.now();
  let known = true;
  await until(() => {
    if (r.done) return true;
    const b = blockedReading(r.pid, file);
    if (b === undefined) known = false;
    return b === true || (!known && Date.now() - t0 > 500);
  }, 5_000, 10);
  if (r.done) throw new Error(`the reader of ${file} ended early: ${r.output().trim()}`);
  // Blocked in read(2) means the request is queued; the proxy forwards it at once (its gate keeps
  // one request in the socket) and the server reads it. Give that a moment, so the signal finds
  // it already sent (FR_SENT) and the kernel sends FUSE_INTERRUPT instead of dropping it.
  await sleep(100);
  return r;
}

/** The server's PID: the recorder's child (the exec helper execs the server in place). */
function childOf(pid: number): number | null {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (kids.length > 0) return Number(kids[0]);
  } catch {
    /* no CONFIG_PROC_CHILDREN: scan below */
  }
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) return Number(e);
    } catch {
      /* gone */
    }
  }
  return null;
}

/** Largest session id in the trace file, 0 when it has none or does not exist yet. */
function lastSession(dbPath: string): number {
  if (!existsSync(dbPath)) return 0;
  const db = openTraceDb(dbPath, { readonly: true });
  try {
    return new TraceReader(db).latestSessionId() ?? 0;
  } finally {
    db.close();
  }
}

/** The new session once the server answered INIT (record stores the negotiated version then), else undefined. */
function initAnswered(dbPath: string, after: number): number | undefined {
  if (!existsSync(dbPath)) return undefined;
  let db: Database | undefined;
  try {
    db = openTraceDb(dbPath, { readonly: true });
    return new TraceReader(db).listSessions().find((s) => s.id > after && s.serverMinor !== null)?.id;
  } catch {
    return undefined; // being created
  } finally {
    db?.close();
  }
}

/** Ends a wedged connection through fusectl (Documentation/filesystems/fuse.rst): the mount's minor is the connection number. */
function abortViaFusectl(mnt: string): boolean {
  const m = mountAt(mnt);
  if (!m) return false;
  const minor = m.device.split(':')[1];
  try {
    writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
    return true;
  } catch {
    return false;
  }
}

/** Request rows of a session by state (and outcome where there is one). Builds the ledger first if the recorder left it empty. */
function ledgerStates(dbPath: string, session: number): Record<string, number> {
  const db = openTraceDb(dbPath);
  try {
    const reader = new TraceReader(db);
    // record fills the ledger as it records; if the ledger stopped on an error (the frames still
    // commit, and record says so), derive the rows from the frames.
    if (reader.requestCounts(session).requests === 0 && reader.frameCount(session) > 0) rebuildLedger(db, session);
    const out: Record<string, number> = {};
    for (const r of reader.stateOutcomeCounts(session)) {
      const key = r.state === 'interrupted' || r.state === 'aborted' || r.state === 'late' ? `${r.state}/${r.outcome}` : r.state;
      out[key] = (out[key] ?? 0) + r.count;
    }
    return out;
  } finally {
    db.close();
  }
}

/** Runs the whole demo; throws (after cleaning up) when a step fails. */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const t0 = Date.now();
  const log = opts.log ?? ((l: string) => process.stderr.write(`fusetrace demo: ${l}\n`));
  const dbPath = resolve(opts.dbPath);
  if (!existsSync('/dev/fuse')) throw new UserError('/dev/fuse does not exist: the demo needs FUSE (run fusetrace doctor)');
  // Refuse an unusable trace file before anything is mounted (one-line UserError from the store).
  openTraceDb(dbPath, { create: true }).close();
  const tempDir = realpathSync(mkdtempSync(join(tmpdir(), 'fusetrace-demo-')));
  const mnt = join(tempDir, 'mnt');
  mkdirSync(mnt);
  const readers: Started[] = [];
  let recorder: Started | undefined;
  let serverPid: number | null = null;
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  const check = () => {
    if (interrupted) throw new DemoInterrupted();
  };

  try {
    const before = lastSession(dbPath);
    log(`recording the demo server at ${mnt} into ${dbPath}`);
    recorder = start(process.execPath, [cliPath(), '--db', dbPath, 'record', '--name', 'demo', '--', ...demoServerArgv(mnt)], { detached: true });
    const rec = recorder;

    // Mounted (mountinfo), then INIT answered (the session row gets the negotiated version). The
    // mountpoint is not touched before that: any access would wait for INIT.
    let session: number | undefined;
    const up = await until(() => rec.done || (mountAt(mnt) !== undefined && (session = initAnswered(dbPath, before)) !== undefined), 15_000, 25);
    if (!up || rec.done || session === undefined) {
      // One line for the user: record's own last word (its full output is logged below).
      const last = rec.output().trim().split('\n').pop()?.replace(/^fusetrace: /, '') ?? '';
      throw new Error(`the recording did not start${last ? `: ${last}` : ''}`);
    }
    serverPid = childOf(rec.pid);
    log(`session ${session}: recorder pid ${rec.pid}, demo server pid ${serverPid ?? '?'}`);
    check();

    // Ordinary requests: lookups, readdir, reads, writes.
    log('ordinary requests: list the root, read hello.txt and notes/*, write scratch.txt');
    const names = await readdir(mnt);
    for (const n of names) await stat(join(mnt, n));
    await readFile(join(mnt, 'hello.txt'));
    for (const n of await readdir(join(mnt, 'notes'))) await readFile(join(mnt, 'notes', n));
    await writeFile(join(mnt, 'scratch.txt'), 'written by fusetrace demo\n');
    await appendFile(join(mnt, 'scratch.txt'), 'and appended\n');
    await readFile(join(mnt, 'scratch.txt'));
    check();

    // Errors: a name that is not there (LOOKUP -> ENOENT), a file whose READ fails (EIO).
    log('errors: look up missing (ENOENT), read broken (EIO)');
    await stat(join(mnt, 'missing')).then(
      () => {
        throw new Error('stat of missing succeeded');
      },
      (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      },
    );
    await readFile(join(mnt, 'broken')).then(
      () => {
        throw new Error('reading broken succeeded');
      },
      (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EIO') throw e;
      },
    );

    log('a slow request: read slow.txt (300 ms)');
    await readFile(join(mnt, 'slow.txt'));
    check();

    // Interrupted reads: the reader is SIGINTed while the server holds its READ; the kernel sends
    // FUSE_INTERRUPT (fs/fuse/dev.c request_wait_answer) and waits for the answer, since the server
    // has already read the request. wait-eintr answers EINTR; wait-anyway answers the data anyway.
    log('interrupted reads: SIGINT to readers of wait-eintr and wait-anyway');
    const eintr = await startReader(join(mnt, 'wait-eintr'));
    readers.push(eintr);
    const anyway = await startReader(join(mnt, 'wait-anyway'));
    readers.push(anyway);
    process.kill(eintr.pid, 'SIGINT');
    process.kill(anyway.pid, 'SIGINT');
    for (const r of [eintr, anyway]) {
      const done = await within(r.exited, 5_000);
      if (!done) throw new Error(`reader ${r.pid} still waits 5 s after SIGINT`);
    }
    check();

    // A request outstanding at the end: the reader of `never` waits until the connection ends.
    log('a request outstanding at the end: a reader of never, left waiting');
    const never = await startReader(join(mnt, 'never'));
    readers.push(never);

    // End the recording: record's first SIGINT unmounts; the waiting reader keeps the mount busy
    // (EBUSY), so record waits for a second signal and then aborts the connection
    // (fuse_abort_conn: the outstanding READ ends with ECONNABORTED).
    log('ending the recording (SIGINT; again to abort the busy mount)');
    process.kill(rec.pid, 'SIGINT');
    await until(() => rec.done || /cannot unmount/.test(rec.output()), 3_000);
    if (!rec.done) {
      process.kill(rec.pid, 'SIGINT');
    }
    const recExit = await within(rec.exited, 15_000);
    if (!recExit) throw new Error('the recorder did not exit 15 s after SIGINT');
    const neverDone = await within(never.exited, 3_000);
    if (!neverDone) throw new Error('the reader of never still waits after the connection was aborted');
    // record unmounts right after the abort; if the aborted reader still had the file open then,
    // the mount is left disconnected (record says so). The reader is gone now: unmount it.
    const unmountedByDemo = mountAt(mnt) !== undefined;
    if (unmountedByDemo) {
      await unmountFuse({ mountpoint: mnt, via: process.geteuid?.() === 0 ? 'mount' : 'fusermount3' });
    }
    const states = ledgerStates(dbPath, session);
    return {
      session,
      dbPath,
      tempDir,
      mountpoint: mnt,
      pids: { recorder: rec.pid, server: serverPid, readers: readers.map((r) => r.pid) },
      recorderExit: recExit,
      recorderLog: rec.output(),
      unmountedByDemo,
      states,
      elapsedMs: Date.now() - t0,
    };
  } catch (err) {
    // A Ctrl-C also reaches the readers (our process group) and may end a step early: say what happened.
    if (interrupted) throw new DemoInterrupted();
    if (recorder) {
      const tail = recorder.output().trim();
      if (tail) log(`recorder output:\n${tail}`);
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    await cleanup(mnt, tempDir, recorder, readers, log);
  }
}

/** Stops what is left (by PID), unmounts (never lazily), removes the temporary directory. */
async function cleanup(mnt: string, tempDir: string, recorder: Started | undefined, readers: Started[], log: (l: string) => void): Promise<void> {
  if (recorder && !recorder.done) {
    // In order: SIGINT (unmount), SIGINT again (abort a busy mount), then SIGKILL.
    for (const sig of ['SIGINT', 'SIGINT', 'SIGKILL'] as const) {
      if (recorder.done) break;
      recorder.child.kill(sig);
      await until(() => recorder.done, 3_000);
    }
  }
  if (mountAt(mnt)) {
    // The recorder is gone; a wedged connection still blocks readers: abort it, then unmount.
    abortViaFusectl(mnt);
  }
  for (const r of readers) {
    if (!r.done) {
      r.child.kill('SIGKILL');
      await until(() => r.done, 3_000);
    }
  }
  if (mountAt(mnt)) {
    try {
      await unmountFuse({ mountpoint: mnt, via: process.geteuid?.() === 0 ? 'mount' : 'fusermount3' });
    } catch (err) {
      log(`cannot unmount ${mnt}: ${(err as Error).message}; unmount it by hand (umount ${mnt})`);
      return; // never remove a directory that is still a mountpoint
    }
  }
  rmSync(tempDir, { recursive: true, force: true });
}
