/**
 * What `fusetrace attach` costs a running server: libfuse's passthrough_ll, mounted directly,
 * with and without fusetrace attached, on two workloads:
 *
 *   find+stat    find -printf over BENCH_ATTACH_FILES files (default 10,000): LOOKUP/GETATTR/READDIRPLUS
 *   fio 4k read  fio randread, 4 KiB blocks, psync, 4 s, on a 64 MiB file with -o cache=never
 *                (direct_io: every read(2) is a READ request), IOPS
 *
 * Configurations: direct; attach (ptrace, whole frames); attach --snaplen 256; attach --tracepoints.
 * ptrace stops the server at every system call it makes (two stops per call, not just on the
 * device), which is what the ratios measure. Each run gets a fresh mount; times are medians.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { requireFuse, repoRoot } from '../test/helpers/fuse-env.js';
import { buildExample } from '../test/helpers/build.js';
import { CleanupRegistry, runDirect, waitExit } from '../test/helpers/mount.js';
import { findStat, makeManyFiles } from '../test/helpers/workloads.js';

const FILES = Number(process.env.BENCH_ATTACH_FILES ?? 10_000);
const RUNS = 2;

interface Config {
  name: string;
  /** Arguments of `fusetrace attach`, or null for the server alone. */
  attach: string[] | null;
}

const CONFIGS: Config[] = [
  { name: 'direct', attach: null },
  { name: 'attach (ptrace)', attach: [] },
  { name: 'attach --snaplen 256', attach: ['--snaplen', '256'] },
  { name: 'attach --tracepoints', attach: ['--tracepoints'] },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Starts `fusetrace attach` and resolves once it records. */
async function startAttach(db: string, mnt: string, extra: string[]): Promise<ChildProcess> {
  const cli = join(repoRoot(), 'bin', 'fusetrace.js');
  const child = spawn(process.execPath, [cli, '--db', db, 'attach', ...extra, mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/recording session/.test(err)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`attach did not start:\n${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

/** fio 4 KiB random reads for 4 s; IOPS. */
function fioRandread(file: string): number {
  const r = spawnSync('fio', ['--name=randread', `--filename=${file}`, '--rw=randread', '--bs=4k', '--size=64M', '--ioengine=psync',
    '--runtime=4', '--time_based', '--output-format=json'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`fio failed: ${r.stderr}`);
  return Math.round((JSON.parse(r.stdout) as { jobs: Array<{ read: { iops: number } }> }).jobs[0].read.iops);
}

/** One workload run under one configuration on a fresh mount. */
async function runOnce(reg: CleanupRegistry, server: string, src: string, cfg: Config, work: string, which: 'meta' | 'fio'): Promise<number> {
  const mnt = reg.mountpoint('fusetrace-bench-attach-');
  const opts = which === 'fio' ? ['-o', `source=${src},cache=never`] : ['-o', `source=${src}`];
  const m = await runDirect(server, ['-f', ...opts], mnt, { registry: reg });
  let tracer: ChildProcess | undefined;
  try {
    if (cfg.attach) tracer = await startAttach(join(work, `${Date.now()}.db`), mnt, cfg.attach);
    const t0 = performance.now();
    const value = which === 'meta' ? (await findStat(mnt), performance.now() - t0) : fioRandread(join(mnt, 'big'));
    if (tracer) {
      tracer.kill('SIGINT');
      const exit = await waitExit(tracer);
      if (exit.code !== 0) throw new Error(`attach exited ${exit.code ?? exit.signal}`);
    }
    return value;
  } finally {
    await m.stop();
  }
}

export async function benchAttach(): Promise<void> {
  requireFuse();
  const reg = new CleanupRegistry();
  try {
    const server = buildExample('passthrough_ll');
    const src = reg.tempDir('fusetrace-bench-attach-src-');
    const work = reg.tempDir('fusetrace-bench-attach-db-');
    makeManyFiles(join(src, 'tree'), FILES);
    mkdirSync(join(src, 'empty'), { recursive: true });
    writeFileSync(join(src, 'big'), Buffer.alloc(64 << 20, 7));
    process.stdout.write(`passthrough_ll, ${FILES} files for find+stat, fio randread 4k on 64 MiB (cache=never); load ${loadavg()[0].toFixed(2)}\n`);
    const meta = new Map<string, number[]>();
    const iops = new Map<string, number[]>();
    for (let run = 0; run < RUNS; run++) {
      for (const cfg of CONFIGS) {
        meta.set(cfg.name, [...(meta.get(cfg.name) ?? []), await runOnce(reg, server, src, cfg, work, 'meta')]);
        if (run === 0) iops.set(cfg.name, [await runOnce(reg, server, src, cfg, work, 'fio')]);
      }
    }
    const base = { meta: median(meta.get('direct')!), iops: median(iops.get('direct')!) };
    process.stdout.write('config                 find+stat ms   x direct   fio 4k IOPS   x direct\n');
    for (const cfg of CONFIGS) {
      const m = median(meta.get(cfg.name)!);
      const i = median(iops.get(cfg.name)!);
      process.stdout.write(`${cfg.name.padEnd(22)} ${m.toFixed(0).padStart(12)}   ${(m / base.meta).toFixed(2).padStart(8)}   ${String(i).padStart(11)}   ${(base.iops / i).toFixed(2).padStart(8)}\n`);
    }
  } finally {
    await reg.cleanup();
  }
}
