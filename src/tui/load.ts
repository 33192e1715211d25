/**
 * Loads the TUI module (Ink, React) on demand, with the environment they read at load time set for
 * an interactive terminal:
 * - NODE_ENV=production: React picks its build when loaded, and the development one checks every
 *   render while the TUI redraws often.
 * - CI / CONTINUOUS_INTEGRATION unset: Ink (through is-in-ci) would otherwise draw nothing until it
 *   exits; the TUI only runs on a terminal, so a CI variable inherited from the environment must not
 *   turn it blank.
 * Both are restored right after the load, so servers that a replay starts get the user's env.
 */
export async function loadTui(): Promise<typeof import('./run.js')> {
  const saved = { NODE_ENV: process.env.NODE_ENV, CI: process.env.CI, CONTINUOUS_INTEGRATION: process.env.CONTINUOUS_INTEGRATION };
  process.env.NODE_ENV ??= 'production';
  delete process.env.CI;
  delete process.env.CONTINUOUS_INTEGRATION;
  try {
    return await import('./run.js');
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
