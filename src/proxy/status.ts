/**
 * What a recording tells the user while it runs and when it ends: the live line on a terminal
 * (redrawn in place), one-off warnings, the notes gathered along the way, and the summary.
 */
import type { PipelineCounts } from './pipeline.js';
import type { PumpStatus } from './native.js';
import type { EndReason } from './session.js';

/** How often the live line is redrawn. */
const LIVE_MS = 500;
/** Frames left to derive at the end past which a log that is no terminal is told (a few seconds of work). */
const CATCH_UP_SAY_FRAMES = 200_000;

/** Everything the summary line reports. */
export interface SummaryFacts {
  session: number;
  dbPath: string;
  counts: PipelineCounts;
  status: PumpStatus | undefined;
  reason: EndReason;
  code: number | null;
  signal: NodeJS.Signals | null;
  daemonized: boolean;
  /** Requests whose record is incomplete because frames were dropped (sessions.lost). */
  lost: number;
}

export class RecordStatus {
  /** Things to say at the end, in order (each becomes a `fusetrace: ...` line before the summary). */
  readonly notes: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The log is a terminal: the live line is drawn. */
  private readonly live: boolean;
  /** The catch-up counter is on the terminal. */
  private catching = false;

  constructor(private readonly log: NodeJS.WriteStream) {
    this.live = log.isTTY === true;
  }

  /** Draws the live line every LIVE_MS on a terminal, from `read()`. */
  startLive(read: () => { counts: PipelineCounts; status: PumpStatus | undefined }): void {
    if (!this.live) return;
    let waits = 0;
    this.timer = setInterval(() => {
      const { counts, status } = read();
      // The server waited for the recorder since the last redraw: say who is the bottleneck.
      const w = status?.backpressureWaits ?? 0;
      const slow = w > waits;
      waits = w;
      this.log.write(`\r\x1b[K${liveLine(counts, status)}${slow ? ' (the recorder is the bottleneck: the filesystem waits for the trace writer)' : ''}`);
    }, LIVE_MS);
  }

  /** Stops the live line and clears it. */
  stopLive(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.live) this.log.write('\r\x1b[K');
  }

  /**
   * The derivation thread catches up after the session ended (it lagged under load): a counter on
   * a terminal, else one line when the rest is large. Returns the progress callback.
   */
  catchingUp(): (p: { derived: number; recorded: number }) => void {
    let said = false;
    return ({ derived, recorded }) => {
      const rest = recorded - derived;
      if (this.live) {
        if (rest > 0) this.log.write(`\r\x1b[Kfusetrace: deriving the request ledger: ${derived} of ${recorded} frames`);
        this.catching = true;
      } else if (!said && rest >= CATCH_UP_SAY_FRAMES) {
        said = true;
        this.log.write(`fusetrace: deriving the request ledger: ${rest} frames to go\n`);
      }
    };
  }

  /** Clears the catch-up counter. */
  doneCatchingUp(): void {
    if (this.catching) this.log.write('\r\x1b[K');
    this.catching = false;
  }

  /** Writes a line now (below the live line, which the next redraw puts back). */
  say(line: string): void {
    this.log.write(`${this.live ? '\n' : ''}fusetrace: ${line}\n`);
  }

  /** Writes a line now, as is (the live line is not broken first). */
  raw(text: string): void {
    this.log.write(text);
  }

  /** Writes the notes and the summary line. */
  summary(f: SummaryFacts): void {
    for (const n of this.notes) this.log.write(`fusetrace: ${n}\n`);
    this.log.write(summaryLine(f));
  }
}

/** The live line: frames, requests in flight, errors (and losses, when there are any). */
export function liveLine(c: PipelineCounts, st: PumpStatus | undefined): string {
  return (
    `fusetrace: ${c.recorded} frames, ${c.inFlight} in flight, ${c.errors} errors` +
    (c.dropped ? `, ${c.dropped} dropped` : '') +
    (st?.partial ? `, ${st.partial} partial` : '')
  );
}

/** The summary at the end of a recording. */
export function summaryLine(f: SummaryFacts): string {
  const { counts: c, status: st, reason, code, signal } = f;
  const server = signal
    ? `server killed by ${signal}`
    : code === null && f.daemonized
      ? 'server in the background (its exit status is not ours to see)'
      : `server exited ${code}`;
  // libfuse prints "short read on fuse device" and exits 1 at end-of-file (DESIGN.md hazards).
  const afterEof =
    (reason === 'unmount' || reason === 'signal') && code !== 0 && code !== null && !signal
      ? ' (end-of-file on its fuse fd after the unmount: expected)'
      : '';
  return (
    `fusetrace: session ${f.session} in ${f.dbPath}: ${c.recorded - c.notKept} frames (${c.bytes} bytes seen), ` +
    `${c.notKept ? `${c.notKept} frames not kept (${c.storeFailure}), ` : ''}` +
    `${c.errors} errors, ${c.dropped} dropped${c.dropped > 0 ? ` (${f.lost} requests lost)` : ''}${st?.partial ? `, ${st.partial} partial (not forwarded)` : ''}` +
    `${st?.gateWaits ? `, ${st.gateWaits} gate waits` : ''}` +
    `${st?.ringLost ? `, ${st.ringLost} ring bytes lost` : ''}` +
    `${st?.backpressureWaits ? `, the server waited ${(st.backpressureNs / 1e9).toFixed(1)} s for the recorder` : ''}; ` +
    `${st?.transport === 'in-process' ? 'recorded in-process' : 'relayed'}; ` +
    `ended by ${reason}; ${server}${afterEof}\n`
  );
}
