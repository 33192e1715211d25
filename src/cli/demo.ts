/**
 * `fusetrace demo [--db FILE] [--no-tui]`: records the built-in demo filesystem (src/demo) under a
 * scripted workload that shows every request lifecycle, then opens the TUI on the new session, or,
 * with --no-tui or without a terminal, prints the `stats` summary and the `show` lines of the
 * interesting requests. Needs /dev/fuse and root or fusermount3; nothing else.
 */
import { Command } from 'commander';
import { dbPath } from './options.js';
import { UserError } from '../errors.js';
import { registerShow } from './show.js';
import { registerStats } from './stats.js';
import { DemoInterrupted, runDemo } from '../demo/run.js';

/** Requests worth a look after the demo: everything not plainly ok, and the slow ones. */
export const INTERESTING_FILTER = 'state != ok || dur > 200ms';

/** Runs `fusetrace --db DB <args>` for one of the read-only report commands, in this process. */
async function report(db: string, args: string[]): Promise<void> {
  const program = new Command().option('--db <file>').exitOverride();
  registerStats(program);
  registerShow(program);
  await program.parseAsync(['--db', db, ...args], { from: 'user' });
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('Record the built-in demo filesystem under a scripted workload, then open the TUI on it')
    .option('--no-tui', 'print the stats summary and the interesting requests instead of opening the TUI')
    .addHelpText(
      'after',
      `
The session goes into the trace file given by the global --db FILE (default: $FUSETRACE_DB or ./fusetrace.db).
The demo mounts the demo filesystem in a temporary directory, reads, writes, looks up a missing
name (ENOENT), reads a broken file (EIO), a slow one (300 ms), interrupts two reads with SIGINT
(answered EINTR / answered anyway), leaves one read unanswered until the recording ends, then
removes the mount and the directory. Needs /dev/fuse, and root or fusermount3.`,
    )
    .action(async (opts: { tui: boolean }, cmd: Command) => {
      const db = dbPath(cmd);
      let result;
      try {
        result = await runDemo({ dbPath: db });
      } catch (err) {
        if (err instanceof UserError) throw err;
        if (err instanceof DemoInterrupted) throw new UserError(err.message, 130);
        throw new UserError(`demo failed: ${(err as Error).message}`, 1);
      }
      const states = Object.entries(result.states).map(([k, v]) => `${k} ${v}`).join(', ');
      process.stderr.write(
        `fusetrace demo: session ${result.session} in ${result.dbPath} (${(result.elapsedMs / 1000).toFixed(1)} s): ${states}\n` +
          `fusetrace demo: pids recorder ${result.pids.recorder}, server ${result.pids.server ?? '?'}, readers ${result.pids.readers.join(' ')}; ` +
          `${result.tempDir} removed\n`,
      );
      if (opts.tui && process.stdout.isTTY && process.stdin.isTTY) {
        const { runTui } = await (await import('../tui/load.js')).loadTui();
        await runTui({ db, session: result.session });
        return;
      }
      await report(db, ['stats', String(result.session)]);
      process.stdout.write(`\ninteresting requests (show ${result.session} --filter '${INTERESTING_FILTER}'):\n`);
      await report(db, ['show', String(result.session), '--filter', INTERESTING_FILTER]);
      process.stdout.write(`\nexplore: fusetrace --db ${db} tui ${result.session}\n`);
    });
}
