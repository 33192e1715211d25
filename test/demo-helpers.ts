// Shared by the demo tests: build once, run the real CLI, and check that a demo run left nothing
// behind (mounts, directories, processes).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './helpers/fuse-env.js';
import { readMountInfo, stopProcess, unmount, type CleanupRegistry } from './helpers/mount.js';
import { compileDist } from './helpers/dist.js';

export const ROOT = repoRoot();
export const CLI = join(ROOT, 'bin', 'fusetrace.js');

/** The demo needs /dev/fuse and the compiled tree (dist/), nothing else: no libfuse, no compiler. */
export function buildForDemo(): void {
  if (!existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: the demo tests need FUSE (they fail, never skip)');
  // Other parts of the tree may not type-check while they are being written; tsc still emits.
  compileDist(['dist/src/demo/server.js', 'dist/src/cli/demo.js', 'build/Release/fusetrace.node']);
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  pid: number;
}

/** Runs `node bin/fusetrace.js ARGS` (extra `env` on top of ours), SIGKILLs it (by PID) after `timeoutMs`. */
export function runCli(args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, pid: child.pid! });
    });
  });
}

/** Temp directories the demo creates (fusetrace-demo-*) under `base`: each test runs the demo with
 * TMPDIR=<a directory of its own>, so runs in parallel never see each other's. */
export function demoTempDirs(base: string = tmpdir()): string[] {
  return readdirSync(base).filter((n) => n.startsWith('fusetrace-demo-')).map((n) => join(base, n));
}

/** FUSE mounts under the system temp directory whose path starts with `prefix`. */
export function fuseMountsUnder(prefix: string): string[] {
  return readMountInfo()
    .filter((m) => (m.fsType === 'fuse' || m.fsType.startsWith('fuse.')) && m.mountPoint.startsWith(prefix))
    .map((m) => m.mountPoint);
}

/** True while a process with this PID exists (zombies included). */
export function pidExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** PIDs of live processes whose command line mentions `needle` (read-only /proc scan; nothing is signalled). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** What the demo reports on stderr: its temp dir and the PIDs it started or caused. */
export function parseDemoStderr(stderr: string): { tempDir: string; pids: number[]; session: number } {
  const dir = /(\/\S+fusetrace-demo-[^/\s]+) removed/.exec(stderr);
  const pids = /pids recorder (\d+), server (\d+|\?), readers ([\d ]+);/.exec(stderr);
  const session = /demo: session (\d+) in /.exec(stderr);
  if (!dir || !pids || !session) throw new Error(`unexpected demo stderr:\n${stderr}`);
  return {
    tempDir: dir[1]!,
    pids: [pids[1]!, pids[2]!, ...pids[3]!.trim().split(' ')].filter((p) => /^\d+$/.test(p)).map(Number),
    session: Number(session[1]),
  };
}

/**
 * Registers a cleanup step for a demo run (TMPDIR=`base`) that fails half-way: the temp dirs it
 * created, the mounts under them (never lazily) and the processes that mention them, by PID.
 */
export function cleanupAfterDemo(reg: CleanupRegistry, base: string): void {
  reg.defer(async () => {
    for (const dir of demoTempDirs(base)) {
      for (const mp of fuseMountsUnder(dir)) await unmount(mp);
      for (const pid of pidsMentioning(dir)) await stopProcess(pid, 500);
      for (const mp of fuseMountsUnder(dir)) await unmount(mp);
      if (fuseMountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
    }
  });
}
