/**
 * Replay rate: a passthrough_ll session recorded by `fusetrace record` (BENCH_REPLAY_FILES files
 * created, written, read, stat'ed, renamed, listed and unlinked) replayed against passthrough_ll on
 * a fresh copy of the backing directory, in-process (plan + runReplay, as `fusetrace replay` does,
 * without Node's start-up). Prints requests replayed per second (median of RUNS) and checks that
 * every reply matched, so the rate is that of a correct replay.
 */
import { mkdirSync, rmSync, writeFileSync, readFileSync, renameSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse, repoRoot } from '../test/helpers/fuse-env.js';
import { buildExample } from '../test/helpers/build.js';
import { CleanupRegistry, runDirect } from '../test/helpers/mount.js';
import { openTraceDb } from '../src/store/db.js';
import { DEFAULT_RULES } from '../src/replay/compare.js';
import { runReplay } from '../src/replay/engine.js';
import { buildPlan, resolveSession } from '../src/replay/plan.js';
import { buildReport, formatText } from '../src/replay/report.js';

const FILES = Number(process.env.BENCH_REPLAY_FILES ?? 1000);
const RUNS = 3;

/** The backing directory as it is when the recording starts. */
function initialTree(dir: string): void {
  mkdirSync(join(dir, 'seed'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, 'seed', `s${i}`), `seed ${i}\n`);
}

function workload(mnt: string): void {
  const d = join(mnt, 'w');
  mkdirSync(d);
  const body = Buffer.alloc(4096, 0x61);
  for (let i = 0; i < FILES; i++) writeFileSync(join(d, `f${i}`), body);
  for (let i = 0; i < FILES; i++) readFileSync(join(d, `f${i}`));
  for (let i = 0; i < FILES; i++) statSync(join(d, `f${i}`));
  for (let i = 0; i < FILES; i += 2) renameSync(join(d, `f${i}`), join(d, `g${i}`));
  readdirSync(d);
  readdirSync(join(mnt, 'seed'));
  for (const name of readdirSync(d)) unlinkSync(join(d, name));
}

export async function benchReplay(): Promise<void> {
  requireFuse();
  const reg = new CleanupRegistry();
  try {
    const server = buildExample('passthrough_ll');
    const work = reg.tempDir('fusetrace-bench-replay-');
    const src = join(work, 'src');
    initialTree(src);
    const db = join(work, 'trace.db');
    const mnt = reg.mountpoint('fusetrace-bench-mnt-');
    const rec = await runDirect(
      process.execPath,
      [join(repoRoot(), 'bin', 'fusetrace.js'), '--db', db, 'record', '--', server, '-f', '-o', `source=${src}`],
      mnt,
      { registry: reg, logFile: join(work, 'record.log'), timeoutMs: 15_000 },
    );
    statSync(mnt); // INIT
    workload(mnt);
    await new Promise((r) => setTimeout(r, 300)); // releases and forgets reach the server
    const exit = await rec.stop();
    if (exit.code !== 0) throw new Error(`fusetrace record exited ${exit.code ?? exit.signal}:\n${rec.log()}`);

    const tdb = openTraceDb(db, { readonly: true });
    const plan = buildPlan(tdb, resolveSession(tdb, undefined));
    tdb.close();
    const rates: number[] = [];
    let line = '';
    for (let run = 0; run < RUNS; run++) {
      const copy = join(work, 'copy');
      rmSync(copy, { recursive: true, force: true });
      initialTree(copy);
      const argv = [server, '-f', '-o', `source=${copy}`];
      const t0 = process.hrtime.bigint();
      const result = await runReplay(plan, { argv, rules: DEFAULT_RULES, timing: { mode: 'asap' }, replyTimeoutMs: 5000 });
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const report = buildReport({ plan, argv, timing: 'asap', rules: DEFAULT_RULES }, result);
      if (!report.ok) throw new Error(`the replay diverged:\n${formatText(report).split('\n').slice(0, 60).join('\n')}`);
      rates.push(result.sent / s);
      line = `${result.sent} requests, ${report.counts.matched} matched`;
    }
    rates.sort((a, b) => a - b);
    const median = rates[Math.floor(rates.length / 2)];
    process.stdout.write(
      `replay passthrough_ll (${FILES} files: ${line}): ${Math.round(median)} requests/s ` +
        `(median of ${RUNS}: ${rates.map((r) => Math.round(r)).join(', ')})\n`,
    );
  } finally {
    await reg.cleanup();
  }
}
