/**
 * Query speed of `show` and `stats` on a synthetic session of 1,000,000 requests (issue 4:
 * `show --filter 'op==READ && dur>1ms'` well under 1 s, `stats` under 2 s).
 *
 * The session is built once and cached in $TMPDIR/fusetrace-bench-query-v<N>.db (delete it, or
 * bump CACHE_VERSION when the generator or the schema changes, to rebuild it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Database } from 'better-sqlite3';
import { openTraceDb } from '../src/store/db.js';
import { OP } from '../src/protocol/index.js';
import { FORMAT_VERSION } from '../src/store/schema.js';
import { countRequests, queryRequests } from '../src/store/query.js';
import { stats } from '../src/store/stats.js';

const REQUESTS = 1_000_000;
const CACHE_VERSION = 2;
const CACHE = path.join(os.tmpdir(), `fusetrace-bench-query-v${CACHE_VERSION}-f${FORMAT_VERSION}.db`);

/** xorshift32: a fixed seed, so every run of the bench measures the same data. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** Opcode mix of a build-and-grep workload: metadata dominates, then data. [opcode, weight, median dur ns] */
const MIX: [number, number, number][] = [
  [OP.LOOKUP, 22, 60_000],
  [OP.GETATTR, 25, 30_000],
  [OP.READ, 18, 250_000],
  [OP.WRITE, 8, 300_000],
  [OP.OPEN, 5, 80_000],
  [OP.RELEASE, 5, 20_000],
  [OP.FLUSH, 5, 15_000],
  [OP.READDIRPLUS, 3, 400_000],
  [OP.OPENDIR, 1, 40_000],
  [OP.RELEASEDIR, 1, 20_000],
  [OP.FORGET, 4, 0], // no reply
  [OP.CREATE, 1, 150_000],
  [OP.UNLINK, 1, 100_000],
  [OP.GETXATTR, 1, 25_000],
];

function build(file: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.rmSync(tmp, { force: true });
  const db = openTraceDb(tmp, { create: true });
  const rand = rng(0x5eed);
  const total = MIX.reduce((s, m) => s + m[1], 0);
  const paths = Array.from({ length: 5000 }, (_, i) => `/src/dir${i % 97}/file${i}.${['c', 'h', 'o', 'txt'][i % 4]}`);
  const comms = ['make', 'cc1', 'ld', 'bash', 'cat', 'grep', 'git', 'kworker/u8:1'];
  db.prepare(
    `INSERT INTO sessions (id, name, started_wall_ns, started_mono_ns, ended_mono_ns, command, mountpoint, end_reason)
     VALUES (1, 'bench', ?, 0, ?, '["synthetic"]', '/mnt', 'unmount')`,
  ).run(BigInt(Date.now()) * 1_000_000n, REQUESTS * 20_000);
  const ins = db.prepare(
    `INSERT INTO requests (session, seq, unique_id, opcode, nodeid, fh, path, pid, comm, uid, gid, start_ns, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, outcome, background, reply_seq)
     VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 1000, 1000, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  db.transaction(() => {
    let t = 0;
    for (let i = 0; i < REQUESTS; i++) {
      t += Math.floor(-Math.log(1 - rand()) * 20_000); // ~50,000 requests/s
      let w = rand() * total;
      let m = MIX[0]!;
      for (const x of MIX) {
        if ((w -= x[1]) < 0) {
          m = x;
          break;
        }
      }
      const [opcode, , median] = m;
      const p = Math.floor(rand() ** 2 * paths.length); // some paths are hot
      const pid = 1000 + Math.floor(rand() * 60);
      const noreply = opcode === OP.FORGET;
      // Log-normal durations around the opcode's median; about 1 in 20 READs takes over 1 ms.
      const dur = noreply ? null : Math.max(1000, Math.round(median * Math.exp(1.1 * gauss(rand))));
      const r = rand();
      let state = 'ok';
      let errno: number | null = 0;
      if (noreply) {
        state = 'noreply';
        errno = null;
      } else if (opcode === OP.LOOKUP && r < 0.15) {
        state = 'error';
        errno = 2; // ENOENT
      } else if (r < 0.002) {
        state = 'interrupted';
        errno = 4; // EINTR
      } else if (r < 0.0025) {
        state = 'error';
        errno = 5; // EIO
      } else if (i > REQUESTS - 20 && r < 0.5) {
        state = 'aborted';
        errno = null;
      }
      const replied = errno !== null;
      const len = opcode === OP.WRITE ? 80 + 4096 * (1 + Math.floor(rand() * 32)) : 40 + (opcode === OP.LOOKUP ? 20 : 24);
      const replyLen = !replied ? null : opcode === OP.READ && errno === 0 ? 16 + 4096 * (1 + Math.floor(rand() * 32)) : errno ? 16 : 16 + 120;
      ins.run(
        i * 2,
        2 * (i + 1),
        opcode,
        1 + p,
        opcode === OP.READ || opcode === OP.WRITE || opcode === OP.RELEASE || opcode === OP.FLUSH ? 0x5600_0000 + p : null,
        paths[p],
        pid,
        comms[pid % comms.length],
        t,
        t + 2_000,
        replied ? t + dur! : null,
        replied ? dur : null,
        errno,
        len,
        replyLen,
        state,
        state === 'interrupted' ? 'eintr' : null,
        opcode === OP.RELEASE || opcode === OP.RELEASEDIR ? 1 : 0,
        replied ? i * 2 + 1 : null,
      );
    }
  })();
  db.close();
  fs.renameSync(tmp, file);
}

/** Box-Muller: one standard normal sample. */
function gauss(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** Wall time and this process's CPU time: on a busy 2-core machine the wall figure mostly measures the neighbours. */
function time<T>(label: string, fn: () => T): T {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const v = fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1000;
  process.stdout.write(`  ${label.padEnd(60)} ${ms.toFixed(1).padStart(8)} ms wall ${cpu.toFixed(1).padStart(8)} ms cpu\n`);
  return v;
}

function plan(db: Database, sql: string, ...params: unknown[]): string {
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail).join('; ');
}

export async function benchQuery(): Promise<void> {
  if (!fs.existsSync(CACHE)) {
    process.stdout.write(`  building ${REQUESTS} synthetic requests in ${CACHE} ...\n`);
    time('build (once, cached)', () => build(CACHE));
  } else {
    process.stdout.write(`  using cached ${CACHE}\n`);
  }
  const db = openTraceDb(CACHE, { readonly: true });
  try {
    const filter = 'op==READ && dur>1ms';
    // First a cold-ish pass (the page cache may be warm from building), then a repeat.
    for (const pass of ['first', 'again']) {
      const page = time(`show --filter '${filter}' first page (50) [${pass}]`, () => queryRequests(db, 1, { filter, limit: 50 }));
      const n = time(`show --filter '${filter}' count [${pass}]`, () => countRequests(db, 1, { filter }));
      if (pass === 'first') process.stdout.write(`    ${n} matching, first unique ${page[0]?.unique}\n`);
    }
    time(`show --sort dur --filter '${filter}' first page (50)`, () => queryRequests(db, 1, { filter, sort: 'dur', limit: 50 }));
    time(`show --filter 'path ~ "/src/dir1/*.c"' first page (50)`, () => queryRequests(db, 1, { filter: 'path ~ "/src/dir1/*.c"', limit: 50 }));
    time('show 1000000-end (range)', () => queryRequests(db, 1, { range: '1000000-end', limit: 50 }));
    const s = time('stats (whole session)', () => stats(db, 1));
    process.stdout.write(
      `    ${s.requests} requests, p50 ${s.overall.p50_ns} ns, p99 ${s.overall.p99_ns} ns, max in flight ${s.max_in_flight.count}, read ${s.bytes_read} B\n`,
    );
    time(`stats --filter '${filter}'`, () => stats(db, 1, filter));
    // A filter that keeps 1 row in 8 (one comm of 8): the selection is copied to a temp table and
    // its percentiles are sorted in JS, the path a session without duration indexes also takes.
    time(`stats --filter 'comm == cc1'`, () => stats(db, 1, 'comm == cc1'));
    process.stdout.write(`  load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cores\n`);
    process.stdout.write(`  plan of the filtered count: ${plan(db, 'SELECT count(*) FROM requests WHERE session = ? AND opcode = ? AND dur_ns > ?', 1, 15, 1_000_000)}\n`);
  } finally {
    db.close();
  }
}
