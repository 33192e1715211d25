import type { Command } from 'commander';
import { dbPath } from './options.js';
import { evaluate, gatherFacts, type Check, type Facts } from '../doctor/checks.js';
import { probeInterception, probeKernelInit } from '../doctor/probe.js';

const MARK: Record<Check['verdict'], string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };

/** Formats one verdict line: `ok   /dev/fuse: ...`, with the advice after an arrow. */
export function formatCheck(c: Check): string {
  return `${MARK[c.verdict]}  ${c.name}: ${c.detail}${c.advice ? `  -> ${c.advice}` : ''}`;
}

/** Reads a real INIT through a throwaway mount when mounting can work at all. */
async function probe(f: Facts): Promise<Facts['kernelInit']> {
  const canMount = f.devFuse.readWrite && (f.uid === 0 || f.fusermount.setuidRoot);
  if (!canMount) return { ok: false, error: 'skipped: no way to mount (see above)' };
  try {
    const k = await probeKernelInit();
    return { ok: true, major: k.major, minor: k.minor, masked: k.masked };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message.split('\n')[0] : String(err) };
  }
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Check that this machine can record FUSE traffic, and say what to fix')
    .option('-o, --options <mountopts>', 'mount options you intend to use (e.g. allow_other)')
    .option('--no-mount', 'skip the test mount that reads the kernel\'s FUSE_INIT')
    .action(async (opts: { options?: string; mount: boolean }, cmd: Command) => {
      const allowOther = (opts.options ?? '').split(',').includes('allow_other');
      const facts = gatherFacts(dbPath(cmd));
      facts.interception = await probeInterception();
      if (opts.mount && facts.devFuse.exists) facts.kernelInit = await probe(facts);
      const checks = evaluate(facts, { allowOther });
      for (const c of checks) process.stdout.write(`${formatCheck(c)}\n`);
      const failed = checks.filter((c) => c.verdict === 'fail').length;
      process.stdout.write(failed === 0 ? 'recording can work on this machine\n' : `recording cannot work here: ${failed} check(s) failed\n`);
      process.exitCode = failed === 0 ? 0 : 1;
    });
}
