/**
 * CPU per frame of the derivation (store/derive.ts): a Deriver deriving the frames index and the
 * request ledger of a committed session from its batches, the way the recorder's derivation thread
 * does (steps of STEP frames, then finish(), which also builds the duration indexes). Issue 13's
 * budget is 3 us/frame for the whole recorder, derivation included.
 *
 * The session is bench/ledger.ts's synthetic workload written by a 'deferred' TraceWriter (as
 * `record` writes it), or a real trace: FUSETRACE_BENCH_DERIVE_DB=FILE[:SESSION] (copied first;
 * its derived rows are derived again). Each run derives a fresh copy; CPU is this process's
 * (process.cpuUsage: user + system), so other load on the machine inflates it less than wall time,
 * but a busy 2-core box still moves it by +-30% from run to run: compare builds in one process, in
 * alternating runs. FUSETRACE_BENCH_DERIVE_PROFILE=OUT.cpuprofile writes a CPU profile of the first
 * run's derivation alone (not of making the session); FUSETRACE_BENCH_DERIVE_STEP sets the step;
 * FUSETRACE_BENCH_DERIVE_AGAINST=DIR (another checkout, built) alternates each run with that build's
 * Deriver and prints the ratio of each pair.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Session } from 'node:inspector/promises';
import { dropDurationIndexes, openTraceDb } from '../src/store/db.js';
import { Deriver } from '../src/store/derive.js';
import { TraceWriter } from '../src/store/writer.js';
import { workload } from './ledger.js';

const FRAMES = Number(process.env.FUSETRACE_BENCH_DERIVE_FRAMES ?? 400_000);
const RUNS = Number(process.env.FUSETRACE_BENCH_DERIVE_RUNS ?? 5);
/** The derivation thread's step (src/proxy/derive-worker.ts STEP_FRAMES). */
const STEP = Number(process.env.FUSETRACE_BENCH_DERIVE_STEP ?? 16384);

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Writes the synthetic session as `record` does, with build `b`: batches only, procs rows, no derived rows. */
function synthesize(b: Build, file: string): { session: number; frames: number } {
  const frames = workload(FRAMES);
  const db = b.openTraceDb(file, { create: true });
  b.dropDurationIndexes(db);
  const writer = new b.TraceWriter(db, { derive: 'deferred' });
  const session = writer.beginSession({ command: ['bench'], startedWallNs: 0n, startedMonoNs: 0n });
  writer.addProc(4242, 'bench');
  writer.addProc(0, null);
  for (let i = 0; i < frames.length; i += 8192) {
    writer.addFrames(frames.slice(i, i + 8192));
    writer.flush();
  }
  writer.updateSession({ endReason: 'unmount', endedMonoNs: frames[frames.length - 1].tsNs + 1n });
  writer.close();
  db.close();
  return { session, frames: frames.length };
}

/**
 * A copy of a real trace with its duration indexes dropped (as while recording), opened once by
 * build `b` for writing (upgraded to its format, if older).
 */
function fromTrace(b: Build, spec: string, file: string): { session: number; frames: number } {
  const [src, s] = spec.split(':');
  fs.copyFileSync(src, file);
  if (fs.existsSync(`${src}-wal`)) fs.copyFileSync(`${src}-wal`, `${file}-wal`);
  const db = b.openTraceDb(file);
  db.pragma('wal_checkpoint(TRUNCATE)');
  const session = s === undefined ? (db.prepare('SELECT max(id) FROM sessions').pluck().get() as number) : Number(s);
  b.dropDurationIndexes(db);
  const frames = db.prepare('SELECT coalesce(sum(count), 0) FROM batches WHERE session = ?').pluck().get(session) as number;
  db.close();
  return { session, frames };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * What a run needs of a build: its Deriver, and how it opens and writes a trace (each build
 * derives a template written in its own format: trace formats differ between builds).
 */
interface Build {
  name: string;
  Deriver: typeof Deriver;
  openTraceDb: typeof openTraceDb;
  dropDurationIndexes: typeof dropDurationIndexes;
  TraceWriter: typeof TraceWriter;
}

/** Another checkout's build (FUSETRACE_BENCH_DERIVE_AGAINST=DIR, after its `npx tsc -p tsconfig.build.json`). */
async function otherBuild(root: string): Promise<Build> {
  const store = path.join(path.resolve(root), 'dist', 'src', 'store');
  const derive = (await import(path.join(store, 'derive.js'))) as { Deriver: typeof Deriver };
  const db = (await import(path.join(store, 'db.js'))) as { openTraceDb: typeof openTraceDb; dropDurationIndexes: typeof dropDurationIndexes };
  const writer = (await import(path.join(store, 'writer.js'))) as { TraceWriter: typeof TraceWriter };
  return { name: root, Deriver: derive.Deriver, openTraceDb: db.openTraceDb, dropDurationIndexes: db.dropDurationIndexes, TraceWriter: writer.TraceWriter };
}

/** One derivation of a fresh copy of the template: CPU us per frame of the steps, and with finish(). */
async function deriveOnce(b: Build, template: string, session: number, frames: number, file: string, profileTo?: string): Promise<{ steps: number; total: number; wall: number }> {
  fs.copyFileSync(template, file);
  const db = b.openTraceDb(file);
  const deriver = new b.Deriver(db, session);
  const profile = profileTo ? new Session() : null;
  if (profile) {
    profile.connect();
    await profile.post('Profiler.enable');
    await profile.post('Profiler.start');
  }
  const c0 = cpuUs();
  const w0 = process.hrtime.bigint();
  let n = 0;
  for (let k = deriver.step(STEP); k > 0; k = deriver.step(STEP)) n += k;
  const c1 = cpuUs();
  deriver.finish();
  const c2 = cpuUs();
  const wall = Number(process.hrtime.bigint() - w0) / 1e9;
  if (profile) {
    const { profile: out } = await profile.post('Profiler.stop');
    fs.writeFileSync(profileTo!, JSON.stringify(out));
    profile.disconnect();
  }
  if (n !== frames) throw new Error(`bench derive: derived ${n} frames of ${frames}`);
  deriver.close();
  db.close();
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
  return { steps: (c1 - c0) / n, total: (c2 - c0) / n, wall };
}

const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;

export async function benchDerive(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-bench-derive-'));
  try {
    const spec = process.env.FUSETRACE_BENCH_DERIVE_DB;
    const builds: Build[] = [{ name: 'this build', Deriver, openTraceDb, dropDurationIndexes, TraceWriter }];
    const against = process.env.FUSETRACE_BENCH_DERIVE_AGAINST;
    // Paired runs in one process, the order alternating: what drifts on a shared machine hits both
    // alike, and the ratio of each pair is steadier than either figure (V8's heap is shared, though).
    if (against) builds.push(await otherBuild(against));
    const templates = builds.map((b, i) => {
      const template = path.join(dir, `template${i}.db`);
      return { template, ...(spec ? fromTrace(b, spec, template) : synthesize(b, template)) };
    });
    const { frames } = templates[0];
    if (templates.some((t) => t.frames !== frames)) throw new Error('bench derive: the builds read different frame counts');
    process.stdout.write(`derive: ${frames} frames (${spec ?? 'synthetic'}), ${RUNS} runs, steps of ${STEP}\n`);
    const totals = builds.map((): number[] => []);
    const steps = builds.map((): number[] => []);
    for (let run = 0; run < RUNS; run++) {
      const order = run % 2 === 0 ? builds.map((_, i) => i) : builds.map((_, i) => builds.length - 1 - i);
      const line: string[] = [];
      for (const i of order) {
        const profileTo = run === 0 && i === 0 ? process.env.FUSETRACE_BENCH_DERIVE_PROFILE : undefined;
        const r = await deriveOnce(builds[i], templates[i].template, templates[i].session, frames, path.join(dir, `run${run}-${i}.db`), profileTo);
        steps[i].push(r.steps);
        totals[i].push(r.total);
        line[i] = `${builds.length > 1 ? `${builds[i].name}: ` : ''}steps ${r.steps.toFixed(2)} us/frame, with finish ${r.total.toFixed(2)} us/frame CPU (${r.wall.toFixed(2)} s wall)`;
      }
      process.stdout.write(`  run ${run + 1}: ${line.join('; ')}\n`);
    }
    for (let i = 0; i < builds.length; i++) {
      const who = builds.length > 1 ? ` (${builds[i].name})` : '';
      process.stdout.write(`derive steps        median ${median(steps[i]).toFixed(2)} us/frame CPU (range ${spread(steps[i])})${who}\n`);
      process.stdout.write(`derive with finish  median ${median(totals[i]).toFixed(2)} us/frame CPU (range ${spread(totals[i])})${who}\n`);
    }
    if (against) {
      const ratios = totals[0].map((t, k) => t / totals[1][k]);
      process.stdout.write(`this build / ${against}: ratio median ${median(ratios).toFixed(3)} (range ${spread(ratios)}) of CPU per frame with finish\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
