/**
 * The filter language shared by `show`, `stats`, `export` and the TUI, in the spirit of Wireshark
 * display filters, compiled to a parameterised WHERE fragment over the `requests` table.
 *
 *   op==READ && dur>1ms          state==interrupted || err==EINTR       !(comm ~ "kworker*")
 *   path ~ "/data/*.txt"         path ~ /\.tmp$/i                        op in {READ WRITE}
 *   err                          (any error)                            t>=1.5s && t<2s && pid==1234
 *
 * Grammar (precedence low to high):
 *   expr    := and { ('||' | 'or') and }
 *   and     := unary { ('&&' | 'and') unary }
 *   unary   := ('!' | 'not') unary | '(' expr ')' | test
 *   test    := FIELD                                   -- bare field: the value is present (err: is an error)
 *            | FIELD ('=='|'!='|'<'|'<='|'>'|'>=') value
 *            | FIELD '~' (STRING | REGEX)              -- "..." is a glob, /.../flags is a regular expression
 *            | FIELD 'in' '{' value { [','] value } '}'
 *   value   := NUMBER [unit] | STRING | WORD
 *
 * Semantics. A comparison with a missing value (no reply yet: `dur`, `err`; unknown `path`) is false,
 * and `!` is its exact negation (`!(dur>1ms)` matches the unanswered requests too); `a != b` is the
 * same as `!(a == b)`. Numbers are decimal or hex (`0x1f`); `dur` and `t` take a unit (ns, us or µs,
 * ms, s; fractions allowed: `1.5s`), or a bare 0. `~` with a quoted string is a glob anchored at both
 * ends (`*` and `?` stay within one path component, `**` crosses `/`, `[abc]` is a class); with
 * `/re/flags` it is a JavaScript regular expression that matches anywhere unless anchored.
 *
 * Safety: user text only ever reaches SQLite as a bound parameter. The SQL text is assembled from
 * the fixed column names, operators and placeholders below; this is asserted by filter.test.ts.
 */
import type { Database } from 'better-sqlite3';
import { ERRNOS, OPCODE_TABLE, errnoName, errnoNumber, opcodeByName, opcodeName } from '../protocol/index.js';

// Names: the codec's tables (src/protocol) are the one source of truth for opcode and errno names.
const OPCODE_NAMES = OPCODE_TABLE.map((o) => o.name);
const ERRNO_NAMES = ERRNOS.map(([, name]) => name);
export { errnoName, errnoNumber, opcodeName };
/** Opcode number of a name (`READ`, `read`, `FUSE_READ`), or undefined. */
export function opcodeNumber(name: string): number | undefined {
  return opcodeByName(name)?.opcode;
}

/** The lifecycle states of a request (schema.ts, `requests.state`). */
export const STATES = ['ok', 'error', 'interrupted', 'late', 'unanswered', 'aborted', 'noreply', 'notify', 'unknown', 'lost'] as const;
export type RequestState = (typeof STATES)[number];

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** A filter expression the user got wrong; `column` is 1-based and points into `expression`. */
export class FilterError extends Error {
  readonly column: number;
  readonly expression: string;
  constructor(message: string, column: number, expression: string) {
    super(message);
    this.name = 'FilterError';
    this.column = column;
    this.expression = expression;
  }
}

/**
 * The expression with a caret under the column, then the message:
 *
 *     op == && dur>1ms
 *           ^ expected a value after '==' at column 7
 */
export function formatFilterError(err: FilterError): string {
  // Tabs and newlines in the expression would shift the caret; show them as spaces.
  const line = err.expression.replace(/[\t\r\n]/g, ' ');
  return `${line}\n${' '.repeat(Math.max(0, err.column - 1))}^ ${err.message}`;
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

type TokKind = 'word' | 'number' | 'string' | 'regex' | 'op' | 'end';
interface Token {
  kind: TokKind;
  /** The token as typed (for messages). */
  text: string;
  /** 1-based column of its first character. */
  col: number;
  /** string: the unescaped value; regex: the source; number: the digits; word/op: the text. */
  value: string;
  /** number: the unit suffix (`ms`), regex: the flags. */
  suffix: string;
}

const PUNCT = ['==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '~', '(', ')', '{', '}', ',', '='];

function lex(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const fail = (msg: string, at: number, tail = ''): never => {
    throw new FilterError(`${msg} at column ${at + 1}${tail}`, at + 1, src);
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const start = i;
    const prev = out[out.length - 1];
    if (c === '"' || c === "'") {
      const { value, end } = lexString(src, i, fail);
      out.push({ kind: 'string', text: src.slice(start, end), col: start + 1, value, suffix: '' });
      i = end;
    } else if (c === '/' && prev?.kind === 'op' && prev.value === '~') {
      // A regular expression literal is only possible right after '~', so '/' needs no other meaning.
      let j = i + 1;
      let body = '';
      let inClass = false;
      for (;;) {
        if (j >= src.length) fail("unterminated regular expression (missing closing '/')", start);
        const d = src[j]!;
        if (d === '\\' && j + 1 < src.length) {
          body += d + src[j + 1];
          j += 2;
          continue;
        }
        if (d === '[') inClass = true;
        else if (d === ']') inClass = false;
        else if (d === '/' && !inClass) break;
        body += d;
        j++;
      }
      j++;
      let flags = '';
      while (j < src.length && /[a-z]/i.test(src[j]!)) flags += src[j++];
      out.push({ kind: 'regex', text: src.slice(start, j), col: start + 1, value: body, suffix: flags });
      i = j;
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      let j = i;
      let digits: string;
      if (c === '0' && (src[i + 1] === 'x' || src[i + 1] === 'X')) {
        j = i + 2;
        while (j < src.length && /[0-9a-f]/i.test(src[j]!)) j++;
        digits = src.slice(i, j);
        if (digits.length === 2) fail("expected hex digits after '0x'", start);
      } else {
        while (j < src.length && /[0-9.]/.test(src[j]!)) j++;
        digits = src.slice(i, j);
        if (!/^(\d+(\.\d*)?|\.\d+)$/.test(digits)) fail(`malformed number '${digits}'`, start);
      }
      let k = j;
      while (k < src.length && /[A-Za-zµ_]/.test(src[k]!)) k++;
      out.push({ kind: 'number', text: src.slice(start, k), col: start + 1, value: digits, suffix: src.slice(j, k) });
      i = k;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
      const w = src.slice(i, j);
      out.push({ kind: 'word', text: w, col: start + 1, value: w, suffix: '' });
      i = j;
    } else {
      if (c === '/') fail("unexpected '/'", start, '; quote paths (path == "/a/b") and write regular expressions after ~ (path ~ /re/)');
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

function lexString(src: string, start: number, fail: (m: string, at: number) => never): { value: string; end: number } {
  const quote = src[start]!;
  let j = start + 1;
  let value = '';
  for (;;) {
    if (j >= src.length) fail(`unterminated string (missing closing ${quote})`, start);
    const d = src[j]!;
    if (d === quote) return { value, end: j + 1 };
    if (d !== '\\') {
      value += d;
      j++;
      continue;
    }
    const e = src[j + 1];
    if (e === undefined) fail(`unterminated string (missing closing ${quote})`, start);
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '0': '\0', '\\': '\\', '"': '"', "'": "'" };
    if (e! in simple) {
      value += simple[e!];
      j += 2;
    } else if (e === 'x' && /^[0-9a-f]{2}$/i.test(src.slice(j + 2, j + 4))) {
      value += String.fromCharCode(parseInt(src.slice(j + 2, j + 4), 16));
      j += 4;
    } else if (e === 'u' && src[j + 2] === '{') {
      const close = src.indexOf('}', j + 3);
      const hex = close < 0 ? '' : src.slice(j + 3, close);
      if (!/^[0-9a-f]{1,6}$/i.test(hex) || parseInt(hex, 16) > 0x10ffff) fail("bad '\\u{...}' escape", j);
      value += String.fromCodePoint(parseInt(hex, 16));
      j = close + 1;
    } else {
      // Keep unknown escapes verbatim so glob escapes like "\*" reach the glob compiler intact.
      value += '\\' + e;
      j += 2;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fields
// ---------------------------------------------------------------------------------------------

type FieldKind = 'opcode' | 'int' | 'errno' | 'state' | 'duration' | 'text';
interface FieldDef {
  /** The requests column (fixed text: the only identifiers that reach SQL). */
  column: string;
  kind: FieldKind;
  /** SQL for the bare field test. */
  present: string;
  /** The column may hold a 64-bit value chosen by the kernel or the server (stored as signed i64). */
  u64?: boolean;
}

/** The fields of the language, in the order they are listed to the user. */
export const FIELDS: Readonly<Record<string, FieldDef>> = {
  op: { column: 'opcode', kind: 'opcode', present: 'opcode IS NOT NULL' },
  unique: { column: 'unique_id', kind: 'int', present: 'unique_id != 0', u64: true },
  nodeid: { column: 'nodeid', kind: 'int', present: 'nodeid IS NOT NULL AND nodeid != 0', u64: true },
  fh: { column: 'fh', kind: 'int', present: 'fh IS NOT NULL', u64: true },
  path: { column: 'path', kind: 'text', present: 'path IS NOT NULL' },
  pid: { column: 'pid', kind: 'int', present: 'pid IS NOT NULL AND pid != 0' },
  comm: { column: 'comm', kind: 'text', present: 'comm IS NOT NULL' },
  uid: { column: 'uid', kind: 'int', present: 'uid IS NOT NULL' },
  err: { column: 'errno', kind: 'errno', present: 'errno > 0' },
  state: { column: 'state', kind: 'state', present: 'state IS NOT NULL' },
  dur: { column: 'dur_ns', kind: 'duration', present: 'dur_ns IS NOT NULL' },
  t: { column: 'start_ns', kind: 'duration', present: 'start_ns IS NOT NULL' },
  len: { column: 'len', kind: 'int', present: 'len IS NOT NULL' },
};
const FIELD_NAMES = Object.keys(FIELDS);

const UNITS: Record<string, bigint> = { ns: 1n, us: 1000n, 'µs': 1000n, ms: 1_000_000n, s: 1_000_000_000n };

// ---------------------------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------------------------

/** A bound SQL parameter: integers outside the safe range stay bigint. */
export type SqlParam = number | bigint | string;

/** A parsed filter; exported so the TUI can show or rewrite it. */
export type FilterNode =
  | { type: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { type: 'not'; expr: FilterNode }
  | { type: 'present'; field: string }
  | { type: 'cmp'; field: string; op: '==' | '!=' | '<' | '<=' | '>' | '>='; value: SqlParam }
  | { type: 'in'; field: string; values: SqlParam[] }
  | { type: 'match'; field: string; regex: string; flags: string; glob?: string };

/**
 * Limits of an expression. SQLite refuses an expression tree deeper than 1000 (SQLITE_MAX_EXPR_DEPTH)
 * and `a && b && ...` compiles to a chain as deep as its tests; the parser recurses once per
 * parenthesis or `!`. Past these a filter is almost surely generated by mistake, and the user gets
 * a clear message instead of "Maximum call stack size exceeded" or an SQLite error.
 */
export const FILTER_MAX_TESTS = 256;
export const FILTER_MAX_DEPTH = 64;
export const FILTER_MAX_VALUES = 10_000;

/** Parses an expression; throws FilterError with the column of the first mistake. */
export function parseFilter(expression: string): FilterNode | null {
  const toks = lex(expression);
  let pos = 0;
  let tests = 0;
  let depth = 0;
  let values = 0;
  const peek = (): Token => toks[pos]!;
  const take = (): Token => toks[pos++]!;
  /** Throws "<msg> at column N<tail>": the column sits right after what went wrong, the hint after it. */
  const fail = (msg: string, tok: Token, tail = ''): never => {
    throw new FilterError(`${msg} at column ${tok.col}${tail}`, tok.col, expression);
  };
  const isOp = (t: Token, ...ops: string[]): boolean => t.kind === 'op' && ops.includes(t.value);
  const isWord = (t: Token, ...ws: string[]): boolean => t.kind === 'word' && ws.includes(t.value.toLowerCase());
  const describe = (t: Token): string => (t.kind === 'end' ? 'the end of the expression' : `'${t.text}'`);

  if (peek().kind === 'end') return null;

  const parseOr = (after: Token | null): FilterNode => {
    let left = parseAnd(after);
    while (isOp(peek(), '||') || isWord(peek(), 'or')) {
      const t = take();
      left = { type: 'or', left, right: parseAnd(t) };
    }
    return left;
  };
  const parseAnd = (after: Token | null): FilterNode => {
    let left = parseUnary(after);
    while (isOp(peek(), '&&') || isWord(peek(), 'and')) {
      const t = take();
      left = { type: 'and', left, right: parseUnary(t) };
    }
    return left;
  };
  const deeper = (t: Token): void => {
    if (++depth > FILTER_MAX_DEPTH) fail(`the filter nests more than ${FILTER_MAX_DEPTH} levels of '(' and '!'`, t, '; simplify it');
  };
  const parseUnary = (after: Token | null): FilterNode => {
    const t = peek();
    if (isOp(t, '!') || isWord(t, 'not')) {
      take();
      deeper(t);
      const expr = parseUnary(t);
      depth--;
      return { type: 'not', expr };
    }
    if (isOp(t, '(')) {
      take();
      deeper(t);
      if (isOp(peek(), ')')) fail("expected an expression inside '()'", peek());
      const inner = parseOr(t);
      if (!isOp(peek(), ')')) fail(`expected ')' to close the '(' at column ${t.col}, found ${describe(peek())}`, peek());
      take();
      depth--;
      return inner;
    }
    if (t.kind === 'word') return parseTest();
    if (after) fail(`expected a field after '${after.text}', found ${describe(t)}`, t);
    return fail(`expected a field (${FIELD_NAMES.join(', ')}), found ${describe(t)}`, t);
  };
  const parseTest = (): FilterNode => {
    const ft = take();
    if (++tests > FILTER_MAX_TESTS) fail(`the filter has more than ${FILTER_MAX_TESTS} tests`, ft, "; for many values of one field use 'in {A B ...}'");
    const name = ft.value.toLowerCase();
    const def = FIELDS[name];
    if (!def) {
      const hint = closest(name, FIELD_NAMES);
      fail(`unknown field '${ft.text}'`, ft, `${hint ? `; did you mean ${hint}?` : ''}; valid fields: ${FIELD_NAMES.join(', ')}`);
    }
    const opTok = peek();
    // A field followed by a connective, ')' or the end is a bare test: "err", "path && ...".
    if (opTok.kind === 'end' || isOp(opTok, '&&', '||', ')') || isWord(opTok, 'and', 'or')) {
      return { type: 'present', field: name };
    }
    if (isOp(opTok, '==', '!=', '<', '<=', '>', '>=')) {
      take();
      const op = opTok.value as '==' | '!=' | '<' | '<=' | '>' | '>=';
      if (op !== '==' && op !== '!=' && (def!.kind === 'text' || def!.kind === 'state')) {
        fail(`'${op}' does not apply to ${name}`, opTok, '; use ==, !=, ~ or in');
      }
      const vt = take();
      if (vt.kind === 'end' || vt.kind === 'op') fail(`expected a value after '${op}'`, vt);
      return { type: 'cmp', field: name, op, value: toValue(name, def!, vt) };
    }
    if (isOp(opTok, '~')) {
      take();
      if (def!.kind !== 'text' && def!.kind !== 'state') fail(`'~' applies to path, comm and state, not to ${name}`, opTok);
      const vt = take();
      if (vt.kind === 'regex') {
        // g and y would make RegExp.test() stateful (lastIndex) across rows.
        if (/[^imsu]/.test(vt.suffix)) fail(`unknown regular expression flag in '${vt.suffix}'`, vt, '; use i, m, s or u');
        const flags = vt.suffix;
        try {
          new RegExp(vt.value, flags);
        } catch (e) {
          fail(`invalid regular expression (${(e as Error).message.replace(/^Invalid regular expression: /, '')})`, vt);
        }
        return { type: 'match', field: name, regex: vt.value, flags };
      }
      if (vt.kind === 'string' || vt.kind === 'word') {
        return { type: 'match', field: name, regex: globToRegex(vt.value), flags: '', glob: vt.value };
      }
      return fail(`expected a "glob" or a /regular expression/ after '~', found ${describe(vt)}`, vt);
    }
    if (isWord(opTok, 'in')) {
      take();
      const open = take();
      if (!isOp(open, '{')) fail(`expected '{' after 'in', found ${describe(open)}`, open);
      const list: SqlParam[] = [];
      for (;;) {
        const vt = take();
        if (isOp(vt, '}')) break;
        if (isOp(vt, ',') && list.length > 0) continue;
        if (vt.kind === 'end') fail(`expected '}' to close the '{' at column ${open.col}`, vt);
        if (vt.kind === 'op') fail(`expected a value in '{...}', found ${describe(vt)}`, vt);
        if (++values > FILTER_MAX_VALUES) fail(`the filter lists more than ${FILTER_MAX_VALUES} values`, vt, '; narrow it down');
        list.push(toValue(name, def!, vt));
      }
      if (list.length === 0) fail("expected at least one value in '{}'", open);
      return { type: 'in', field: name, values: list };
    }
    return fail(`expected an operator (== != < <= > >= ~ in) after '${ft.text}', found ${describe(opTok)}`, opTok);
  };

  const toValue = (name: string, def: FieldDef, vt: Token): SqlParam => {
    switch (def.kind) {
      case 'opcode': {
        if (vt.kind === 'number') return intValue(name, def, vt);
        if (vt.kind === 'word' || vt.kind === 'string') {
          const n = opcodeNumber(vt.value);
          if (n !== undefined) return n;
          const hint = closest(vt.value.toUpperCase().replace(/^FUSE_/, ''), OPCODE_NAMES);
          return fail(`unknown opcode '${vt.value}'`, vt, hint ? `; did you mean ${hint}?` : '');
        }
        break;
      }
      case 'errno': {
        if (vt.kind === 'number') return intValue(name, def, vt);
        if (vt.kind === 'word' || vt.kind === 'string') {
          const n = errnoNumber(vt.value);
          if (n !== undefined) return n;
          const hint = closest(vt.value.toUpperCase(), ERRNO_NAMES);
          return fail(`unknown errno '${vt.value}'`, vt, hint ? `; did you mean ${hint}?` : '');
        }
        break;
      }
      case 'state': {
        if (vt.kind === 'word' || vt.kind === 'string') {
          const s = vt.value.toLowerCase();
          if ((STATES as readonly string[]).includes(s)) return s;
          const hint = closest(s, STATES);
          return fail(`unknown state '${vt.value}'`, vt, `${hint ? `; did you mean ${hint}?` : ''} (states: ${STATES.join(', ')})`);
        }
        break;
      }
      case 'text':
        if (vt.kind === 'string' || vt.kind === 'word') return vt.value;
        // A bare path like /a/b would be ambiguous with a regex; say how to write it.
        return fail(`expected a quoted string for ${name}`, vt, `, e.g. ${name}=="${vt.text}"`);
      case 'duration':
        if (vt.kind === 'number') return durationValue(name, vt);
        break;
      case 'int':
        if (vt.kind === 'number') return intValue(name, def, vt);
        break;
    }
    const what = def.kind === 'duration' ? 'a duration (e.g. 10ms)' : def.kind === 'opcode' ? 'an opcode name or number' : def.kind === 'errno' ? 'an errno name or number' : def.kind === 'state' ? `a state (${STATES.join(', ')})` : 'a number';
    return fail(`expected ${what} for ${name}, found ${describe(vt)}`, vt);
  };
  const intValue = (name: string, def: FieldDef, vt: Token): SqlParam => {
    if (vt.suffix) fail(`unexpected unit '${vt.suffix}' after a number for ${name}`, vt);
    if (vt.value.includes('.')) fail(`expected a whole number for ${name}, found '${vt.text}'`, vt);
    let v = BigInt(vt.value);
    if (v >= 1n << 64n) fail(`number '${vt.text}' does not fit in 64 bits`, vt);
    // u64 values (nodeid 0xffffffffffffffff, ...) are stored as the signed i64 with the same bits.
    if (def.u64) v = BigInt.asIntN(64, v);
    else if (v >= 1n << 63n) fail(`number '${vt.text}' is too large for ${name}`, vt);
    return toParam(v);
  };
  const durationValue = (name: string, vt: Token): SqlParam => {
    if (vt.value.startsWith('0x') || vt.value.startsWith('0X')) {
      if (vt.suffix) fail(`a hex number cannot take a unit`, vt);
      return intValue(name, FIELDS.len!, vt);
    }
    const unit = vt.suffix === 'µs' ? vt.suffix : vt.suffix.toLowerCase();
    if (!unit) {
      if (/^0*(\.0*)?$/.test(vt.value)) return 0;
      fail(`${name} needs a time unit (ns, us, ms, s)`, vt, `, e.g. ${name}>${vt.value}ms`);
    }
    const mult = UNITS[unit];
    if (mult === undefined) fail(`unknown unit '${unit}'`, vt, '; use ns, us, ms or s');
    // Exact decimal arithmetic: 1.5s is 1500000000 ns, not a float approximation.
    const [ip, fp = ''] = vt.value.split('.');
    const scale = 10n ** BigInt(fp.length);
    const scaled = BigInt((ip || '0') + fp) * mult;
    if (scaled % scale !== 0n) fail(`'${vt.text}' is finer than a nanosecond`, vt);
    const ns = scaled / scale;
    if (ns >= 1n << 63n) fail(`duration '${vt.text}' is too large`, vt);
    return toParam(ns);
  };

  const tree = parseOr(null);
  const rest = peek();
  if (rest.kind !== 'end') {
    if (isOp(rest, ')')) fail("unexpected ')' without a matching '('", rest);
    fail(`expected '&&', '||' or the end after a test, found ${describe(rest)}`, rest);
  }
  return tree;
}

function toParam(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * A glob as an anchored regular expression source: `*` and `?` stay within one path component,
 * `**` crosses `/`, `[...]` is a class (`[!...]` negated), `\x` is a literal x.
 */
export function globToRegex(glob: string): string {
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = glob.slice(i + 1, close);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = close;
      }
    } else if (c === '\\' && i + 1 < glob.length) {
      re += escapeRegex(glob[++i]!);
    } else re += escapeRegex(c);
  }
  return re + '$';
}

function escapeRegex(c: string): string {
  return /[.*+?^${}()|[\]\\]/.test(c) ? '\\' + c : c;
}

/** The candidate nearest to `word` by edit distance, if it is near enough to be a plausible typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toUpperCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toUpperCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) + (word.length > 4 ? 1 : 0) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      const sub = diag + (a[i - 1] === b[j - 1] ? 0 : 1);
      // Damerau: a swap of two neighbours ("RAED") costs one.
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, sub);
      diag = tmp;
    }
  }
  return Math.min(row[b.length]!, a.length === b.length && swapDistance(a, b) ? 1 : Infinity);
}

function swapDistance(a: string, b: string): boolean {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i + 1 < a.length && a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2);
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

/** A WHERE fragment over `requests` (unqualified column names) and its positional parameters. */
export interface CompiledFilter {
  /** SQL boolean expression with `?` placeholders; `1` for an empty filter. */
  where: string;
  params: SqlParam[];
}

/**
 * Compiles an expression; the fragment uses the `regexp(pattern, value[, flags])` SQL function,
 * so run `registerFilterFunctions(db)` on the connection first (queryRequests does).
 */
export function compileFilter(expression: string | undefined | null): CompiledFilter {
  const tree = expression ? parseFilter(expression) : null;
  if (!tree) return { where: '1', params: [] };
  const params: SqlParam[] = [];
  return { where: toSql(tree, params), params };
}

const SQL_OPS: Record<string, string> = { '==': '=', '<': '<', '<=': '<=', '>': '>', '>=': '>=' };

function toSql(n: FilterNode, params: SqlParam[]): string {
  switch (n.type) {
    case 'and':
      return `(${toSql(n.left, params)} AND ${toSql(n.right, params)})`;
    case 'or':
      return `(${toSql(n.left, params)} OR ${toSql(n.right, params)})`;
    case 'not':
      // A comparison with NULL is NULL in SQL; NOT NULL stays NULL and would drop the row.
      // `IS NOT 1` makes '!' the two-valued negation the user means (missing value -> false -> true).
      return `(${toSql(n.expr, params)} IS NOT 1)`;
    case 'present':
      return `(${FIELDS[n.field]!.present})`;
    case 'cmp': {
      const col = FIELDS[n.field]!.column;
      params.push(n.value);
      // '!=' is the negation of '==', so it holds for a missing value too (IS NOT is NULL-safe).
      return n.op === '!=' ? `${col} IS NOT ?` : `${col} ${SQL_OPS[n.op]} ?`;
    }
    case 'in': {
      params.push(...n.values);
      return `${FIELDS[n.field]!.column} IN (${n.values.map(() => '?').join(', ')})`;
    }
    case 'match': {
      params.push(n.regex);
      if (n.flags) {
        params.push(n.flags);
        return `regexp(?, ${FIELDS[n.field]!.column}, ?)`;
      }
      return `regexp(?, ${FIELDS[n.field]!.column})`;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SQL functions
// ---------------------------------------------------------------------------------------------

const REGEX_CACHE_MAX = 256;
const regexCache = new Map<string, RegExp>();
function cachedRegex(pattern: string, flags: string): RegExp {
  const key = `${flags}/${pattern}`;
  let re = regexCache.get(key);
  if (!re) {
    if (regexCache.size >= REGEX_CACHE_MAX) regexCache.delete(regexCache.keys().next().value!);
    re = new RegExp(pattern, flags);
    regexCache.set(key, re);
  }
  return re;
}

const registered = new WeakSet<Database>();

/**
 * Registers `regexp(pattern, value)` (SQLite's `value REGEXP pattern` operator) and
 * `regexp(pattern, value, flags)` on a connection; idempotent. NULL values never match.
 */
export function registerFilterFunctions(db: Database): void {
  if (registered.has(db)) return;
  db.function('regexp', { deterministic: true }, (pattern: unknown, value: unknown) =>
    typeof value === 'string' && cachedRegex(String(pattern), '').test(value) ? 1 : 0,
  );
  db.function('regexp', { deterministic: true }, (pattern: unknown, value: unknown, flags: unknown) =>
    typeof value === 'string' && cachedRegex(String(pattern), String(flags)).test(value) ? 1 : 0,
  );
  registered.add(db);
}
