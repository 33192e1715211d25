/**
 * The fallback of `fusetrace attach` where ptrace cannot be used (no permission, another tracer
 * attached) or with --tracepoints: the kernel's fuse:fuse_request_send and fuse:fuse_request_end
 * tracepoints (fs/fuse/fuse_trace.h, Linux 6.12+). They carry the connection, unique, opcode,
 * length, error and the task that fired them, nothing of the payload.
 *
 * tracefs is mounted at a private temporary directory (never touching /sys/kernel/tracing, which
 * others may use) and a trace instance of our own gets the two events, filtered on the
 * connection, with trace_clock mono so that timestamps are CLOCK_MONOTONIC like record's. Each
 * event becomes a frame holding a synthesized header (fuse_in_header: len, opcode, unique, pid;
 * fuse_out_header: len, error, unique), cut like a --snaplen capture, so the ledger and every
 * read command work on it.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { IN_HEADER_SIZE, OUT_HEADER_SIZE } from '../protocol/index.js';
import type { FrameRecord } from '../store/writer.js';
import type { CaptureSource, SourceDrain } from './ptrace-source.js';
import type { AttachTarget } from './target.js';

const IN_HEADER = IN_HEADER_SIZE;
const OUT_HEADER = OUT_HEADER_SIZE;

/** One line of trace_pipe: `comm-PID [CPU] FLAGS SECONDS: fuse_request_send: connection C req U opcode O (NAME) len L`. */
const LINE = /-(\d+)\s+\[\d+\]\s+\S+\s+(\d+)\.(\d+): fuse_request_(send|end): connection \d+ req (\d+) (?:opcode (\d+) \(\w+\) len (\d+)|len (\d+) error (-?\d+))/;

/** Parses trace_pipe text into frames (exported for tests); `seq` continues from `nextSeq`. */
export function parseTraceLines(text: string, nextSeq: number): { frames: FrameRecord[]; procs: Array<[number, string]> } {
  const frames: FrameRecord[] = [];
  const procs: Array<[number, string]> = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const tsNs = BigInt(m[2]) * 1_000_000_000n + BigInt(m[3].padEnd(9, '0').slice(0, 9));
    const unique = BigInt(m[5]);
    if (m[4] === 'send') {
      const data = Buffer.alloc(IN_HEADER);
      data.writeUInt32LE(Number(m[7]), 0);
      data.writeUInt32LE(Number(m[6]), 4);
      data.writeBigUInt64LE(unique, 8);
      data.writeUInt32LE(pid, 32);
      const comm = line.slice(0, line.indexOf(`-${m[1]} `)).trim();
      procs.push([pid, comm]);
      frames.push({ seq: nextSeq++, tsNs, fwdNs: tsNs, dir: 0, unique, opcode: Number(m[6]), error: null, len: Math.max(Number(m[7]), IN_HEADER), data, writeErrno: 0 });
    } else {
      const error = Number(m[9]);
      const data = Buffer.alloc(OUT_HEADER);
      data.writeUInt32LE(Number(m[8]), 0);
      data.writeInt32LE(error, 4);
      data.writeBigUInt64LE(unique, 8);
      frames.push({ seq: nextSeq++, tsNs, fwdNs: tsNs, dir: 1, unique, opcode: null, error, len: Math.max(Number(m[8]), OUT_HEADER), data, writeErrno: 0 });
    }
  }
  return { frames, procs };
}

export class TracepointSource implements CaptureSource {
  readonly capture = 'tracepoints' as const;
  readonly mechanism = 'tracepoints';
  readonly lacks = ['payloads', 'nodeids and paths', 'uid/gid', 'write errors of replies'];
  private seq = 0;
  private partial = '';
  private closed = false;
  private readonly buf = Buffer.alloc(1 << 20);

  private constructor(
    private readonly target: AttachTarget,
    private readonly mnt: string,
    private readonly instance: string,
    private readonly pipe: number,
  ) {}

  /** Mounts tracefs privately, makes a trace instance and enables the two events. */
  static async open(target: AttachTarget): Promise<TracepointSource> {
    const mnt = mkdtempSync(join(tmpdir(), 'fusetrace-tracefs-'));
    const r = spawnSync('mount', ['-t', 'tracefs', 'nodev', mnt], { encoding: 'utf8' });
    if (r.status !== 0) {
      rmdirSync(mnt);
      throw new UserError(`cannot mount tracefs for the fuse tracepoints (${(r.stderr || r.error?.message || '').trim()}): run as root`);
    }
    const instance = join(mnt, 'instances', `fusetrace-${process.pid}`);
    try {
      if (!existsSync(join(mnt, 'events', 'fuse', 'fuse_request_send'))) {
        throw new UserError('this kernel has no fuse tracepoints (fuse:fuse_request_send, Linux 6.12+): nothing to record');
      }
      mkdirSync(instance);
      writeFileSync(join(instance, 'trace_clock'), 'mono');
      writeFileSync(join(instance, 'buffer_size_kb'), '4096');
      for (const ev of ['fuse_request_send', 'fuse_request_end']) {
        const dir = join(instance, 'events', 'fuse', ev);
        if (target.conn) writeFileSync(join(dir, 'filter'), `connection == ${target.conn}`);
        writeFileSync(join(dir, 'enable'), '1');
      }
      // O_NONBLOCK: trace_pipe then answers EAGAIN when empty (kernel/trace/trace.c tracing_wait_pipe).
      const pipe = openSync(join(instance, 'trace_pipe'), constants.O_RDONLY | constants.O_NONBLOCK);
      return new TracepointSource(target, mnt, instance, pipe);
    } catch (err) {
      TracepointSource.teardown(mnt, instance);
      throw err;
    }
  }

  private static teardown(mnt: string, instance: string): void {
    try {
      if (existsSync(instance)) rmdirSync(instance);
    } catch {
      /* the umount below fails too then; reported by it */
    }
    spawnSync('umount', [mnt]);
    try {
      rmdirSync(mnt);
    } catch {
      /* still mounted: left for the user, named in no message (rare) */
    }
  }

  /** Everything trace_pipe holds now (it never blocks: O_NONBLOCK). */
  private readAvailable(): string {
    let text = '';
    for (;;) {
      let n = 0;
      try {
        n = readSync(this.pipe, this.buf, 0, this.buf.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      }
      if (n <= 0) return text;
      text += this.buf.toString('utf8', 0, n);
    }
  }

  drain(): SourceDrain {
    const text = this.partial + (this.closed ? '' : this.readAvailable());
    const cut = text.lastIndexOf('\n');
    this.partial = text.slice(cut + 1);
    const { frames, procs } = parseTraceLines(text.slice(0, cut + 1), this.seq);
    this.seq += frames.length;
    return { frames, procs, dropped: 0 };
  }

  ended(): string {
    return existsSync(`/proc/${this.target.pid}`) ? '' : 'exited';
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ev of ['fuse_request_send', 'fuse_request_end']) {
      try {
        writeFileSync(join(this.instance, 'events', 'fuse', ev, 'enable'), '0');
      } catch {
        /* the instance goes anyway */
      }
    }
    // Events fired before the disable are still in the buffer: keep them for the final drain.
    this.partial += this.readAvailable();
    closeSync(this.pipe);
    TracepointSource.teardown(this.mnt, this.instance);
  }

  stats(): Record<string, number> {
    return { events: this.seq };
  }
}
