import type { Command } from 'commander';
import { UserError } from '../errors.js';

/** Default trace file when neither --db nor FUSETRACE_DB is given. */
export const DEFAULT_DB = './fusetrace.db';

/** The trace file a command works on: --db, then $FUSETRACE_DB, then ./fusetrace.db. */
export function dbPath(cmd: Command): string {
  const opts = cmd.optsWithGlobals() as { db?: string };
  return opts.db ?? process.env.FUSETRACE_DB ?? DEFAULT_DB;
}

const DURATION_UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** A duration flag like `500ms`, `5s`, `2m` (a bare number is seconds), in ns; a one-line error otherwise. */
export function parseDurationOption(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new UserError(`${flag} must be a duration like 500ms, 5s or 2m, got '${value}'`);
  return Number(m[1]) * DURATION_UNITS[m[2] ?? 's'];
}
