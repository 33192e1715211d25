/**
 * The replayer's side of the wire: the FUSE server runs on one end of an AF_UNIX SOCK_SEQPACKET
 * socketpair, handed to it as `/dev/fd/N` in place of its mountpoint, started by the same
 * ServerProcess as `fusetrace record` (src/server/process.ts: exec helper, seccomp filter against
 * spliced replies, daemon detection, SIGTERM then SIGKILL). Nothing is mounted.
 *
 * SEQPACKET keeps message boundaries: each read(2) returns exactly one frame and each write(2)
 * sends one, as /dev/fuse does. The fd is blocking; the JS thread's event loop watches it and reads
 * every queued frame at once without blocking (native/replay_socket.cc), and sends go out with
 * MSG_DONTWAIT where the socket has room, else through libuv's thread pool (fs.write).
 *
 * Ending the read: a server that went to the background (libfuse without -f) holds its end in a
 * process we did not start, so its exit does not end the socket. So we keep a copy of the server's
 * end: when the server exits, or when we stop, we write a one-byte message into it (no FUSE frame
 * is shorter than its 16-byte header), which our read returns after every frame the server sent
 * before; then we close both ends, and a background server reads end-of-file and ends too. (A server whose process exits 0 while another
 * process holds its end has gone to the background: the replay goes on with it until stop().)
 *
 * Ending the server (ServerEnd): as the recorded session ended where it can. A recording that ended
 * at an unmount ended its server with ENODEV on its next read of /dev/fuse when the server read the
 * device itself (in-process: fs/fuse/dev.c fuse_dev_do_read once the connection is gone), and with
 * end-of-file on the relay socket otherwise. The replay closes its end first and lets the server
 * read end-of-file; for `enodev` the preload (native/preload.c, replay mode) turns that end-of-file
 * into ENODEV, and says so with a hello message at the server's first read. Only a server that does
 * not end then (or a recording that did not end at an unmount) gets SIGTERM.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import { native, preloadPath, type ReplaySocket } from '../proxy/native.js';
import { constants as osConstants } from 'node:os';
import { findMountpoint } from '../proxy/args.js';
import { userNotifAvailable, type FuseMountCall, type InterceptStrategy } from '../proxy/intercept.js';
import { DevFdArgv, InterceptMount, SERVER_FD, ServerProcess } from '../server/process.js';

/** How the server ended. */
export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the replayer ended it (SIGTERM at the end of the replay, or SIGKILL after a grace period). */
  byReplayer: boolean;
}

/**
 * How the replay ends the server once the walk is over (see the file comment):
 * - enodev: as an unmount ends a server that reads /dev/fuse: its next read fails with ENODEV;
 * - eof: as an unmount ends a relayed server: end-of-file on its socket;
 * - sigterm: SIGTERM (the recording did not end at an unmount).
 * A server still running `graceMs` after ENODEV or end-of-file gets SIGTERM too.
 */
export type ServerEnd = 'enodev' | 'eof' | 'sigterm';

/** The hello of the preload in replay mode (native/ring.h FT_REPLAY_HELLO_CODE, FT_MAGIC). */
const REPLAY_HELLO_CODE = 0x46540003;
const FT_MAGIC = 0x314b434152545446n;

export interface ServerLinkOptions {
  /** The server's argv as the user gave it (argv[0] is the program). */
  argv: string[];
  /** Largest frame either side may send; sizes the socket buffers and the read buffer. */
  maxFrame: number;
  /** Called for every frame the server writes, in order. */
  onFrame: (frame: Buffer) => void;
  /** Called once when the server is gone (it exited, or the socket failed) and every frame it sent was delivered. */
  onEnd: (error?: Error) => void;
  /** How stop() ends the server (default sigterm). */
  end?: ServerEnd;
}

/**
 * Whether the replay intercepts the server's own mount (its argv unchanged; 'private-mounts': in a
 * mount namespace of its own, see below) rather than handing it /dev/fd/N (false): where seccomp
 * user notification works (FUSETRACE_INTERCEPT=0 turns it off), the
 * command line names a mountpoint for the server to mount, and /dev/fuse can be opened. Without
 * one (a server that takes /dev/fd/N, such as the demo server run as `node server.js`) /dev/fd/N
 * is appended.
 *
 * go-fuse servers: after mounting by itself, go-fuse opens a file in its own mountpoint
 * (fuse/poll.go pollHack, in WaitMount: `.go-fuse-epoll-hack`, answered by go-fuse itself), which
 * without a mount reaches the directory underneath and fails (rclone mount2: "Fatal error"), so
 * the server gives up before serving. With CAP_SYS_ADMIN (root) they run in a mount namespace of
 * their own where the replay puts a small tmpfs holding that file at the mountpoint (see
 * goFuseMountpoint): their command line stays unchanged. Without it (an ordinary user: no mount
 * namespace without a user namespace, which would change the server's uid) a go-fuse server gets
 * /dev/fd/N (go-fuse >= 2.2 takes it, and skips pollHack then); rclone, which links go-fuse
 * (`mount2`) and bazil (`mount`), is intercepted, and only its `mount` replays.
 */
export function interceptReplay(argv: readonly string[]): 'plain' | 'private-mounts' | false {
  if (process.env.FUSETRACE_INTERCEPT === '0' || !userNotifAvailable()) return false;
  // The server opens /dev/fuse before it mounts (libfuse, go-fuse, fusermount3): without a usable
  // device (a CI container) only /dev/fd/N can work.
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return false;
  }
  const isDir = (p: string): boolean => {
    try {
      return fs.statSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  if (findMountpoint(argv, isDir) === undefined) return false;
  const fuse = goFuseOf(argv[0]);
  if (fuse === 'none') return 'plain';
  if (canUnshareMounts()) return 'private-mounts';
  return fuse === 'go-fuse' ? false : 'plain';
}

/** CAP_SYS_ADMIN (bit 21 of CapEff, include/uapi/linux/capability.h): what unshare(CLONE_NEWNS) and mount(2) need (root in a container may lack it). */
function canUnshareMounts(): boolean {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
    return hex !== undefined && (BigInt(`0x${hex}`) & (1n << 21n)) !== 0n;
  } catch {
    return false;
  }
}

/**
 * Which Go FUSE packages the program (as execvp would find it) links, from the module paths in
 * its build info: go-fuse only (gocryptfs), go-fuse and bazil.org/fuse (rclone: `mount2` and
 * `mount`), or neither (not a go-fuse server).
 */
function goFuseOf(cmd: string): 'go-fuse' | 'go-fuse+bazil' | 'none' {
  const dirs = cmd.includes('/') ? [''] : (process.env.PATH ?? '/usr/bin:/bin').split(':');
  for (const dir of dirs) {
    try {
      const bin = fs.readFileSync(dir ? `${dir}/${cmd}` : cmd);
      if (!bin.includes('github.com/hanwen/go-fuse')) return 'none';
      return bin.includes('bazil.org/fuse') ? 'go-fuse+bazil' : 'go-fuse';
    } catch {
      /* not here */
    }
  }
  return 'none';
}

/** The file go-fuse opens in its own mountpoint once mounted (fuse/poll.go pollHackName). */
const GO_FUSE_POLL_HACK = '.go-fuse-epoll-hack';

/**
 * Puts, at `target` in the mount namespace of `pid`, a tmpfs holding go-fuse's pollHack file:
 * the one path a go-fuse server opens through its own mount before serving (interceptReplay).
 * It opens it, polls it and closes it, and a regular file answers all three; the recorded
 * LOOKUP/OPEN/POLL/... of it still reach the server as replayed frames. The tmpfs is visible to
 * the server's processes only and ends with their namespace.
 */
async function goFuseMountpoint(pid: number, target: string): Promise<void> {
  const script = `mount -t tmpfs -o size=16k,mode=0755 fusetrace-replay "$1" && : > "$1/${GO_FUSE_POLL_HACK}"`;
  const child = spawn('nsenter', [`--mount=/proc/${pid}/ns/mnt`, '--', 'sh', '-c', script, 'sh', target], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`cannot prepare ${target} in the server's mount namespace: ${err.trim() || `nsenter exited ${code}`}`);
}

/** Replay's answer to the server's mounts: success without a FUSE mount, the replay socket at its fd. */
class ReplayMountStrategy implements InterceptStrategy {
  private mounted = false;
  constructor(
    private readonly serverFd: number,
    /** The server runs in a mount namespace of its own, and the mountpoint gets go-fuse's pollHack file there. */
    readonly privateMounts = false,
  ) {}
  async mount(call: FuseMountCall): Promise<number> {
    // One replay is one connection; a second mount has nothing to talk to.
    if (this.mounted) throw Object.assign(new Error('a replay serves one FUSE connection'), { errno: osConstants.errno.EBUSY });
    this.mounted = true;
    if (this.privateMounts) await goFuseMountpoint(call.pid, call.target);
    return this.serverFd;
  }
  async unmount(): Promise<void> {}
}

/** The one-byte wake-up message (see the file comment). */
const WAKE = Buffer.from([0]);

/** A running server and the socket the replayer plays the kernel on. */
export class ServerLink {
  readonly server: ServerProcess;
  readonly exited: Promise<ServerExit>;
  /** The socket's send buffer: no message (frame) larger than this minus 32 bytes fits (net/unix/af_unix.c). */
  readonly sndbuf: number;
  private readonly fd: number;
  /** Our copy of the server's end, kept to wake our own read (file comment). */
  private readonly peerFd: number;
  private readonly sock: ReplaySocket;
  private ended = false;
  /** The server went to the background: a process it started holds its end of the socket. */
  daemonized = false;
  private waking = false;
  /** The preload's hello came: end-of-file on the socket reaches the server as ENODEV. */
  enodevReady = false;
  private endSeen!: () => void;
  private readonly endPromise: Promise<void>;

  constructor(private readonly opts: ServerLinkOptions) {
    // SEQPACKET messages must fit the send buffer (net/unix/af_unix.c): size it like record does.
    const pair = native().seqpacketPair(opts.maxFrame + 65536);
    const [ours, theirs] = pair.fds;
    this.sndbuf = pair.sndbuf;
    this.fd = ours;
    this.peerFd = theirs;
    this.sock = new (native().ReplaySocket)(ours, opts.maxFrame + 65536, (data, ends, status) => this.onFrames(data, ends, status));
    const intercept = interceptReplay(opts.argv);
    this.endPromise = new Promise((r) => (this.endSeen = r));
    // Both our fds keep SOCK_CLOEXEC; `theirs` stays open here, as the wake-up channel.
    this.server = new ServerProcess({
      argv: opts.argv,
      serverFd: theirs,
      // The server runs with its command line unchanged where it can mount by itself: its mount(2)
      // is answered 0 without a mount and its fuse fd becomes our socket, as record intercepts it.
      strategy: intercept ? new InterceptMount(new ReplayMountStrategy(theirs, intercept === 'private-mounts')) : new DevFdArgv(),
      output: 'capture',
      env: opts.end === 'enodev' ? replayPreloadEnv(intercept ? 'any' : String(SERVER_FD), theirs) : undefined,
      // libfuse without -f (fuse_daemonize) forks: the parent exits 0 and a child it started
      // serves on the inherited fd. Then the socket stays up until we close it at stop().
      stillServed: () => ServerProcess.socketHeldElsewhere(this.peerFd),
    });
    this.exited = this.server.exited.then((exit) => {
      if (exit.daemonized) this.daemonized = true;
      else this.wake();
      return { code: exit.code, signal: exit.signal, byReplayer: exit.byUs };
    });
    this.sock.start();
  }

  /** The server's stderr (the last 16 KiB), for diagnostics. */
  get stderr(): string {
    return this.server.stderr;
  }

  /** Sends through the thread pool still in flight: sendNow() must not overtake them. */
  private writing = 0;

  /**
   * Sends one frame now, on the calling thread, if the socket has room for it (send(2) with
   * MSG_DONTWAIT): no thread pool round trip. False when it has no room, or when a send() is still
   * in flight (frames must keep their order); the caller then uses send(). Throws once the server
   * is gone.
   */
  sendNow(frame: Buffer): boolean {
    if (this.ended) throw new Error('the server is gone');
    if (this.writing > 0) return false;
    const n = native().sendNoWait(this.fd, frame);
    if (n === -os.constants.errno.EAGAIN) return false;
    if (n < 0) throw new Error(`send: ${os.constants.errno.EPIPE === -n ? 'the server is gone' : `errno ${-n}`}`);
    if (n !== frame.length) throw new Error(`short write of a frame: ${n} of ${frame.length} bytes`);
    return true;
  }

  /**
   * Sends frames now, in order, as many as the socket has room for (one sendmmsg(2) per 256, with
   * MSG_DONTWAIT): one system call and one wake-up of the server for a run of requests. Returns how
   * many went; the caller sends the rest with send(). Throws once the server is gone.
   */
  sendNowBatch(frames: Buffer[]): number {
    if (this.ended) throw new Error('the server is gone');
    if (this.writing > 0) return 0;
    let sent = 0;
    while (sent < frames.length) {
      const n = this.sock.sendBatch(frames, sent);
      if (n < 0) throw new Error(`send: ${os.constants.errno.EPIPE === -n ? 'the server is gone' : `errno ${-n}`}`);
      if (n === 0) break;
      sent += n;
    }
    return sent;
  }

  /** The last send() queued: sends through the thread pool go one after another, in order. */
  private sendTail: Promise<unknown> = Promise.resolve();

  /** Sends one frame (one message), after any send() still in flight. Rejects with the write's errno. */
  send(frame: Buffer): Promise<void> {
    this.writing++;
    const p = this.sendTail.then(
      () =>
        new Promise<void>((resolve, reject) => {
          if (this.ended) {
            reject(new Error('the server is gone'));
            return;
          }
          fs.write(this.fd, frame, 0, frame.length, null, (err, n) => {
            if (err) reject(err);
            else if (n !== frame.length) reject(new Error(`short write of a frame: ${n} of ${frame.length} bytes`));
            else resolve();
          });
        }),
    );
    const done = p.finally(() => this.writing--);
    this.sendTail = done.catch(() => undefined);
    return done;
  }

  /**
   * Ends the server the way an unmount ends a libfuse loop: SIGTERM (fuse_set_signal_handlers
   * makes the loop exit), then SIGKILL after `graceMs`. Resolves with how it ended, once every
   * frame it sent was delivered and both ends of the socket are closed.
   */
  async stop(graceMs = 3000): Promise<ServerExit> {
    if (this.server.running && (this.opts.end === 'enodev' || this.opts.end === 'eof')) {
      // As an unmount: our end closes (ENODEV or end-of-file at the server's next read), and only a
      // server that is still there after the grace period is signalled.
      this.wake();
      await this.endPromise;
      if (this.server.running) await this.server.stop({ termAfterMs: graceMs, killAfterMs: graceMs });
    } else if (this.server.running) await this.server.stop({ killAfterMs: graceMs });
    const exit = await this.exited;
    this.wake();
    await this.endPromise;
    const interceptor = this.server.interceptor;
    if (interceptor) {
      // A server in the background unmounts as it ends: answer that before the listener closes.
      await Promise.race([interceptor.done, new Promise((r) => setTimeout(r, 1_000))]);
      interceptor.stop();
    }
    return exit;
  }

  /** Writes the wake-up message into the server's end, once. */
  private wake(): void {
    if (this.waking) return;
    this.waking = true;
    fs.write(this.peerFd, WAKE, 0, 1, null, (err) => {
      // Cannot happen while our end is open; if it does, the read still ends at the peer's close.
      if (err) this.finish(err);
    });
  }

  /** A batch of frames from the server, in order (ReplaySocket); status != 0: the socket ended. */
  private onFrames(data: Buffer, ends: Uint32Array, status: number): void {
    let at = 0;
    for (let i = 0; i < ends.length && !this.ended; i++) {
      const n = ends[i] - at;
      const frame = data.subarray(at, ends[i]);
      at = ends[i];
      if (n === 1 && this.waking) {
        this.finish();
        return;
      }
      if (n === 16 && this.isHello(frame)) this.enodevReady = true;
      else this.opts.onFrame(frame);
    }
    if (status < 0) this.finish(Object.assign(new Error(`read: ${os.constants.errno.ECONNRESET === -status ? 'ECONNRESET' : `errno ${-status}`}`), { errno: -status }));
    else if (status > 0) this.finish();
  }

  /** The preload's hello (replay mode): only with end `enodev`, where the preload is loaded. */
  private isHello(b: Buffer): boolean {
    return this.opts.end === 'enodev' && b.readInt32LE(4) === REPLAY_HELLO_CODE && b.readBigUInt64LE(8) === FT_MAGIC;
  }

  private finish(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    // libuv must stop watching the fd before it closes.
    this.sock.close();
    fs.close(this.fd, () => undefined);
    fs.close(this.peerFd, () => undefined);
    this.endSeen();
    this.opts.onEnd(err);
  }
}

/**
 * The server's environment for end `enodev`: the preload in replay mode (native/preload.c), inert
 * unless fd `fd` (`any`: whichever fd it finds) is this very socket when the server reads it.
 */
function replayPreloadEnv(fd: string, serverFd: number): NodeJS.ProcessEnv | undefined {
  const lib = preloadPath();
  if (!fs.existsSync(lib)) return undefined;
  const env = { ...process.env };
  env.LD_PRELOAD = [lib, ...(env.LD_PRELOAD ?? '').split(/[: ]/).filter(Boolean)].join(':');
  env.FUSETRACE_REPLAY = '1';
  env.FUSETRACE_FD = fd;
  env.FUSETRACE_SOCK_INO = String(fs.fstatSync(serverFd).ino);
  return env;
}
