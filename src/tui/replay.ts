/**
 * The one place the TUI touches replay (src/replay/): `R` asks for a server command, and this
 * replays the open session against it the way `fusetrace replay SESSION [--filter F] -- SERVER`
 * does (default rules, timing asap), then hands back the text report.
 */
import type { Database } from 'better-sqlite3';
import { resolveExecutable } from '../server/process.js';
import { DEFAULT_RULES } from '../replay/compare.js';
import { initFailure, runReplay } from '../replay/engine.js';
import { buildPlan } from '../replay/plan.js';
import { buildReport, formatText } from '../replay/report.js';

/** How long to wait for a reply beyond its recorded duration before calling it a hang (the CLI's default). */
const REPLY_TIMEOUT_MS = 5000;

/** Splits a command line like a shell would for plain words and '...' / "..." quoting (no expansion). */
export function splitCommand(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s"']+)/g;
  let word = '';
  let last = -1;
  for (const m of line.matchAll(re)) {
    const piece = m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[3]!);
    // Adjacent pieces (a"b c") form one word.
    if (m.index === last) word += piece;
    else {
      if (last >= 0) out.push(word);
      word = piece;
    }
    last = m.index + m[0].length;
  }
  if (last >= 0) out.push(word);
  return out;
}

/** The outcome shown in the replay view. */
export interface TuiReplayResult {
  lines: string[];
  /** true: every compared reply matched; false: diverged; null: the replay could not run. */
  ok: boolean | null;
}

/**
 * Replays `session` against `command`, comparing the requests that match `filter` (all when empty;
 * everything before the last of them is still replayed, as with `fusetrace replay --filter`).
 */
export async function replayFromTui(db: Database, session: number, command: string, filter: string): Promise<TuiReplayResult> {
  const argv = splitCommand(command);
  if (argv.length === 0) return { lines: ['no server command given'], ok: null };
  const program = resolveExecutable(argv[0]!);
  if (!program) return { lines: [`server not found or not executable: ${argv[0]}`], ok: null };
  try {
    const plan = buildPlan(db, session, { filter: filter || undefined });
    const rules = DEFAULT_RULES;
    const result = await runReplay(plan, { argv: [program, ...argv.slice(1)], rules, timing: { mode: 'asap' }, replyTimeoutMs: REPLY_TIMEOUT_MS });
    const failed = initFailure(result);
    if (failed) return { lines: [failed], ok: null };
    const report = buildReport({ plan, argv, timing: 'asap', rules }, result);
    return { lines: formatText(report).trimEnd().split('\n'), ok: report.ok };
  } catch (err) {
    return { lines: [`replay failed: ${err instanceof Error ? err.message : String(err)}`], ok: null };
  }
}
