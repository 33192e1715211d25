/**
 * CPU time per thread from /proc, for the record bench: which thread of the recorder spends what
 * per frame. schedstat (proc(5): /proc/PID/task/TID/schedstat, first field = ns on a CPU) rather
 * than stat's utime+stime, whose 10 ms ticks are too coarse for a few-second run of one thread.
 * On-CPU time is far less sensitive than wall time to the other work sharing this 2-core machine.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** One thread's cumulative on-CPU time. */
interface ThreadSample {
  comm: string;
  ns: number;
  /** voluntary + involuntary context switches so far (/proc/PID/task/TID/status). */
  switches: number;
  /**
   * Minor page faults so far (/proc/PID/task/TID/stat, field 10): pages the thread touched for the
   * first time, populated ones included. About 10 us each on the 2-vCPU PVM test VM (README,
   * Benchmarks), so a thread that keeps getting fresh memory in a steady state pays for it per frame.
   */
  minflt: number;
}

/** A snapshot of a process's threads and of its descendants' total CPU. */
export interface CpuSnapshot {
  pid: number;
  threads: Map<number, ThreadSample>;
  /** ns on a CPU of every descendant process (all their threads): the FUSE server. */
  childrenNs: number;
}

function readThread(pid: number, tid: string): ThreadSample | undefined {
  try {
    const base = `/proc/${pid}/task/${tid}`;
    const comm = readFileSync(`${base}/comm`, 'utf8').trim();
    const ns = Number(readFileSync(`${base}/schedstat`, 'utf8').split(' ')[0]);
    const status = readFileSync(`${base}/status`, 'utf8');
    const sw = [...status.matchAll(/ctxt_switches:\s+(\d+)/g)].reduce((s, m) => s + Number(m[1]), 0);
    const stat = readFileSync(`${base}/stat`, 'utf8');
    // After "pid (comm) ": state ppid pgrp session tty_nr tpgid flags minflt (comm may hold spaces).
    const minflt = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
    return { comm, ns, switches: sw, minflt };
  } catch {
    return undefined; // exited meanwhile
  }
}

/** Children of every thread of `pid` (/proc/PID/task/TID/children). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    }
  } catch {
    /* exited */
  }
  return out;
}

function treeNs(pid: number): number {
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += readThread(pid, tid)?.ns ?? 0;
  } catch {
    /* exited */
  }
  for (const c of childPids(pid)) ns += treeNs(c);
  return ns;
}

export function cpuSnapshot(pid: number): CpuSnapshot {
  const threads = new Map<number, ThreadSample>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const t = readThread(pid, tid);
      if (t) threads.set(Number(tid), t);
    }
  } catch {
    /* exited */
  }
  return { pid, threads, childrenNs: childPids(pid).reduce((s, c) => s + treeNs(c), 0) };
}

/**
 * The recorder's CPU between two snapshots (ns), by role:
 *   hot      the native pump's threads (ft-ring in-process; ft-reader, ft-writer, ft-notify on the relay)
 *   js       the JS thread (tid == pid): drain, one INSERT per batch, commits
 *   derived  the derivation thread (ft-derive, src/proxy/derive-worker.ts): frames index, ledger
 *   helpers  Node's other threads present at the first snapshot (V8's GC and compiler helpers, libuv)
 *   late     threads started after the first snapshot: the WAL checkpointer worker (it starts once
 *            64 MiB are committed; Node cannot name a worker's thread, so this is how it is told apart)
 *   server   the descendants (the FUSE server and anything it runs)
 * A thread that ended between the snapshots is missing (its CPU is not counted).
 */
export interface CpuSplit {
  hot: number;
  js: number;
  derived: number;
  helpers: number;
  late: number;
  server: number;
  /** Context switches of the hot threads (each is a sleep and a wake-up). */
  hotSwitches: number;
  /** Minor page faults (fresh pages) by the same roles; the server's are not counted. */
  faults: { hot: number; js: number; derived: number; helpers: number; late: number };
}

/** The CPU between `before` and `after`; `first`, when earlier than `before`, tells helpers from late threads. */
export function cpuSplit(before: CpuSnapshot, after: CpuSnapshot, first: CpuSnapshot = before): CpuSplit {
  const faults = { hot: 0, js: 0, derived: 0, helpers: 0, late: 0 };
  const s: CpuSplit = { hot: 0, js: 0, derived: 0, helpers: 0, late: 0, server: after.childrenNs - before.childrenNs, hotSwitches: 0, faults };
  for (const [tid, t] of after.threads) {
    const b = before.threads.get(tid);
    const ns = t.ns - (b?.ns ?? 0);
    const role: keyof typeof faults =
      t.comm === 'ft-derive' ? 'derived' : t.comm.startsWith('ft-') ? 'hot' : tid === after.pid ? 'js' : first.threads.has(tid) ? 'helpers' : 'late';
    s[role] += ns;
    faults[role] += t.minflt - (b?.minflt ?? 0);
    if (role === 'hot') s.hotSwitches += t.switches - (b?.switches ?? 0);
  }
  return s;
}

/** The derivation thread's on-CPU ns in a snapshot (0 when it has not started). */
export function derivedNs(s: CpuSnapshot): number {
  let ns = 0;
  for (const t of s.threads.values()) if (t.comm === 'ft-derive') ns += t.ns;
  return ns;
}
