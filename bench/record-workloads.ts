/**
 * The record bench's workloads (issue 13): find+stat over a tree of ~20,000 names, fio 4k O_DIRECT
 * random reads (psync, 1 job), fio 1M O_DIRECT sequential reads, and a mixed load of 8 fio jobs
 * (4k O_DIRECT randrw) beside 8 metadata loops. The fio runs are time-based and short.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { findStat } from '../test/helpers/workloads.js';

export type Workload = 'find+stat' | 'fio 4k randread' | 'fio 1M read' | 'mixed 8+8';
export const WORKLOADS: Workload[] = ['find+stat', 'fio 4k randread', 'fio 1M read', 'mixed 8+8'];

/** What one run of a workload observed. */
export interface WorkloadResult {
  /** The application's figure: ms for find+stat, IOPS or MB/s for fio (see METRIC). */
  value: number;
  /** Must be equal across configurations (find+stat's digest); '' where the run is time-based. */
  observed: string;
  /** I/O requests the application completed (fio's total_ios); 0 for find+stat. */
  ios: number;
}

/** The unit of WorkloadResult.value, and whether more is better. */
export const METRIC: Record<Workload, { unit: string; higherIsBetter: boolean }> = {
  'find+stat': { unit: 'ms', higherIsBetter: false },
  'fio 4k randread': { unit: 'IOPS', higherIsBetter: true },
  'fio 1M read': { unit: 'MB/s', higherIsBetter: true },
  'mixed 8+8': { unit: 'IOPS', higherIsBetter: true },
};

const FIO_SECONDS = Number(process.env.BENCH_RECORD_SECONDS ?? 3);

/** How long a time-based workload runs (ms); undefined for find+stat, which runs to its end. */
export function workloadMs(w: Workload): number | undefined {
  return w === 'find+stat' ? undefined : FIO_SECONDS * 1000;
}
const MIXED_JOBS = 8;
const MIXED_FILE_MIB = 32;

/** Creates the mixed load's per-job files in the source tree (not through a mount). */
export function prepareMixed(src: string): void {
  mkdirSync(join(src, 'rw'), { recursive: true });
  const r = spawnSync('fio', [...mixedArgs(join(src, 'rw')), '--create_only=1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fio --create_only failed: ${r.stderr || r.error?.message}`);
}

function mixedArgs(dir: string): string[] {
  return [
    '--name=mixed', `--directory=${dir}`, '--filename_format=j$jobnum', `--size=${MIXED_FILE_MIB}M`,
    `--numjobs=${MIXED_JOBS}`, '--rw=randrw', '--bs=4k', '--direct=1', '--ioengine=psync', '--group_reporting',
  ];
}

function timed(): string[] {
  return ['--time_based', `--runtime=${FIO_SECONDS}`, '--output-format=json'];
}

/** Runs fio; returns the group's read+write IOPS, bytes/s and completed I/Os. */
async function fio(args: string[]): Promise<{ iops: number; bw: number; ios: number }> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('fio', [...args, ...timed()], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`fio exited ${code}: ${stderr.trim()}`))));
  });
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  return {
    iops: job.read.iops + job.write.iops,
    bw: job.read.bw_bytes + job.write.bw_bytes,
    ios: job.read.total_ios + job.write.total_ios,
  };
}

/**
 * Eight loops of find+stat over parts of the tree, in their own process group (killed as a group
 * by the PID we started, so no find or stat outlives the run). Returns a stopper.
 */
function metadataLoops(dir: string, loops: number): () => void {
  const script = 'while :; do find "$1" -type f -print0 | xargs -0 stat > /dev/null; done';
  const children = Array.from({ length: loops }, (_, i) =>
    spawn('sh', ['-c', script, 'sh', join(dir, `d${String(i).padStart(3, '0')}`)], { stdio: 'ignore', detached: true }),
  );
  return () => {
    for (const c of children) {
      try {
        if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
}

export async function runWorkload(w: Workload, mnt: string): Promise<WorkloadResult> {
  const big = join(mnt, 'big.bin');
  const one = ['--ioengine=psync', '--direct=1', '--numjobs=1', `--filename=${big}`, '--readonly'];
  if (w === 'find+stat') {
    const t0 = process.hrtime.bigint();
    const r = await findStat(join(mnt, 'many'));
    return { value: Number(process.hrtime.bigint() - t0) / 1e6, observed: `${r.entries} ${r.digest}`, ios: 0 };
  }
  if (w === 'fio 4k randread') {
    const r = await fio(['--name=rr', ...one, '--rw=randread', '--bs=4k']);
    return { value: r.iops, observed: '', ios: r.ios };
  }
  if (w === 'fio 1M read') {
    const r = await fio(['--name=sr', ...one, '--rw=read', '--bs=1M']);
    return { value: r.bw / 1e6, observed: '', ios: r.ios };
  }
  const stop = metadataLoops(join(mnt, 'many'), MIXED_JOBS);
  try {
    const r = await fio(mixedArgs(join(mnt, 'rw')));
    return { value: r.iops, observed: '', ios: r.ios };
  } finally {
    stop();
  }
}
