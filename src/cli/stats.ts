import type { Command } from 'commander';
import { UserError } from './errors.js';

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('Per-opcode counts, errors and latency of a session')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UserError('stats is not implemented yet (issue 4)');
    });
}
