import { Command, CommanderError } from 'commander';
import { UserError } from './errors.js';
import { registerRecord } from './record.js';
import { registerSessions } from './sessions.js';
import { registerShow } from './show.js';
import { registerStats } from './stats.js';
import { registerExport } from './export.js';
import { registerReplay } from './replay.js';
import { registerTui } from './tui.js';
import { registerDoctor } from './doctor.js';
import { registerDemo } from './demo.js';

/** Builds the command tree; exported so tests can drive it without a child process. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('fusetrace')
    .description('Record, inspect and replay the traffic between the Linux kernel and a FUSE server.')
    .option('--db <file>', 'trace database (default: $FUSETRACE_DB or ./fusetrace.db)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerRecord(program);
  registerSessions(program);
  registerShow(program);
  registerStats(program);
  registerExport(program);
  registerReplay(program);
  registerTui(program);
  registerDoctor(program);
  registerDemo(program);
  return program;
}

/** Runs the CLI; user errors print one line and exit non-zero, internal errors keep their stack. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (help, version or a usage error).
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`fusetrace: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

/** Entry point used by bin/fusetrace.js. */
export function run(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`fusetrace: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 70;
    },
  );
}
