// Runs a command to completion and measures its wall time and peak resident set size, for the
// replay memory test and `npm run bench -- replay`. Peak RSS is the kernel's own high-water mark
// (VmHWM in /proc/PID/status, proc(5)), read every 20 ms while the process runs: the mark only
// grows, so the last reading misses at most the final 20 ms of a process that is already ending.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
  /** Peak RSS in bytes (VmHWM), 0 if it could never be read. */
  peakRss: number;
}

function vmHwm(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Runs `cmd args` (SIGKILL after timeoutMs; the promise rejects then). */
export function runMeasured(cmd: string, args: string[], timeoutMs: number, onSpawn?: (pid: number) => void): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    let stdout = '';
    let stderr = '';
    let peak = 0;
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const poll = setInterval(() => {
      if (child.pid !== undefined) peak = Math.max(peak, vmHwm(child.pid));
    }, 20);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish in ${timeoutMs} ms:\n${stderr.slice(-4000)}`));
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      // Output may still be in the pipes after 'exit'.
      child.once('close', () => resolve({ code, signal, stdout, stderr, seconds, peakRss: peak }));
    });
  });
}
