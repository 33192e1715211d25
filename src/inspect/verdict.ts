/**
 * The plain-words verdict of `fusetrace hang`: a pure function of what /proc and fusectl showed,
 * so that every case is tested on its own (verdict.test.ts) as well as on real mounts.
 */
import type { HangReport, ServerThread } from './inspect.js';
import { formatSessionLength } from '../format.js';

/** What is wrong, in one word. */
export type VerdictKind = 'idle' | 'busy' | 'slow' | 'stuck' | 'deadlock' | 'stopped' | 'no-server';

export interface Verdict {
  kind: VerdictKind;
  /** One line in plain words. */
  line: string;
  /** Commands that end the wait, each with what it does. */
  actions: string[];
}

const ms = (v: number | null): string => (v === null ? '?' : formatSessionLength(BigInt(Math.round(v)) * 1_000_000n));
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "3 in futex, 1 in epoll_wait": where a set of threads sits, most common first. */
function where(threads: ServerThread[]): string {
  const counts = new Map<string, number>();
  for (const t of threads) {
    const k = t.syscall.kind === 'syscall' ? t.syscall.name : t.state === 'R' ? 'running' : `state ${t.state}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} in ${k}`).join(', ');
}

/** One thread in words: "thread 1234 has been in clock_nanosleep for 12.0s". */
function threadWords(t: ServerThread): string {
  const call = t.syscall.kind === 'syscall' ? t.syscall.name : 'user space';
  return `thread ${t.tid} has been in ${call}${t.file ? ` (${t.file})` : ''} for ${ms(t.sinceMs)}`;
}

/** The waiting part: "2 requests waiting (1 hung over 5.0s, oldest 12.0s)". */
function waitingWords(r: Omit<HangReport, 'verdict'>): string {
  const n = Math.max(r.connection.waiting, r.blocked.length);
  const hung = r.blocked.filter((b) => b.hung).length;
  const oldest = r.blocked[0]?.waitMs ?? null;
  const details = [hung > 0 ? `${hung} hung over ${ms(r.hungAfterMs)}` : '', oldest !== null ? `oldest ${ms(oldest)}` : ''].filter(Boolean);
  return `${plural(n, 'request')} waiting${details.length ? ` (${details.join(', ')})` : ''}`;
}

/** Judges a report: see the VerdictKind cases below. */
export function judge(r: Omit<HangReport, 'verdict'>): Verdict {
  const mp = r.mount.mountPoint;
  const abortActions = [
    `fusetrace hang ${mp} --abort   (every waiting request fails with ECONNABORTED)`,
    `umount -l ${mp}   (detaches the mount; processes already inside keep waiting)`,
  ];
  const waiting = r.connection.waiting > 0 || r.blocked.length > 0;
  if (r.servers.length === 0) {
    if (r.aborted) {
      return {
        kind: 'no-server',
        line: 'no process holds the device: the server died, and the kernel ended the connection when its last fd closed (every access fails with ENOTCONN, "Transport endpoint is not connected")',
        actions: [`umount ${mp}   (removes the dead mount)`],
      };
    }
    return {
      kind: 'no-server',
      line: `no process holds the device (the open file lives on where /proc cannot show it: in flight in a unix socket, or in another PID namespace): ${waitingWords(r)} that no server will answer`,
      actions: abortActions,
    };
  }
  const threads = r.servers.flatMap((s) => s.threads);
  const pids = r.servers.map((s) => s.pid).join(', ');
  const stopped = threads.filter((t) => t.activity === 'stopped');
  if (stopped.length > 0) {
    return {
      kind: 'stopped',
      line: `the server (pid ${pids}) is stopped (SIGSTOP or a debugger): ${waitingWords(r)}`,
      actions: [`kill -CONT ${pids}   (resumes it)`, ...(waiting ? abortActions : [])],
    };
  }
  const readers = threads.filter((t) => t.activity === 'reading');
  const readerWords = `${plural(readers.length, 'thread')} of ${threads.length} read${readers.length === 1 ? 's' : ''} the device`;
  if (!waiting) return { kind: 'idle', line: `idle: no request waiting; ${readerWords}`, actions: [] };
  const others = threads.filter((t) => t.activity !== 'reading' && t.activity !== 'running');
  const sleepers = others.filter((t) => t.activity === 'timed' || t.activity === 'io');
  if (readers.length > 0) {
    const oldest = [...sleepers].sort((a, b) => (b.sinceMs ?? 0) - (a.sinceMs ?? 0))[0];
    if (oldest) {
      return { kind: 'slow', line: `${waitingWords(r)}; ${readerWords}, and ${threadWords(oldest)}: the server is slow, not dead`, actions: abortActions };
    }
    return { kind: 'busy', line: `${waitingWords(r)}; ${readerWords} (${where(threads)}): the server is working on them`, actions: abortActions };
  }
  const running = threads.filter((t) => t.activity === 'running');
  const forever = threads.filter((t) => t.activity === 'forever');
  const pollers = threads.filter((t) => t.activity === 'polling');
  // Every thread waits for another thread (a lock, a condition variable, a signal) and none for
  // the device or a timeout: nothing can move. A thread in poll/epoll might be waiting for the
  // device itself (an event loop), so a server with only those is not called deadlocked.
  if (forever.length > 0 && forever.length + pollers.length === threads.length) {
    const all = threads.length === 1 ? "the server's only thread is" : `the server's ${threads.length} threads are all`;
    return { kind: 'deadlock', line: `${waitingWords(r)}; ${all} blocked (${where(threads)}) and none reads the device: the server is deadlocked`, actions: abortActions };
  }
  const culprit = [...sleepers, ...others].sort((a, b) => (b.sinceMs ?? 0) - (a.sinceMs ?? 0))[0];
  const why = culprit ? `; ${threadWords(culprit)}` : running.length ? `; ${plural(running.length, 'thread')} running` : '';
  return { kind: 'stuck', line: `${waitingWords(r)}; no thread of the server reads the device (${where(threads)})${why}: the server is stuck on something else`, actions: abortActions };
}
