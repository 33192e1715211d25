import type { Command } from 'commander';
import { UserError } from './errors.js';
import { dbPath } from './options.js';
import { record } from '../proxy/recorder.js';

interface RecordFlags {
  name?: string;
  mountpoint?: string;
  o?: string[];
  snaplen?: string;
}

/** --snaplen: a positive integer byte count. */
function parseSnaplen(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > 0xffffffff) {
    throw new UserError(`--snaplen must be a positive number of bytes, got '${v}'`);
  }
  return Number(v);
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
    .argument('<server...>', 'the FUSE server command line, after --')
    .action(async (server: string[], flags: RecordFlags, cmd: Command) => {
      const snaplen = parseSnaplen(flags.snaplen);
      const result = await record({
        dbPath: dbPath(cmd),
        name: flags.name,
        mountpoint: flags.mountpoint,
        mountOptions: flags.o?.join(','),
        snaplen,
        command: server,
      });
      process.exitCode = result.exitStatus;
    });
}
