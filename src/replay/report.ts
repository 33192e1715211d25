/**
 * Replay reports: a human summary, JSON, and JUnit XML for CI. All three are built from one
 * ReplayReport and contain nothing that changes from run to run when the server behaves the same
 * (no times, no live identifiers of matching replies), so two replays can be diffed.
 */
import { describeRules, type NormRule } from './compare.js';
import type { Outcome, ReplayResult, RequestResult, UnexpectedFrame } from './engine.js';
import type { ReplayPlan } from './plan.js';

export type ReportFormat = 'text' | 'json' | 'junit';
export const REPORT_FORMATS: readonly ReportFormat[] = ['text', 'json', 'junit'];

export interface ReplayCounts {
  /** Requests sent to the server (INIT included). */
  replayed: number;
  /** Requests compared and reported (the selection). */
  compared: number;
  matched: number;
  diverged: number;
  /** Divergences of requests that raced with a conflicting request when recorded (engine.ts `race`). */
  race: number;
  missing: number;
  unexpected: number;
  skipped: number;
  uncomparable: number;
  injected: number;
  /** Requests that expect no reply (FORGET, ...), sent. */
  noReply: number;
  /** Notifications (unique 0) recorded, and those the live server sent alike at the same point. */
  notifications: number;
  notificationsMatched: number;
}

export interface ReplayReport {
  format: 'fusetrace-replay/1';
  session: { id: number; name: string | null; command: string[] };
  server: string[];
  timing: string;
  seed: number | null;
  interrupt: string | null;
  /** --strict: races fail the replay like divergences. */
  strict: boolean;
  rules: NormRule[];
  counts: ReplayCounts;
  /** Index into results of the first divergent, missing or skipped request, or null. */
  firstDivergence: number | null;
  results: RequestResult[];
  unexpected: UnexpectedFrame[];
  /** Uniques in the order they were sent; present with --seed. */
  order: bigint[] | null;
  /**
   * How the server ended. `early`: on its own, before the replay was over; `asRecorded`: the way
   * it ended in the recording (a crash that reproduces: same signal, or same exit code; at the end
   * of the replay: the recorded exit code after the recorded end, ENODEV or end-of-file).
   * `recorded`: how the recorded server ended (null when the recording does not say);
   * `compared`: whether the two were compared (a difference fails the replay); `note`: when not
   * compared, why the recording's end cannot be reproduced.
   */
  serverExit: {
    code: number | null;
    signal: string | null;
    early: boolean;
    asRecorded: boolean;
    recorded: { code: number | null; signal: string | null } | null;
    compared: boolean;
    note: string | null;
  };
  ok: boolean;
}

const FAILING: ReadonlySet<Outcome> = new Set(['diverged', 'missing', 'skipped']);
const FAILING_STRICT: ReadonlySet<Outcome> = new Set([...FAILING, 'race']);

/** Outcomes a report lists one by one besides the failing ones. */
const LISTED: ReadonlySet<Outcome> = new Set(['race', 'injected', 'uncomparable']);

export interface ReportInputs {
  plan: ReplayPlan;
  argv: string[];
  timing: string;
  seed?: number;
  interrupt?: string;
  strict?: boolean;
  rules: readonly NormRule[];
}

export function buildReport(inp: ReportInputs, r: ReplayResult): ReplayReport {
  const counts: ReplayCounts = {
    replayed: r.sent, compared: r.results.length, matched: 0, diverged: 0, race: 0, missing: 0, unexpected: r.unexpected.length,
    skipped: 0, uncomparable: 0, injected: 0, noReply: 0,
    notifications: r.notifications.total, notificationsMatched: r.notifications.matched,
  };
  const tally = (o: Outcome, n: number): void => {
    if (o === 'sent') counts.noReply += n;
    else counts[o] += n;
  };
  for (const x of r.results) tally(x.outcome, 1);
  for (const [o, n] of Object.entries(r.elided ?? {}) as Array<[Outcome, number]>) {
    tally(o, n);
    counts.compared += n;
  }
  const failing = inp.strict ? FAILING_STRICT : FAILING;
  const first = r.results.findIndex((x) => failing.has(x.outcome));
  const exit = compareExit(inp.plan.session, r.server);
  const ok = counts.diverged === 0 && counts.missing === 0 && counts.skipped === 0 && counts.unexpected === 0 &&
    (!inp.strict || counts.race === 0) && (!exit.compared || exit.asRecorded);
  return {
    format: 'fusetrace-replay/1',
    session: { id: inp.plan.session.id, name: inp.plan.session.name, command: inp.plan.session.command },
    server: inp.argv,
    timing: inp.timing,
    seed: inp.seed ?? null,
    interrupt: inp.interrupt ?? null,
    strict: inp.strict ?? false,
    rules: [...inp.rules],
    counts,
    firstDivergence: first < 0 ? null : first,
    results: r.results,
    unexpected: r.unexpected,
    order: inp.seed === undefined ? null : r.order,
    serverExit: { code: r.server.code, signal: r.server.signal, early: r.server.early, ...exit },
    ok,
  };
}

/**
 * The server's end against the recorded one. An early end (the server ended on its own during the
 * replay) is always compared: only a recorded crash or exit that reproduces passes. At the end of
 * the replay, the exit status is compared where the replay ended the server as the recording did
 * (engine.ts serverEnd); otherwise `note` says why that end cannot be reproduced.
 */
function compareExit(s: ReplayPlan['session'], live: ReplayResult['server']): Omit<ReplayReport['serverExit'], 'code' | 'signal' | 'early'> {
  const recorded = s.serverExitCode !== null || s.serverSignal !== null ? { code: s.serverExitCode, signal: s.serverSignal } : null;
  const same = recorded !== null && recorded.signal === live.signal && (recorded.signal !== null || recorded.code === live.code);
  if (live.early) {
    const asRecorded = (s.endReason === 'server-crash' && s.serverSignal !== null && s.serverSignal === live.signal) ||
      (s.endReason === 'server-exit' && s.serverExitCode !== null && live.signal === null && s.serverExitCode === live.code);
    return { asRecorded, recorded, compared: true, note: null };
  }
  const notCompared = (note: string) => ({ asRecorded: false, recorded, compared: false, note });
  if (s.endReason === 'server-exit' || s.endReason === 'server-crash') {
    return notCompared('the recorded server ended on its own after its last frame; the replay cannot make it end there, so it ended the server with SIGTERM');
  }
  if (s.endReason !== 'unmount' && s.endReason !== 'signal') {
    return notCompared(`the recording did not end at an unmount (${s.endReason === null ? 'fusetrace was killed' : `end reason ${s.endReason}`}); the replay ended the server with SIGTERM`);
  }
  if (recorded === null) return notCompared('the recording does not say how its server ended');
  if (recorded.signal !== null) {
    // After an unmount a signal is fusetrace's own SIGTERM/SIGKILL at the end of its grace period
    // (src/proxy/session.ts); a crash would have ended the session as server-crash.
    return notCompared(`the recorded server did not end at the unmount: fusetrace stopped it (${recorded.signal}), and the replay cannot tell what held it`);
  }
  if (live.end === 'enodev' && live.enodevReady === false) {
    return notCompared(
      'the recorded server read /dev/fuse itself and ended with ENODEV at the unmount; this one does not read its fuse fd ' +
        "through libc's read (a Go or static server), so it read end-of-file instead",
    );
  }
  return { asRecorded: same, recorded, compared: true, note: null };
}

/** The way a server ended, as a report says it: `exit code 0`, `SIGTERM`. */
function exitText(e: { code: number | null; signal: string | null }): string {
  return e.signal ?? `exit code ${e.code}`;
}

/** Exit status of `fusetrace replay`: 0 when everything matched, 1 on any divergence. */
export function exitStatus(report: ReplayReport): number {
  return report.ok ? 0 : 1;
}

export function formatReport(report: ReplayReport, format: ReportFormat): string {
  switch (format) {
    case 'text':
      return formatText(report);
    case 'json':
      return formatJson(report);
    case 'junit':
      return formatJunit(report);
  }
}

function sessionLabel(r: ReplayReport): string {
  return `session ${r.session.id}${r.session.name ? ` (${r.session.name})` : ''}`;
}

/** The human summary: counts, the first divergence side by side, the rules in effect. */
export function formatText(r: ReplayReport): string {
  const c = r.counts;
  const lines: string[] = [];
  lines.push(`fusetrace replay: ${sessionLabel(r)} against ${r.server.join(' ')}`);
  lines.push(
    `requests replayed ${c.replayed}, compared ${c.compared}: matched ${c.matched}, diverged ${c.diverged}, ` +
      `races ${c.race}${r.strict ? ' (--strict: they fail)' : ''}, ` +
      `missing replies ${c.missing}, unexpected replies ${c.unexpected}, skipped ${c.skipped}, ` +
      `not comparable ${c.uncomparable}, interrupted on purpose ${c.injected}, no reply expected ${c.noReply}` +
      (c.notifications > 0 ? `; notifications ${c.notificationsMatched} of ${c.notifications} alike` : ''),
  );
  if (r.serverExit.early && r.serverExit.asRecorded) {
    lines.push(`the server ended during the replay as it did when recorded: ${r.serverExit.signal ?? `exit code ${r.serverExit.code}`}`);
  } else if (r.serverExit.early) {
    const how = r.serverExit.signal ?? `exit code ${r.serverExit.code}`;
    // libfuse's fuse_daemonize(): without -f the parent exits 0 and a child serves in the background.
    const hint = r.serverExit.code === 0 ? ' (a server that goes to the background, like libfuse without -f, must run in the foreground)' : '';
    lines.push(`the server ended during the replay: ${how}${hint}`);
  } else if (r.serverExit.compared && r.serverExit.asRecorded) {
    lines.push(`the server ended as recorded at the end of the session: ${exitText(r.serverExit)}`);
  } else if (r.serverExit.compared) {
    lines.push(`the server ended with ${exitText(r.serverExit)} at the end of the session, where the recorded one ended with ${exitText(r.serverExit.recorded!)}`);
  } else {
    lines.push(`the server ended with ${exitText(r.serverExit)}; not compared with the recording: ${r.serverExit.note}`);
  }
  if (r.firstDivergence !== null) {
    const x = r.results[r.firstDivergence];
    lines.push('');
    lines.push(`first divergence: unique ${x.unique} ${x.request}: ${x.outcome}${x.note ? ` (${x.note})` : ''}`);
    if (x.interrupts) lines.push(`  ${x.interrupts.join('; ')}`);
    lines.push(...sideBySide(x));
  }
  const failing = r.strict ? FAILING_STRICT : FAILING;
  const others = r.results.filter((x, i) => i !== r.firstDivergence && (failing.has(x.outcome) || LISTED.has(x.outcome)));
  if (others.length > 0) {
    lines.push('');
    for (const x of others.slice(0, 50)) {
      const d = x.diffs.slice(0, 3).map((f) => `${f.field}: ${f.recorded} -> ${f.live}`).join('; ');
      lines.push(`  unique ${x.unique} ${x.request}: ${x.outcome}${x.note ? ` (${x.note})` : ''}${d ? ` [${d}]` : ''}`);
      if (x.interrupts) lines.push(`    ${x.interrupts.join('; ')}`);
      if (x.outcome === 'injected') lines.push(`    recorded ${x.recordedReply ?? '-'}, live ${x.liveReply ?? '-'}`);
    }
    if (others.length > 50) lines.push(`  ... ${others.length - 50} more`);
  }
  if (r.unexpected.length > 0) {
    lines.push('');
    lines.push('unexpected replies:');
    for (const u of r.unexpected.slice(0, 20)) lines.push(`  unique ${u.unique}${u.request ? ` ${u.request}` : ''}: ${u.reply}`);
  }
  if (r.order) {
    lines.push('');
    lines.push(`order sent (seed ${r.seed}): ${r.order.join(' ')}`);
  }
  lines.push('');
  lines.push(`normalisation rules (timing ${r.timing}${r.interrupt ? `, interrupt ${r.interrupt}` : ''}):`);
  for (const l of describeRules(r.rules)) lines.push(`  ${l}`);
  lines.push('');
  lines.push(r.ok ? 'result: all replies matched' : 'result: DIVERGED');
  return lines.join('\n') + '\n';
}

/** The recorded and live reply of one request, field by field; `!` marks fields that differ. */
function sideBySide(x: RequestResult): string[] {
  const out: string[] = [];
  out.push(`  recorded reply: ${x.recordedReply ?? '(none)'}`);
  out.push(`  live reply:     ${x.liveReply ?? '(none)'}`);
  const differing = new Set(x.diffs.map((d) => d.field));
  const rec = new Map(x.recordedFields ?? []);
  const live = new Map(x.liveFields ?? []);
  const names = [...new Set([...rec.keys(), ...live.keys()])];
  if (names.length > 0) {
    const w = Math.min(40, Math.max(5, ...names.map((n) => n.length)));
    const vw = Math.min(40, Math.max(8, ...[...rec.values()].map((v) => v.length)));
    out.push(`    ${'field'.padEnd(w)}  ${'recorded'.padEnd(vw)}  live`);
    for (const n of names.slice(0, 80)) {
      out.push(`  ${differing.has(n) ? '!' : ' '} ${n.padEnd(w)}  ${(rec.get(n) ?? '(absent)').padEnd(vw)}  ${live.get(n) ?? '(absent)'}`);
    }
  }
  for (const d of x.diffs) {
    if (d.note) out.push(`  note on ${d.field}: ${d.note}`);
    if (!rec.has(d.field) && !live.has(d.field)) out.push(`  ! ${d.field}: recorded ${d.recorded}, live ${d.live}${d.note ? ` (${d.note})` : ''}`);
  }
  return out;
}

/** JSON with u64 values as decimal strings (they exceed 2^53). */
export function formatJson(r: ReplayReport): string {
  return JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

/** Characters XML 1.0 allows (https://www.w3.org/TR/xml/#charsets); others are dropped. */
function xmlText(s: string): string {
  return s
    .replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/**
 * JUnit XML (the Ant/Jenkins/Surefire schema CI systems read): one testsuite per replay, one
 * testcase per compared request, classname = session and opcode. Divergences and hangs are
 * <failure> with the field diff; skipped and not comparable requests are <skipped>; unexpected
 * replies are one extra failing testcase.
 */
export function formatJunit(r: ReplayReport): string {
  const suite = `fusetrace replay ${sessionLabel(r)}`;
  const cls = (x: RequestResult): string => `fusetrace.replay.session${r.session.id}.${x.op}`;
  const cases: string[] = [];
  let failures = 0;
  let skipped = 0;
  for (const x of r.results) {
    const name = `unique ${x.unique} ${x.request}`;
    let body = '';
    if (x.outcome === 'diverged' || x.outcome === 'missing' || x.outcome === 'skipped' || (x.outcome === 'race' && r.strict)) {
      failures++;
      const diff = [
        `recorded reply: ${x.recordedReply ?? '(none)'}`,
        `live reply:     ${x.liveReply ?? '(none)'}`,
        ...x.diffs.map((d) => `${d.field}: recorded ${d.recorded}, live ${d.live}${d.note ? ` (${d.note})` : ''}`),
        ...(x.note ? [x.note] : []),
      ].join('\n');
      const message = x.outcome === 'diverged' ? `reply differs in ${x.diffs.map((d) => d.field).join(', ') || 'its frame'}` : `${x.outcome}: ${x.note ?? ''}`;
      body = `<failure type="${x.outcome}" message="${xmlText(message)}">${xmlText(diff)}</failure>`;
    } else if (x.outcome === 'race') {
      body = `<system-out>${xmlText(`race (not a failure without --strict): ${x.note ?? ''}\nrecorded reply: ${x.recordedReply ?? '(none)'}\nlive reply: ${x.liveReply ?? '(none)'}`)}</system-out>`;
    } else if (x.outcome === 'uncomparable') {
      skipped++;
      body = `<skipped message="${xmlText(`not comparable: ${x.note ?? ''}`)}"/>`;
    } else if (x.outcome === 'injected') {
      body = `<system-out>${xmlText(`interrupted on purpose: ${x.note ?? ''}\nrecorded reply: ${x.recordedReply ?? '(none)'}\nlive reply: ${x.liveReply ?? '(none)'}`)}</system-out>`;
    }
    cases.push(`    <testcase classname="${xmlText(cls(x))}" name="${xmlText(name)}">${body}</testcase>`);
  }
  const endedEarly = r.serverExit.early && !r.serverExit.asRecorded;
  const endedOtherwise = !r.serverExit.early && r.serverExit.compared && !r.serverExit.asRecorded;
  if (r.unexpected.length > 0 || endedEarly || endedOtherwise) {
    failures++;
    const text = [
      ...r.unexpected.map((u) => `unique ${u.unique}${u.request ? ` ${u.request}` : ''}: ${u.reply}`),
      ...(endedEarly ? [`the server ended during the replay: ${exitText(r.serverExit)}`] : []),
      ...(endedOtherwise ? [`the server ended with ${exitText(r.serverExit)} at the end of the session, where the recorded one ended with ${exitText(r.serverExit.recorded!)}`] : []),
    ].join('\n');
    cases.push(
      `    <testcase classname="fusetrace.replay.session${r.session.id}" name="no unexpected replies">` +
        `<failure type="unexpected" message="${xmlText(`${r.unexpected.length} unexpected replies`)}">${xmlText(text)}</failure></testcase>`,
    );
  }
  const tests = cases.length;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="fusetrace replay" tests="${tests}" failures="${failures}" errors="0" skipped="${skipped}">`,
    `  <testsuite name="${xmlText(suite)}" tests="${tests}" failures="${failures}" errors="0" skipped="${skipped}">`,
    '    <properties>',
    `      <property name="server" value="${xmlText(r.server.join(' '))}"/>`,
    `      <property name="timing" value="${xmlText(r.timing)}"/>`,
    ...r.rules.map((x) => `      <property name="rule" value="${xmlText(`${x.field}=${x.mode}`)}"/>`),
    '    </properties>',
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
