/**
 * `fusetrace export` on a real trace file (hand-made frames through TraceWriter and the ledger),
 * driven through the CLI's own command tree: JSON lines match the ledger's rows, and the Perfetto
 * output validates against the Chrome trace event format (checker below).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Script, entryOut, name, recordScript, rows, tempTrace, u32, u64 } from '../store/ledger-frames.fixture.js';
import { main } from './main.js';
import { requestJson } from './show.js';
import { queryRequests } from '../store/query.js';
import { TraceReader } from '../store/reader.js';
import { checkChromeTrace } from './export-trace-format.fixture.js';

let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup) c();
  cleanup = [];
});

const readIn = (fh: number) => [u64(fh), u64(0), u32(4096), u32(0), u64(0), u32(0), u32(0)];

/** A session with ok/error/interrupted/late/aborted/noreply/notify rows, and overlapping requests of one pid. */
function session() {
  const t = tempTrace();
  cleanup.push(t.close);
  const s = new Script();
  s.req(26, 2, 0, [u32(7), u32(45), u32(0), u32(0)], { pid: 0 });
  s.reply(2, 0, [u32(7), u32(45), Buffer.alloc(56)]);
  s.req(1, 4, 1, [name('file')], { pid: 300 });
  s.reply(4, 0, [entryOut(2)]);
  s.req(1, 6, 1, [name('missing')], { pid: 300 });
  s.reply(6, -2);
  // Two overlapping READs from pid 300 (async readahead style), one interrupted and answered EINTR.
  s.req(15, 8, 2, readIn(1), { pid: 300 });
  s.req(15, 10, 2, readIn(1), { pid: 300 });
  s.interrupt(10);
  s.reply(11, -11); // the INTERRUPT answered EAGAIN, accepted
  s.reply(10, -4);
  s.reply(8, 0, [Buffer.alloc(100)]);
  s.req(2, 12, 2, [u64(1)], { pid: 0 }); // FORGET
  s.reply(0, 2, [u64(2), u64(0), u64(0)]); // NOTIFY_INVAL_INODE
  s.req(15, 14, 2, readIn(1), { pid: 301 }); // never answered: aborted at unmount
  const rec = recordScript(t.db, s, { endReason: 'unmount', procs: [[300, 'cat'], [301, 'dd']] });
  return { ...t, session: rec.session, script: s };
}

async function cli(args: string[]): Promise<number> {
  return main(args);
}

describe('export', () => {
  it('jsonl: one object per request with the show --json fields, equal to the ledger rows', async () => {
    const t = session();
    const out = path.join(t.dir, 'out.jsonl');
    expect(await cli(['--db', t.file, 'export', '--format', 'jsonl', '-o', out])).toBe(0);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const db = rows(t.db, t.session);
    expect(lines.length).toBe(db.length);
    for (const l of lines) {
      // show --json's fields (without its decoded frames), the ones issue 4 names among them.
      expect(Object.keys(l)).toEqual(Object.keys(requestJson(queryRequests(t.db, t.session, { limit: 1 })[0])));
      expect(Object.keys(l)).toEqual(
        expect.arrayContaining(['unique', 'op', 'nodeid', 'path', 'pid', 'comm', 'start_ns', 'dur_ns', 'err', 'state', 'outcome', 'background']),
      );
    }
    // In start order, with the ledger's values.
    const starts = lines.map((l) => l.start_ns as number);
    expect([...starts].sort((a, b) => a - b)).toEqual(starts);
    const byUnique = new Map(lines.map((l) => [`${l.unique}/${l.op}`, l]));
    expect(byUnique.get('4/LOOKUP')).toMatchObject({ path: '/file', pid: 300, comm: 'cat', state: 'ok', err: null, background: false });
    expect(byUnique.get('6/LOOKUP')).toMatchObject({ path: '/missing', err: 'ENOENT', state: 'error' });
    expect(byUnique.get('10/READ')).toMatchObject({ state: 'interrupted', outcome: 'eagain', err: 'EINTR', path: '/file' });
    expect(byUnique.get('14/READ')).toMatchObject({ state: 'aborted', outcome: 'unmount', dur_ns: null, comm: 'dd' });
    expect(byUnique.get('2/INIT')).toMatchObject({ background: true, pid: 0 });
    expect(byUnique.get('12/FORGET')).toMatchObject({ state: 'noreply' });
    expect(lines.some((l) => l.state === 'notify' && l.outcome === 'inval_inode')).toBe(true);
  });

  it('jsonl to stdout with --filter, and a session chosen by id', async () => {
    const t = session();
    const chunks: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string | Uint8Array) => {
      chunks.push(String(s));
      return true;
    }) as typeof process.stdout.write;
    try {
      expect(await cli(['--db', t.file, 'export', String(t.session), '--format', 'jsonl', '--filter', 'op==READ'])).toBe(0);
    } finally {
      process.stdout.write = orig;
    }
    const lines = chunks.join('').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.unique)).toEqual([8, 10, 14]);
  });

  it('perfetto: valid Chrome trace events, a track per pid named from comm, slices, instants, unanswered to the end', async () => {
    const t = session();
    const out = path.join(t.dir, 'trace.json');
    expect(await cli(['--db', t.file, 'export', '--format', 'perfetto', '-o', out])).toBe(0);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as { traceEvents: Array<Record<string, any>> };
    expect(checkChromeTrace(doc)).toEqual([]);
    const ev = doc.traceEvents;
    const threadNames = ev.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args.name);
    expect(threadNames).toEqual(expect.arrayContaining(['cat 300', 'cat 300 #2', 'dd 301', 'kernel (pid 0)', 'server notifications']));
    const slices = ev.filter((e) => e.ph === 'X');
    expect(slices.length).toBe(6); // INIT, 2 LOOKUP, 3 READ
    const lookup = slices.find((e) => e.name === 'LOOKUP' && e.args.unique === 4)!;
    expect(lookup).toMatchObject({ tid: 300, cat: 'ok', args: { path: '/file', state: 'ok', err: null } });
    const intrRead = slices.find((e) => e.args.unique === 10)!;
    const firstRead = slices.find((e) => e.args.unique === 8)!;
    expect(intrRead.tid).not.toBe(firstRead.tid); // overlapping: another lane
    const instants = ev.filter((e) => e.ph === 'i');
    const intr = instants.filter((e) => e.cat === 'interrupt');
    expect(intr.map((e) => e.name)).toEqual(['INTERRUPT', 'INTERRUPT answered EAGAIN']);
    expect(intr.every((e) => e.tid === intrRead.tid && e.ts >= intrRead.ts && e.ts <= intrRead.ts + intrRead.dur)).toBe(true);
    expect(instants.some((e) => e.name === 'FORGET' && e.cat === 'noreply')).toBe(true);
    expect(instants.some((e) => e.name === 'NOTIFY inval_inode')).toBe(true);
    // The aborted READ runs to the session's end.
    const stuck = slices.find((e) => e.args.unique === 14)!;
    const info = new TraceReader(t.db).getSession(t.session)!;
    const endUs = Number(info.endedMonoNs! - info.startedMonoNs) / 1000;
    expect(stuck.ts + stuck.dur).toBeCloseTo(endUs, 3);
    expect(stuck.args).toMatchObject({ state: 'aborted', outcome: 'unmount' });
  });

  it('the checker rejects what the format forbids', () => {
    expect(checkChromeTrace([])).not.toEqual([]);
    expect(checkChromeTrace({ traceEvents: [{ ph: 'X', name: 'a', pid: 1, tid: 1, ts: 0 }] })).toEqual(['event 0: X needs a non-negative dur']);
    expect(checkChromeTrace({ traceEvents: [{ ph: 'Q', name: 'a', pid: 1 }] })[0]).toMatch(/bad ph/);
    expect(
      checkChromeTrace({
        traceEvents: [
          { ph: 'X', name: 'a', pid: 1, tid: 1, ts: 0, dur: 10 },
          { ph: 'X', name: 'b', pid: 1, tid: 1, ts: 5, dur: 10 },
        ],
      })[0],
    ).toMatch(/overlaps/);
    expect(checkChromeTrace({ traceEvents: [{ ph: 'M', name: 'thread_name', pid: 1, tid: 1, args: {} }] })[0]).toMatch(/args.name/);
  });

  it('refuses an unknown format, session or filter without a stack', async () => {
    const t = session();
    const errs: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string | Uint8Array) => {
      errs.push(String(s));
      return true;
    }) as typeof process.stderr.write;
    try {
      expect(await cli(['--db', t.file, 'export', '--format', 'csv'])).toBe(2);
      expect(await cli(['--db', t.file, 'export', '99', '--format', 'jsonl'])).toBe(2);
      expect(await cli(['--db', t.file, 'export', '--format', 'jsonl', '--filter', 'op=='])).toBe(2);
    } finally {
      process.stderr.write = orig;
    }
    expect(errs[0]).toBe("fusetrace: unknown --format 'csv' (expected jsonl, perfetto or pcapng)\n");
    expect(errs[1]).toBe(`fusetrace: no session "99" in ${t.file} (fusetrace sessions lists them)\n`);
    expect(errs[2]).toMatch(/^fusetrace: bad --filter:\nop==\n +\^ expected a value/);
    expect(errs[2]).not.toMatch(/    at /);
  });
});
