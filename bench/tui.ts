/**
 * `npm run bench tui`: the TUI's data path on a synthetic 1,000,000-request session.
 *
 * - first screen: open the file read-only, read the sessions' headline numbers, read one screen of
 *   rows and count the first chunk (what `fusetrace tui --db FILE` does before its first paint; the
 *   rest of the count runs between paints, see TuiSource.countSteps); the goal is < 1 s.
 * - filter apply: the same for a filter (what `/` + Enter does before the next paint); the goal is
 *   < 300 ms per filter. The full count of the matches is reported beside it.
 * Everything goes through TuiSource (src/tui/data.ts), the same object the components read.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openTraceDb } from '../src/store/db.js';
import { OP } from '../src/protocol/index.js';
import { TraceWriter } from '../src/store/writer.js';
import { TuiSource } from '../src/tui/data.js';

/** Opcodes of the synthetic mix with their weights (roughly what a build or a `find` produces). */
const MIX: Array<[opcode: number, weight: number]> = [
  [OP.LOOKUP, 30],
  [OP.GETATTR, 25],
  [OP.READ, 15],
  [OP.WRITE, 8],
  [OP.OPEN, 5],
  [OP.FLUSH, 5],
  [OP.RELEASE, 5],
  [OP.READDIR, 4],
  [OP.FORGET, 3],
];

/**
 * Writes a session of `n` synthetic requests (ledger rows only, no frames) and returns its id.
 * Deterministic: the same n gives the same rows.
 */
export function writeSyntheticSession(file: string, n: number): number {
  const db = openTraceDb(file, { create: true });
  try {
    const writer = new TraceWriter(db);
    const session = writer.beginSession({ name: `synthetic-${n}`, command: ['bench-fs', '/mnt'], mountpoint: '/mnt', startedWallNs: 1_700_000_000_000_000_000n, startedMonoNs: 0n });
    writer.close();
    const ops: number[] = [];
    for (const [op, w] of MIX) for (let i = 0; i < w; i++) ops.push(op);
    const insert = db.prepare(
      `INSERT INTO requests (session, seq, unique_id, opcode, nodeid, fh, path, pid, comm, uid, gid,
        start_ns, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, outcome, background, reply_seq, interrupt_seq)
       VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
    );
    // A small linear congruential generator: Math.random would make runs differ.
    let x = 12345;
    const rand = (): number => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x / 2 ** 32;
    };
    const fill = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const opcode = ops[Math.floor(rand() * ops.length)]!;
        const start = i * 10_000;
        // Log-uniform durations from 5 us to ~50 ms: a latency histogram with a long tail.
        const dur = Math.round(5000 * Math.pow(10, rand() * 4));
        const r = rand();
        let state = 'ok';
        let errno: number | null = 0;
        let outcome: string | null = null;
        if (opcode === OP.FORGET) {
          state = 'noreply';
          errno = null;
        } else if (r < 0.03) {
          state = 'error';
          errno = 2;
        } else if (r < 0.035) {
          state = 'interrupted';
          errno = 4;
          outcome = 'eintr';
        } else if (r < 0.036) {
          state = 'late';
          outcome = 'reply-after-interrupt';
        } else if (r < 0.0365) {
          state = 'unanswered';
          errno = null;
        }
        const replied = errno !== null || state === 'late';
        const dir = i % 100;
        insert.run(
          session, i * 2, 2 + i * 2, opcode, 1 + (i % 5000), opcode === OP.READ || opcode === OP.WRITE ? 1 + (i % 300) : null,
          `/data/dir${dir}/file${i % 5000}.txt`, 1000 + (i % 50), `proc${i % 50}`, 0, 0,
          start, start + 2000, replied ? start + dur : null, replied ? dur : null, errno,
          opcode === OP.WRITE ? 4176 : 64, replied ? 16 : null, state, outcome, 0, replied ? i * 2 + 1 : null, state === 'interrupted' ? i * 2 + 1 : null,
        );
      }
    });
    for (let i = 0; i < n; i += 100_000) fill(i, Math.min(n, i + 100_000));
    db.prepare('UPDATE sessions SET ended_mono_ns = ?, end_reason = ? WHERE id = ?').run(n * 10_000 + 1_000_000, 'unmount', session);
    db.pragma('wal_checkpoint(TRUNCATE)');
    return session;
  } finally {
    db.close();
  }
}

function line(what: string, took: number, goal?: number): void {
  process.stdout.write(`${what.padEnd(58)} ${took.toFixed(1).padStart(8)} ms${goal ? `  (goal < ${goal} ms${took < goal ? '' : ', MISSED'})` : ''}\n`);
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** The filters timed by the bench: an indexed one, full scans, and a glob over paths. */
const FILTERS = [
  'state==interrupted',
  'op==READ && dur>1ms',
  'err',
  'path ~ "/data/dir7/*"',
  'comm=="proc3" && !(op in {LOOKUP GETATTR})',
];

export async function benchTui(): Promise<void> {
  const N = 1_000_000;
  const ROWS = 44;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-bench-tui-'));
  try {
    const file = path.join(dir, 'tui.db');
    let t0 = process.hrtime.bigint();
    const session = writeSyntheticSession(file, N);
    process.stdout.write(`synthetic session: ${N.toLocaleString('en-US')} requests written in ${(ms(t0) / 1000).toFixed(1)} s\n`);

    // What the TUI does before its first paint: open, sessions' headline numbers, one screen of
    // rows, and the first chunk of the count (the rest is counted between paints).
    t0 = process.hrtime.bigint();
    const db = openTraceDb(file, { readonly: true });
    const source = new TuiSource(db);
    const sessions = source.sessions();
    const q = { filter: '', sort: 'time' as const, scope: null };
    const rows = source.page(session, q, 0, ROWS);
    source.countSteps(session, q).next();
    const first = ms(t0);
    t0 = process.hrtime.bigint();
    const total = source.count(session, q);
    const counted = ms(t0);
    if (sessions.length !== 1 || total !== N || rows.length !== ROWS) throw new Error('bench: unexpected first screen');
    line('first screen (open, sessions, 44 rows, first count chunk)', first, 1000);
    line(`full count of ${total.toLocaleString('en-US')} rows`, counted);

    t0 = process.hrtime.bigint();
    source.page(session, q, N - ROWS, ROWS, N);
    line('jump to the last screen (G)', ms(t0));
    t0 = process.hrtime.bigint();
    source.page(session, q, N / 2, ROWS, N);
    line('jump to the middle', ms(t0));
    const byDur = { ...q, sort: 'dur' as const };
    t0 = process.hrtime.bigint();
    source.page(session, byDur, 0, ROWS);
    source.countSteps(session, byDur).next();
    line('sort by duration (first screen)', ms(t0), 300);
    const late = source.page(session, q, N - 10, 1, N)[0]!;
    const inflight = { ...q, scope: { kind: 'inflight' as const, atNs: late.start_ns, unique: String(late.unique) } };
    t0 = process.hrtime.bigint();
    source.page(session, inflight, 0, ROWS);
    source.count(session, inflight);
    line('in flight at a request near the end (w)', ms(t0));

    let worst = 0;
    for (const filter of FILTERS) {
      const fq = { ...q, filter };
      t0 = process.hrtime.bigint();
      source.page(session, fq, 0, ROWS);
      source.countSteps(session, fq).next();
      const shown = ms(t0);
      worst = Math.max(worst, shown);
      t0 = process.hrtime.bigint();
      const count = source.count(session, fq);
      const full = ms(t0);
      process.stdout.write(
        `filter ${JSON.stringify(filter).padEnd(48)} ${count.toString().padStart(7)} rows  first screen ${shown.toFixed(1).padStart(6)} ms  full count ${full.toFixed(1).padStart(7)} ms\n`,
      );
    }
    // Sorted by duration a sparse filter cannot walk requests_dur (random lookups): see pagePlan.
    for (const filter of ['op==READ && dur>1ms', 'path ~ "/data/dir7/*"', 'comm=="proc3" && !(op in {LOOKUP GETATTR})']) {
      const fq = { ...q, filter, sort: 'dur' as const };
      t0 = process.hrtime.bigint();
      source.page(session, fq, 0, ROWS);
      source.countSteps(session, fq).next();
      const shown = ms(t0);
      worst = Math.max(worst, shown);
      process.stdout.write(`filter ${JSON.stringify(filter).padEnd(48)} by duration  first screen ${shown.toFixed(1).padStart(6)} ms\n`);
    }
    line('filter apply (first screen), worst', worst, 300);
    db.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
