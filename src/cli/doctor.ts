import type { Command } from 'commander';
import { dbPath } from './options.js';
import { evaluate, gatherFacts, type Check } from '../doctor/checks.js';

const MARK: Record<Check['verdict'], string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };

/** Formats one verdict line: `ok   /dev/fuse: ...`, with the advice after an arrow. */
export function formatCheck(c: Check): string {
  return `${MARK[c.verdict]}  ${c.name}: ${c.detail}${c.advice ? `  -> ${c.advice}` : ''}`;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Check that this machine can record FUSE traffic, and say what to fix')
    .option('-o, --options <mountopts>', 'mount options you intend to use (e.g. allow_other)')
    .action((opts: { options?: string }, cmd: Command) => {
      const allowOther = (opts.options ?? '').split(',').includes('allow_other');
      const checks = evaluate(gatherFacts(dbPath(cmd)), { allowOther });
      for (const c of checks) process.stdout.write(`${formatCheck(c)}\n`);
      const failed = checks.filter((c) => c.verdict === 'fail').length;
      process.stdout.write(failed === 0 ? 'recording can work on this machine\n' : `recording cannot work here: ${failed} check(s) failed\n`);
      process.exitCode = failed === 0 ? 0 : 1;
    });
}
