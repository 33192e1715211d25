import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../errors.js';
import { openTraceDb } from './db.js';
import { APPLICATION_ID, FORMAT_VERSION } from './schema.js';
import { TraceWriter } from './writer.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-db-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The UserError message openTraceDb throws, or a failure if it opens. */
function refusal(file: string, opts: { create?: boolean; readonly?: boolean } = {}): string {
  try {
    openTraceDb(file, opts).close();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error(`openTraceDb(${file}) opened a file it should refuse`);
}

const mode = (file: string): number => fs.statSync(file).mode & 0o777;

describe('openTraceDb', () => {
  it('creates a 0600 WAL file with our application_id, format version and schema', () => {
    const file = path.join(dir, 'new.db');
    const old = process.umask(0o022); // the usual umask would give 0644 without the explicit mode
    try {
      const db = openTraceDb(file, { create: true });
      const w = new TraceWriter(db);
      w.beginSession({ command: ['srv'], startedWallNs: 1n, startedMonoNs: 2n });
      w.flush();
      // The -wal and -shm side files exist while a writer holds the file open: they carry frames too.
      expect(mode(file)).toBe(0o600);
      expect(mode(`${file}-wal`)).toBe(0o600);
      expect(mode(`${file}-shm`)).toBe(0o600);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
      expect(db.pragma('page_size', { simple: true })).toBe(65536);
      expect(db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
      expect(db.pragma('user_version', { simple: true })).toBe(FORMAT_VERSION);
      const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all();
      expect(tables).toEqual(['batches', 'loose_frames', 'lost', 'patches', 'procs', 'requests', 'sessions']);
      db.close();
    } finally {
      process.umask(old);
    }
  });

  it('initialises an empty (0-byte) file and makes it private', () => {
    const file = path.join(dir, 'empty.db');
    fs.writeFileSync(file, '', { mode: 0o644 });
    const db = openTraceDb(file, { create: true });
    expect(db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    db.close();
    expect(mode(file)).toBe(0o600);
  });

  it('reopens an existing trace file, with or without create', () => {
    const file = path.join(dir, 't.db');
    const db = openTraceDb(file, { create: true });
    new TraceWriter(db).beginSession({ command: ['a'], startedWallNs: 1n, startedMonoNs: 1n });
    db.close();
    for (const opts of [{ create: true }, {}, { readonly: true }]) {
      const again = openTraceDb(file, opts);
      expect(again.prepare('SELECT count(*) FROM sessions').pluck().get()).toBe(1);
      again.close();
    }
  });

  it('refuses a missing file unless creating', () => {
    const file = path.join(dir, 'missing.db');
    expect(refusal(file)).toBe(`no trace file at ${file} (record a session first, or pass --db)`);
    expect(refusal(file, { readonly: true })).toBe(`no trace file at ${file} (record a session first, or pass --db)`);
    expect(fs.existsSync(file)).toBe(false);
  });

  it('refuses a file written by a newer format', () => {
    const file = path.join(dir, 'newer.db');
    openTraceDb(file, { create: true }).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${FORMAT_VERSION + 1}`);
    raw.close();
    const msg = `${file} was written by a newer fusetrace (format ${FORMAT_VERSION + 1}, this one reads up to ${FORMAT_VERSION}); upgrade fusetrace`;
    expect(refusal(file)).toBe(msg);
    expect(refusal(file, { readonly: true })).toBe(msg);
    expect(refusal(file, { create: true })).toBe(msg);
  });

  it('refuses SQLite files that are not ours, and never changes them', () => {
    const plain = path.join(dir, 'plain.db');
    const raw = new Database(plain);
    raw.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    raw.close();
    const before = fs.readFileSync(plain);
    expect(refusal(plain, { create: true })).toBe(`${plain} is not a fusetrace trace file`);
    expect(refusal(plain, { readonly: true })).toBe(`${plain} is not a fusetrace trace file`);
    expect(fs.readFileSync(plain).equals(before)).toBe(true);

    const foreign = path.join(dir, 'foreign.db');
    const raw2 = new Database(foreign);
    raw2.pragma('application_id = 1234');
    raw2.pragma(`user_version = ${FORMAT_VERSION}`);
    raw2.close();
    expect(refusal(foreign, { create: true })).toBe(`${foreign} is not a fusetrace trace file`);

    // A fresh SQLite file with nothing in it is only ours to initialise when asked to create.
    const blank = path.join(dir, 'blank.db');
    const raw3 = new Database(blank);
    raw3.pragma('user_version = 0');
    raw3.exec('VACUUM'); // writes a header page
    raw3.close();
    expect(refusal(blank)).toBe(`${blank} is not a fusetrace trace file`);
  });

  it('refuses random bytes, text, a corrupt header and an empty file when not creating', () => {
    const cases: Array<[string, Buffer]> = [
      ['random.db', crypto.randomBytes(65536)],
      ['text.db', Buffer.from('hello\n')],
      // The magic string and then garbage: SQLite itself reports SQLITE_NOTADB.
      ['corrupt.db', Buffer.concat([Buffer.from('SQLite format 3\0', 'latin1'), crypto.randomBytes(8192)])],
      ['empty.db', Buffer.alloc(0)],
    ];
    for (const [name, bytes] of cases) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      // SQLite's magic followed by garbage is an SQLite file that was damaged (issue 12: say so).
      const want = name === 'corrupt.db'
        ? `${file} is damaged or truncated (SQLite: file is not a database); record a new trace, or restore a copy`
        : `${file} is not a fusetrace trace file`;
      expect(refusal(file, { readonly: true })).toBe(want);
      if (bytes.length > 0) expect(refusal(file, { create: true })).toBe(want);
      expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    }
  });

  it('refuses a directory with one line', () => {
    expect(refusal(dir, { readonly: true })).toBe(`${dir} is a directory, not a fusetrace trace file`);
  });
});
