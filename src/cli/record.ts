import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { closeSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { record, type RecordOptions, type RecordResult } from '../proxy/recorder.js';

interface RecordFlags {
  tui?: boolean;
  name?: string;
  mountpoint?: string;
  o?: string[];
  snaplen?: string;
  relay?: boolean;
  lossy?: boolean;
}

/** --snaplen: a positive integer byte count. */
function parseSnaplen(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > 0xffffffff) {
    throw new UserError(`--snaplen must be a positive number of bytes, got '${v}'`);
  }
  return Number(v);
}

/**
 * `record --tui`: the TUI owns the terminal, so the server's output goes to a file and fusetrace's
 * own lines are held back until the TUI is gone. Quitting the TUI ends the recording as Ctrl-C would.
 */
async function recordWithTui(options: RecordOptions): Promise<RecordResult> {
  if (!process.stdin.isTTY || !process.stdout.isTTY) throw new UserError('record --tui needs a terminal (stdin and stdout must be a tty)');
  const { runTui } = await (await import('../tui/load.js')).loadTui();
  const serverLog = join(tmpdir(), `fusetrace-server-${process.pid}.log`);
  const serverFd = openSync(serverLog, 'a', 0o600);
  const held = new PassThrough();
  const lines: Buffer[] = [];
  let holding = true;
  held.on('data', (d: Buffer) => (holding ? lines.push(d) : process.stderr.write(d)));
  const release = () => {
    if (!holding) return;
    holding = false;
    process.stderr.write(Buffer.concat(lines));
  };
  let tuiDone: Promise<void> | undefined;
  let recording = true;
  const result = record({
    ...options,
    log: held as unknown as NodeJS.WriteStream,
    serverOutput: serverFd,
    onSession: (session) => {
      tuiDone = runTui({ db: options.dbPath, session, live: true }).finally(() => {
        // The terminal is ours again: show what was held back, and what comes next (a busy mount).
        release();
        // Quitting the TUI ends the recording, as Ctrl-C would (the recorder's own SIGINT handling).
        if (recording) process.kill(process.pid, 'SIGINT');
      });
    },
  });
  try {
    const r = await result;
    recording = false;
    if (tuiDone) await tuiDone;
    return r;
  } finally {
    recording = false;
    closeSync(serverFd);
    release();
    process.stderr.write(`fusetrace: the server's output is in ${serverLog}\n`);
  }
}

export function registerRecord(program: Command): void {
  program
    .command('record')
    .description('Run a FUSE server behind the fusetrace proxy and record every frame')
    .usage('[options] -- SERVER [ARGS...] MOUNTPOINT')
    .option('--name <name>', 'a name for the session')
    .option('--mountpoint <dir>', 'which server argument is the mountpoint (default: the last existing directory)')
    .option('-o <opts>', 'extra mount options (comma-separated, like mount -o)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--snaplen <bytes>', 'bytes kept per frame (default: whole frames)')
    .option('--relay', 'relay every frame through the proxy socket even when the server could record in-process (slower; for comparison or a server that misbehaves under LD_PRELOAD)')
    .option('--lossy', 'when the recorder falls behind, drop frames (their requests are labelled lost) instead of making the filesystem wait')
    .option('--tui', 'watch the recording live in the terminal UI (quitting it ends the recording)')
    .argument('<server...>', 'the FUSE server command line, after --')
    .action(async (server: string[], flags: RecordFlags, cmd: Command) => {
      const snaplen = parseSnaplen(flags.snaplen);
      const options = {
        dbPath: dbPath(cmd),
        name: flags.name,
        mountpoint: flags.mountpoint,
        mountOptions: flags.o?.join(','),
        snaplen,
        command: server,
        ...(flags.relay ? { inProcess: false } : {}),
        ...(flags.lossy ? { lossy: true } : {}),
      };
      const result = flags.tui ? await recordWithTui(options) : await record(options);
      process.exitCode = result.exitStatus;
    });
}
