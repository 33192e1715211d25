/**
 * A bundle: a new trace file holding chosen sessions of another, redacted (frames.ts) so it can be
 * attached to a public bug report. Written through the store's own writer (TraceWriter) and the
 * request ledger rebuilt from the redacted frames (rebuildLedger), so paths in the ledger are made
 * of the same tokens as the frames, and every timing, opcode, error and id stays as recorded.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Database } from 'better-sqlite3';
import { UserError } from '../errors.js';
import { openTraceDb } from '../store/db.js';
import { TraceReader, type SessionInfo } from '../store/reader.js';
import { TraceWriter, type FrameRecord } from '../store/writer.js';
import { rebuildLedger } from '../store/ledger.js';
import { FrameRedactor, type RedactClass } from './frames.js';
import { NameHasher } from './names.js';

export interface BundleOptions {
  classes: ReadonlySet<RedactClass>;
  hasher: NameHasher;
}

/** Frames handed to the writer at once. */
const BATCH = 4096;

/** A plain flag (`-f`, `--foreground`): names nothing, kept in the command line. */
const FLAG = /^--?[A-Za-z0-9][\w-]*$/;

/** `a,b=c,d` mount options with the values of `key=value` hashed (fsname=/secret/dir names a path). */
function redactOptions(list: string, hasher: NameHasher): string {
  return list.split(',').map((o) => (o.includes('=') ? `${o.slice(0, o.indexOf('='))}=${hasher.path(o.slice(o.indexOf('=') + 1))}` : o)).join(',');
}

/**
 * The server's command line with names redacted: the program's base name and plain flags stay,
 * `-o` option lists keep their keys, every other argument (paths, mountpoint) becomes tokens.
 */
export function redactCommand(argv: readonly string[], hasher: NameHasher): string[] {
  return argv.map((a, i) => {
    if (i === 0) return path.basename(a);
    if (FLAG.test(a)) return a;
    if (argv[i - 1] === '-o' || a.startsWith('-o')) return a.startsWith('-o') ? `-o${redactOptions(a.slice(2), hasher)}` : redactOptions(a, hasher);
    return hasher.path(a);
  });
}

/** sessions.meta with names redacted: mount option values (fsname=, source paths) become tokens. */
function redactMeta(meta: Record<string, unknown> | null, hasher: NameHasher): Record<string, unknown> | undefined {
  if (meta === null) return undefined;
  const out = { ...meta };
  for (const key of ['mountOptions', 'ignoredOptions']) {
    const v = out[key];
    if (Array.isArray(v)) out[key] = v.map((o) => (typeof o === 'string' ? redactOptions(o, hasher) : o));
    else if (typeof v === 'string') out[key] = redactOptions(v, hasher);
  }
  // The server's own mount(2) call, kept by mount interception (recorder.ts): its target is the
  // mountpoint, its source the fsname (often a path), its data the option values.
  const m = out.serverMount as Record<string, unknown> | undefined;
  if (m && typeof m === 'object') {
    out.serverMount = {
      ...m,
      source: typeof m.source === 'string' ? hasher.path(m.source) : m.source,
      target: typeof m.target === 'string' ? hasher.path(m.target) : m.target,
      data: typeof m.data === 'string' ? redactOptions(m.data, hasher) : m.data,
    };
  }
  return out;
}

/** Copies one session into the bundle's writer; returns its new id. */
function copySession(reader: TraceReader, s: SessionInfo, writer: TraceWriter, opts: BundleOptions): number {
  const names = opts.classes.has('names');
  const id = writer.beginSession({
    name: s.name ?? undefined,
    command: names ? redactCommand(s.command, opts.hasher) : s.command,
    mountpoint: s.mountpoint === null ? undefined : names ? opts.hasher.path(s.mountpoint) : s.mountpoint,
    snaplen: s.snaplen ?? undefined,
    startedWallNs: s.startedWallNs,
    startedMonoNs: s.startedMonoNs,
    meta: names ? redactMeta(s.meta, opts.hasher) : (s.meta ?? undefined),
  });
  for (const [pid, comm] of reader.procs(s.id)) writer.addProc(pid, comm);
  const redactor = new FrameRedactor(opts.classes, opts.hasher);
  let batch: FrameRecord[] = [];
  for (const f of reader.frames(s.id)) {
    const r = redactor.redact(f.dir, f.data, f.len);
    batch.push({ ...f, data: r.data, len: r.len });
    if (batch.length >= BATCH) {
      writer.addFrames(batch);
      batch = [];
    }
  }
  writer.addFrames(batch);
  writer.updateSession({
    kernelMajor: s.kernelMajor ?? undefined,
    kernelMinor: s.kernelMinor ?? undefined,
    serverMajor: s.serverMajor ?? undefined,
    serverMinor: s.serverMinor ?? undefined,
    initFlags: s.initFlags ?? undefined,
    maxWrite: s.maxWrite ?? undefined,
    initChanges: (s.initChanges as object | null) ?? undefined,
    endedMonoNs: s.endedMonoNs ?? undefined,
    endReason: (s.endReason as SessionEnd | null) ?? undefined,
    serverExitCode: s.serverExitCode,
    serverSignal: s.serverSignal,
    exitStatus: s.exitStatus ?? undefined,
    dropped: s.dropped,
  });
  return id;
}

type SessionEnd = 'unmount' | 'signal' | 'server-exit' | 'server-crash' | 'error';

/**
 * Writes the bundle: refuses an existing file, writes to a temporary name next to it and renames
 * it into place when complete, so a failed bundle never leaves a half-redacted file behind.
 */
export function writeBundle(src: Database, srcLabel: string, sessions: readonly number[], file: string, opts: BundleOptions): number[] {
  if (fs.existsSync(file)) throw new UserError(`${file} exists; a bundle is always a new file`);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const reader = new TraceReader(src, srcLabel);
  let db: Database | undefined;
  try {
    db = openTraceDb(tmp, { create: true });
    const writer = new TraceWriter(db);
    const ids = sessions.map((s) => copySession(reader, reader.getSession(s)!, writer, opts));
    writer.close();
    for (const id of ids) rebuildLedger(db, id);
    // One file, no -wal or -shm beside it: easier to attach, and nothing left in a WAL.
    db.pragma('journal_mode = DELETE');
    db.close();
    db = undefined;
    fs.renameSync(tmp, file);
    return ids;
  } finally {
    db?.close();
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) fs.rmSync(f, { force: true });
  }
}
