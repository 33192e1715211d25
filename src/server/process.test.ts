import { closeSync, mkdtempSync, openSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DevFdArgv, ServerProcess, resolveExecutable } from './process.js';

const started: ServerProcess[] = [];
const fds: number[] = [];
afterEach(() => {
  // Only the processes these tests started, by their PID.
  for (const s of started.splice(0)) s.signal('SIGKILL');
  for (const fd of fds.splice(0)) closeSync(fd);
});

function devNull(): number {
  const fd = openSync('/dev/null', 'r');
  fds.push(fd);
  return fd;
}

describe('DevFdArgv', () => {
  it('replaces the named mountpoint argument, else the last directory argument, else appends', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ft-proc-'));
    try {
      mkdirSync(join(dir, 'mnt'));
      const mnt = join(dir, 'mnt');
      expect(new DevFdArgv(2).serverArgv(['srv', '-f', 'x', '-o', 'ro'])).toEqual(['srv', '-f', '/dev/fd/3', '-o', 'ro']);
      expect(new DevFdArgv().serverArgv(['srv', '-o', 'ro', mnt, '-f'])).toEqual(['srv', '-o', 'ro', '/dev/fd/3', '-f']);
      expect(new DevFdArgv().serverArgv(['srv', '-f'])).toEqual(['srv', '-f', '/dev/fd/3']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ServerProcess', () => {
  it('resolves executables like execvp', () => {
    expect(resolveExecutable('sh')).toMatch(/\/sh$/);
    expect(resolveExecutable('no-such-program-ft')).toBeUndefined();
  });

  it('reports the exit status a shell would (code, or 128 + signal)', () => {
    expect(ServerProcess.statusOf({ code: 3, signal: null })).toBe(3);
    expect(ServerProcess.statusOf({ code: null, signal: 'SIGKILL' })).toBe(137);
  });

  it('stop() sends SIGTERM, then SIGKILL to a server that ignores it, and says so', async () => {
    const sent: string[] = [];
    const server = new ServerProcess({
      argv: ['sh', '-c', 'trap "" TERM; echo ready >&2; while :; do sleep 0.05; done'],
      program: resolveExecutable('sh'),
      serverFd: devNull(),
      strategy: { serverArgv: (argv) => [...argv] },
      seccomp: false,
      output: 'capture',
    });
    started.push(server);
    // Wait until the trap is set, or SIGTERM could arrive before it.
    for (let i = 0; i < 200 && !server.stderr.includes('ready'); i++) await new Promise((r) => setTimeout(r, 10));
    const exit = await server.stop({ killAfterMs: 200, onEscalate: (sig) => sent.push(sig) });
    expect(sent).toEqual(['SIGTERM', 'SIGKILL']);
    expect(exit).toMatchObject({ code: null, signal: 'SIGKILL', byUs: true, daemonized: false });
    expect(server.running).toBe(false);
  });

  it('a server that exits 0 while its connection is still served counts as daemonized', async () => {
    const server = new ServerProcess({
      argv: ['true'],
      program: resolveExecutable('true'),
      serverFd: devNull(),
      strategy: { serverArgv: (argv) => [...argv] },
      seccomp: false,
      output: 'capture',
      stillServed: () => true,
    });
    started.push(server);
    expect(await server.exited).toMatchObject({ code: 0, signal: null, byUs: false, daemonized: true });
  });
});
