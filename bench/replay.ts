/**
 * Replay rate and memory on a large session from a real workload: `fusetrace record` of libfuse's
 * passthrough_ll (cache=never, so every stat reaches the server) while BENCH_REPLAY_FILES files are
 * created, written, stat'ed round after round until the session has BENCH_REPLAY_REQUESTS requests
 * (default 500,000), read, renamed, listed and unlinked. The session is then replayed RUNS times by
 * the real CLI (`fusetrace replay`, a process of its own) against passthrough_ll on a fresh copy of
 * the backing directory. Prints requests replayed per second and the replay's peak RSS (median of
 * RUNS), and checks that every reply matched, so the rate is that of a correct replay.
 *
 * BENCH_REPLAY_TRACE=FILE keeps the recorded trace there and, when FILE exists, replays it without
 * recording again (a recording of 500,000 requests takes minutes). BENCH_REPLAY_CLI=a.js,b.js
 * replays with each of these `bin/fusetrace.js` in turn, run after run (interleaved, so two builds
 * meet the same noise), and reports each.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync, readFileSync, renameSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse, repoRoot } from '../test/helpers/fuse-env.js';
import { buildExample } from '../test/helpers/build.js';
import { CleanupRegistry, runDirect } from '../test/helpers/mount.js';
import { runMeasured } from '../test/helpers/measure.js';

const FILES = Number(process.env.BENCH_REPLAY_FILES ?? 2000);
const REQUESTS = Number(process.env.BENCH_REPLAY_REQUESTS ?? 500_000);
const RUNS = Number(process.env.BENCH_REPLAY_RUNS ?? 3);
/** Requests one stat(2) costs with cache=never: LOOKUP of the directory and of the file, GETATTR. */
const REQUESTS_PER_STAT = 3;

/** The backing directory as it is when the recording starts. */
function initialTree(dir: string): void {
  mkdirSync(join(dir, 'seed'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, 'seed', `s${i}`), `seed ${i}\n`);
}

function workload(mnt: string): void {
  const d = join(mnt, 'w');
  mkdirSync(d);
  const body = Buffer.alloc(1024, 0x61);
  for (let i = 0; i < FILES; i++) writeFileSync(join(d, `f${i}`), body);
  const rounds = Math.max(1, Math.ceil((REQUESTS - FILES * 12) / (FILES * REQUESTS_PER_STAT)));
  for (let r = 0; r < rounds; r++) for (let i = 0; i < FILES; i++) statSync(join(d, `f${i}`));
  for (let i = 0; i < FILES; i++) readFileSync(join(d, `f${i}`));
  for (let i = 0; i < FILES; i += 2) renameSync(join(d, `f${i}`), join(d, `g${i}`));
  readdirSync(d);
  readdirSync(join(mnt, 'seed'));
  for (const name of readdirSync(d)) unlinkSync(join(d, name));
}

/** Records the workload through `fusetrace record` into `db`. */
async function recordSession(reg: CleanupRegistry, server: string, serverOpts: string[], src: string, db: string, cli: string): Promise<void> {
  const mnt = reg.mountpoint('fusetrace-bench-mnt-');
  const t0 = Date.now();
  const rec = await runDirect(process.execPath, [cli, '--db', db, 'record', '--', server, ...serverOpts, '-o', `source=${src}`], mnt, {
    registry: reg, logFile: `${db}.record.log`, timeoutMs: 15_000,
  });
  statSync(mnt); // INIT
  workload(mnt);
  await new Promise((r) => setTimeout(r, 300)); // releases and forgets reach the server
  // A 500,000-request session takes the recorder a while to commit after the unmount.
  const exit = await rec.stop(300_000);
  if (exit.code !== 0) throw new Error(`fusetrace record exited ${exit.code ?? exit.signal}:\n${rec.log()}`);
  process.stdout.write(`recorded in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchReplay(): Promise<void> {
  requireFuse();
  const reg = new CleanupRegistry();
  try {
    const server = buildExample('passthrough_ll');
    const work = reg.tempDir('fusetrace-bench-replay-');
    const src = join(work, 'src');
    initialTree(src);
    const kept = process.env.BENCH_REPLAY_TRACE;
    const db = kept ?? join(work, 'trace.db');
    const cli = join(repoRoot(), 'bin', 'fusetrace.js');
    const clis = process.env.BENCH_REPLAY_CLI ? process.env.BENCH_REPLAY_CLI.split(',') : [cli];
    const serverOpts = ['-f', '-o', 'cache=never'];
    if (kept && existsSync(kept)) process.stdout.write(`replaying ${kept} (recorded before)\n`);
    else await recordSession(reg, server, serverOpts, src, db, cli);

    const rates = clis.map((): number[] => []);
    const rss = clis.map((): number[] => []);
    let requests = 0;
    for (let run = 0; run < RUNS; run++) {
      for (const [k, bin] of clis.entries()) {
        const copy = join(work, 'copy');
        rmSync(copy, { recursive: true, force: true });
        initialTree(copy);
        const r = await runMeasured(process.execPath, [bin, '--db', db, 'replay', '--send-ahead', '--', server, ...serverOpts, '-o', `source=${copy}`], 30 * 60_000,
          (pid) => reg.process(pid));
        if (r.code !== 0) throw new Error(`the replay failed (${r.code ?? r.signal}):\n${(r.stdout + r.stderr).split('\n').slice(0, 60).join('\n')}`);
        const m = /requests replayed (\d+), compared \d+: matched (\d+)/.exec(r.stdout);
        if (!m) throw new Error(`no counts in the replay report:\n${r.stdout.slice(0, 2000)}`);
        requests = Number(m[1]);
        rates[k].push(requests / r.seconds);
        rss[k].push(r.peakRss / 2 ** 20);
      }
    }
    for (const [k, bin] of clis.entries()) {
      process.stdout.write(
        `replay passthrough_ll, metadata-heavy (${FILES} files, ${requests} requests, every reply matched)${clis.length > 1 ? ` with ${bin}` : ''}: ` +
          `${Math.round(median(rates[k]))} requests/s, peak RSS ${Math.round(median(rss[k]))} MB ` +
          `(median of ${RUNS}: ${rates[k].map((x) => Math.round(x)).join(', ')} requests/s; ${rss[k].map((x) => Math.round(x)).join(', ')} MB)\n`,
      );
    }
  } finally {
    await reg.cleanup();
  }
}
