// Runs once before any test file (vitest.config.ts globalSetup): compiles dist/ for the whole run
// (test/helpers/dist.ts). `npm test` compiles just before vitest starts, so then it only checks.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DIST_READY_ENV, runTsc } from './helpers/dist.js';
import { repoRoot } from './helpers/fuse-env.js';

export default function setup(): void {
  const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  const compiledByNpmTest = process.env.npm_lifecycle_event === 'test' && existsSync(main);
  const output = compiledByNpmTest ? '' : runTsc().output;
  if (!existsSync(main)) throw new Error(`tsc did not produce dist/src/cli/main.js:\n${output}`);
  process.env[DIST_READY_ENV] = '1';
}
