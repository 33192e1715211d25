import fs from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { dbPath } from './options.js';
import { openTraceDb } from '../store/db.js';
import { rebuildLedger } from '../store/ledger.js';
import { resolveExecutable } from '../server/process.js';
import { DEFAULT_RULES, parseRules, parseRulesFile, type NormRule } from '../replay/compare.js';
import { initFailure, runReplay, type InjectedInterrupt, type Timing } from '../replay/engine.js';
import { buildPlan, resolveSession, sessionHasRequest } from '../replay/plan.js';
import { ReplaySource, streamOnce } from '../store/replay-source.js';
import { buildReport, exitStatus, formatReport, REPORT_FORMATS, type ReportFormat } from '../replay/report.js';

interface ReplayFlags {
  filter?: string;
  range?: string;
  timing: string;
  report: string;
  output?: string;
  interrupt?: string;
  seed?: string;
  rule?: string[];
  rules?: string[];
  data?: string;
  strict?: boolean;
  sendAhead?: boolean;
  replyTimeout: string;
}

/** --timing: asap | recorded | xN (recorded gaps divided by N: x2 is twice as fast, x0.5 half). */
export function parseTiming(v: string): Timing {
  if (v === 'asap') return { mode: 'asap' };
  if (v === 'recorded') return { mode: 'recorded', scale: 1 };
  const m = /^x(\d+(?:\.\d+)?)$/.exec(v);
  if (m && Number(m[1]) > 0) return { mode: 'recorded', scale: Number(m[1]) };
  throw new UserError(`--timing must be asap, recorded or xN (e.g. x2, x0.5), got '${v}'`);
}

/** --interrupt UNIQUE[@POINT]: POINT is `sent` (default: right after the request is sent) or a delay like 50ms, 1s, 200us. */
export function parseInterrupt(v: string): InjectedInterrupt {
  const m = /^(0x[0-9a-f]+|\d+)(?:@(sent|\d+(?:\.\d+)?(?:us|ms|s)))?$/i.exec(v.trim());
  if (!m) throw new UserError(`--interrupt must be UNIQUE or UNIQUE@POINT (POINT: sent, or a delay like 50ms, 1s), got '${v}'`);
  const unique = BigInt(m[1]);
  const point = (m[2] ?? 'sent').toLowerCase();
  let delayMs = 0;
  if (point !== 'sent') {
    const n = parseFloat(point);
    delayMs = point.endsWith('us') ? n / 1000 : point.endsWith('ms') ? n : n * 1000;
  }
  return { unique, delayMs };
}

function parseSeed(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw new UserError(`--seed must be an integer from 0 to 4294967295, got '${v}'`);
  return Number(v);
}

/** The normalisation rules: the defaults, each --rules FILE, --data, then each --rule in order (later wins). */
export function rulesFrom(flags: Pick<ReplayFlags, 'rule' | 'rules' | 'data'>): NormRule[] {
  const rules: NormRule[] = [...DEFAULT_RULES];
  for (const file of flags.rules ?? []) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new UserError(`--rules ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      rules.push(...parseRulesFile(text, file));
    } catch (err) {
      throw new UserError(`--rules ${(err as Error).message}`);
    }
  }
  if (flags.data !== undefined) {
    if (flags.data !== 'exact' && flags.data !== 'length') throw new UserError(`--data must be exact or length, got '${flags.data}'`);
    rules.push({ field: 'data', mode: flags.data, why: `--data ${flags.data}` });
  }
  for (const spec of flags.rule ?? []) {
    try {
      rules.push(...parseRules(spec));
    } catch (err) {
      throw new UserError(`--rule: ${(err as Error).message}`);
    }
  }
  return rules;
}

/** Splits the command's operands into [SESSION] [RANGE] and the server command after `--`. */
function splitOperands(cmd: Command): { positional: string[]; server: string[] } {
  let root: Command = cmd;
  while (root.parent) root = root.parent;
  const raw = (root as unknown as { rawArgs: string[] }).rawArgs ?? [];
  const dd = raw.indexOf('--');
  const serverCount = dd < 0 ? 0 : raw.length - dd - 1;
  const operands = cmd.args;
  return { positional: operands.slice(0, operands.length - serverCount), server: operands.slice(operands.length - serverCount) };
}

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description('Replay a recorded session against a FUSE server and compare every reply (no mount, no root)')
    .usage('[SESSION] [RANGE] [options] -- SERVER [ARGS...]')
    .argument('[operands...]', 'SESSION (id or name, default the newest), RANGE of uniques (127, 1000-5000, end), then -- SERVER [ARGS...]')
    .option('--filter <expr>', 'compare only the requests matching a filter expression (the prefix is still replayed)')
    .option('--range <range>', 'compare only requests with uniques in RANGE (127, 1000-5000, end, 1000-end)')
    .option('--timing <mode>', 'asap, recorded, or xN (recorded gaps divided by N)', 'asap')
    .option('--report <format>', `report format: ${REPORT_FORMATS.join(', ')}`, 'text')
    .option('-o, --output <file>', 'write the report to FILE instead of stdout')
    .option('--interrupt <unique[@point]>', 'send FUSE_INTERRUPT for request UNIQUE at POINT (sent, or a delay like 50ms)')
    .option('--seed <n>', 'permute requests that were in flight together, reproducibly for N')
    .option('--rule <field=mode>', 'normalisation rule (mode: ignore, exact, translate, length); repeatable, later wins',
      (v: string, prev: string[] = []) => [...prev, v])
    .option('--rules <file>', 'normalisation rules from FILE, one FIELD=MODE a line (# comments); repeatable',
      (v: string, prev: string[] = []) => [...prev, v])
    .option('--data <mode>', 'compare file data: exact (the default rule) or length')
    .option('--send-ahead', 'send requests that cannot depend on a pending reply without waiting for it (faster; --timing asap only)')
    .option('--strict', 'races (divergences of requests that raced with a conflicting one when recorded) fail too')
    .option('--reply-timeout <ms>', 'wait this long beyond the recorded duration before reporting a hang', '5000')
    .action(async (_operands: string[], flags: ReplayFlags, cmd: Command) => {
      const { positional, server } = splitOperands(cmd);
      if (server.length === 0) throw new UserError('replay needs the server command after --: fusetrace replay [SESSION] -- SERVER [ARGS...]');
      if (positional.length > 2) throw new UserError(`too many arguments before --: ${positional.join(' ')} (expected [SESSION] [RANGE])`);
      const [sessionSpec, rangeArg] = positional;
      if (rangeArg !== undefined && flags.range !== undefined) throw new UserError('give the range either as an argument or with --range, not both');
      const range = rangeArg ?? flags.range;
      if (flags.filter !== undefined && range !== undefined) throw new UserError('--filter and RANGE exclude each other');
      if (!REPORT_FORMATS.includes(flags.report as ReportFormat)) {
        throw new UserError(`--report must be one of ${REPORT_FORMATS.join(', ')}, got '${flags.report}'`);
      }
      const timing = parseTiming(flags.timing);
      const interrupt = flags.interrupt === undefined ? undefined : parseInterrupt(flags.interrupt);
      const seed = parseSeed(flags.seed);
      const rules = rulesFrom(flags);
      const replyTimeoutMs = Number(flags.replyTimeout);
      if (!Number.isFinite(replyTimeoutMs) || replyTimeoutMs <= 0) throw new UserError(`--reply-timeout must be a positive number of ms, got '${flags.replyTimeout}'`);
      const program = resolveExecutable(server[0]);
      if (!program) throw new UserError(`server not found or not executable: ${server[0]}`);

      const file = dbPath(cmd);
      let db = openTraceDb(file, { readonly: true });
      let result;
      let plan;
      // The plan reads the trace as the replay advances: the file stays open until the end.
      try {
        const session = resolveSession(db, sessionSpec);
        if (flags.filter !== undefined && !new ReplaySource(db).hasLedger(session)) {
          // --filter selects from the request ledger; a trace recorded without one gets it now
          // (it is derived from the frames alone and can always be rebuilt).
          db.close();
          db = openTraceDb(file);
          rebuildLedger(db, session);
        }
        if (interrupt && !sessionHasRequest(db, session, interrupt.unique)) {
          throw new UserError(`--interrupt ${flags.interrupt}: session ${session} sends no request with unique ${interrupt.unique}`);
        }
        streamOnce(db);
        plan = buildPlan(db, session, { filter: flags.filter, range });
        // A text report lists only what did not match: matching results need not be kept.
        const keep = flags.report === 'text' ? 'failing' : 'all';
        result = await runReplay(plan, { argv: [program, ...server.slice(1)], rules, timing, interrupt, seed, replyTimeoutMs, keep, pipeline: flags.sendAhead === true });
      } finally {
        db.close();
      }
      const failed = initFailure(result);
      if (failed) throw new UserError(failed);
      if (result.interruptLateMs > 20) {
        process.stderr.write(`fusetrace: an INTERRUPT went out ${Math.round(result.interruptLateMs)} ms after its recorded point (busy machine)\n`);
      }
      const report = buildReport(
        { plan, argv: server, timing: flags.timing, seed, interrupt: flags.interrupt, strict: flags.strict, rules },
        result,
      );
      const text = formatReport(report, flags.report as ReportFormat);
      if (flags.output) {
        fs.writeFileSync(flags.output, text);
        const c = report.counts;
        process.stderr.write(
          `fusetrace replay: ${c.replayed} requests replayed, ${c.matched} matched, ${c.diverged} diverged, ${c.missing} missing, ` +
            `${c.unexpected} unexpected; report in ${flags.output}\n`,
        );
      } else {
        process.stdout.write(text);
      }
      process.exitCode = exitStatus(report);
    });
}
