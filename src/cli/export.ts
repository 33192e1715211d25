import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('Export a session as JSON lines or a Perfetto trace')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('export is not implemented yet (issue 4)');
    });
}
