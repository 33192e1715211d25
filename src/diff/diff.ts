/**
 * `fusetrace diff A B`: what changed between two sessions (A the baseline, B the new run), computed
 * from their profiles (src/store/profile.ts). Pure: no SQL, no output. `perf diff` is the model:
 * the same rows side by side with the change, what costs the most time first.
 */
import type { Latency } from '../store/stats.js';
import type { SessionProfile, TimeTotal } from '../store/profile.js';
import { Opcode, opcodeName } from '../protocol/index.js';

/** A figure in A and B; null where the session has no such figure (no READ: no READ p99). */
export interface Change {
  a: number | null;
  b: number | null;
}

/** One opcode in both sessions. */
export interface OpDiff {
  opcode: number;
  op: string;
  count: Change;
  errors: Change;
  p50_ns: Change;
  p90_ns: Change;
  p99_ns: Change;
  max_ns: Change;
  /** Sum of the durations (answered requests). */
  time_ns: Change;
}

/** Error replies of one (opcode, errno) that appeared, disappeared, or changed in number. */
export interface ErrorDiff {
  op: string;
  err: string;
  errno: number;
  a: number;
  b: number;
  kind: 'appeared' | 'disappeared' | 'changed';
}

/** A request-per-operation ratio (AMPLIFICATION). */
export interface AmplificationDiff extends Change {
  name: string;
  label: string;
}

/** A path or process name whose time changed. */
export interface TimeDiff {
  key: string;
  requests: Change;
  time_ns: Change;
}

/** What one side is, for the headings. */
export interface SideInfo {
  session: number;
  /** How the user named it (`3`, `fast`, `old.db:2`). */
  label: string;
  requests: number;
  errors: number;
  time_ns: number;
  latency: Latency;
}

export interface SessionDiff {
  a: SideInfo;
  b: SideInfo;
  /** Opcodes of either session, the largest change in total time first. */
  ops: OpDiff[];
  errors: ErrorDiff[];
  /** Every ratio defined on at least one side. */
  amplification: AmplificationDiff[];
  /** The paths and process names whose time changed most (at most `top` each). */
  paths: TimeDiff[];
  processes: TimeDiff[];
  /** Directory-entry counts came from replies cut by --snaplen (the LOOKUP ratio is then a bound). */
  dirents_partial: boolean;
}

/**
 * Ratios of requests to an application-level operation (what the workload asked for), the
 * signature of a server or kernel setting that multiplies requests: a LOOKUP per listed entry
 * (entries not cached from READDIRPLUS), a GETATTR storm around OPEN, smaller READs.
 * `name` is what `--fail-if` calls the ratio.
 */
export const AMPLIFICATION: ReadonlyArray<{ name: string; label: string; num: (p: SessionProfile) => number; den: (p: SessionProfile) => number }> = [
  { name: 'lookups_per_dirent', label: 'LOOKUPs per directory entry listed', num: (p) => count(p, 'LOOKUP'), den: (p) => p.dirents.entries },
  { name: 'lookups_per_open', label: 'LOOKUPs per OPEN', num: (p) => count(p, 'LOOKUP'), den: (p) => count(p, 'OPEN') },
  { name: 'getattrs_per_open', label: 'GETATTRs per OPEN', num: (p) => count(p, 'GETATTR'), den: (p) => count(p, 'OPEN') },
  { name: 'getattrs_per_lookup', label: 'GETATTRs per LOOKUP', num: (p) => count(p, 'GETATTR'), den: (p) => count(p, 'LOOKUP') },
  { name: 'reads_per_open', label: 'READs per OPEN', num: (p) => count(p, 'READ'), den: (p) => count(p, 'OPEN') },
  { name: 'bytes_per_read', label: 'bytes per READ', num: (p) => p.stats.bytes_read, den: (p) => count(p, 'READ') },
  { name: 'bytes_per_write', label: 'bytes per WRITE', num: (p) => p.stats.bytes_written, den: (p) => count(p, 'WRITE') },
];

function count(p: SessionProfile, op: string): number {
  return p.stats.ops.find((o) => o.opcode === Opcode[op])?.requests ?? 0;
}

/** B relative to A as a factor (2 = doubled); null when undefined (a side missing, or 0 -> 0). */
export function ratio(c: Change): number | null {
  if (c.a === null || c.b === null) return null;
  if (c.a === 0) return c.b === 0 ? 1 : Infinity;
  return c.b / c.a;
}

/** B - A, treating a missing side as 0 (for counts and times, where absent means none). */
export function delta(c: Change): number {
  return (c.b ?? 0) - (c.a ?? 0);
}

function side(p: SessionProfile, label: string): SideInfo {
  let time = 0;
  for (const t of p.opTime.values()) time += t;
  return { session: p.session, label, requests: p.stats.requests, errors: p.stats.errors, time_ns: time, latency: p.stats.overall };
}

/** The diff of two profiles; `top` bounds the path and process lists (default 10). */
export function diffProfiles(a: SessionProfile, b: SessionProfile, labels: { a: string; b: string }, opts: { top?: number } = {}): SessionDiff {
  const top = opts.top ?? 10;
  return {
    a: side(a, labels.a),
    b: side(b, labels.b),
    ops: diffOps(a, b),
    errors: diffErrors(a, b),
    amplification: AMPLIFICATION.map((m) => ({ name: m.name, label: m.label, a: perOp(m.num(a), m.den(a)), b: perOp(m.num(b), m.den(b)) })).filter(
      (m) => m.a !== null || m.b !== null,
    ),
    paths: diffTimes(a.paths, b.paths, top),
    processes: diffTimes(a.comms, b.comms, top),
    dirents_partial: a.dirents.partial + b.dirents.partial > 0,
  };
}

function perOp(num: number, den: number): number | null {
  return den > 0 ? num / den : null;
}

function diffOps(a: SessionProfile, b: SessionProfile): OpDiff[] {
  const opcodes = new Set([...a.stats.ops, ...b.stats.ops].map((o) => o.opcode));
  const rows: OpDiff[] = [];
  for (const opcode of opcodes) {
    const oa = a.stats.ops.find((o) => o.opcode === opcode);
    const ob = b.stats.ops.find((o) => o.opcode === opcode);
    const pick = (k: 'p50_ns' | 'p90_ns' | 'p99_ns' | 'max_ns'): Change => ({ a: oa?.[k] ?? null, b: ob?.[k] ?? null });
    rows.push({
      opcode,
      op: opcodeName(opcode),
      count: { a: oa?.requests ?? 0, b: ob?.requests ?? 0 },
      errors: { a: oa?.errors ?? 0, b: ob?.errors ?? 0 },
      p50_ns: pick('p50_ns'),
      p90_ns: pick('p90_ns'),
      p99_ns: pick('p99_ns'),
      max_ns: pick('max_ns'),
      time_ns: { a: a.opTime.get(opcode) ?? 0, b: b.opTime.get(opcode) ?? 0 },
    });
  }
  // The change in time first ("what costs"), then the larger total in B, then opcode for a stable order.
  return rows.sort(
    (x, y) => Math.abs(delta(y.time_ns)) - Math.abs(delta(x.time_ns)) || (y.time_ns.b ?? 0) - (x.time_ns.b ?? 0) || delta(y.count) - delta(x.count) || x.opcode - y.opcode,
  );
}

function diffErrors(a: SessionProfile, b: SessionProfile): ErrorDiff[] {
  const key = (e: { opcode: number; errno: number }): string => `${e.opcode}/${e.errno}`;
  const byKey = new Map<string, ErrorDiff>();
  for (const [e, which] of [...a.errors.map((x) => [x, 'a'] as const), ...b.errors.map((x) => [x, 'b'] as const)]) {
    const d = byKey.get(key(e)) ?? { op: e.op, err: e.err, errno: e.errno, a: 0, b: 0, kind: 'changed' as const };
    d[which] = e.count;
    byKey.set(key(e), d);
  }
  const out: ErrorDiff[] = [];
  for (const d of byKey.values()) {
    if (d.a === d.b) continue;
    out.push({ ...d, kind: d.a === 0 ? 'appeared' : d.b === 0 ? 'disappeared' : 'changed' });
  }
  const rank = { appeared: 0, disappeared: 1, changed: 2 };
  return out.sort((x, y) => rank[x.kind] - rank[y.kind] || Math.abs(y.b - y.a) - Math.abs(x.b - x.a) || x.op.localeCompare(y.op) || x.errno - y.errno);
}

function diffTimes(a: Map<string, TimeTotal>, b: Map<string, TimeTotal>, top: number): TimeDiff[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const out: TimeDiff[] = [];
  for (const key of keys) {
    const x = a.get(key);
    const y = b.get(key);
    out.push({ key, requests: { a: x?.requests ?? 0, b: y?.requests ?? 0 }, time_ns: { a: x?.total_ns ?? 0, b: y?.total_ns ?? 0 } });
  }
  return out
    .filter((d) => delta(d.time_ns) !== 0 || delta(d.requests) !== 0)
    .sort((x, y) => Math.abs(delta(y.time_ns)) - Math.abs(delta(x.time_ns)) || Math.abs(delta(y.requests)) - Math.abs(delta(x.requests)) || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0))
    .slice(0, top);
}
