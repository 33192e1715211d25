/**
 * The one place the TUI touches replay. Replay (src/replay/, issue 6) has not landed yet; until it
 * exports `runReplay`, the replay key says so. The module is looked up at run time so that the TUI
 * builds and runs without it.
 */

/** What the replay key shows. */
export async function replayStatus(): Promise<{ available: boolean; message: string }> {
  // A specifier in a variable: TypeScript must not resolve a module that may not exist yet.
  const spec = '../replay/index.js';
  try {
    const mod = (await import(spec)) as { runReplay?: unknown };
    if (typeof mod.runReplay === 'function') {
      return { available: true, message: 'replay: run `fusetrace replay SESSION -- SERVER...` (in-TUI replay is not wired yet)' };
    }
  } catch {
    // Not there yet.
  }
  return { available: false, message: 'replay is not available yet' };
}
