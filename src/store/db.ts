import fs from 'node:fs';
import os from 'node:os';
import nodePath from 'node:path';
import Database from 'better-sqlite3';
import type { Database as DatabaseT } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { decodeBatch, encodeBatches } from './batch.js';
import { completeSessions, orphanedSessions, warnIncomplete } from './complete.js';
import { APPLICATION_ID, DURATION_INDEX_SQL, FORMAT_VERSION, FRAMES_INDEX_SQL, FRAMES_UNIQUE_INDEX_SQL, MIGRATIONS, OLDEST_READ_IN_PLACE, SCHEMA_SQL } from './schema.js';
import type { FrameRecord } from './writer.js';

export type { DatabaseT as Database };

/** How to open a trace file. */
export interface OpenTraceDbOptions {
  /** Create the file (mode 0600) and its schema if it does not exist or is empty. */
  create?: boolean;
  /** Open read-only: for readers (sessions, show, tui) that must never change the file. */
  readonly?: boolean;
  /**
   * A reader that walks a whole session once (show --json/--frames, export): no memory map. Every
   * page it touches would stay mapped, and count in its RSS, until it exits: `show --json` of a
   * 118,000-request session of large frames reached 1.2 GB that way.
   */
  streaming?: boolean;
  /**
   * With readonly, for the read commands: sessions whose derivation lags and whose recorder was
   * killed are completed first, on a writing connection (complete.ts), or, when the file cannot be
   * written, read as derived with a warning line.
   */
  complete?: boolean;
}

/** The first 16 bytes of every SQLite 3 database file (https://sqlite.org/fileformat.html#magic_header_string). */
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * Page size for new files: the largest SQLite allows. Most of a trace's bytes are READ/WRITE frames
 * of 4 KiB and more; 64 KiB pages hold 15 of them inline where 8 KiB pages held one (mixed-frame
 * inserts about 2x faster, file 40% smaller in bench/store.ts), and small-frame inserts lose nothing.
 * It only takes effect before the first write (https://sqlite.org/pragma.html#pragma_page_size).
 */
const PAGE_SIZE = 65536;

/**
 * Opens (and with `create`, initialises) a fusetrace trace file.
 * Every refusal is a one-line UserError naming the file; the file is never modified when refused.
 */
export function openTraceDb(path: string, opts: OpenTraceDbOptions = {}): DatabaseT {
  if (opts.create && opts.readonly) throw new TypeError('openTraceDb: create and readonly exclude each other');
  refuseLinkedSidecars(path);
  let size: number;
  try {
    const st = fs.statSync(path);
    if (st.isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    size = st.size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw accessError(path, err);
    if (!opts.create) throw new UserError(`no trace file at ${path} (record a session first, or pass --db)`);
    // 'wx' + 0600 before SQLite touches it: frames hold file contents and names, so the trace
    // must be private from its first byte. SQLite creates -wal and -shm with the same mode as
    // the database file (unix VFS findCreateFileMode), so they are 0600 too.
    try {
      fs.closeSync(fs.openSync(path, 'wx', 0o600));
    } catch (err2) {
      throw accessError(path, err2);
    }
    size = 0;
  }
  // Check permission and the magic header ourselves: SQLite would report "file is not a database"
  // or "unable to open database file", which tell the user nothing about what to do.
  let fd: number;
  try {
    fd = fs.openSync(path, opts.readonly ? 'r' : 'r+');
  } catch (err) {
    throw accessError(path, err);
  }
  try {
    if (size === 0) {
      if (!opts.create) throw notOurs(path);
      // An empty file we may initialise (e.g. one made by mktemp): make it private like a new one.
      fs.fchmodSync(fd, 0o600);
    } else {
      const head = Buffer.alloc(SQLITE_MAGIC.length);
      const n = fs.readSync(fd, head, 0, head.length, 0);
      if (n < head.length || !head.equals(SQLITE_MAGIC)) throw notOurs(path);
    }
  } finally {
    fs.closeSync(fd);
  }

  let db: DatabaseT;
  try {
    db = new Database(path, { readonly: !!opts.readonly, fileMustExist: true });
  } catch (err) {
    throw accessError(path, err);
  }
  if (opts.readonly) db = readableOrCopy(db, path);
  if (!opts.readonly) matchSidecarModes(path);
  try {
    const appId = db.pragma('application_id', { simple: true }) as number;
    const version = db.pragma('user_version', { simple: true }) as number;
    if (size === 0 || (appId === 0 && version === 0 && isBlank(db))) {
      if (!opts.create) throw notOurs(path);
      initialise(db);
    } else if (appId !== APPLICATION_ID) {
      throw notOurs(path);
    } else if (version > FORMAT_VERSION) {
      throw new UserError(
        `${path} was written by a newer fusetrace (format ${version}, this one reads up to ${FORMAT_VERSION}); upgrade fusetrace`,
      );
    } else if (version < 1) {
      throw notOurs(path);
    }
    if (opts.readonly && version < OLDEST_READ_IN_PLACE) db = upgradedCopy(db, path, version);
    if (!opts.readonly) {
      tune(db);
      const current = db.pragma('user_version', { simple: true }) as number;
      if (current < FORMAT_VERSION) migrate(db, current);
    }
    // Readers (show, stats, export, the TUI) look rows up at random on 64 KiB pages: mapping the file
    // saves a copy per page (stats --filter 'op==READ && dur>1ms' on 1M requests: 226 -> 63 ms).
    // Only readers: nothing truncates a trace file under them (no auto_vacuum, no VACUUM).
    if (opts.readonly) db.pragma(`mmap_size = ${opts.streaming ? 0 : READER_MMAP_BYTES}`);
    if (opts.readonly && opts.complete) return completeOrphans(db, path, opts);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof UserError) throw err;
    throw storeEnvironmentError(err, path) ?? err;
  }
}

/** The -wal and -shm files SQLite keeps next to a trace in WAL mode. */
const SIDECARS = ['-wal', '-shm'];

/**
 * A planted symbolic link at TRACE-wal or TRACE-shm would make SQLite write the trace's pages or
 * its index into whatever the link names (the unix VFS opens them by name, following links): a
 * root `record` could overwrite any file. Refused with one line, for readers and writers alike.
 */
function refuseLinkedSidecars(path: string): void {
  for (const suffix of SIDECARS) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(path + suffix);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      throw new UserError(`${path}${suffix} is a symbolic link; fusetrace never follows it (remove it, then run again)`);
    }
    if (!st.isFile()) throw new UserError(`${path}${suffix} is not a regular file (remove it, then run again)`);
  }
}

/**
 * -wal and -shm get the trace file's mode. SQLite creates them with it (unix VFS
 * findCreateFileMode), but reuses existing ones as they are: a -wal left from before a `chmod 600`
 * of the trace would keep showing file contents to others.
 */
function matchSidecarModes(path: string): void {
  let mode: number;
  try {
    mode = fs.statSync(path).mode & 0o777;
  } catch {
    return;
  }
  for (const suffix of SIDECARS) {
    try {
      const st = fs.lstatSync(path + suffix);
      if (st.isFile() && (st.mode & 0o777) !== mode) fs.chmodSync(path + suffix, mode);
    } catch {
      // absent (created later with the trace's mode by SQLite), or not ours to change: leave it
    }
  }
}

/**
 * A read-only connection to a trace in WAL mode needs a -shm it can map; on a read-only file
 * system or in a directory the reader cannot write, with no -shm (the usual case after a clean
 * close, or after a killed recorder), SQLite cannot open it ("attempt to write a readonly database",
 * "unable to open database file"; https://sqlite.org/wal.html#readonly). SQLite's way out, the
 * `immutable` URI parameter, is not available (better-sqlite3 builds with SQLITE_USE_URI=0), and
 * it would ignore committed frames still in a -wal anyway: read a private copy of both instead.
 */
function readableOrCopy(db: DatabaseT, path: string): DatabaseT {
  try {
    db.pragma('user_version', { simple: true });
    return db;
  } catch (err) {
    db.close();
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('SQLITE_CANTOPEN') && !code.startsWith('SQLITE_READONLY')) throw storeEnvironmentError(err, path) ?? err;
  }
  return privateCopy(path, 'no -shm file can be made next to it (read-only location); reading a private copy');
}

/**
 * A read-only connection to a private copy of the trace (and its -wal), removed when the
 * connection closes or the process exits; `upgrade` may change the copy first. Says so on stderr.
 */
function privateCopy(path: string, note: string, upgrade?: (copy: string) => void): DatabaseT {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'fusetrace-ro-'));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    const copy = nodePath.join(dir, 'trace.db');
    fs.copyFileSync(path, copy);
    if (fs.existsSync(path + '-wal')) fs.copyFileSync(path + '-wal', copy + '-wal');
    upgrade?.(copy);
    const ro = new Database(copy, { readonly: true, fileMustExist: true });
    const close = ro.close.bind(ro);
    // The copy goes with the connection (and with the process, if it never closes it).
    process.once('exit', remove);
    ro.close = () => {
      const r = close();
      remove();
      process.off('exit', remove);
      return r;
    };
    process.stderr.write(`fusetrace: ${path}: ${note}\n`);
    return ro;
  } catch (err) {
    remove();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') throw new UserError(`cannot read ${path}: no room in ${os.tmpdir()} for a private copy`);
    throw err;
  }
}

/**
 * A reader of a file in an older format: the current readers only know the current format, and a
 * reader must never change the file, so it reads a private copy upgraded as a writer would.
 */
function upgradedCopy(db: DatabaseT, path: string, version: number): DatabaseT {
  db.close();
  return privateCopy(path, `format ${version} file (this fusetrace writes format ${FORMAT_VERSION}); reading an upgraded private copy (open it once with a writing command, e.g. replay, to upgrade it in place)`, (copy) => {
    const w = new Database(copy, { fileMustExist: true });
    try {
      tune(w);
      migrate(w, version);
    } finally {
      w.close();
    }
  });
}

/** SQLITE_BUSY and its extended codes: the write lock was not to be had within the busy timeout. */
export function isSqliteBusy(err: unknown): boolean {
  return String((err as { code?: string }).code ?? '').startsWith('SQLITE_BUSY');
}

/**
 * An SQLite failure caused by the file or its environment (damaged, truncated, full disk, read-only
 * medium, I/O error) as a one-line UserError naming the file; undefined for anything else (a bug).
 */
export function storeEnvironmentError(err: unknown, path?: string): UserError | undefined {
  const code = (err as { code?: string }).code ?? '';
  const msg = err instanceof Error ? err.message : String(err);
  const what = path ?? 'the trace file';
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new UserError(`${what} is damaged or truncated (SQLite: ${msg}); record a new trace, or restore a copy`);
  }
  if (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_WRITE' && /full/i.test(msg)) return new UserError(`no room left for ${what}: the disk is full`);
  if (code.startsWith('SQLITE_READONLY')) return new UserError(`cannot write ${what}: it is read-only (SQLite: ${msg})`);
  if (code.startsWith('SQLITE_IOERR')) return new UserError(`I/O error on ${what} (SQLite: ${msg})`);
  if (code.startsWith('SQLITE_CANTOPEN')) return new UserError(`cannot open ${what} (SQLite could not open it or its -wal/-shm files)`);
  return undefined;
}

/**
 * Why `record` would refuse to write a trace at `path`, or null when it can: the checks
 * openTraceDb makes before it changes anything, for `doctor --db` to agree with `record`.
 */
export function traceFileProblem(path: string): string | null {
  const abs = nodePath.resolve(path);
  try {
    refuseLinkedSidecars(abs);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw accessError(abs, err);
      const dir = nodePath.dirname(abs);
      if (!fs.statSync(dir).isDirectory()) return `${dir} is not a directory`;
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
      return null;
    }
    if (st.isDirectory()) return `${abs} is a directory, not a fusetrace trace file`;
    if (!st.isFile()) return `${abs} is not a regular file`;
    fs.accessSync(abs, fs.constants.R_OK | fs.constants.W_OK);
    if (st.size > 0) {
      const head = Buffer.alloc(SQLITE_MAGIC.length);
      const fd = fs.openSync(abs, 'r');
      try {
        if (fs.readSync(fd, head, 0, head.length, 0) < head.length || !head.equals(SQLITE_MAGIC)) return `${abs} is not a fusetrace trace file`;
      } finally {
        fs.closeSync(fd);
      }
    }
    return null;
  } catch (err) {
    if (err instanceof UserError) return err.message;
    const e = err as NodeJS.ErrnoException;
    return `${abs}: ${e.code ?? e.message}`;
  }
}

/** True when the database has no tables: a brand-new file SQLite has not written to yet. */
function isBlank(db: DatabaseT): boolean {
  return (db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get() as number) === 0;
}

/** Writes the format markers and the schema in one transaction, so a half-made file never looks like ours. */
function initialise(db: DatabaseT): void {
  db.pragma(`page_size = ${PAGE_SIZE}`);
  db.pragma('journal_mode = WAL');
  db.transaction(() => {
    db.exec(SCHEMA_SQL);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${FORMAT_VERSION}`);
  })();
}

/**
 * openTraceDb's `complete`: hands back `db` when no session needs completing, else completes them
 * on a writing connection and reopens read-only; warns instead when the file cannot be written.
 */
function completeOrphans(db: DatabaseT, path: string, opts: OpenTraceDbOptions): DatabaseT {
  const orphans = orphanedSessions(db);
  if (orphans.length === 0) return db;
  // A private copy (read-only location) cannot complete the file itself.
  if (db.name !== path) {
    warnIncomplete(path, orphans);
    return db;
  }
  db.close();
  const again = { ...opts, complete: false };
  let w: DatabaseT;
  try {
    w = openTraceDb(path);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    warnIncomplete(path, orphans);
    return openTraceDb(path, again);
  }
  try {
    // One write transaction: a second reader completing at the same time waits for this one
    // (busy_timeout), then finds nothing left to do.
    w.transaction(() => completeSessions(w, orphanedSessions(w))).immediate();
  } catch (err) {
    // Locked by another writer, or the file cannot take the rows (a full disk: the recording that
    // stopped deriving there): read what is indexed, and say why the rest is not.
    const env = isSqliteBusy(err) ? undefined : storeEnvironmentError(err, path);
    if (!isSqliteBusy(err) && env === undefined) throw err;
    warnIncomplete(path, orphans, env?.message);
  } finally {
    w.close();
  }
  return openTraceDb(path, again);
}

/**
 * Upgrades a file written by an older fusetrace in place, one version at a time (MIGRATIONS in
 * schema.ts), up to `to` (tests make files of older formats with it).
 */
export function migrate(db: DatabaseT, from: number, to = FORMAT_VERSION): void {
  db.transaction(() => {
    for (let v = from + 1; v <= to; v++) {
      db.exec(MIGRATIONS[v]);
      if (v === 4) repackFrames(db);
      db.pragma(`user_version = ${v}`);
    }
  })();
}

/** Old frames rows read per query by repackFrames: bounded memory (frames of up to a few MiB each). */
const REPACK_PAGE = 256;

/**
 * Format 3 -> 4, inside migrate()'s transaction: moves each session's frames rows (with their
 * data) into packed batches, then replaces the frames table by the derived index of schema.ts,
 * filled from the new batches; sessions.derived goes past each session's last frame. The
 * requests rows stay as they are: they were derived from the same frames.
 */
function repackFrames(db: DatabaseT): void {
  db.exec(FRAMES_INDEX_SQL.replace('CREATE TABLE frames', 'CREATE TABLE frames_v4'));
  const sessions = db.prepare('SELECT id FROM sessions ORDER BY id').pluck().all() as number[];
  for (const session of sessions) repackSession(db, session);
  db.exec('DROP TABLE frames; ALTER TABLE frames_v4 RENAME TO frames;');
  db.exec(FRAMES_UNIQUE_INDEX_SQL);
}

/** Packs one session's format 3 frames rows into batches and frames_v4 index rows. */
function repackSession(db: DatabaseT, session: number): void {
  const page = db
    .prepare('SELECT seq, ts_ns, fwd_ns, dir, unique_id, opcode, error, len, data, write_errno FROM frames WHERE session = ? AND seq > ? ORDER BY seq LIMIT ?')
    .safeIntegers(true)
    .raw(true);
  const insertBatch = db.prepare('INSERT INTO batches (session, first_seq, last_seq, count, first_ns, last_ns, bytes, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const insertIndex = db.prepare(
    'INSERT INTO frames_v4 (session, seq, ts_ns, fwd_ns, dir, unique_id, opcode, error, len, cap_len, write_errno, batch_seq, off) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  let after = -1;
  for (;;) {
    const rows = page.all(session, after, REPACK_PAGE) as unknown[][];
    if (rows.length === 0) break;
    const frames = rows.map(v3Frame);
    for (const { body, info } of encodeBatches(frames)) {
      insertBatch.run(session, info.firstSeq, info.lastSeq, info.count, info.firstNs, info.lastNs, info.bytes, body);
      for (const f of decodeBatch(body)) {
        insertIndex.run(session, f.seq, f.tsNs, f.fwdNs, f.dir, BigInt.asIntN(64, f.unique), f.opcode, f.error, f.len, f.data.length, f.writeErrno, info.firstSeq, f.off);
      }
    }
    after = frames[frames.length - 1].seq;
  }
  db.prepare('UPDATE sessions SET derived = ? WHERE id = ?').run(after + 1, session);
}

/** A format 3 frames row (read with safeIntegers) as a FrameRecord. */
function v3Frame(r: unknown[]): FrameRecord {
  const n = (v: unknown): number | null => (v === null ? null : Number(v));
  return {
    seq: Number(r[0]),
    tsNs: r[1] as bigint,
    fwdNs: r[2] as bigint | null,
    dir: Number(r[3]) as 0 | 1,
    unique: BigInt.asUintN(64, r[4] as bigint),
    opcode: n(r[5]),
    error: n(r[6]),
    len: Number(r[7]),
    data: r[8] as Buffer,
    writeErrno: Number(r[9]),
  };
}

/** Address space a reading connection maps of the trace file. */
const READER_MMAP_BYTES = 1 << 30;

/** Pragmas of a writing connection (they are per connection, except journal_mode which is persistent). */
function tune(db: DatabaseT): void {
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a commit is durable against process death (SIGKILL of the recorder),
  // and only a power loss may lose the last transactions; never corrupts (https://sqlite.org/pragma.html#pragma_synchronous).
  db.pragma('synchronous = NORMAL');
  // The WAL is reset after each checkpoint but keeps its largest size on disk; cap what stays
  // behind after a burst of 1 MiB frames.
  db.pragma('journal_size_limit = 67108864');
  // A reader (fusetrace tui) may hold the WAL briefly; wait instead of failing the recorder.
  db.pragma('busy_timeout = 5000');
  // Room for one TraceWriter flush (FLUSH_BYTES of frames, ~1.15x that in 64 KiB pages once the
  // overflow pages are counted, plus the index and ledger pages it touches). better-sqlite3's
  // default, 16 MB (SQLITE_DEFAULT_CACHE_SIZE=-16000: 244 pages of 64 KiB), made every flush of a
  // full capture spill dirty pages into the WAL mid-transaction, and with the ledger's savepoint
  // open each spilled page was first copied to a statement journal (pagerStress ->
  // subjournalPageIfRequired): 18% of the perf samples of the record path in bench/store.ts.
  db.pragma(`cache_size = -${WRITER_CACHE_KIB}`);
}

/** Page cache of a writing connection, KiB: see tune(). */
const WRITER_CACHE_KIB = 32 * 1024;

function notOurs(path: string): UserError {
  return new UserError(`${path} is not a fusetrace trace file`);
}

/** Turns an errno from open/stat/SQLite into a one-line UserError. */
function accessError(path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return new UserError(`cannot open ${path}: permission denied`);
    case 'EISDIR':
      return new UserError(`${path} is a directory, not a fusetrace trace file`);
    case 'ENOENT':
      return new UserError(`cannot create ${path}: no such directory`);
    case 'EEXIST':
      return new UserError(`cannot create ${path}: it appeared while opening it; try again`);
    case 'EROFS':
      return new UserError(`cannot open ${path} for writing: read-only file system`);
    case 'SQLITE_CANTOPEN':
      return new UserError(`cannot open ${path} (SQLite could not open it or its -wal/-shm files)`);
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Drops the request-duration indexes for the time of a recording (see DURATION_INDEX_SQL in
 * schema.ts: maintaining them costs the live ledger most of its throughput).
 */
export function dropDurationIndexes(db: DatabaseT): void {
  db.exec('DROP INDEX IF EXISTS requests_dur; DROP INDEX IF EXISTS requests_op_dur;');
}

/**
 * Creates the request-duration indexes if they are missing (at the end of a recording, or after a
 * recorder was killed). Returns true when it had to build them.
 */
export function createDurationIndexes(db: DatabaseT): boolean {
  const have = db
    .prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('requests_dur', 'requests_op_dur')")
    .pluck()
    .get() as number;
  if (have === 2) return false;
  db.exec(DURATION_INDEX_SQL);
  return true;
}
