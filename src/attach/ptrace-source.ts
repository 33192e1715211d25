/**
 * Full frames of a running server through ptrace (native/attach.h): the tracer thread copies
 * each device read and write into the same queue the record pump fills, and this side unpacks
 * and orders them exactly as record does (src/proxy/frames.ts).
 */
import { native, type Attach } from '../proxy/native.js';
import { SeqOrderer, unpackFrames } from '../proxy/frames.js';
import type { FrameRecord } from '../store/writer.js';
import type { AttachTarget } from './target.js';

/** What a capture source hands over per drain. */
export interface SourceDrain {
  frames: FrameRecord[];
  procs: Array<[number, string]>;
  /** Frames seen but not recorded so far (queue full, or spliced past the server's memory). */
  dropped: number;
}

/** A capture of a running server's traffic: ptrace (full frames) or the kernel's tracepoints. */
export interface CaptureSource {
  readonly capture: 'frames' | 'tracepoints';
  /** Which mechanism, for the session's meta and the summary. */
  readonly mechanism: string;
  /** What the session cannot show, in words (empty for full frames). */
  readonly lacks: string[];
  drain(final?: boolean): SourceDrain;
  /** 'exited' once every thread of the server is gone; '' while it runs. */
  ended(): string;
  /** Stops capturing; the server runs on untraced. */
  stop(): Promise<void>;
  /** Numbers for the session's meta. */
  stats(): Record<string, number>;
}

export class PtraceSource implements CaptureSource {
  readonly capture = 'frames' as const;
  readonly mechanism = 'ptrace';
  readonly lacks: string[] = [];
  private readonly tracer: Attach;
  private readonly orderer = new SeqOrderer();
  private stopped = false;

  /** Seizes every thread of the server; throws (code EPERM / ESRCH) when it cannot. */
  constructor(target: AttachTarget, snaplen: number, onWake: () => void) {
    this.tracer = new (native().Attach)({ pid: target.pid, conn: target.conn, snaplen }, onWake);
    this.tracer.start();
  }

  drain(final = false): SourceDrain {
    const d = this.tracer.drain();
    const frames = d.count > 0 ? unpackFrames(d.frames, d.count) : [];
    let ready: FrameRecord[] = this.orderer.push(frames, d.watermark);
    if (final) ready = ready.concat(this.orderer.rest());
    return { frames: ready, procs: d.procs, dropped: d.dropped + this.tracer.status().spliced };
  }

  ended(): string {
    return this.tracer.status().end === 'exited' ? 'exited' : '';
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.tracer.stop();
  }

  stats(): Record<string, number> {
    const s = this.tracer.status();
    return { syscallStops: s.stops, spliced: s.spliced };
  }
}
