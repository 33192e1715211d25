import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerShow(program: Command): void {
  program
    .command('show')
    .description('Show the requests of a session')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('show is not implemented yet (issue 4)');
    });
}
