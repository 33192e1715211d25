// The tests run the compiled CLI (dist/). Compiling the tree takes about 10 s of CPU here, and 18
// test files used to do it each in their beforeAll: three minutes of a twelve-minute suite. The
// global setup (test/global-setup.ts) now compiles once per run and says so in the environment
// the test workers inherit; a file started some other way still compiles for itself.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './fuse-env.js';

/** Set by the global setup once dist/ is up to date for this run. */
export const DIST_READY_ENV = 'FT_TEST_DIST_READY';

/** Runs tsc -p tsconfig.build.json (it emits even when a part of the tree does not type-check). */
export function runTsc(): { ok: boolean; output: string } {
  const root = repoRoot();
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], {
    cwd: root,
    encoding: 'utf8',
  });
  return { ok: tsc.status === 0, output: `${tsc.stdout}${tsc.stderr}` };
}

/**
 * Makes sure dist/ holds the compiled tree, compiling unless the global setup already did in this
 * run; throws, with tsc's output, when one of `expect` (paths under the checkout) is missing.
 */
export function compileDist(expect: string[] = ['dist/src/cli/main.js']): void {
  const output = process.env[DIST_READY_ENV] === '1' ? '' : runTsc().output;
  for (const f of expect) {
    if (!existsSync(join(repoRoot(), f))) throw new Error(`${f} missing after tsc:\n${output}`);
  }
}
