/**
 * Where `show` and `export` write: stdout or a file, in 64 KiB chunks that wait for the consumer
 * ('drain'), so a slow pipe never piles a million rows up in memory, and a reader that went away
 * (`| head`: EPIPE) stops the output instead of failing the command.
 */
import fs from 'node:fs';
import { UserError } from '../errors.js';

/** Where output goes: a promise when the caller must wait for the consumer before writing more. */
export interface Sink {
  write(chunk: string | Buffer): Promise<void> | undefined;
}

/** Bytes buffered before a write waits for the stream. */
const CHUNK = 65536;

/** Buffered writer to stdout or a file. */
export class Output implements Sink {
  private chunks: Array<string | Buffer> = [];
  private size = 0;
  /** The reader went away (EPIPE): stop producing. */
  closed = false;

  private constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly owned: boolean,
  ) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') this.closed = true;
      else throw err;
    });
  }

  /** stdout for undefined or `-`, else FILE (created or truncated); a file that cannot be written is a UserError. */
  static async open(file?: string): Promise<Output> {
    if (file === undefined || file === '-') return new Output(process.stdout, false);
    const stream = fs.createWriteStream(file);
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err: NodeJS.ErrnoException) =>
        reject(new UserError(`cannot write ${file}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`)),
      );
    });
    return new Output(stream, true);
  }

  /** Queues text or bytes (pcapng); resolves at once unless the buffer is full, then after the stream took it. */
  write(chunk: string | Buffer): Promise<void> | undefined {
    this.chunks.push(chunk);
    this.size += chunk.length;
    return this.size >= CHUNK ? this.flush() : undefined;
  }

  async flush(): Promise<void> {
    if (this.size === 0 || this.closed) return;
    const data = this.chunks.every((c) => typeof c === 'string')
      ? this.chunks.join('')
      : Buffer.concat(this.chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
    this.chunks = [];
    this.size = 0;
    if (!this.stream.write(data)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.stream.off('drain', done);
          this.stream.off('error', done);
          resolve();
        };
        this.stream.on('drain', done);
        this.stream.on('error', done);
      });
    }
  }

  /** Flushes, and ends the stream when it is a file this Output opened. */
  async close(): Promise<void> {
    await this.flush();
    if (this.owned) {
      await new Promise<void>((resolve, reject) => {
        this.stream.once('error', reject);
        this.stream.end(() => resolve());
      });
    }
  }
}

/** JSON with 64-bit values (bigint) as exact numbers: digits, never rounded through a double. */
export function exactJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `\u0000${x}` : x)).replace(/"\\u0000(-?\d+)"/g, '$1');
}
