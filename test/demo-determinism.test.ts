// The demo server as a deterministic fixture: two recordings of the same scripted workload (real
// `fusetrace record`, real mounts, a fresh kernel cache each time) get byte-identical replies, once
// each reply's unique is set aside. Only the timing differs.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TraceReader } from '../src/store/reader.js';
import { CleanupRegistry, isMounted, waitExit } from './helpers/mount.js';
import { buildForDemo, CLI } from './demo-helpers.js';
import { demoServerArgv } from '../src/demo/fixture.js';
import { decodeRequest, opcodeName } from '../src/protocol/index.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => buildForDemo(), 180_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The workload, run as a child process so that it is the same program both times. */
const WORKLOAD = `
const fs = require('fs'), path = require('path'), m = process.argv[1];
const out = [];
for (const n of fs.readdirSync(m).sort()) out.push(n + ' ' + fs.statSync(path.join(m, n)).size);
out.push(fs.readFileSync(path.join(m, 'hello.txt'), 'utf8'));
for (const n of fs.readdirSync(path.join(m, 'notes')).sort()) out.push(fs.readFileSync(path.join(m, 'notes', n), 'utf8'));
fs.writeFileSync(path.join(m, 'scratch.txt'), 'one\\n');
fs.appendFileSync(path.join(m, 'scratch.txt'), 'two\\n');
out.push(fs.readFileSync(path.join(m, 'scratch.txt'), 'utf8'));
fs.writeFileSync(path.join(m, 'notes', 'new.txt'), 'created\\n');
fs.unlinkSync(path.join(m, 'notes', 'new.txt'));
for (const n of ['missing', 'broken']) { try { fs.readFileSync(path.join(m, n)); } catch (e) { out.push(n + ' ' + e.code); } }
out.push(fs.readFileSync(path.join(m, 'slow.txt'), 'utf8'));
process.stdout.write(out.join('\\n'));
`;

/** Records one run of WORKLOAD into `db`; returns the workload's output and the session id. */
async function recordOnce(db: string): Promise<{ output: string; session: number }> {
  const mnt = reg.mountpoint('fusetrace-demo-det-');
  const logDir = reg.tempDir('fusetrace-demo-det-log-');
  const log = join(logDir, 'record.log');
  const fd = openSync(log, 'w');
  const child = spawn(process.execPath, [CLI, '--db', db, 'record', '--', ...demoServerArgv(mnt)], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  reg.process(child);
  const exited = waitExit(child);
  const deadline = Date.now() + 15_000;
  while (!isMounted(mnt)) {
    if (child.exitCode !== null) throw new Error(`record exited early:\n${readFileSync(log, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`no mount after 15 s:\n${readFileSync(log, 'utf8')}`);
    await sleep(20);
  }
  await stat(mnt); // waits for INIT: the recorder is another process
  const w = spawnSync(process.execPath, ['-e', WORKLOAD, mnt], { encoding: 'utf8', timeout: 20_000 });
  expect(w.status, w.stderr).toBe(0);
  expect(spawnSync('umount', [mnt]).status).toBe(0);
  expect(await exited).toEqual({ code: 0, signal: null });
  const h = new Database(db, { readonly: true });
  const session = h.prepare('SELECT max(id) FROM sessions').pluck().get() as number;
  h.close();
  return { output: w.stdout, session };
}

/**
 * Each request with its reply: "OPCODE nodeid name off size -> reply bytes (unique zeroed)", sorted
 * (RELEASE and FORGET are sent in the background and may interleave differently). Request bytes
 * themselves are not compared: pid and lock_owner come from the workload process.
 */
function exchanges(db: string, session: number): string[] {
  const h = new Database(db, { readonly: true });
  try {
    h.defaultSafeIntegers(true);
    const frames = [...new TraceReader(h).frames(session)].map((f) => ({ dir: BigInt(f.dir), unique_id: BigInt.asIntN(64, f.unique), data: f.data }));
    const requests = new Map<bigint, string>();
    const out: string[] = [];
    for (const f of frames) {
      if (f.dir === 0n) {
        const d = decodeRequest(f.data).frame!;
        const a = d.args[0] ?? {};
        const key = [opcodeName(d.opcode!), d.nodeid, ...d.names, a.offset ?? '', a.size ?? ''].join(' ');
        if (d.name === 'FORGET' || d.name === 'BATCH_FORGET' || d.name === 'INTERRUPT') out.push(`${key} (no reply)`);
        else requests.set(f.unique_id, key);
      } else {
        const bytes = Buffer.from(f.data);
        bytes.fill(0, 8, 16); // fuse_out_header.unique
        out.push(`${requests.get(f.unique_id) ?? 'unpaired'} -> ${bytes.toString('hex')}`);
        requests.delete(f.unique_id);
      }
    }
    for (const k of requests.values()) out.push(`${k} -> (no reply)`);
    return out.sort();
  } finally {
    h.close();
  }
}

describe('the demo server is deterministic', () => {
  it('answers the same workload with the same replies in two recordings', async () => {
    const work = reg.tempDir('fusetrace-demo-det-');
    const db = join(work, 'trace.db');
    const a = await recordOnce(db);
    const b = await recordOnce(db);
    expect(b.session).toBe(a.session + 1);
    expect(a.output).toContain('Hello from the fusetrace demo filesystem!');
    expect(a.output).toContain('one\ntwo\n');
    expect(a.output).toContain('missing ENOENT');
    expect(a.output).toContain('broken EIO');
    expect(b.output).toBe(a.output);

    const ea = exchanges(db, a.session);
    const eb = exchanges(db, b.session);
    // A real workload: lookups, reads, a write, a create and unlink, errors.
    for (const op of ['INIT', 'LOOKUP', 'READDIR', 'READ', 'WRITE', 'CREATE', 'UNLINK']) {
      expect(ea.some((e) => e.startsWith(`${op} `)), `no ${op} in\n${ea.join('\n')}`).toBe(true);
    }
    expect(ea.length).toBeGreaterThan(40);
    expect(eb).toEqual(ea);
  }, 90_000);
});
