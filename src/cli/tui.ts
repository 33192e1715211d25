import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerTui(program: Command): void {
  program
    .command('tui')
    .description('Browse, filter, inspect and replay sessions in a terminal UI')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('tui is not implemented yet (issue 5)');
    });
}
