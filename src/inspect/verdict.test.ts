import { describe, expect, it } from 'vitest';
import { judge } from './verdict.js';
import type { HangReport, ServerThread } from './inspect.js';

type Input = Omit<HangReport, 'verdict'>;

function thread(tid: number, activity: ServerThread['activity'], name: string, sinceMs = 1000, state = 'S'): ServerThread {
  return { tid, comm: 'srv', state, syscall: { kind: 'syscall', nr: 0, name, args: [] }, wchan: '', stack: null, sinceMs, activity, file: null };
}

function report(threads: ServerThread[], waiting: number, blocked = 0): Input {
  return {
    mount: { mountPoint: '/mnt', fsType: 'fuse.x', source: 'x', device: '0:50' },
    connection: { id: 50, dir: '/sys/fs/fuse/connections/50', waiting, max_background: 12, congestion_threshold: 9 },
    matchedBy: 'fdinfo',
    servers: threads.length ? [{ pid: 10, comm: 'srv', cmdline: 'srv /mnt', fds: [3], threads }] : [],
    blocked: Array.from({ length: blocked }, (_, i) => ({
      pid: 100 + i, tid: 100 + i, comm: 'cat', syscall: 'read', file: '/mnt/f', waitMs: 9000 - i, inRequest: true, wchan: 'request_wait_answer', hung: true,
    })),
    unreadable: [],
    aborted: null,
    hungAfterMs: 5000,
  };
}

describe('judge', () => {
  it('idle: nothing waiting', () => {
    const v = judge(report([thread(1, 'reading', 'read'), thread(2, 'forever', 'futex')], 0));
    expect(v).toEqual({ kind: 'idle', line: 'idle: no request waiting; 1 thread of 2 reads the device', actions: [] });
  });

  it('deadlock: every thread waits for another, none reads', () => {
    const v = judge(report([thread(1, 'forever', 'futex'), thread(2, 'forever', 'futex'), thread(3, 'polling', 'epoll_pwait')], 2, 2));
    expect(v.kind).toBe('deadlock');
    expect(v.line).toBe("2 requests waiting (2 hung over 5.0s, oldest 9.0s); the server's 3 threads are all blocked (2 in futex, 1 in epoll_pwait) and none reads the device: the server is deadlocked");
    expect(v.actions[0]).toMatch(/^fusetrace hang \/mnt --abort/);
  });

  it('an event loop waiting in epoll is not called deadlocked', () => {
    const v = judge(report([thread(1, 'polling', 'epoll_wait')], 1, 1));
    expect(v.kind).toBe('stuck');
  });

  it('stuck: no reader, a thread waits on I/O', () => {
    const t = { ...thread(2, 'io', 'read', 40_000), file: 'socket:[77]' };
    const v = judge(report([thread(1, 'forever', 'futex'), t], 1, 1));
    expect(v.kind).toBe('stuck');
    expect(v.line).toMatch(/thread 2 has been in read \(socket:\[77\]\) for 40\.0s: the server is stuck on something else$/);
  });

  it('slow: a reader is left and another thread sleeps', () => {
    const v = judge(report([thread(1, 'reading', 'read'), thread(2, 'timed', 'clock_nanosleep', 12_000)], 1, 1));
    expect(v.kind).toBe('slow');
    expect(v.line).toMatch(/thread 2 has been in clock_nanosleep for 12\.0s: the server is slow, not dead$/);
  });

  it('stopped: says how to resume', () => {
    const v = judge(report([thread(1, 'stopped', 'read', 0, 'T')], 1, 1));
    expect(v.kind).toBe('stopped');
    expect(v.actions[0]).toBe('kill -CONT 10   (resumes it)');
  });

  it('no server: aborted or stranded', () => {
    expect(judge({ ...report([], 0), aborted: true }).line).toMatch(/^no process holds the device: the server died/);
    const stranded = judge({ ...report([], 3, 1), aborted: false });
    expect(stranded.kind).toBe('no-server');
    expect(stranded.line).toMatch(/3 requests waiting \(1 hung over 5\.0s, oldest 9\.0s\) that no server will answer$/);
  });
});
