import type { Command } from 'commander';
import { dbPath } from './options.js';
import { UserError } from '../errors.js';
import { loadTui } from '../tui/load.js';

export function registerTui(program: Command): void {
  program
    .command('tui')
    .description('Browse, filter, inspect and replay sessions in a terminal UI')
    .argument('[session]', 'session id or name to open (default: the only session, else the sessions view)')
    .action(async (session: string | undefined, _opts: unknown, cmd: Command) => {
      // Loaded here, not at the top: Ink and React take ~0.4 s of CPU to load, which the other
      // commands should not pay for.
      const { runTui } = await loadTui();
      try {
        await runTui({ db: dbPath(cmd), session });
      } catch (err) {
        if (err instanceof UserError) throw err;
        // The terminal is restored by now: one line for the user, the stack for a bug report.
        const e = err instanceof Error ? err : new Error(String(err));
        process.stderr.write(`fusetrace tui: internal error: ${e.message}\n`);
        if (process.env.FUSETRACE_DEBUG) process.stderr.write(`${e.stack}\n`);
        process.exitCode = 70;
      }
    });
}
