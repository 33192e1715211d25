import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerSessions(program: Command): void {
  program
    .command('sessions')
    .description('List the sessions in the trace file')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('sessions is not implemented yet (issue 2)');
    });
}
