import type { Command } from 'commander';
import { dbPath, parseDurationOption } from './options.js';
import { resolveTarget } from '../attach/target.js';
import { runAttach } from '../attach/session.js';
import { UserError } from '../errors.js';

interface AttachFlags {
  name?: string;
  duration?: string;
  snaplen?: string;
  tracepoints?: boolean;
}

/** --snaplen: a byte count >= 64 (the headers of every frame fit), or 0 for whole frames. */
function parseSnaplen(v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || (n > 0 && n < 64)) throw new UserError(`--snaplen must be 0 (whole frames) or a byte count of at least 64, got '${v}'`);
  return n;
}

export function registerAttach(program: Command): void {
  program
    .command('attach')
    .description('Record a FUSE server that is already running, without restarting it, until Ctrl-C, --duration or the unmount')
    .argument('<target>', 'the mountpoint (or a path on it), or the server\'s PID')
    .option('--name <name>', 'a name for the session')
    .option('--duration <duration>', 'detach after this long (e.g. 30s, 5m)')
    .option('--snaplen <bytes>', 'keep only the first BYTES of each frame')
    .option('--tracepoints', 'do not ptrace the server: record the kernel\'s fuse tracepoints (headers, timings, errors) only')
    .action(async (targetArg: string, flags: AttachFlags, cmd: Command) => {
      const durationMs = flags.duration === undefined ? undefined : parseDurationOption('--duration', flags.duration) / 1e6;
      const snaplen = parseSnaplen(flags.snaplen);
      const target = resolveTarget(targetArg);
      const db = dbPath(cmd);
      const log = (line: string) => process.stderr.write(`${line}\n`);
      log(`fusetrace: attaching to pid ${target.pid} (${target.command.join(' ')})${target.mount ? ` serving ${target.mount.mountPoint}` : ''}`);
      const r = await runAttach({ target, dbPath: db, name: flags.name, durationMs, snaplen, tracepoints: flags.tracepoints, log });
      const how = r.end === 'detached' ? 'detached: the server runs on untraced' : r.end === 'unmount' ? 'ended by the unmount' : 'ended: the server exited';
      const lacks = r.lacks.length ? `; lacks ${r.lacks.join(', ')}` : '';
      log(`fusetrace: session ${r.session} in ${db}: ${r.frames} frames, ${r.dropped} dropped; attached with ${r.mechanism}${lacks}; ${how}`);
    });
}
