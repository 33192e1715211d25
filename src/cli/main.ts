import { Command, CommanderError } from 'commander';
import { UserError } from '../errors.js';
import { storeEnvironmentError } from '../store/db.js';
type Register = (program: Command) => void;

/**
 * Each command's module, loaded on demand: `fusetrace sessions` should not pay for loading Ink,
 * React and the native addon. Order is the order of `--help`.
 */
const COMMANDS: ReadonlyArray<readonly [string, () => Promise<Register>]> = [
  ['record', async () => (await import('./record.js')).registerRecord],
  ['attach', async () => (await import('./attach.js')).registerAttach],
  ['sessions', async () => (await import('./sessions.js')).registerSessions],
  ['show', async () => (await import('./show.js')).registerShow],
  ['stats', async () => (await import('./stats.js')).registerStats],
  ['diff', async () => (await import('./diff.js')).registerDiff],
  ['query', async () => (await import('./query.js')).registerQuery],
  ['export', async () => (await import('./export.js')).registerExport],
  ['wireshark', async () => (await import('./wireshark.js')).registerWireshark],
  ['bundle', async () => (await import('./bundle.js')).registerBundle],
  ['replay', async () => (await import('./replay.js')).registerReplay],
  ['tui', async () => (await import('./tui.js')).registerTui],
  ['demo', async () => (await import('./demo.js')).registerDemo],
  ['doctor', async () => (await import('./doctor.js')).registerDoctor],
  ['hang', async () => (await import('./hang.js')).registerHang],
];

/** Other names of commands (commander's aliases), so that only the command's module is loaded. */
const ALIASES: Record<string, string> = { inspect: 'hang' };

/** Global options that take a value, so that the command name can be found after them. */
const GLOBAL_VALUE_OPTIONS = new Set(['--db']);

/** The command named in argv (first operand after the global options), if any. */
export function commandName(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return undefined;
    if (GLOBAL_VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

/**
 * Builds the command tree; exported so tests can drive it without a child process. With `only`,
 * loads just that command when it exists (the common case); otherwise all of them, for help.
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command();
  program
    .name('fusetrace')
    .description('Record, inspect and replay the traffic between the Linux kernel and a FUSE server.')
    .option('--db <file>', 'trace database (default: $FUSETRACE_DB or ./fusetrace.db)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const wanted = only !== undefined ? (ALIASES[only] ?? only) : undefined;
  const one = COMMANDS.find(([name]) => name === wanted);
  for (const [, load] of one ? [one] : COMMANDS) (await load())(program);
  return program;
}

/** Runs the CLI; user errors print one line and exit non-zero, internal errors keep their stack. */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(commandName(argv));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (help, version or a usage error).
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    // A damaged, truncated or unwritable trace met after it was opened is the environment, not a bug.
    const env = err instanceof UserError ? err : storeEnvironmentError(err);
    if (env) {
      process.stderr.write(`fusetrace: ${env.message}\n`);
      return env.exitCode;
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
