/**
 * `fusetrace diff A B [--filter EXPR] [--json] [--fail-if EXPR]`: what changed between two sessions
 * (A the baseline, B the new run), per opcode, errno, amplification ratio, path and process.
 * A and B are sessions of the --db file (id or name), or FILE:SESSION for sessions of other files.
 * Exit status: 1 when a --fail-if threshold trips, 0 otherwise, 2 on a usage error.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { compileUserFilter } from './show.js';
import { openTraceDb, type Database } from '../store/db.js';
import { TraceReader } from '../store/reader.js';
import { FilterError, formatFilterError, type CompiledFilter } from '../store/filter.js';
import { sessionProfile, type SessionProfile } from '../store/profile.js';
import { diffProfiles, type SessionDiff } from '../diff/diff.js';
import { evaluateFailIf, parseFailIf, type CheckResult, type FailIfNode } from '../diff/fail-if.js';
import { diffReport, formatFactor, type ReportLine, type Tone } from '../diff/report.js';
import { formatDuration } from '../format.js';

interface DiffOptions {
  filter?: string;
  json?: boolean;
  failIf?: string;
  top?: string;
}

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description('Compare two sessions: counts, latency, errors, amplification, paths and processes')
    .argument('<a>', 'the baseline: a session id or name, or FILE:SESSION')
    .argument('<b>', 'the session to compare with it, same forms')
    .option('-f, --filter <expr>', 'only requests matching a filter expression, in both sessions')
    .option('--fail-if <expr>', "exit 1 when this holds, e.g. 'p99(READ) > 1.2x || errors > 0'")
    .option('--top <n>', 'how many paths and processes to list', '10')
    .option('--json', 'one JSON object with every figure (durations in ns)')
    .addHelpText(
      'after',
      `
--fail-if: METRIC[(OPCODE)] CMP THRESHOLD, joined with && || ! and parentheses.
  metrics: count errors p50 p90 p99 max time [(OPCODE)], new_errors, lookups_per_dirent, getattrs_per_open, ...
  thresholds: 10ms (the value in B), +5ms / -3 (the change B - A), 1.2x (B / A), 20% (the change in % of A)
  p99(READ) > 1.2x || errors > 0     time(LOOKUP) > +50ms     lookups_per_dirent > 1.5x     new_errors > 0`,
    )
    .action((a: string, b: string, opts: DiffOptions, cmd: Command) => {
      const top = Number(opts.top);
      if (!/^\d+$/.test(opts.top ?? '') || !Number.isSafeInteger(top)) throw new UserError(`--top needs a whole number, not '${opts.top}'`);
      const failIf = opts.failIf === undefined ? null : parseUserFailIf(opts.failIf);
      const filter = compileUserFilter(opts.filter);
      const files = new Files(dbPath(cmd));
      let diff: SessionDiff;
      try {
        const pa = profileOf(files, a, filter);
        const pb = profileOf(files, b, filter);
        diff = diffProfiles(pa, pb, { a, b }, { top });
      } finally {
        files.close();
      }
      const verdict = failIf ? { expression: opts.failIf!, ...evaluateFailIf(failIf, diff) } : null;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ filter: opts.filter ?? null, ...diff, fail_if: verdict })}\n`);
      } else {
        const tty = process.stdout.isTTY === true;
        const lines = tty ? oneScreen(diff, process.stdout.rows) : diffReport(diff);
        process.stdout.write(render(lines, tty && !process.env.NO_COLOR));
      }
      if (verdict?.tripped) {
        const held = verdict.checks.filter((c) => c.holds).map(describeCheck);
        process.stderr.write(`fusetrace: --fail-if tripped: ${held.join('; ') || verdict.expression}\n`);
        process.exitCode = 1;
      }
    });
}

/**
 * The report cut to the terminal's height: the most opcode rows and list rows that fit, trying
 * fewer list rows before fewer opcodes (the opcode table says what changed most); the top of the
 * smallest report when even that does not fit.
 */
function oneScreen(diff: SessionDiff, rows: number | undefined): ReportLine[] {
  const room = Math.max(10, (rows ?? 50) - 2);
  let lines: ReportLine[] = [];
  for (const ops of [12, 8, 5, 3]) {
    for (const list of [5, 3, 2, 1]) {
      lines = diffReport(diff, { ops, rows: list });
      if (lines.length <= room) return lines;
    }
  }
  // A very short terminal: the top of the smallest report, which holds what changed most.
  return [...lines.slice(0, room - 1), { text: `  (${lines.length - room + 1} more lines; a pipe or --json shows all)`, tone: 'dim' }];
}

/** --fail-if parsed; a mistake is a UserError with the expression and a caret, as for --filter. */
function parseUserFailIf(expr: string): FailIfNode {
  try {
    return parseFailIf(expr);
  } catch (err) {
    if (err instanceof FilterError) throw new UserError(`bad --fail-if:\n  ${formatFilterError(err).replace('\n', '\n  ')}`);
    throw err;
  }
}

/** `p99(READ) > 1.2x (45.0µs → 101ms: 2244x)`. */
function describeCheck(c: CheckResult): string {
  const durationish = /^(p\d+|max|time)\b/.test(c.text);
  const f = (v: number | null): string => (v === null ? '-' : durationish ? formatDuration(v) : Number.isInteger(v) ? String(v) : v.toFixed(2));
  const what = c.mode === 'factor' ? formatFactor(c.value) : c.mode === 'percent' ? `${c.value === null ? '-' : c.value.toFixed(1)}%` : c.mode === 'change' ? `change ${f(c.value)}` : f(c.value);
  return `${c.text} (${f(c.a)} → ${f(c.b)}: ${what})`;
}

const ANSI: Record<Tone, string> = { head: '\x1b[1m', title: '\x1b[1m', worse: '\x1b[31m', better: '\x1b[32m', dim: '\x1b[2m' };

function render(lines: ReportLine[], colour: boolean): string {
  return lines.map((l) => (colour && l.tone ? `${ANSI[l.tone]}${l.text}\x1b[0m` : l.text) + '\n').join('');
}

/** The trace files a diff reads, each opened once (read-only). */
class Files {
  private readonly open = new Map<string, { db: Database; reader: TraceReader }>();
  constructor(readonly defaultFile: string) {}

  get(file: string): { db: Database; reader: TraceReader } {
    let f = this.open.get(file);
    if (!f) {
      const db = openTraceDb(file, { readonly: true, complete: true });
      f = { db, reader: new TraceReader(db, file) };
      this.open.set(file, f);
    }
    return f;
  }

  close(): void {
    for (const f of this.open.values()) f.db.close();
  }
}

/**
 * A SESSION argument: `FILE:SESSION` when the text before the last ':' is an existing file (so a
 * session name may hold ':' too), else a session of the --db file.
 */
function profileOf(files: Files, arg: string, filter: CompiledFilter): SessionProfile {
  const colon = arg.lastIndexOf(':');
  let file = files.defaultFile;
  let session = arg;
  if (colon > 0 && fs.existsSync(arg.slice(0, colon))) {
    file = arg.slice(0, colon);
    session = arg.slice(colon + 1);
    if (session === '') throw new UserError(`'${arg}' names no session after the ':' (FILE:SESSION, e.g. ${file}:1)`);
  } else if (colon > 0 && /\/|\.db$/.test(arg.slice(0, colon))) {
    // Looks like FILE:SESSION with a file that is not there: say so rather than "no session".
    throw new UserError(`no trace file at ${arg.slice(0, colon)} (in '${arg}'; FILE:SESSION names a session of another trace file)`);
  }
  const { db, reader } = files.get(file);
  return sessionProfile(db, reader.resolveSession(session), filter);
}
