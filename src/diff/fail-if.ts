/**
 * `fusetrace diff --fail-if EXPR`: thresholds over a diff, for CI. A mistake is reported like one
 * in the filter language (FilterError: the expression, a caret under the column, the message).
 *
 *   p99(READ) > 1.2x || errors > 0          time(LOOKUP) > +50ms        count(GETATTR) > 20%
 *   lookups_per_dirent > 1.5x               new_errors > 0              !(p50 <= 2ms)
 *
 * Grammar (precedence low to high):
 *   expr      := and { ('||' | 'or') and }
 *   and       := unary { ('&&' | 'and') unary }
 *   unary     := ('!' | 'not') unary | '(' expr ')' | check
 *   check     := METRIC [ '(' OPCODE ')' ] ('>' | '>=' | '<' | '<=' | '==' | '!=') threshold
 *   threshold := NUMBER [unit]       the value in B (the new session)
 *              | ('+' | '-') NUMBER [unit]   the change B - A
 *              | NUMBER 'x'          the factor B / A
 *              | NUMBER '%'          the change in percent of A
 *
 * Metrics: count, errors, p50, p90, p99, max, time (total time of the answered requests), with an
 * optional opcode (`p99(READ)`; without one: all requests); new_errors (error replies of an
 * (opcode, errno) that A never had); and the amplification ratios of diff.ts (lookups_per_dirent,
 * ...). Durations take a unit (ns, us, ms, s) unless 0. A comparison with a figure a side does not
 * have (the p99 of an opcode that never ran) is false, as in the filter language; a factor or a
 * percentage of a figure that was 0 in A is infinite (or 1x / 0% when it stays 0).
 */
import { FilterError, closest, opcodeNumber } from '../store/filter.js';
import { OPCODE_TABLE, opcodeName } from '../protocol/index.js';
import { AMPLIFICATION, ratio, type Change, type SessionDiff } from './diff.js';

type MetricKind = 'count' | 'duration' | 'ratio';
const OP_METRICS: Record<string, MetricKind> = { count: 'count', errors: 'count', p50: 'duration', p90: 'duration', p99: 'duration', max: 'duration', time: 'duration' };
const SESSION_METRICS: Record<string, MetricKind> = {
  new_errors: 'count',
  ...Object.fromEntries(AMPLIFICATION.map((m) => [m.name, 'ratio' as const])),
};
const METRIC_NAMES = [...Object.keys(OP_METRICS), ...Object.keys(SESSION_METRICS)];
const UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9 };

type Cmp = '>' | '>=' | '<' | '<=' | '==' | '!=';
/** How the threshold reads the two sides. */
type Mode = 'value' | 'change' | 'factor' | 'percent';

export type FailIfNode =
  | { type: 'and' | 'or'; left: FailIfNode; right: FailIfNode }
  | { type: 'not'; expr: FailIfNode }
  | { type: 'check'; text: string; metric: string; opcode: number | null; cmp: Cmp; mode: Mode; threshold: number };

interface Tok {
  kind: 'word' | 'number' | 'op' | 'end';
  text: string;
  /** 1-based column. */
  col: number;
  /** number: the digits, with the sign; word/op: the text. */
  value: string;
  /** number: what follows the digits (`ms`, `x`, `%`). */
  suffix: string;
}

const PUNCT = ['>=', '<=', '==', '!=', '&&', '||', '>', '<', '!', '(', ')', '='];

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  const fail = (msg: string, at: number, tail = ''): never => {
    throw new FilterError(`${msg} at column ${at + 1}${tail}`, at + 1, src);
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const start = i;
    const signed = (c === '+' || c === '-') && /[0-9.]/.test(src[i + 1] ?? '');
    if (signed || /[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      let j = signed ? i + 1 : i;
      while (j < src.length && /[0-9.]/.test(src[j]!)) j++;
      const digits = src.slice(signed ? i + 1 : i, j);
      if (!/^(\d+(\.\d*)?|\.\d+)$/.test(digits)) fail(`malformed number '${digits}'`, start);
      let k = j;
      if (src[k] === '%') k++;
      else while (k < src.length && /[A-Za-zµ]/.test(src[k]!)) k++;
      out.push({ kind: 'number', text: src.slice(start, k), col: start + 1, value: src.slice(start, j), suffix: src.slice(j, k) });
      i = k;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
      out.push({ kind: 'word', text: src.slice(i, j), col: start + 1, value: src.slice(i, j), suffix: '' });
      i = j;
    } else {
      const p = PUNCT.find((q) => src.startsWith(q, i));
      if (!p) fail(`unexpected character '${c}'`, start);
      if (p === '=') fail("'=' is not an operator", start, "; use '==' to compare");
      out.push({ kind: 'op', text: p!, col: start + 1, value: p!, suffix: '' });
      i += p!.length;
    }
  }
  out.push({ kind: 'end', text: 'end of expression', col: src.length + 1, value: '', suffix: '' });
  return out;
}

/** Parses a --fail-if expression; throws FilterError with the column of the first mistake. */
export function parseFailIf(expression: string): FailIfNode {
  return new Parser(expression).parse();
}

/** A recursive-descent parser over the tokens of one expression (the grammar at the top of the file). */
class Parser {
  private readonly toks: Tok[];
  private pos = 0;
  constructor(private readonly expression: string) {
    this.toks = lex(expression);
  }

  parse(): FailIfNode {
    if (this.peek().kind === 'end') this.fail(`expected a check such as 'p99(READ) > 1.2x'`, this.peek());
    const tree = this.parseOr();
    const rest = this.peek();
    if (rest.kind !== 'end') {
      if (isOp(rest, ')')) this.fail("unexpected ')' without a matching '('", rest);
      this.fail(`expected '&&', '||' or the end after a check, found ${describe(rest)}`, rest);
    }
    return tree;
  }

  private peek(): Tok {
    return this.toks[this.pos]!;
  }

  private take(): Tok {
    return this.toks[this.pos++]!;
  }

  /** Throws "<msg> at column N<tail>", pointing at `t`. */
  private fail(msg: string, t: Tok, tail = ''): never {
    throw new FilterError(`${msg} at column ${t.col}${tail}`, t.col, this.expression);
  }

  private parseOr(): FailIfNode {
    let left = this.parseAnd();
    while (isOp(this.peek(), '||') || isWord(this.peek(), 'or')) {
      this.take();
      left = { type: 'or', left, right: this.parseAnd() };
    }
    return left;
  }

  private parseAnd(): FailIfNode {
    let left = this.parseUnary();
    while (isOp(this.peek(), '&&') || isWord(this.peek(), 'and')) {
      this.take();
      left = { type: 'and', left, right: this.parseUnary() };
    }
    return left;
  }

  private parseUnary(): FailIfNode {
    const t = this.peek();
    if (isOp(t, '!') || isWord(t, 'not')) {
      this.take();
      return { type: 'not', expr: this.parseUnary() };
    }
    if (isOp(t, '(')) {
      this.take();
      const inner = this.parseOr();
      if (!isOp(this.peek(), ')')) this.fail(`expected ')' to close the '(' at column ${t.col}, found ${describe(this.peek())}`, this.peek());
      this.take();
      return inner;
    }
    if (t.kind === 'word') return this.parseCheck();
    return this.fail(`expected a metric (${METRIC_NAMES.join(', ')}), found ${describe(t)}`, t);
  }

  private parseCheck(): FailIfNode {
    const mt = this.take();
    const metric = mt.value.toLowerCase();
    const kind = OP_METRICS[metric] ?? SESSION_METRICS[metric];
    if (!kind) {
      const hint = closest(metric, METRIC_NAMES);
      this.fail(`unknown metric '${mt.text}'`, mt, `${hint ? `; did you mean ${hint}?` : ''}; metrics: ${METRIC_NAMES.join(', ')}`);
    }
    const opcode = isOp(this.peek(), '(') ? this.parseOpcode(metric) : null;
    const ct = this.take();
    if (!isOp(ct, '>', '>=', '<', '<=', '==', '!=')) {
      this.fail(`expected a comparison (> >= < <= == !=) after '${metric}${opcode === null ? '' : `(${opcodeName(opcode)})`}', found ${describe(ct)}`, ct);
    }
    const vt = this.take();
    if (vt.kind !== 'number') this.fail(`expected a threshold after '${ct.text}' (e.g. 1.2x, 20%, +5ms, 10ms, 0), found ${describe(vt)}`, vt);
    const { mode, threshold } = thresholdOf(metric, kind!, vt, (m, t, tail) => this.fail(m, t, tail));
    const text = this.expression.slice(mt.col - 1, vt.col - 1 + vt.text.length);
    return { type: 'check', text, metric, opcode, cmp: ct.value as Cmp, mode, threshold };
  }

  /** `(OPCODE)` after a per-opcode metric: a name (READ, read, FUSE_READ) or a number. */
  private parseOpcode(metric: string): number {
    const open = this.take();
    if (!OP_METRICS[metric]) this.fail(`${metric} is a figure of the whole session and takes no opcode`, open);
    const ot = this.take();
    if (ot.kind !== 'word' && ot.kind !== 'number') this.fail(`expected an opcode after '(', found ${describe(ot)}`, ot);
    const opcode = ot.kind === 'number' && /^\d+$/.test(ot.text) ? Number(ot.text) : (opcodeNumber(ot.value) ?? null);
    if (opcode === null) {
      const hint = closest(ot.value.toUpperCase().replace(/^FUSE_/, ''), OPCODE_TABLE.map((o) => o.name));
      this.fail(`unknown opcode '${ot.text}'`, ot, hint ? `; did you mean ${hint}?` : '');
    }
    if (!isOp(this.peek(), ')')) this.fail(`expected ')' after the opcode, found ${describe(this.peek())}`, this.peek());
    this.take();
    return opcode!;
  }
}

function isOp(t: Tok, ...ops: string[]): boolean {
  return t.kind === 'op' && ops.includes(t.value);
}

function isWord(t: Tok, ...ws: string[]): boolean {
  return t.kind === 'word' && ws.includes(t.value.toLowerCase());
}

function describe(t: Tok): string {
  return t.kind === 'end' ? 'the end of the expression' : `'${t.text}'`;
}

/** What a threshold token means for a metric: 1.2x, 20%, +5ms, 10ms, 3. */
function thresholdOf(metric: string, kind: MetricKind, vt: Tok, fail: (m: string, t: Tok, tail?: string) => never): { mode: Mode; threshold: number } {
  const signed = vt.value.startsWith('+') || vt.value.startsWith('-');
  const n = Number(vt.value);
  const suffix = vt.suffix;
  if (suffix === 'x' || suffix === '%') {
    if (signed) fail(`a ${suffix === 'x' ? 'factor' : 'percentage'} takes no sign`, vt, suffix === 'x' ? ' (0.8x: B is 20% below A)' : ' (20%: up by a fifth; use < for a drop, e.g. < 80%)');
    return suffix === 'x' ? { mode: 'factor', threshold: n } : { mode: 'percent', threshold: n };
  }
  const mode: Mode = signed ? 'change' : 'value';
  if (kind !== 'duration') {
    if (suffix) fail(`unexpected unit '${suffix}' after a number for ${metric}`, vt, `; ${metric} is a ${kind === 'count' ? 'count' : 'ratio'} (use x or % for a relative threshold)`);
    return { mode, threshold: n };
  }
  if (!suffix) {
    if (n === 0) return { mode, threshold: 0 };
    fail(`${metric} needs a time unit (ns, us, ms, s)`, vt, `, e.g. ${vt.text}ms, or a factor such as 1.2x`);
  }
  const unit = suffix === 'µs' ? suffix : suffix.toLowerCase();
  const mult = UNITS[unit];
  if (mult === undefined) fail(`unknown unit '${suffix}'`, vt, '; use ns, us, ms, s, x (factor) or % (change)');
  return { mode, threshold: n * mult! };
}

/** One check as evaluated, for the report. */
export interface CheckResult {
  /** The check as the user wrote it. */
  text: string;
  a: number | null;
  b: number | null;
  /** What was compared with the threshold (B, B - A, B / A or the % change); null when missing. */
  value: number | null;
  mode: Mode;
  holds: boolean;
}

/** Evaluates a parsed --fail-if on a diff: whether it trips, and every check with its figures. */
export function evaluateFailIf(tree: FailIfNode, diff: SessionDiff): { tripped: boolean; checks: CheckResult[] } {
  const checks: CheckResult[] = [];
  const ev = (n: FailIfNode): boolean => {
    switch (n.type) {
      case 'and':
        return ev(n.left) && ev(n.right);
      case 'or':
        return ev(n.left) || ev(n.right);
      case 'not':
        return !ev(n.expr);
      case 'check': {
        const c = metricValue(diff, n.metric, n.opcode);
        const value = compared(c, n.mode);
        const holds = value !== null && compare(value, n.cmp, n.threshold);
        checks.push({ text: n.text, a: c.a, b: c.b, value, mode: n.mode, holds });
        return holds;
      }
    }
  };
  // Every check is evaluated (no short circuit) so the report can list them all.
  const all = (n: FailIfNode): boolean => {
    if (n.type === 'and' || n.type === 'or') {
      const l = all(n.left);
      const r = all(n.right);
      return n.type === 'and' ? l && r : l || r;
    }
    if (n.type === 'not') return !all(n.expr);
    return ev(n);
  };
  return { tripped: all(tree), checks };
}

function compared(c: Change, mode: Mode): number | null {
  switch (mode) {
    case 'value':
      return c.b;
    case 'change':
      return c.a === null || c.b === null ? null : c.b - c.a;
    case 'factor':
      return ratio(c);
    case 'percent': {
      const r = ratio(c);
      return r === null ? null : (r - 1) * 100;
    }
  }
}

function compare(v: number, cmp: Cmp, t: number): boolean {
  switch (cmp) {
    case '>': return v > t;
    case '>=': return v >= t;
    case '<': return v < t;
    case '<=': return v <= t;
    case '==': return v === t;
    case '!=': return v !== t;
  }
}

/** A metric's figure in A and B. */
export function metricValue(d: SessionDiff, metric: string, opcode: number | null): Change {
  if (metric === 'new_errors') return { a: 0, b: d.errors.filter((e) => e.kind === 'appeared').reduce((s, e) => s + e.b, 0) };
  const amp = AMPLIFICATION.find((m) => m.name === metric);
  if (amp) return d.amplification.find((m) => m.name === metric) ?? { a: null, b: null };
  if (opcode === null) {
    const whole = (k: 'a' | 'b'): number | null => {
      const s = d[k];
      switch (metric) {
        case 'count': return s.requests;
        case 'errors': return s.errors;
        case 'time': return s.time_ns;
        default: return s.latency[`${metric}_ns` as 'p50_ns'];
      }
    };
    return { a: whole('a'), b: whole('b') };
  }
  const row = d.ops.find((o) => o.opcode === opcode);
  switch (metric) {
    case 'count': return row?.count ?? { a: 0, b: 0 };
    case 'errors': return row?.errors ?? { a: 0, b: 0 };
    case 'time': return row?.time_ns ?? { a: 0, b: 0 };
    default: return row?.[`${metric}_ns` as 'p50_ns'] ?? { a: null, b: null };
  }
}
