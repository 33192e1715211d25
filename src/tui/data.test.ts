import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTraceDb } from '../store/db.js';
import { queryRequests, type RequestRow } from '../store/query.js';
import { TuiSource, type ListQuery } from './data.js';
import { detailLines } from './detail.js';
import { writeTuiFixture, type TuiFixture } from './session.fixture.js';

let fx: TuiFixture;
let source: TuiSource;
const all: ListQuery = { filter: '', sort: 'time', scope: null };

beforeAll(() => {
  fx = writeTuiFixture();
  source = new TuiSource(openTraceDb(fx.file, { readonly: true }));
});
afterAll(() => {
  source.db.close();
  fx.remove();
});

describe('TuiSource on a ledger built from real frames', () => {
  it('lists the session with per-state headline numbers', () => {
    const [s] = source.sessions();
    expect(s!.id).toBe(fx.session);
    expect(s!.command).toBe('interrupt_fs -f /mnt/fx');
    expect(s!.states.interrupted).toBe(1);
    expect(s!.states.error).toBe(1);
    expect(s!.states.aborted).toBe(1);
    expect(s!.requests).toBe(source.count(fx.session, all));
  });

  it('pages the list in time order, from either end', () => {
    const total = source.count(fx.session, all);
    const first = source.page(fx.session, all, 0, 5);
    expect(first.map((r) => r.op)).toEqual(['INIT', 'LOOKUP', 'OPEN', 'READ', 'GETATTR']);
    const fromStart = source.page(fx.session, all, total - 4, 4);
    const fromEnd = source.page(fx.session, all, total - 4, 4, total);
    expect(fromEnd.map((r) => r.seq)).toEqual(fromStart.map((r) => r.seq));
    expect(fromEnd[3]!.unique).toBe(Number(fx.uniques.abortedRead));
  });

  it('counts in chunks and filters with the shared filter language', () => {
    const q = { ...all, filter: 'state==interrupted' };
    expect(source.count(fx.session, q)).toBe(1);
    const [r] = source.page(fx.session, q, 0, 10);
    expect(r!.unique).toBe(Number(fx.uniques.interruptedRead));
    expect(r!.err).toBe('EINTR');
    expect(() => source.count(fx.session, { ...all, filter: 'op == && x' })).toThrow(/column 7/);
  });

  it('sorts by duration, slowest first, and finds a row\'s index in that order', () => {
    const q = { ...all, sort: 'dur' as const };
    const [slowest] = source.page(fx.session, q, 0, 1);
    expect(slowest!.unique).toBe(Number(fx.uniques.slowLookup));
    const rows = source.page(fx.session, q, 0, 100);
    for (const [i, r] of rows.entries()) expect(source.indexOf(fx.session, q, r.seq)).toBe(i);
  });

  it('shows the INTERRUPT frame and the EINTR reply in the detail of the interrupted READ', () => {
    const [r] = source.page(fx.session, { ...all, filter: 'state==interrupted' }, 0, 1);
    const d = source.detail(fx.session, r!.seq)!;
    expect(d.interrupts).toHaveLength(1);
    expect(d.interrupts[0]!.opcode).toBe(36);
    expect(d.reply!.error).toBe(-4);
    const text = detailLines(d).map((l) => l.text).join('\n');
    expect(text).toMatch(/INTERRUPT: frame \d+, read from \/dev\/fuse/);
    expect(text).toContain('fuse_interrupt_in.unique');
    expect(text).toContain('EINTR');
    expect(text).toContain('fuse_read_in.fh');
    expect(text).toMatch(/^ {2}00000000 {2}/m);
  });

  it('follows an fh and a nodeid back to the OPEN and LOOKUP replies that handed them out', () => {
    const [read] = source.page(fx.session, { ...all, filter: 'state==interrupted' }, 0, 1);
    const fromFh = source.origin(fx.session, read!, 'fh');
    expect('seq' in fromFh && source.request(fx.session, fromFh.seq)!.op).toBe('OPEN');
    const fromNode = source.origin(fx.session, read!, 'nodeid');
    expect('seq' in fromNode && source.request(fx.session, fromNode.seq)!.unique).toBe(Number(fx.uniques.lookup));
  });

  it('lists what was in flight when a request was read', () => {
    const [read] = source.page(fx.session, { ...all, filter: `unique==${fx.uniques.interruptedRead}` }, 0, 1);
    // Nothing else overlaps the READ in the fixture: it is in flight alone at its own start.
    const q = { ...all, scope: { kind: 'inflight' as const, atNs: read!.start_ns, unique: '8' } };
    expect(source.page(fx.session, q, 0, 10).map((r) => r.unique)).toEqual([8]);
  });

  it('draws a histogram and a timeline from SQL aggregates', () => {
    const h = source.histogram(fx.session, '');
    expect(h.reduce((a, b) => a + b.count, 0)).toBe(source.count(fx.session, { ...all, filter: 'dur' }));
    const tl = source.timeline(fx.session, '', 20);
    expect(tl).toHaveLength(20);
    expect(tl.reduce((a, b) => a + b.started, 0)).toBe(source.count(fx.session, all));
  });
});

describe('TuiSource.page picks an index per list but always returns the list order', () => {
  it('matches a plain ORDER BY for every filter, sort and offset, from either end', () => {
    const big = writeTuiFixture({ lookups: 200 });
    const db = openTraceDb(big.file, { readonly: true });
    try {
      // Default plans, and with every filtered list by duration scanning the primary key.
      for (const src of [new TuiSource(db), new TuiSource(db, { walkMaxLookups: 0 })]) {
        const filters = ['', 'err', 'op==LOOKUP', 'op==READ', 'state==interrupted', 'state in {ok error}', 'unique==8', 'path ~ "/file1*"', 'dur>40us'];
        for (const filter of filters) {
          for (const sort of ['time', 'dur'] as const) {
            const q: ListQuery = { filter, sort, scope: null };
            // The list order, by hand: time (start_ns, seq) or slowest first (dur_ns DESC, unanswered last, seq DESC).
            const byDur = (a: RequestRow, b: RequestRow): number =>
              a.dur_ns === b.dur_ns ? b.seq - a.seq : a.dur_ns === null ? 1 : b.dur_ns === null ? -1 : b.dur_ns - a.dur_ns;
            const byTime = (a: RequestRow, b: RequestRow): number => a.start_ns - b.start_ns || a.seq - b.seq;
            const expected = queryRequests(db, big.session, { filter }).sort(sort === 'time' ? byTime : byDur).map((r) => r.seq);
            const total = src.count(big.session, q);
            expect(total, filter).toBe(expected.length);
            for (const offset of [0, 3, Math.floor(total / 2) + 1, Math.max(0, total - 7)]) {
              const got = src.page(big.session, q, offset, 7, total).map((r) => r.seq);
              expect(got, `${filter} ${sort} @${offset}`).toEqual(expected.slice(offset, offset + 7));
            }
            for (const seq of expected.slice(0, 5)) expect(src.indexOf(big.session, q, seq)).toBe(expected.indexOf(seq));
          }
        }
      }
    } finally {
      db.close();
      big.remove();
    }
  });
});

describe('resolveSession', () => {
  it('takes an id or a name, opens the only session by default, and names the sessions when it fails', async () => {
    const { resolveSession } = await import('./run.js');
    expect(resolveSession(source, undefined)).toBe(fx.session);
    expect(resolveSession(source, 'fixture')).toBe(fx.session);
    expect(resolveSession(source, String(fx.session))).toBe(fx.session);
    expect(() => resolveSession(source, 'nope')).toThrow(/no session nope in the trace file \(sessions: 1 \(fixture\)\)/);
  });
});

describe('follow: nodeids handed out by READDIRPLUS', () => {
  it('finds the READDIRPLUS reply that named the nodeid of a later GETATTR', () => {
    const d = writeTuiFixture({ lookups: 3, readdirplus: true });
    const db = openTraceDb(d.file, { readonly: true });
    try {
      const src = new TuiSource(db);
      const [getattr] = src.page(d.session, { filter: 'nodeid==300', sort: 'time', scope: null }, 0, 5);
      expect(getattr!.op).toBe('GETATTR');
      const o = src.origin(d.session, getattr!, 'nodeid');
      expect('seq' in o && src.request(d.session, o.seq)!.op).toBe('READDIRPLUS');
      const none = src.origin(d.session, { ...getattr!, nodeid: 999 }, 'nodeid');
      expect(none).toEqual({ reason: 'no reply before this request handed out nodeid 999 (was it recorded?)' });
    } finally {
      db.close();
      d.remove();
    }
  });
});
