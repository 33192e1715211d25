import type { Command } from 'commander';

/** Default trace file when neither --db nor FUSETRACE_DB is given. */
export const DEFAULT_DB = './fusetrace.db';

/** The trace file a command works on: --db, then $FUSETRACE_DB, then ./fusetrace.db. */
export function dbPath(cmd: Command): string {
  const opts = cmd.optsWithGlobals() as { db?: string };
  return opts.db ?? process.env.FUSETRACE_DB ?? DEFAULT_DB;
}
