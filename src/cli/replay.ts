import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description('Replay a recorded session against a server, no mount needed')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('replay is not implemented yet (issue 6)');
    });
}
