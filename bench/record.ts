/**
 * What recording costs (issue 13), against the same server mounted directly. libfuse's
 * passthrough_ll over a tree on tmpfs (/dev/shm: O_DIRECT reaches memory, not a disk) runs the
 * workloads of bench/record-workloads.ts under five configurations:
 *
 *   direct               the server mounts by itself
 *   record               `fusetrace record`, whole frames, in-process (the preload and the ring)
 *   record --snaplen 256 the first 256 bytes of each frame
 *   record --relay       every frame through the proxy's socket (what go-fuse servers pay)
 *   server -d            the server's own per-request debug log, written to a file
 *
 * Every run gets a fresh mount and configurations are interleaved, so drift hits them alike.
 * Figures are medians with [min-max] over BENCH_RECORD_RUNS runs. Besides the application's
 * figure and its ratio to direct, each record row gives the recorder's CPU per frame by thread
 * (bench/thread-cpu.ts: schedstat before and after the workload): the hot path (the native pump
 * and ring threads, and the JS thread: drain, one INSERT per batch, commit), the derivation
 * thread over the whole session (frames index and ledger; it lags under load and catches up after
 * the workload, so its CPU is what it reports at the end: FUSETRACE_BENCH_CPU), Node's helper
 * threads (GC), the checkpointer worker; and the server's own CPU per request. `end s` is how long
 * fusetrace took to exit after the workload (unmount, the derivation catching up). On-CPU time is what to compare on a
 * shared machine; wall-clock ratios move with the load. In-process, the preload's copy into the
 * ring runs on the server's threads: it shows as the server's CPU per request above direct's.
 * BENCH_RECORD_FILES, BENCH_RECORD_RUNS, BENCH_RECORD_SECONDS, BENCH_RECORD_WORKLOADS scale it;
 * BENCH_RECORD_CONFIGS (names from CONFIGS separated by ';', as some names hold commas; `direct` always runs) narrows it.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { requireFuse, repoRoot } from '../test/helpers/fuse-env.js';
import { buildExample } from '../test/helpers/build.js';
import { CleanupRegistry, runDirect, type DirectMount } from '../test/helpers/mount.js';
import { makeManyFiles, writeDeterministicFile } from '../test/helpers/workloads.js';
import { cpuSnapshot, cpuSplit, derivedNs, type CpuSnapshot, type CpuSplit } from './thread-cpu.js';
import { METRIC, WORKLOADS, prepareMixed, runWorkload, workloadMs, type Workload } from './record-workloads.js';
import { openTraceDb } from '../src/store/db.js';

const FILES = Number(process.env.BENCH_RECORD_FILES ?? 20_000);
const RUNS = Number(process.env.BENCH_RECORD_RUNS ?? 3);
const BIG_MIB = 512;
const IDLE_MS = 1000;
const ONLY = process.env.BENCH_RECORD_WORKLOADS?.split(',') as Workload[] | undefined;

interface Config {
  name: string;
  kind: 'direct' | 'debug' | 'record';
  snaplen?: number;
  relay?: boolean;
  /** FUSETRACE_INTERCEPT=0: fusetrace mounts and the server gets /dev/fd/N (the fallback). */
  noIntercept?: boolean;
  /** FUSETRACE_DERIVE_PAUSE=1: the derivation thread waits for the session's end (the hot path alone during the workload). */
  deriveAtEnd?: boolean;
  /** FUSETRACE_DERIVE_DUTY: the share of a CPU the derivation thread takes while the recording runs. */
  deriveDuty?: number;
  /** FUSETRACE_DERIVE_DEFER=0: the derivation thread derives at every commit instead of in the quiet after a burst. */
  deriveEager?: boolean;
  /** The targets: the least ratio to direct (in the application's favour) per workload. */
  target?: Partial<Record<Workload, number>>;
}

/** Targets from issue 13, expressed as "performance relative to direct >= x" (1/ratio for times). */
const CONFIGS: Config[] = [
  { name: 'direct', kind: 'direct' },
  { name: 'record', kind: 'record', target: { 'find+stat': 1 / 1.1, 'fio 4k randread': 0.85, 'fio 1M read': 0.8, 'mixed 8+8': 0.6 } },
  { name: 'record --snaplen 256', kind: 'record', snaplen: 256, target: { 'find+stat': 0.95, 'fio 4k randread': 0.95, 'fio 1M read': 0.95 } },
  { name: 'record --relay', kind: 'record', relay: true, target: { 'find+stat': 1 / 1.5, 'fio 4k randread': 0.5 } },
  { name: 'server -d', kind: 'debug' },
  // Mount interception costs a notification at mount time only: the per-request figures of `record`
  // (interception) and of this row (fusetrace mounts, /dev/fd/N) must be the same.
  { name: 'record, no interception', kind: 'record', noIntercept: true },
  // What the derivation thread costs the workload while it keeps up: the same recording with all
  // derivation after the workload (its CPU then shows in `derived` and `end s`).
  { name: 'record, derived at the end', kind: 'record', deriveAtEnd: true },
  // The derivation thread not throttled while the CPUs are contended (by default it takes a quarter
  // of a CPU then, FUSETRACE_DERIVE_DUTY=0.25, and catches up after).
  { name: 'record, derive unthrottled', kind: 'record', deriveDuty: 1 },
  // ... and throttled harder than the default: a tenth of a CPU while contended.
  { name: 'record, derive duty 0.1', kind: 'record', deriveDuty: 0.1 },
  // The derivation at every commit (before 2026-12-07), not deferred while requests keep coming.
  { name: 'record, derive eagerly', kind: 'record', deriveEager: true },
];

/** BENCH_RECORD_CONFIGS: the configurations to run (direct always: the ratios are to it). */
function selectedConfigs(): Config[] {
  const want = process.env.BENCH_RECORD_CONFIGS?.split(';').map((s) => s.trim()).filter(Boolean);
  if (!want) return CONFIGS;
  const unknown = want.filter((n) => !CONFIGS.some((c) => c.name === n));
  if (unknown.length > 0) throw new Error(`BENCH_RECORD_CONFIGS: unknown ${unknown.join(', ')} (configurations: ${CONFIGS.map((c) => c.name).join(', ')})`);
  return CONFIGS.filter((c) => c.kind === 'direct' || want.includes(c.name));
}

interface Sample {
  value: number;
  observed: string;
  ios: number;
  cpu: CpuSplit;
  /** The recorder's CPU during IDLE_MS with the mount idle. */
  idle: CpuSplit;
  frames?: number;
  dropped?: number;
  exitNote?: string;
  /** The derivation thread's CPU from the workload's start to the session's end (its catch-up included), ns. */
  derivedNs?: number;
  /** ms from the workload's end until fusetrace exited (unmount, the derivation catching up, indexes). */
  endMs?: number;
  /** The pump queue's regions and the bytes of them faulted in, over the whole session (native/frame_queue.h Region). */
  queue?: { regions: number; faulted: number };
  /**
   * The second half of a time-based workload: the recorder's CPU by thread, and the frames committed
   * and derived meanwhile. Its first half carries the recorder's warm-up (the pump's queue regions,
   * SQLite's page cache and V8's heaps growing: fresh pages, each ~8-11 us at first touch on the
   * 2-vCPU test VM), which a 3 s run spreads over its frames; this is what every further second of a
   * long capture costs.
   */
  steady?: { cpu: CpuSplit; frames: number; derived: number };
}

/**
 * Frames committed to the trace so far, and how far the derivation has got (sessions.derived, a
 * seq): a reader's view of the live file, commits lag by the 100 ms commit period. The derivation
 * runs in bursts and lags, so its CPU over a window is per frame it derived in it, not committed.
 */
function progress(db: string): { frames: number; derived: number } {
  const r = openTraceDb(db, { readonly: true });
  try {
    const frames = r.prepare('SELECT coalesce(sum(count), 0) FROM batches').pluck().get() as number;
    const derived = r.prepare('SELECT coalesce(max(derived), 0) FROM sessions').pluck().get() as number;
    return { frames, derived };
  } finally {
    r.close();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * passthrough_ll keeps an O_PATH fd open per inode the kernel knows (lo_inode.fd), and this
 * container's hard RLIMIT_NOFILE is 20,000 (not raisable without CAP_SYS_RESOURCE). So the
 * 20,000 names are 10,000 inodes with two hard links each: every name is still a READDIRPLUS
 * entry / LOOKUP and a stat(), the server holds 10,000 fds.
 */
const LINKS_PER_FILE = 2;

async function start(cfg: Config, server: string, src: string, work: string, reg: CleanupRegistry, run: string): Promise<{ fs: DirectMount; db: string }> {
  const mnt = reg.mountpoint('fusetrace-bench-mnt-');
  const serverArgs = ['-o', `source=${src}`];
  if (cfg.kind === 'direct') return { fs: await runDirect(server, ['-f', ...serverArgs], mnt, { registry: reg }), db: '' };
  if (cfg.kind === 'debug') {
    // -d implies foreground; libfuse writes one block per request and reply to stderr.
    const log = join(work, `debug-${run}.log`);
    return { fs: await runDirect(server, ['-d', ...serverArgs], mnt, { registry: reg, logFile: log }), db: log };
  }
  const db = join(work, `trace-${run}.db`);
  const opts = [...(cfg.snaplen ? ['--snaplen', String(cfg.snaplen)] : []), ...(cfg.relay ? ['--relay'] : [])];
  // The command itself (its #! line sets the node flags a user's `fusetrace` runs with).
  const fs = await runDirect(join(repoRoot(), 'bin', 'fusetrace.js'), ['--db', db, 'record', ...opts, '--', server, '-f', ...serverArgs], mnt, {
    registry: reg,
    logFile: join(work, `record-${run}.log`),
    timeoutMs: 15_000,
    env: {
      ...process.env,
      FUSETRACE_BENCH_CPU: `${db}.cpu.json`,
      ...(cfg.noIntercept ? { FUSETRACE_INTERCEPT: '0' } : {}),
      ...(cfg.deriveAtEnd ? { FUSETRACE_DERIVE_PAUSE: '1' } : {}),
      ...(cfg.deriveDuty !== undefined ? { FUSETRACE_DERIVE_DUTY: String(cfg.deriveDuty) } : {}),
      ...(cfg.deriveEager ? { FUSETRACE_DERIVE_DEFER: '0' } : {}),
    },
  });
  return { fs, db };
}

async function measure(cfg: Config, w: Workload, server: string, src: string, work: string, reg: CleanupRegistry, run: string): Promise<Sample> {
  const { fs, db } = await start(cfg, server, src, work, reg, run);
  try {
    // The first access waits for INIT to be answered; keep that out of the measurement.
    statSync(fs.mountpoint);
    // A second of nothing first: what the recorder's timers cost per second with no frames
    // (wake-ups are expensive on this VM), to read the per-frame figures against.
    const idle0 = cpuSnapshot(fs.pid);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const before = cpuSnapshot(fs.pid);
    const idle = cpuSplit(idle0, before);
    // Half-way through a time-based run (see Sample.steady).
    const ms = cfg.kind === 'record' ? workloadMs(w) : undefined;
    let half: { cpu: CpuSnapshot; at: { frames: number; derived: number } } | undefined;
    const halfTimer = ms === undefined ? undefined : setTimeout(() => {
      try {
        half = { cpu: cpuSnapshot(fs.pid), at: progress(db) };
      } catch {
        // The live file could not be read just then: this run has no second-half figures.
      }
    }, ms / 2);
    const r = await runWorkload(w, fs.mountpoint).finally(() => clearTimeout(halfTimer));
    const after = cpuSnapshot(fs.pid);
    const cpu = cpuSplit(before, after);
    let end: { frames: number; derived: number } | undefined;
    try {
      end = half && progress(db);
    } catch {
      end = undefined; // as at half-way
    }
    const steady = half && end && { cpu: cpuSplit(half.cpu, after, before), frames: end.frames - half.at.frames, derived: end.derived - half.at.derived };
    if (cfg.kind !== 'record') {
      // The server itself is the process: all its threads are the server's.
      cpu.server += cpu.hot + cpu.js + cpu.helpers + cpu.late;
      cpu.hot = cpu.js = cpu.helpers = cpu.late = 0;
    }
    const stopAt = Date.now();
    const exit = await fs.stop(600_000);
    const endMs = Date.now() - stopAt;
    let derived: number | undefined;
    let queue: Sample['queue'];
    if (cfg.kind === 'record') {
      try {
        const end = JSON.parse(readFileSync(`${db}.cpu.json`, 'utf8')) as { deriveNs: number; queueRegions: number; queueFaulted: number };
        derived = end.deriveNs - derivedNs(before);
        queue = { regions: end.queueRegions, faulted: end.queueFaulted };
      } catch {
        derived = undefined; // the recorder failed before the end: its note says why
      }
    }
    const exitNote = exit.code === 0 ? undefined : `exit ${exit.code ?? exit.signal}: ${fs.log().trim().split('\n').slice(-1)[0] ?? ''}`;
    // record ends with "fusetrace: session N in FILE: F frames (B bytes), E errors, D dropped; ...".
    const summary = /(\d+) frames \(\d+ bytes[^)]*\), \d+ errors?, (\d+) dropped/.exec(cfg.kind === 'record' ? fs.log() : '');
    if (cfg.kind === 'record' && !summary) throw new Error(`fusetrace record gave no summary (exit ${exit.code ?? exit.signal}):\n${fs.log().slice(-2000)}`);
    return {
      ...r, cpu, idle, exitNote, derivedNs: derived, endMs, steady, queue,
      frames: summary ? Number(summary[1]) : undefined, dropped: summary ? Number(summary[2]) : undefined,
    };
  } finally {
    for (const suffix of ['', '-wal', '-shm', '.cpu.json']) if (db) rmSync(db + suffix, { force: true });
  }
}

function prepare(src: string): void {
  makeManyFiles(join(src, 'many'), FILES, 500, LINKS_PER_FILE);
  writeDeterministicFile(join(src, 'big.bin'), BIG_MIB << 20, 'bench-record');
  prepareMixed(src);
}

export async function benchRecord(): Promise<void> {
  requireFuse();
  const server = buildExample('passthrough_ll');
  // `dirs` holds the source tree and the work directory for the whole bench; `runs` holds what
  // one round of runs mounted and started, cleaned after each round.
  const dirs = new CleanupRegistry();
  const runs = new CleanupRegistry();
  try {
    const work = dirs.tempDir('fusetrace-bench-work-');
    const src = mkdtempSync('/dev/shm/fusetrace-bench-src-');
    dirs.defer(() => rmSync(src, { recursive: true, force: true }));
    const t0 = Date.now();
    prepare(src);
    process.stdout.write(`passthrough_ll over ${FILES} names (${FILES / LINKS_PER_FILE} inodes) and a ${BIG_MIB} MiB file on tmpfs; ${RUNS} runs per cell (prepared in ${Date.now() - t0} ms)\n`);
    const samples = new Map<string, Sample[]>();
    const configs = selectedConfigs();
    for (const w of ONLY ?? WORKLOADS) {
      for (let i = 0; i < RUNS; i++) {
        // Rotate the order too, so no configuration always runs right after the same one.
        for (let k = 0; k < configs.length; k++) {
          const cfg = configs[(k + i) % configs.length];
          const s = await measure(cfg, w, server, src, work, runs, `${CONFIGS.indexOf(cfg)}-${i}`);
          samples.set(`${cfg.name}/${w}`, [...(samples.get(`${cfg.name}/${w}`) ?? []), s]);
          await runs.cleanup();
        }
      }
      report(w, samples);
    }
    process.stdout.write(`(bench record took ${((Date.now() - t0) / 1000).toFixed(0)} s, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')})\n`);
    if (loadavg()[0] > cpus().length) {
      process.stdout.write(`WARNING: load average above ${cpus().length} cores: wall-clock ratios are unreliable; compare the CPU per frame\n`);
    }
  } finally {
    try {
      await runs.cleanup();
    } finally {
      await dirs.cleanup();
    }
  }
}

/** "median [min-max]" of xs with `digits` decimals. */
function spread(xs: number[], digits: number): string {
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) return '-';
  return `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}]`;
}

/** Requests the server answered in a run: fio's I/Os, or for find+stat half the frames a record run of it saw. */
function requestsOf(s: Sample, w: Workload, samples: Map<string, Sample[]>): number {
  if (w !== 'find+stat') return s.ios;
  return median((samples.get(`record/${w}`) ?? []).map((r) => r.frames ?? NaN)) / 2;
}

function report(w: Workload, samples: Map<string, Sample[]>): void {
  const m = METRIC[w];
  const base = median(samples.get(`direct/${w}`)!.map((s) => s.value));
  const rows: string[][] = [
    [`${w} (${m.unit})`, 'vs direct', 'target', 'frames', 'dropped', 'hot us/frame', 'derived', 'helpers', 'ckpt', 'recorder', 'server us/req', 'end s'],
  ];
  const notes: string[] = [];
  for (const cfg of CONFIGS) {
    const ss = samples.get(`${cfg.name}/${w}`) ?? [];
    if (ss.length === 0) continue;
    const rel = ss.map((s) => (m.higherIsBetter ? s.value / base : base / s.value));
    const target = cfg.target?.[w];
    const verdict = target === undefined ? '' : `>= ${target.toFixed(2)} ${median(rel) >= target ? 'met' : 'MISSED'}`;
    const perFrame = (k: Exclude<keyof CpuSplit, 'faults'>) => spread(ss.map((s) => s.cpu[k] / 1000 / (s.frames ?? NaN)), 2);
    // hot: everything a frame costs before it is durable (the pump's threads and the JS thread's
    // drain, INSERT per batch and commit); derived: the derivation thread over the whole session.
    const hot = spread(ss.map((s) => (s.cpu.hot + s.cpu.js) / 1000 / (s.frames ?? NaN)), 2);
    const derived = spread(ss.map((s) => (s.derivedNs ?? NaN) / 1000 / (s.frames ?? NaN)), 2);
    const total = spread(ss.map((s) => (s.cpu.hot + s.cpu.js + s.cpu.helpers + s.cpu.late + (s.derivedNs ?? NaN)) / 1000 / (s.frames ?? NaN)), 2);
    rows.push([cfg.name, `${spread(ss.map((s) => s.value), 0)}`, '', '', '', '', '', '', '', '', '', '']);
    const isRecord = cfg.kind === 'record';
    rows.push([
      '', `${spread(rel, 2)}x`, verdict, spread(ss.map((s) => s.frames ?? NaN), 0), spread(ss.map((s) => s.dropped ?? NaN), 0),
      isRecord ? hot : '-', isRecord ? derived : '-', perFrame('helpers'), perFrame('late'), isRecord ? total : '-',
      spread(ss.map((s) => s.cpu.server / 1000 / requestsOf(s, w, samples)), 1),
      spread(ss.map((s) => (s.endMs ?? NaN) / 1000), 1),
    ]);
    if (cfg.kind === 'record') {
      const idle = (k: 'hot' | 'js') => spread(ss.map((s) => s.idle[k] / 1e6 / (IDLE_MS / 1000)), 1);
      notes.push(
        `${cfg.name}: hot = pump threads ${perFrame('hot')} + JS thread ${perFrame('js')} us/frame; ` +
          `pump/ring context switches per 1000 frames ${spread(ss.map((s) => (1000 * s.cpu.hotSwitches) / (s.frames ?? NaN)), 0)}; ` +
          `idle mount: hot ${idle('hot')} ms/s, js ${idle('js')} ms/s; ` +
          `pump queue: ${spread(ss.map((s) => s.queue?.regions ?? NaN), 0)} regions, ` +
          `${spread(ss.map((s) => (s.queue?.faulted ?? NaN) / 2 ** 20), 0)} MiB faulted in`,
      );
      const st = ss.filter((s) => s.steady !== undefined && s.steady.frames > 0).map((s) => s.steady!);
      if (st.length > 0) {
        const per = (f: (c: CpuSplit) => number) => spread(st.map((x) => f(x.cpu) / 1000 / x.frames), 2);
        // The derivation per frame it derived in the window (none: '-'), the rest per frame committed.
        const derived = spread(st.map((x) => (x.derived > 0 ? x.cpu.derived / 1000 / x.derived : NaN)), 2);
        const all = spread(st.map((x) => ((x.cpu.hot + x.cpu.js + x.cpu.helpers + x.cpu.late) / x.frames + (x.derived > 0 ? x.cpu.derived / x.derived : NaN)) / 1000), 2);
        notes.push(
          `${cfg.name}, second half of the run (warm-up left out; ${spread(st.map((x) => x.frames), 0)} frames committed, ` +
            `${spread(st.map((x) => x.derived), 0)} derived): hot ${per((c) => c.hot + c.js)} (pump ${per((c) => c.hot)} + JS ${per((c) => c.js)}), ` +
            `derived ${derived} per frame derived, helpers ${per((c) => c.helpers)}, ckpt ${per((c) => c.late)}, recorder ${all} us/frame`,
        );
        // Fresh pages in the steady state (thread-cpu.ts ThreadSample.minflt): each costs ~10 us here.
        // The derivation's per 1000 frames it derived, the rest per 1000 committed.
        const pages = (role: keyof CpuSplit['faults']) =>
          spread(st.map((x) => (role === 'derived' ? x.derived : x.frames)).map((n, i) => (n > 0 ? (1000 * st[i].cpu.faults[role]) / n : NaN)), 0);
        notes.push(
          `${cfg.name}, second half: fresh pages (minor faults) per 1000 frames: pump ${pages('hot')}, JS ${pages('js')}, ` +
            `derivation ${pages('derived')} (per 1000 derived), helpers ${pages('helpers')}, ckpt ${pages('late')}`,
        );
      }
    }
    const direct = samples.get(`direct/${w}`)![0].observed;
    for (const s of ss) if (s.observed !== direct) notes.push(`NOTE: ${cfg.name}: observed ${s.observed}, direct ${direct}`);
    for (const s of ss) if (s.exitNote && cfg.kind === 'record') notes.push(`NOTE: ${cfg.name}: ${s.exitNote}`);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n');
  for (const n of notes) process.stdout.write(`  ${n}\n`);
  process.stdout.write('\n');
}
