/**
 * The replayer's side of the wire: the FUSE server runs on one end of an AF_UNIX SOCK_SEQPACKET
 * socketpair, handed to it as `/dev/fd/N` in place of its mountpoint, under the same exec helper
 * (and seccomp filter against spliced replies) as `fusetrace record`. Nothing is mounted.
 *
 * SEQPACKET keeps message boundaries: each read(2) returns exactly one frame and each write(2)
 * sends one, as /dev/fuse does. The fd is blocking, so reads and writes go through libuv's thread
 * pool (fs.read / fs.write): one read is always outstanding, writes use the other threads.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { findMountpoint } from '../proxy/args.js';
import { execHelperPath, native } from '../proxy/native.js';

/** The fd number the server finds its end of the socketpair at (stdio slot 3). */
export const SERVER_FD = 3;

/** How the server ended. */
export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the replayer ended it (SIGTERM at the end of the replay, or SIGKILL after a grace period). */
  byReplayer: boolean;
}

export interface ServerLinkOptions {
  /** The server's argv as the user gave it (argv[0] is the program). */
  argv: string[];
  /** Largest frame either side may send; sizes the socket buffers and the read buffer. */
  maxFrame: number;
  /** Called for every frame the server writes, in order. */
  onFrame: (frame: Buffer) => void;
  /** Called once when the server's end closed (read returned 0) or the read failed. */
  onEnd: (error?: Error) => void;
}

/**
 * Replaces the mountpoint argument (the last non-option argument that is an existing directory,
 * found as `record` finds it) with /dev/fd/N, or appends /dev/fd/N when there is none: a replay
 * needs no mountpoint at all.
 */
export function serverArgv(argv: readonly string[], fd = SERVER_FD): string[] {
  const isDir = (p: string): boolean => {
    try {
      return fs.statSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  const out = [...argv];
  const found = findMountpoint(argv, isDir);
  if (found) out[found.mountIndex] = `/dev/fd/${fd}`;
  else out.push(`/dev/fd/${fd}`);
  return out;
}

/** A running server and the socket the replayer plays the kernel on. */
export class ServerLink {
  readonly child: ChildProcess;
  readonly exited: Promise<ServerExit>;
  /** The server's stderr (the last 16 KiB), for diagnostics. */
  stderr = '';
  private readonly fd: number;
  private readonly readBuf: Buffer;
  private ended = false;
  private endedByUs = false;
  private closed = false;

  constructor(private readonly opts: ServerLinkOptions) {
    const { fds } = native().seqpacketPair(opts.maxFrame);
    const [ours, theirs] = fds;
    this.fd = ours;
    this.readBuf = Buffer.allocUnsafe(opts.maxFrame);
    const argv = serverArgv(opts.argv);
    let child: ChildProcess;
    try {
      // stdio slot 3 dup2()s `theirs` to fd 3 in the child without O_CLOEXEC; our end keeps
      // SOCK_CLOEXEC so the server never holds both ends (its EOF would never come).
      child = spawn(execHelperPath(), [String(SERVER_FD), ...argv], {
        stdio: ['ignore', 'ignore', 'pipe', theirs],
      });
    } finally {
      fs.closeSync(theirs);
    }
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-16384);
    });
    this.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.stderr += `\n${err.message}`;
        resolve({ code: null, signal: null, byReplayer: false });
      });
      child.once('exit', (code, signal) => resolve({ code, signal, byReplayer: this.endedByUs }));
    });
    this.readLoop();
  }

  /** Sends one frame (one message). Rejects with the write's errno (EPIPE once the server is gone). */
  send(frame: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.write(this.fd, frame, 0, frame.length, null, (err, n) => {
        if (err) reject(err);
        else if (n !== frame.length) reject(new Error(`short write of a frame: ${n} of ${frame.length} bytes`));
        else resolve();
      });
    });
  }

  /**
   * Ends the server the way an unmount ends a libfuse loop: SIGTERM (fuse_set_signal_handlers
   * makes the loop exit), then SIGKILL after `graceMs`. Resolves with how it ended; the read
   * loop sees end-of-file when the server's end closes, and the socket is closed after that.
   */
  async stop(graceMs = 3000): Promise<ServerExit> {
    this.endedByUs = true;
    if (this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
      }, graceMs);
      const exit = await this.exited;
      clearTimeout(timer);
      return exit;
    }
    return this.exited;
  }

  private readLoop(): void {
    fs.read(this.fd, this.readBuf, 0, this.readBuf.length, null, (err, n) => {
      if (err || n === 0) {
        this.end(err ?? undefined);
        return;
      }
      // Copy out: the buffer is reused by the next read.
      this.opts.onFrame(Buffer.from(this.readBuf.subarray(0, n)));
      this.readLoop();
    });
  }

  private end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.closed) {
      this.closed = true;
      fs.close(this.fd, () => undefined);
    }
    this.opts.onEnd(err);
  }
}
