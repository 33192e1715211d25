/**
 * Reading other processes through /proc (proc(5)) for `fusetrace hang`. Nothing here touches a
 * file on a FUSE mount: paths of open files come from readlink(2) on /proc/PID/fd/N and their
 * mounts from fdinfo's mnt_id, never from stat(2), which would send GETATTR to a server that may
 * be the one that hangs.
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { syscallName } from './syscalls.js';
import { readMountInfoFile, type MountEntry } from '../proxy/mountinfo.js';

/** Where a task is, from /proc/PID/task/TID/syscall. */
export type SyscallState =
  | { kind: 'running' }
  /** Blocked outside a system call (a page fault, or stopped in user space). */
  | { kind: 'user' }
  | { kind: 'syscall'; nr: number; name: string; args: bigint[] }
  /** The file could not be read (permission, or the task is gone). */
  | { kind: 'unknown' };

/** One thread of a process, as /proc shows it. */
export interface Task {
  tid: number;
  comm: string;
  /** The state letter of /proc/PID/stat: R, S, D, T, t, Z, ... */
  state: string;
  syscall: SyscallState;
  /** The kernel function the task sleeps in (/proc/PID/task/TID/wchan), '' when running. */
  wchan: string;
  /** Kernel stack function names, innermost first; null where /proc/PID/stack is unreadable (root only). */
  stack: string[] | null;
  /** ms since the task last ran (its sleep so far when S or D); null when unknown. */
  sinceMs: number | null;
}

/** Reads a /proc file as text, or null when it is gone or unreadable. */
export function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** readlink(2) or null. */
export function readLink(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

/** Every numeric entry of a /proc directory (PIDs, TIDs or fds). */
export function listNumeric(dir: string): number[] {
  try {
    return readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number);
  } catch {
    return [];
  }
}

/** Parses /proc/PID/task/TID/syscall: `running`, `-1 sp pc`, or `nr a0..a5 sp pc` in hex. */
export function parseSyscall(text: string | null): SyscallState {
  if (text === null) return { kind: 'unknown' };
  const t = text.trim();
  if (t === 'running') return { kind: 'running' };
  const f = t.split(/\s+/);
  const nr = Number(f[0]);
  if (!Number.isInteger(nr)) return { kind: 'unknown' };
  if (nr < 0) return { kind: 'user' };
  return { kind: 'syscall', nr, name: syscallName(nr), args: f.slice(1, 7).map((a) => BigInt(a)) };
}

/** The state letter and comm of /proc/PID/stat (comm may hold spaces and parentheses). */
export function parseStat(text: string | null): { comm: string; state: string } | null {
  if (text === null) return null;
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  return { comm: text.slice(open + 1, close), state: text.slice(close + 2, close + 3) };
}

/** Function names of /proc/PID/stack lines like `[<0>] request_wait_answer+0x16a/0x280`. */
export function parseStack(text: string | null): string[] | null {
  if (text === null) return null;
  return text.split('\n').map((l) => /\]\s+([\w.]+)/.exec(l)?.[1]).filter((n): n is string => !!n);
}

/** Current CLOCK_MONOTONIC in ms (Node's hrtime is uv_hrtime: CLOCK_MONOTONIC). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * How long a sleeping task has slept: `se.exec_start` in /proc/PID/task/TID/sched is the
 * scheduler's clock (ms since boot, kernel/sched/debug.c) when the task last got a CPU; it runs
 * at CLOCK_MONOTONIC's pace apart from interrupt and steal time, so the difference is its age
 * give or take those. Needs CONFIG_SCHED_DEBUG (null without it).
 */
export function sleptMs(taskDir: string, nowMs: number): number | null {
  const text = readProc(`${taskDir}/sched`);
  const m = text && /se\.exec_start\s*:\s*([\d.]+)/.exec(text);
  if (!m) return null;
  return Math.max(0, nowMs - Number(m[1]));
}

/** Everything /proc says about thread `tid` of `pid`. */
export function readTask(pid: number, tid: number, nowMs: number): Task | null {
  const dir = `/proc/${pid}/task/${tid}`;
  const st = parseStat(readProc(`${dir}/stat`));
  if (!st) return null;
  const sleeping = st.state !== 'R';
  return {
    tid,
    comm: st.comm,
    state: st.state,
    syscall: parseSyscall(readProc(`${dir}/syscall`)),
    wchan: sleeping ? (readProc(`${dir}/wchan`) ?? '').replace(/^0$/, '') : '',
    stack: parseStack(readProc(`${dir}/stack`)),
    sinceMs: sleeping ? sleptMs(dir, nowMs) : 0,
  };
}

/** The threads of `pid`. */
export function readTasks(pid: number, nowMs: number): Task[] {
  return listNumeric(`/proc/${pid}/task`).map((tid) => readTask(pid, tid, nowMs)).filter((t): t is Task => t !== null);
}

/** The command line of `pid`, NUL separators as spaces. */
export function cmdline(pid: number): string {
  return (readProc(`/proc/${pid}/cmdline`) ?? '').replace(/\0+$/, '').split('\0').join(' ');
}

/** The `key:\tvalue` fields of /proc/PID/fdinfo/FD. */
export function fdinfo(pid: number, fd: number): Record<string, string> | null {
  const text = readProc(`/proc/${pid}/fdinfo/${fd}`);
  if (text === null) return null;
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

const mountCache = new Map<string, MountEntry[]>();

/** The mounts `pid` sees (its mount namespace), cached per namespace for one report. */
export function mountsOf(pid: number): MountEntry[] {
  const ns = readLink(`/proc/${pid}/ns/mnt`) ?? `pid:${pid}`;
  let m = mountCache.get(ns);
  if (!m) {
    m = readMountInfoFile(`/proc/${pid}/mountinfo`);
    mountCache.set(ns, m);
  }
  return m;
}

/** Forgets the cached mount tables (a new report). */
export function clearMountCache(): void {
  mountCache.clear();
}

/** A NUL-terminated string from `pid`'s memory (/proc/PID/mem; needs ptrace read access). */
export function readString(pid: number, addr: bigint, max = 4096): string | null {
  if (addr === 0n) return null;
  let fd: number | undefined;
  try {
    fd = openSync(`/proc/${pid}/mem`, 'r');
    const buf = Buffer.alloc(max);
    const n = readSync(fd, buf, 0, max, addr);
    const end = buf.subarray(0, n).indexOf(0);
    return buf.subarray(0, end < 0 ? n : end).toString('utf8');
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
