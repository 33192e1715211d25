/**
 * RecordSession: the state machine of one recording, from the moment the pump runs and the server
 * is started until the trace is closed. The recorder's mirror of src/replay/engine.ts's Replayer
 * (rr: RecordSession / ReplaySession).
 *
 * Phases: running -> (unmounting ->) ending -> done. Every way a session ends goes through end(),
 * and decide() alone turns the end reason and the server's exit into fusetrace's exit status:
 *  - the user unmounts: the pump's read() gets ENODEV, the server gets end-of-file and exits
 *    (libfuse: "short read on fuse device", status 1); `unmount`, exit 0;
 *  - SIGINT/SIGTERM: we unmount (never lazily), then as above; `signal`, exit 0. Signalled again
 *    while the mount is busy: the connection is aborted (as fusectl's `abort` would);
 *  - the server exits by itself: we unmount as libfuse's fuse_session_unmount would have;
 *    `server-exit`, fusetrace exits with the server's status;
 *  - the server dies of a signal: like a native crash, closing the last /dev/fuse fd aborts the
 *    connection and the mount is left disconnected (ENOTCONN), not lazily unmounted;
 *    `server-crash`, exit 128 + signal;
 *  - the pump or the trace fails: unmount (or abort), `error`, exit 1;
 *  - fusetrace is SIGKILLed: the kernel closes our /dev/fuse fd (connection aborted) and the
 *    server reads end-of-file; frames are committed every FLUSH_MS so the trace stays readable.
 */
import { writeFileSync } from 'node:fs';
import type { Database } from 'better-sqlite3';
import { createDurationIndexes, storeEnvironmentError } from '../store/db.js';
import type { TraceWriter } from '../store/writer.js';
import { ServerProcess, type ProcessExit } from '../server/process.js';
import { unmountFuse, type FuseMount } from './mount.js';
import { native, type Pump, type PumpStatus } from './native.js';
import type { DeriverThread } from './deriver.js';
import type { FramePipeline } from './pipeline.js';
import type { RecordStatus } from './status.js';

export type EndReason = 'unmount' | 'signal' | 'server-exit' | 'server-crash' | 'error';

/** How the recording ended. */
export interface RecordResult {
  session: number;
  endReason: EndReason;
  exitStatus: number;
  serverExitCode: number | null;
  serverSignal: string | null;
  frames: number;
  dropped: number;
  partial: number;
}

/** The parts a session drives; the recorder builds them (src/proxy/recorder.ts). */
export interface SessionParts {
  session: number;
  dbPath: string;
  mountpoint: string;
  mount: FuseMount;
  db: Database;
  writer: TraceWriter;
  /** Derives the request ledger from the committed batches (deriver.ts). */
  deriver: DeriverThread;
  pump: Pump;
  pipeline: FramePipeline;
  status: RecordStatus;
  /** With mount interception (record-mount.ts): the server mounted by itself. */
  interception?: {
    /** The connection ended (unmount seen by the pump, or aborted): the server's own unmount is then answered without acting. */
    connectionEnded(): void;
    /** The server is gone (or in the background): close the interception. */
    finish(daemonized: boolean): Promise<void>;
  };
}

type Phase = 'running' | 'unmounting' | 'ending' | 'done';
type ServerEnd = { code: number | null; signal: NodeJS.Signals | null };

/** Commit period: a SIGKILLed fusetrace loses at most this much of the trace. */
const FLUSH_MS = 100;
/** How long the server gets to exit after the connection ended, before SIGTERM (then SIGKILL). */
const SERVER_GRACE_MS = 5_000;
/** How long after SIGTERM the server gets before SIGKILL. */
const SERVER_KILL_MS = 3_000;
/** How long a server that serves nothing (no INIT answered, or signalled twice) gets after SIGTERM before SIGKILL. */
const UNSERVED_KILL_MS = 2_000;
/** How long an unmount after an abort is retried while requesters blocked in the mount leave it (EBUSY). */
const UNMOUNT_RETRY_MS = 2_000;
/** When to warn that the server has not answered FUSE_INIT. */
const INIT_WARN_MS = 10_000;

export class RecordSession {
  private phase: Phase = 'running';
  private endReason: EndReason | undefined;
  private serverEnd: ServerEnd | undefined;
  private server!: ServerProcess;
  private unmountBusy = false;
  /** The pump read ENODEV (or otherwise stopped reading /dev/fuse). */
  private connectionEnded = false;
  private aborted = false;
  private daemonized = false;
  private graceStarted = false;
  private finishing = false;
  /** endUnserved() runs: it finishes the session itself. */
  private unserving = false;
  /** Requests whose record is incomplete because frames were dropped (set when the trace is closed). */
  private lost = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private finishResolve!: (r: RecordResult) => void;
  private readonly sigint = () => void this.onSignal('SIGINT');
  private readonly sigterm = () => void this.onSignal('SIGTERM');

  constructor(private readonly p: SessionParts) {}

  /**
   * Runs the session to its end with the server `spawn` starts (given the daemon check it must
   * use); resolves with how it ended, never rejects.
   */
  run(spawn: (stillServed: () => Promise<boolean>) => ServerProcess): Promise<RecordResult> {
    const finished = new Promise<RecordResult>((r) => (this.finishResolve = r));
    this.server = spawn(() => this.stillServed());
    void this.server.exited.then((exit) => this.onServerExited(exit));
    this.timers.push(setInterval(() => this.commitTick(), FLUSH_MS));
    this.timers.push(setTimeout(() => this.warnNoInit(), INIT_WARN_MS).unref());
    this.p.status.startLive(() => ({ counts: this.p.pipeline.counts, status: this.p.pipeline.lastStatus }));
    process.on('SIGINT', this.sigint);
    process.on('SIGTERM', this.sigterm);
    return finished;
  }

  /** The pump's wake-up (frames queued, or its state changed). */
  onWake(): void {
    if (this.phase === 'done') return;
    try {
      this.observe(this.p.pipeline.drain());
    } catch (err) {
      this.fail(err);
    }
  }

  private commitTick(): void {
    if (this.phase === 'done') return;
    try {
      this.observe(this.p.pipeline.commit());
    } catch (err) {
      this.fail(err);
    }
  }

  /** What the pump's state after a drain means for the session. */
  private observe(st: PumpStatus): void {
    // The end of the connection first: a background server that read ENODEV (in-process) closes
    // its end of the socket as it exits, and that is the unmount, not the server going away.
    if (st.readerEnd && !this.connectionEnded) {
      this.connectionEnded = true;
      this.p.interception?.connectionEnded();
      this.onConnectionEnded(st.readerEnd);
    }
    if (this.daemonized && st.writerEnd !== '' && !this.serverEnd && this.phase === 'running') {
      // The background server closed its fuse fd: its status is unknown.
      this.serverEnd = { code: null, signal: null };
      void this.onServerEnd();
    }
  }

  /** A server that ignores /dev/fd/N and mounts by itself (libfuse 2, fuser's own mount) never reads our INIT: say so once. */
  private warnNoInit(): void {
    if (this.p.pipeline.initRecorded || this.phase !== 'running' || this.serverEnd) return;
    this.p.status.say(
      `the server has not answered FUSE_INIT after ${INIT_WARN_MS / 1000} s: ` +
        (this.p.interception
          ? 'it mounted but does not serve'
          : 'it may ignore /dev/fd/N and mount by itself (libfuse 2, fuser); fusetrace sees nothing of such a mount'),
    );
  }

  /** The one transition out of `running`: records why the session ends (the first reason wins). */
  private end(reason: EndReason, next: 'unmounting' | 'ending', note?: string): boolean {
    if (this.phase !== 'running') return false;
    this.endReason = reason;
    this.phase = next;
    if (note) this.p.status.notes.push(note);
    return true;
  }

  private onConnectionEnded(how: string): void {
    if (how === 'unmount') this.end('unmount', 'ending');
    else if (how !== 'stopped' && how !== 'server-gone') this.end('error', 'ending', `pump: ${how}`);
    if (this.serverEnd || this.daemonized) void this.finish();
    else this.startGrace();
  }

  /** SIGINT/SIGTERM (also one that arrived before the session ran: recorder.ts). */
  async onSignal(sig: NodeJS.Signals): Promise<void> {
    if (this.phase === 'done') return;
    if (!this.p.pipeline.initAnswered && this.end('signal', 'ending', `${sig} received`)) {
      // Before INIT is answered the server serves nothing, and it may never read the end-of-file
      // an unmount gives it (a libfuse 2 server that mounted by itself, a hung one): end it now.
      await this.endUnserved();
      return;
    }
    if (this.end('signal', 'unmounting', `${sig} received`)) {
      if (await this.unmountNow()) this.phase = 'ending';
      else this.unmountBusy = true;
      return;
    }
    if (this.phase === 'ending' && !this.serverEnd && !this.daemonized) {
      // Signalled again while waiting for the server to exit: do not wait for its grace period.
      this.p.status.notes.push(`${sig} again: server stopped`);
      this.stopServerNow();
      return;
    }
    if (!this.unmountBusy || this.phase !== 'unmounting') return;
    // Signalled again while the mount was busy: the files may be closed by now; if not, abort
    // the connection, as `echo 1 > /sys/fs/fuse/connections/N/abort` would.
    if (await this.unmountNow()) {
      this.phase = 'ending';
      return;
    }
    this.p.status.notes.push(`${sig} again: connection aborted`);
    this.phase = 'ending';
    this.abortConnection();
    // The mount is disconnected now; a plain unmount succeeds unless files are still open.
    if (!(await this.unmountNow())) this.p.status.notes.push(`${this.p.mountpoint} is left disconnected: unmount it with umount/fusermount3 -u`);
    this.startGrace();
  }

  /**
   * The daemon check for a server that exited 0 while the session runs: libfuse without -f forks
   * and exits 0 in the parent while its child keeps the socket open. The process's fds close
   * before it is reaped, so give the pump's writer thread a moment to see end-of-file before
   * concluding that the server went to the background.
   */
  private async stillServed(): Promise<boolean> {
    // The pump publishes an unmount before the server can read end-of-file: look at it first,
    // so a server exiting because of the unmount is not taken for a daemon.
    this.onWake();
    for (let i = 0; i < 20 && this.p.pump.status().writerEnd === '' && this.phase === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.p.pump.status().writerEnd === '' && this.phase === 'running';
  }

  private onServerExited(exit: ProcessExit): void {
    if (this.serverEnd) return;
    this.onWake();
    if (exit.daemonized) {
      this.daemonized = true;
      this.p.status.raw('fusetrace: the server went to the background (it forked); recording continues until unmount or until it closes its fuse fd\n');
      return;
    }
    if (exit.spawnError !== undefined) {
      this.p.status.notes.push(`cannot start the server: ${exit.spawnError}`);
      this.serverEnd = { code: 127, signal: null };
    } else {
      this.serverEnd = { code: exit.code, signal: exit.signal };
    }
    void this.onServerEnd();
  }

  private async onServerEnd(): Promise<void> {
    if (this.phase === 'done') return;
    // We (or the user) ended the connection; the server's status after end-of-file is expected.
    // endUnserved() finishes by itself once the mount is gone.
    if (this.phase !== 'running') return this.unserving ? undefined : this.finish();
    const sx = this.serverEnd!;
    if (!this.p.pipeline.initAnswered && !this.p.interception) {
      this.p.status.notes.push(
        'the server exited before answering FUSE_INIT: it may not accept a mounted fd as /dev/fd/N ' +
          '(libfuse >= 3.3, pyfuse3 and go-fuse >= 2.2 do; libfuse 2 and fuser mount by themselves)',
      );
    }
    if (!this.p.pipeline.initAnswered && !sx.signal) {
      // A failed start never leaves a mount behind, connected or not, whoever is waiting on it
      // (libfuse unmounts on its way out too). A crash keeps the native behaviour below: the mount
      // stays disconnected; in-process, an INIT reply the server wrote just before dying may also
      // not be published yet.
      this.end('server-exit', 'ending');
      await this.endUnserved();
      return;
    }
    if (sx.signal) {
      this.end('server-crash', 'ending');
      // Native behaviour of a crashed server: the connection aborts, the mount stays (ENOTCONN).
      this.abortConnection();
      this.p.status.notes.push(`${this.p.mountpoint} is left disconnected like after a native crash: unmount it with umount/fusermount3 -u`);
    } else {
      this.end('server-exit', 'ending');
      if (!(await this.unmountNow())) {
        this.abortConnection();
        this.p.status.notes.push(`${this.p.mountpoint} is left disconnected: unmount it with umount/fusermount3 -u`);
      }
    }
    await this.finish();
  }

  /**
   * Ends a session whose server never answered INIT, leaving no mount: the server is stopped
   * (SIGTERM, SIGKILL after UNSERVED_KILL_MS), the connection aborted first (every process blocked
   * on the mountpoint waiting for INIT gets ECONNABORTED and lets go; unmounting first would fail
   * with EBUSY while they wait, and leave a disconnected mount), then the mount removed.
   */
  private async endUnserved(): Promise<void> {
    this.unserving = true;
    this.stopServerNow();
    await this.server.exited;
    this.abortConnection();
    if (!(await this.unmountRetrying())) {
      this.p.status.notes.push(`${this.p.mountpoint} is left disconnected: unmount it with umount/fusermount3 -u`);
    }
    await this.finish();
  }

  /** SIGTERM to the server now, SIGKILL UNSERVED_KILL_MS later (by PID). */
  private stopServerNow(): void {
    if (this.serverEnd) return;
    this.graceStarted = true;
    void this.server.stop({
      killAfterMs: UNSERVED_KILL_MS,
      onEscalate: (sig) => this.p.status.notes.push(sig === 'SIGTERM' ? 'sent the server SIGTERM' : 'server ignored SIGTERM: sent SIGKILL'),
    });
  }

  /** Unmounts an aborted connection, retrying quietly while blocked requesters still hold it (EBUSY). */
  private async unmountRetrying(): Promise<boolean> {
    const until = Date.now() + UNMOUNT_RETRY_MS;
    for (;;) {
      try {
        await unmountFuse(this.p.mount);
        return true;
      } catch (err) {
        if (Date.now() > until) {
          this.p.status.say(`cannot unmount ${this.p.mountpoint}: ${(err as Error).message}`);
          return false;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** An internal failure (the pump, the trace): end the session, keep the stack for the notes. */
  private fail(err: unknown): void {
    if (this.phase === 'done') return;
    const note = `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    if (!this.end('error', 'ending', note)) {
      this.p.status.notes.push(note);
      this.endReason = 'error';
      this.phase = 'ending';
    }
    void (async () => {
      if (!(await this.unmountNow())) this.abortConnection();
      this.startGrace();
    })();
  }

  /** The server gets SERVER_GRACE_MS to exit after the connection ended, then SIGTERM, then SIGKILL. */
  private startGrace(): void {
    if (this.graceStarted || this.serverEnd) return;
    this.graceStarted = true;
    void this.server.stop({
      termAfterMs: SERVER_GRACE_MS,
      killAfterMs: SERVER_KILL_MS,
      onEscalate: (sig) =>
        this.p.status.notes.push(
          sig === 'SIGTERM' ? `server did not exit ${SERVER_GRACE_MS / 1000}s after the connection ended: sent SIGTERM` : 'server ignored SIGTERM: sent SIGKILL',
        ),
    });
  }

  private async unmountNow(): Promise<boolean> {
    try {
      await unmountFuse(this.p.mount);
      return true;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const busy = e.code === 'EBUSY' || /busy/i.test(e.message);
      this.p.status.say(
        `cannot unmount ${this.p.mountpoint}: ${e.message}` + (busy ? ' (files are open there; close them, or signal again to abort the connection)' : ''),
      );
      return false;
    }
  }

  private abortConnection(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.p.interception?.connectionEnded();
    this.p.pump.stop(); // closes the only /dev/fuse fd: fuse_dev_release -> fuse_abort_conn
  }

  /** Ends the session: waits for the server, takes the last frames, decides, closes the trace, reports. */
  private async finish(): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    // Wait for the server process to be reaped before the final commit (it may still be writing
    // replies that the pump records until the socket reaches end-of-file).
    if (!this.serverEnd && !this.daemonized) {
      this.startGrace();
      await this.server.exited;
    }
    this.p.pump.stop();
    await this.p.interception?.finish(this.daemonized);
    for (const t of this.timers) clearInterval(t); // clearInterval clears timeouts too
    process.off('SIGINT', this.sigint);
    process.off('SIGTERM', this.sigterm);
    let st: PumpStatus | undefined;
    try {
      this.p.pipeline.drain(true);
      st = this.p.pipeline.lastStatus;
    } catch (err) {
      this.p.status.notes.push(`final drain failed: ${String(err)}`);
    }
    this.phase = 'done';
    const sx = this.serverEnd ?? { code: null, signal: null };
    const { reason, exitStatus } = this.decide(sx);
    const committed = await this.closeTrace(reason, sx, exitStatus);
    this.report(reason, sx, st);
    this.finishResolve({
      session: this.p.session,
      endReason: reason,
      exitStatus: committed ? exitStatus : exitStatus || 1,
      serverExitCode: sx.code,
      serverSignal: sx.signal,
      frames: this.p.pipeline.counts.recorded,
      dropped: this.p.pipeline.counts.dropped,
      partial: st?.partial ?? 0,
    });
  }

  /** The one place that turns how the session ended into fusetrace's exit status. */
  private decide(sx: ServerEnd): { reason: EndReason; exitStatus: number } {
    const reason: EndReason = this.endReason ?? (sx.signal ? 'server-crash' : 'server-exit');
    let exitStatus = 0;
    if (reason === 'server-exit') exitStatus = sx.code ?? 0;
    else if (reason === 'server-crash') exitStatus = ServerProcess.statusOf(sx);
    else if (reason === 'error') exitStatus = 1;
    // A server that never answered INIT recorded nothing: not a success even if it exited 0.
    if (reason === 'server-exit' && !this.p.pipeline.initAnswered && exitStatus === 0) exitStatus = 1;
    return { reason, exitStatus };
  }

  /**
   * The final commit: the session row's end; then the derivation thread catches up and ends the
   * ledger (aborted requests, lost labels) and builds the duration indexes. False if the trace
   * could not be committed.
   */
  private async closeTrace(reason: EndReason, sx: ServerEnd, exitStatus: number): Promise<boolean> {
    const { writer, db, pipeline } = this.p;
    if (!(await this.commitAtEnd())) return this.abandonTrace();
    try {
      writer.updateSession({
        endedMonoNs: native().monotonicNs(),
        endReason: reason,
        serverExitCode: sx.code,
        serverSignal: sx.signal,
        exitStatus,
        dropped: pipeline.counts.dropped,
      });
      pipeline.noteUnnamed();
      writer.close();
    } catch (err) {
      this.p.status.notes.push(`cannot commit the end of the session: ${storeEnvironmentError(err)?.message ?? String(err)}`);
      return this.abandonTrace();
    }
    const end = await this.p.deriver.finish(reason, this.p.status.catchingUp());
    this.p.status.doneCatchingUp();
    if (end.failure !== undefined) {
      try {
        createDurationIndexes(db);
      } catch {
        // queries stay correct without them, only slower
      }
      this.p.status.notes.push(`the request ledger failed (every frame is recorded; \`fusetrace replay\` or a rebuild recomputes it): ${end.failure}`);
    }
    this.lost = end.lost;
    // `npm run bench -- record`: the derivation's CPU includes its catch-up after the workload,
    // which no snapshot of a running recorder can see; and the pump queue's memory.
    if (process.env.FUSETRACE_BENCH_CPU) {
      const q = this.p.pipeline.queueMemory;
      writeFileSync(process.env.FUSETRACE_BENCH_CPU, JSON.stringify({ deriveNs: end.cpuNs ?? 0, queueRegions: q.regions, queueFaulted: q.faulted }));
    }
    try {
      db.close();
    } catch {
      // closing only checkpoints: what is committed stays
    }
    return true;
  }

  /** The end could not be committed: the derivation stops where it is, the file stays as its last commit left it. Returns false. */
  private async abandonTrace(): Promise<false> {
    await this.p.deriver.stop();
    try {
      if (this.p.db.open) this.p.db.close();
    } catch {
      // the file stays as the last commit left it: readable
    }
    return false;
  }

  /**
   * The frames still buffered, committed even if another writer keeps the file locked for a while
   * (pipeline.commitAtEnd waits and says so); SIGINT or SIGTERM meanwhile gives up on them. False
   * if it gave up.
   */
  private async commitAtEnd(): Promise<boolean> {
    const giveUp = new AbortController();
    const onSignal = () => giveUp.abort();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await this.p.pipeline.commitAtEnd(giveUp.signal);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }

  private report(reason: EndReason, sx: ServerEnd, st: PumpStatus | undefined): void {
    this.p.status.stopLive();
    this.p.status.summary({
      session: this.p.session,
      dbPath: this.p.dbPath,
      counts: this.p.pipeline.counts,
      status: st,
      reason,
      code: sx.code,
      signal: sx.signal,
      daemonized: this.daemonized,
      lost: this.lost,
    });
  }
}
