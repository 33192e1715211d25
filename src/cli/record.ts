import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerRecord(program: Command): void {
  program
    .command('record')
    .description('Record the traffic of a FUSE server')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('record is not implemented yet (issue  fusetrace record -- SERVER [ARGS...] MOUNTPOINT:3)');
    });
}
