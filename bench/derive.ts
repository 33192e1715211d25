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
 * run's derivation alone (not of making the session); FUSETRACE_BENCH_DERIVE_STEP sets the step.
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
const STEP = Number(process.env.FUSETRACE_BENCH_DERIVE_STEP ?? 1024);

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Writes the synthetic session as `record` does: batches only, procs rows, no derived rows. */
function synthesize(file: string): { session: number; frames: number } {
  const frames = workload(FRAMES);
  const db = openTraceDb(file, { create: true });
  dropDurationIndexes(db);
  const writer = new TraceWriter(db, { derive: 'deferred' });
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

/** A copy of a real trace with its duration indexes dropped (as while recording). */
function fromTrace(spec: string, file: string): { session: number; frames: number } {
  const [src, s] = spec.split(':');
  const from = openTraceDb(src, { readonly: true });
  from.exec(`VACUUM INTO '${file.replaceAll("'", "''")}'`);
  from.close();
  const db = openTraceDb(file);
  const session = s === undefined ? (db.prepare('SELECT max(id) FROM sessions').pluck().get() as number) : Number(s);
  dropDurationIndexes(db);
  const frames = db.prepare('SELECT coalesce(sum(count), 0) FROM batches WHERE session = ?').pluck().get(session) as number;
  db.close();
  return { session, frames };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export async function benchDerive(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-bench-derive-'));
  try {
    const template = path.join(dir, 'template.db');
    const spec = process.env.FUSETRACE_BENCH_DERIVE_DB;
    const { session, frames } = spec ? fromTrace(spec, template) : synthesize(template);
    process.stdout.write(`derive: ${frames} frames (${spec ?? 'synthetic'}), ${RUNS} runs, steps of ${STEP}\n`);
    const steps: number[] = [];
    const totals: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const file = path.join(dir, `run${run}.db`);
      fs.copyFileSync(template, file);
      const db = openTraceDb(file);
      const deriver = new Deriver(db, session);
      const profile = run === 0 && process.env.FUSETRACE_BENCH_DERIVE_PROFILE ? new Session() : null;
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
        fs.writeFileSync(process.env.FUSETRACE_BENCH_DERIVE_PROFILE!, JSON.stringify(out));
        profile.disconnect();
      }
      if (n !== frames) throw new Error(`bench derive: derived ${n} frames of ${frames}`);
      steps.push((c1 - c0) / n);
      totals.push((c2 - c0) / n);
      process.stdout.write(
        `  run ${run + 1}: steps ${((c1 - c0) / n).toFixed(2)} us/frame, with finish ${((c2 - c0) / n).toFixed(2)} us/frame CPU (${wall.toFixed(2)} s wall)\n`,
      );
      deriver.close();
      db.close();
      fs.rmSync(file, { force: true });
      fs.rmSync(`${file}-wal`, { force: true });
      fs.rmSync(`${file}-shm`, { force: true });
    }
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
    process.stdout.write(`derive steps        median ${median(steps).toFixed(2)} us/frame CPU (range ${spread(steps)})\n`);
    process.stdout.write(`derive with finish  median ${median(totals).toFixed(2)} us/frame CPU (range ${spread(totals)})\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
