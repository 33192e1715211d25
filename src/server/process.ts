/**
 * One way to start and end a FUSE server, shared by `record` (src/proxy) and `replay` (src/replay),
 * as rr's sessions share one way to spawn a tracee.
 *
 * The server runs unmodified: its argv is passed on as the user gave it apart from what the fd
 * strategy changes (today: the mountpoint argument becomes /dev/fd/3, the one end of a
 * SOCK_SEQPACKET socketpair placed at fd 3). It is started through the exec helper
 * (native/exec_helper.c), which installs a seccomp filter against spliced replies and then
 * execvp()s the server, so the filter covers it and everything it starts. spawn() is the single
 * place where the helper's command line is built: the mount interception (issue 11, InterceptMount)
 * adds its listener-fd channel there and leaves argv unchanged.
 *
 * Ending it: SIGTERM (libfuse's fuse_set_signal_handlers makes its loop exit), then SIGKILL, both
 * by the PID we started and nothing else. A server that daemonizes (libfuse without -f,
 * fuse_daemonize) exits 0 in the parent while its child keeps serving; the owner says how to tell
 * (its `stillServed` check), and the exit is then reported as `daemonized`.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants, readdirSync, readlinkSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { findMountpoint } from '../proxy/args.js';
import { execHelperPath } from '../proxy/native.js';
import { spawnIntercepted, type InterceptEvent, type Interceptor, type InterceptStrategy } from '../proxy/intercept.js';

/** The fd number the server finds its end of the socketpair at (stdio slot 3). */
export const SERVER_FD = 3;

/** Resolves a command like execvp() would; undefined when not found or not executable. */
export function resolveExecutable(cmd: string): string | undefined {
  const ok = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) return ok(cmd) ? resolve(cmd) : undefined;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir || '.', cmd);
    if (ok(p)) return p;
  }
  return undefined;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * How the server finds its FUSE connection: what its argv becomes. One strategy per ServerProcess,
 * so the mount interception can replace the /dev/fd/N rewrite without touching the spawn.
 */
export interface ServerFdStrategy {
  /** The argv the server runs with (argv[0] is the program as the user named it). */
  serverArgv(argv: readonly string[]): string[];
  /** Mount interception: the server mounts by itself and these answer its mount calls (src/proxy/intercept.ts). */
  intercept?: InterceptStrategy;
  /** What happened to each intercepted call (for the log). */
  onIntercept?: (e: InterceptEvent) => void;
}

/**
 * Mount interception (issue 11): the argv unchanged; the server mounts by itself under the exec
 * helper's --notify filter, and `intercept` answers its mount(2) and umount2(2) (record: a real
 * mount with the server's options, the socket at its fd number; replay: no mount at all).
 */
export class InterceptMount implements ServerFdStrategy {
  constructor(
    readonly intercept: InterceptStrategy,
    readonly onIntercept?: (e: InterceptEvent) => void,
  ) {}

  serverArgv(argv: readonly string[]): string[] {
    return [...argv];
  }
}

/**
 * The /dev/fd/N rewrite: libfuse >= 3.3, pyfuse3 and go-fuse >= 2.2 take `/dev/fd/N` as the
 * mountpoint and use fd N as an already mounted /dev/fuse fd (lib/helper.c fuse_mnt_parse_fuse_fd).
 * `mountIndex` names the mountpoint argument (record found it); without it the last non-option
 * argument that is an existing directory is replaced, or /dev/fd/N appended (a replay needs no
 * mountpoint at all).
 */
export class DevFdArgv implements ServerFdStrategy {
  constructor(private readonly mountIndex?: number, private readonly fd = SERVER_FD) {}

  serverArgv(argv: readonly string[]): string[] {
    const out = [...argv];
    const index = this.mountIndex ?? findMountpoint(argv, isDirectory)?.mountIndex;
    if (index !== undefined) out[index] = `/dev/fd/${this.fd}`;
    else out.push(`/dev/fd/${this.fd}`);
    return out;
  }
}

/** How the server ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when we ended it (stop(): SIGTERM, then SIGKILL after a grace period). */
  byUs: boolean;
  /** It exited 0 while a process it started keeps serving (it went to the background). */
  daemonized: boolean;
  /** The spawn itself failed (the exec helper could not be started). */
  spawnError?: string;
}

export interface ServerProcessOptions {
  /** The server's argv as the user gave it; argv[0] is kept as the process's argv[0]. */
  argv: readonly string[];
  /** The executable (resolveExecutable(argv[0])); default argv[0]. */
  program?: string;
  /** Our fd of the server's end of the socketpair; it appears at SERVER_FD in the server (not with InterceptMount: the strategy places it). */
  serverFd?: number;
  strategy: ServerFdStrategy;
  /** Start through the seccomp exec helper (default true; `record` has a diagnostic switch to turn it off). */
  seccomp?: boolean;
  env?: NodeJS.ProcessEnv;
  /** stdin, stdout, stderr: 'inherit' (fusetrace's own), an fd for both outputs, or 'capture' (stderr kept, stdout ignored). */
  output: 'inherit' | 'capture' | number;
  /**
   * Own process group, so a terminal's Ctrl-C reaches fusetrace only, which then ends the session
   * in order (unmount first, then the server sees end-of-file).
   */
  detached?: boolean;
  /** Asked when the server exits 0 on its own: is its connection still served by a process it started? */
  stillServed?: () => boolean | Promise<boolean>;
}

/** A FUSE server we started, and how it ended. */
export class ServerProcess {
  readonly child: ChildProcess;
  /** Resolves once, when the server process ended (or went to the background, or could not start). */
  readonly exited: Promise<ProcessExit>;
  /** The server's stderr (the last 16 KiB) with output 'capture', for diagnostics. */
  stderr = '';
  /** With InterceptMount: the supervisor of the server's mounts; stop() it once the server is gone. */
  interceptor: Interceptor | undefined;
  private exit: ProcessExit | undefined;
  private stopping = false;

  constructor(private readonly opts: ServerProcessOptions) {
    this.child = this.spawn();
    this.exited = this.watch();
  }

  /** The PID we started (undefined when the spawn failed). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** How it ended, once it did. */
  get exitInfo(): ProcessExit | undefined {
    return this.exit;
  }

  /** True while the process we started has not been reaped. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  /**
   * Starts the server: the one place the exec helper's command line is set up
   * (`fusetrace-exec SOCKFD SERVER ARGS...`, or `fusetrace-exec --notify CHANFD - SERVER ARGS...`
   * with InterceptMount; native/exec_helper.c).
   */
  private spawn(): ChildProcess {
    const o = this.opts;
    const argv = o.strategy.serverArgv(o.argv);
    const program = o.program ?? argv[0];
    const std: StdioOptions =
      o.output === 'inherit' ? ['inherit', 'inherit', 'inherit'] : o.output === 'capture' ? ['ignore', 'ignore', 'pipe'] : ['ignore', o.output, o.output];
    let child: ChildProcess;
    if (o.strategy.intercept) {
      // The server's fds are as without fusetrace (0, 1, 2): the socket arrives at its mount.
      const started = spawnIntercepted([program, ...argv.slice(1)], o.strategy.intercept, { stdio: std, detached: o.detached ?? false, argv0: o.argv[0], env: o.env }, o.strategy.onIntercept);
      this.interceptor = started.interceptor;
      child = started.child;
    } else {
      if (o.serverFd === undefined) throw new Error('ServerProcess: serverFd is required without InterceptMount');
      const [file, args] = o.seccomp === false ? [program, argv.slice(1)] : [execHelperPath(), [String(SERVER_FD), program, ...argv.slice(1)]];
      // stdio slot 3 dup2()s serverFd to fd 3 in the child without O_CLOEXEC; the caller's fds keep
      // SOCK_CLOEXEC, so no other child ever holds them.
      child = spawn(file, args, { stdio: [...(std as unknown[]), o.serverFd] as StdioOptions, detached: o.detached ?? false, argv0: o.argv[0], env: o.env });
    }
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      this.stderr = (this.stderr + s).slice(-16384);
    });
    return child;
  }

  private watch(): Promise<ProcessExit> {
    return new Promise((resolveExit) => {
      const done = (e: ProcessExit) => {
        if (this.exit) return;
        this.exit = e;
        resolveExit(e);
      };
      this.child.once('error', (err) => {
        this.stderr += `\n${err.message}`;
        done({ code: null, signal: null, byUs: false, daemonized: false, spawnError: err.message });
      });
      this.child.once('exit', (code, signal) => {
        void (async () => {
          const daemonized = code === 0 && signal === null && !this.stopping && this.opts.stillServed !== undefined && (await this.opts.stillServed());
          done({ code, signal, byUs: this.stopping, daemonized });
        })();
      });
    });
  }

  /**
   * Sends `sig` to the PID we started, if it still runs. A daemonized server's child is not ours
   * to signal: it ends when its connection does.
   */
  signal(sig: NodeJS.Signals): boolean {
    if (!this.running) return false;
    return this.child.kill(sig);
  }

  /**
   * Ends the server: SIGTERM after `termAfterMs` (0: now), SIGKILL `killAfterMs` later, unless it
   * exited meanwhile. `onEscalate` hears each signal sent. Resolves with how it ended.
   */
  async stop(opts: { termAfterMs?: number; killAfterMs: number; onEscalate?: (sig: NodeJS.Signals) => void }): Promise<ProcessExit> {
    const timers: NodeJS.Timeout[] = [];
    const send = (sig: NodeJS.Signals) => {
      if (this.exit || !this.running) return;
      this.stopping = true;
      opts.onEscalate?.(sig);
      this.signal(sig);
    };
    const term = () => {
      send('SIGTERM');
      timers.push(setTimeout(() => send('SIGKILL'), opts.killAfterMs));
    };
    if (opts.termAfterMs) timers.push(setTimeout(term, opts.termAfterMs));
    else term();
    try {
      return await this.exited;
    } finally {
      for (const t of timers) clearTimeout(t);
    }
  }

  /** The exit status a shell would report for this exit: the code, or 128 + signal number. */
  static statusOf(exit: Pick<ProcessExit, 'code' | 'signal'>): number {
    if (exit.signal) return 128 + (osConstants.signals[exit.signal] ?? 0);
    return exit.code ?? 0;
  }

  /**
   * True when a process other than us holds the socket `fd` refers to (/proc/PID/fd links name
   * the socket's inode, proc(5)): a daemonized server's child. Only read, never acted upon.
   */
  static socketHeldElsewhere(fd: number): boolean {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return false;
    }
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return true;
        } catch {
          /* closed meanwhile */
        }
      }
    }
    return false;
  }
}
