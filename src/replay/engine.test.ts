import { describe, expect, it } from 'vitest';
import { decodeRequest, Opcode } from '../protocol/index.js';
import { interruptFrame, permuteInFlight, prng } from './engine.js';
import type { PlanEvent, PlanFrame, SendEvent } from './plan.js';
import { buildReport, formatJunit, formatText } from './report.js';
import { DEFAULT_RULES } from './compare.js';

let seq = 0;
const frame = (dir: 0 | 1, unique: bigint): PlanFrame => ({
  seq: seq++, tsNs: 0n, fwdNs: 0n, dir, unique, opcode: dir === 0 ? Opcode.GETATTR : null, error: dir === 1 ? 0 : null,
  len: 40, data: Buffer.alloc(40), writeErrno: 0,
});
const send = (unique: bigint, opcode: number = Opcode.GETATTR): SendEvent => ({ kind: 'send', frame: frame(0, unique), opcode, selected: true });
const expectEv = (unique: bigint): PlanEvent => ({ kind: 'expect', frame: frame(1, unique) });
const uniques = (evs: Iterable<PlanEvent>) => [...evs].map((e) => `${e.kind === 'send' ? 's' : 'e'}${e.frame.unique}`);

describe('--seed', () => {
  it('prng is deterministic per seed', () => {
    const a = prng(42);
    const b = prng(42);
    const c = prng(43);
    const xs = [a(), a(), a()];
    expect([b(), b(), b()]).toEqual(xs);
    expect([c(), c(), c()]).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });

  it('permutes only runs of requests sent back to back, and never moves an INTERRUPT or a reply', () => {
    const evs: PlanEvent[] = [
      send(2n), expectEv(2n),
      send(4n), send(6n), send(8n), send(10n), send(12n), send(14n),
      send(9n, Opcode.INTERRUPT),
      send(16n), send(18n),
      expectEv(4n), expectEv(6n), expectEv(8n),
    ];
    const base = uniques(evs);
    const p1 = uniques(permuteInFlight(evs, 1));
    expect(uniques(permuteInFlight(evs, 1))).toEqual(p1);
    // Fixed positions: the lone request, replies, the INTERRUPT.
    for (const i of [0, 1, 8, 11, 12, 13]) expect(p1[i]).toBe(base[i]);
    expect(p1.slice(2, 8).sort()).toEqual(base.slice(2, 8).sort());
    expect(p1.slice(9, 11).sort()).toEqual(base.slice(9, 11).sort());
    // Some seed among a few reorders the run of six (720 orders): a different seed, a different order.
    const orders = new Set([1, 2, 3, 4].map((s) => uniques(permuteInFlight(evs, s)).join(' ')));
    expect(orders.size).toBeGreaterThan(1);
    expect(uniques(evs)).toEqual(base); // the input is not modified
  });
});

describe('interruptFrame', () => {
  it('is a FUSE_INTERRUPT naming the target, with the target unique | FUSE_INT_REQ_BIT as its own', () => {
    const d = decodeRequest(interruptFrame(42n));
    expect(d.ok).toBe(true);
    expect(d.frame!.name).toBe('INTERRUPT');
    expect(d.frame!.unique).toBe(43n);
    expect(d.frame!.args[0].unique).toBe(42n);
  });
});

describe('reports', () => {
  it('JUnit escapes markup and drops characters XML 1.0 cannot carry', () => {
    const plan = {
      session: { id: 3, name: 'a<b>', command: ['x'], snaplen: null, endReason: 'unmount', serverExitCode: 1, serverSignal: null },
      init: send(2n, Opcode.INIT),
      events: [],
      maxLen: 0,
    };
    const report = buildReport({ plan, argv: ['srv', '-o', 'a&b'], timing: 'asap', rules: DEFAULT_RULES }, {
      results: [{
        seq: 1, unique: 4n, opcode: Opcode.LOOKUP, op: 'LOOKUP', request: 'LOOKUP n1 "<&\u0001>" pid 1', outcome: 'diverged',
        recordedReply: 'ENOENT', liveReply: 'OK entry', diffs: [{ field: 'error', recorded: '-2', live: '0', mode: 'exact' }],
      }],
      unexpected: [],
      order: [4n],
      server: { code: 0, signal: null, byReplayer: true, early: false, stderr: '' },
      sent: 1,
      interruptLateMs: 0,
      notifications: { total: 0, matched: 0 },
      elided: {},
    });
    expect(report.ok).toBe(false);
    expect(report.firstDivergence).toBe(0);
    const xml = formatJunit(report);
    expect(xml).toContain('name="unique 4 LOOKUP n1 &quot;&lt;&amp;&gt;&quot; pid 1"');
    expect(xml).not.toMatch(/\u0001/);
    expect(xml).toContain('<property name="server" value="srv -o a&amp;b"/>');
    expect(xml).toMatch(/<failure type="diverged" message="reply differs in error">recorded reply: ENOENT\nlive reply: {5}OK entry\nerror: recorded -2, live 0<\/failure>/);
    expect(formatText(report)).toMatch(/^first divergence: unique 4 LOOKUP/m);
  });

  it('a server that ends during the replay fails it, unless it ended that way when recorded (a reproduced crash)', () => {
    const make = (endReason: string, serverSignal: string | null, live: { signal: NodeJS.Signals | null; code: number | null }) =>
      buildReport(
        {
          plan: { session: { id: 1, name: null, command: ['x'], snaplen: null, endReason, serverExitCode: null, serverSignal }, init: send(2n, Opcode.INIT), events: [], maxLen: 0 },
          argv: ['srv'], timing: 'asap', rules: DEFAULT_RULES,
        },
        {
          results: [], unexpected: [], order: [], sent: 1, interruptLateMs: 0, notifications: { total: 0, matched: 0 }, elided: {},
          server: { ...live, byReplayer: false, early: true, stderr: '' },
        },
      );
    const crash = make('server-crash', 'SIGSEGV', { signal: 'SIGSEGV', code: null });
    expect(crash.ok).toBe(true);
    expect(crash.serverExit.asRecorded).toBe(true);
    expect(formatText(crash)).toMatch(/the server ended during the replay as it did when recorded: SIGSEGV/);
    const other = make('server-crash', 'SIGSEGV', { signal: 'SIGABRT', code: null });
    expect(other.ok).toBe(false);
    expect(formatJunit(other)).toMatch(/<failure type="unexpected"[^>]*>[^<]*the server ended during the replay: SIGABRT/);
    expect(make('unmount', null, { signal: null, code: 0 }).ok).toBe(false);
  });

  it('at the end of the replay the exit status is compared with the recorded one where the recorded end was reproduced', () => {
    type Live = { code: number | null; signal: NodeJS.Signals | null; byReplayer?: boolean; end?: 'enodev' | 'eof' | 'sigterm'; enodevReady?: boolean };
    const make = (endReason: string | null, serverExitCode: number | null, live: Live) =>
      buildReport(
        {
          plan: { session: { id: 1, name: null, command: ['x'], snaplen: null, endReason, serverExitCode, serverSignal: null }, init: send(2n, Opcode.INIT), events: [], maxLen: 0 },
          argv: ['srv'], timing: 'asap', rules: DEFAULT_RULES,
        },
        {
          results: [], unexpected: [], order: [], sent: 1, interruptLateMs: 0, notifications: { total: 0, matched: 0 }, elided: {},
          server: { byReplayer: false, ...live, early: false, stderr: '' },
        },
      );
    // Recorded: unmount, exit 0. Live: ENODEV reached the server, exit 0.
    const same = make('unmount', 0, { code: 0, signal: null, end: 'enodev', enodevReady: true });
    expect(same.ok).toBe(true);
    expect(same.serverExit).toMatchObject({ compared: true, asRecorded: true, recorded: { code: 0, signal: null }, note: null });
    expect(formatText(same)).toMatch(/^the server ended as recorded at the end of the session: exit code 0$/m);
    // A server that now exits 1 (libfuse's "short read on fuse device") fails the replay.
    const worse = make('unmount', 0, { code: 1, signal: null, end: 'eof' });
    expect(worse.ok).toBe(false);
    expect(formatText(worse)).toMatch(/^the server ended with exit code 1 at the end of the session, where the recorded one ended with exit code 0$/m);
    expect(formatJunit(worse)).toMatch(/<failure type="unexpected"[^>]*>the server ended with exit code 1 at the end of the session/);
    // Stopped with SIGTERM after ENODEV did not end it: a difference too.
    expect(make('signal', 0, { code: null, signal: 'SIGTERM', byReplayer: true, end: 'enodev', enodevReady: true }).ok).toBe(false);
    // The preload could not reach the server's reads (Go, static): not comparable, said why, not failing.
    const unreachable = make('unmount', 0, { code: 1, signal: null, end: 'enodev', enodevReady: false });
    expect(unreachable.ok).toBe(true);
    expect(unreachable.serverExit.compared).toBe(false);
    expect(formatText(unreachable)).toMatch(/^the server ended with exit code 1; not compared with the recording: the recorded server read \/dev\/fuse itself/m);
    // Stopped by fusetrace's own signal after the unmount when recorded: not compared either.
    const stopped = buildReport(
      {
        plan: { session: { id: 1, name: null, command: ['x'], snaplen: null, endReason: 'unmount', serverExitCode: null, serverSignal: 'SIGKILL' }, init: send(2n, Opcode.INIT), events: [], maxLen: 0 },
        argv: ['srv'], timing: 'asap', rules: DEFAULT_RULES,
      },
      {
        results: [], unexpected: [], order: [], sent: 1, interruptLateMs: 0, notifications: { total: 0, matched: 0 }, elided: {},
        server: { code: 0, signal: null, byReplayer: false, early: false, stderr: '', end: 'eof' },
      },
    );
    expect(stopped.ok).toBe(true);
    expect(stopped.serverExit.note).toMatch(/fusetrace stopped it \(SIGKILL\)/);
    // Ends the replay cannot produce: the server's own exit, fusetrace killed, an unknown exit status.
    for (const [reason, code] of [['server-exit', 0], [null, null], ['error', 0], ['unmount', null]] as const) {
      const r = make(reason, code, { code: null, signal: 'SIGTERM', byReplayer: true, end: 'sigterm' });
      expect(r.ok).toBe(true);
      expect(r.serverExit.compared).toBe(false);
      expect(r.serverExit.note).toBeTruthy();
    }
  });
});
