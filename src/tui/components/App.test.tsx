import React from 'react';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, render } from 'ink-testing-library';
import { openTraceDb } from '../../store/db.js';
import { TuiSource } from '../data.js';
import { App } from './App.js';
import { writeTuiFixture, type TuiFixture } from '../session.fixture.js';

let fx: TuiFixture;
let source: TuiSource;

beforeAll(() => {
  fx = writeTuiFixture({ lookups: 40 });
  source = new TuiSource(openTraceDb(fx.file, { readonly: true }));
});
afterAll(() => {
  source.db.close();
  fx.remove();
});
afterEach(() => cleanup());

/** Lets effects, the chunked count (setImmediate) and Ink's render throttle run. */
const settle = (ms = 60) => new Promise((r) => setTimeout(r, ms));
const ESC = '\x1b';
const ENTER = '\r';

async function start(session: number | null = null) {
  const app = render(<App source={source} session={session} columns={150} rows={30} />);
  await settle();
  const type = async (...keys: string[]) => {
    for (const k of keys) {
      app.stdin.write(k);
      await settle(40);
    }
    await settle();
    return app.lastFrame() ?? '';
  };
  return { app, type, frame: () => app.lastFrame() ?? '' };
}

/** The table lines of a frame (between the header line and the status line). */
const tableLines = (frame: string) => frame.split('\n').filter((l) => /^\s+\d+\.\d{6}\s/.test(l));

describe('tui App (ink-testing-library)', () => {
  it('shows the sessions with headline numbers and opens one with Enter', async () => {
    const { frame, type } = await start();
    expect(frame()).toMatch(/1 fixture .* 47 +1 +1 +0 +0 +1 unmount +interrupt_fs -f \/mnt\/fx/);
    const f = await type(ENTER);
    expect(f).toContain('row 1 of 47');
    expect(tableLines(f)[3]).toMatch(/8 READ +\/data\.txt +4242 cat +2\.20ms EINTR +interrupted \(eintr\)/);
  });

  it('moves with j/k/G/g and shows the position', async () => {
    const { type } = await start(fx.session);
    expect(await type('j', 'j', 'j')).toContain('row 4 of 47');
    expect(await type('G')).toContain('row 47 of 47');
    const last = await type('k');
    expect(last).toContain('row 46 of 47');
    expect(await type('g')).toContain('row 1 of 47');
  });

  it('filters with / and shows a parse error with a caret at its column', async () => {
    const { type } = await start(fx.session);
    let f = await type('/', 'op = READ', ENTER);
    const lines = f.split('\n');
    const bar = lines.findIndex((l) => l.startsWith('filter> op = READ'));
    expect(bar).toBeGreaterThan(0);
    // '=' is column 4 of the expression; the caret sits under it, after the 8-column prompt.
    expect(lines[bar + 1]).toMatch(/^ {11}\^ '=' is not an operator at column 4/);
    f = await type('\x15', 'state==interrupted', ENTER);
    expect(f).toContain('filter: (state==interrupted)');
    expect(f).toContain('row 1 of 1');
    expect(tableLines(f)).toHaveLength(1);
  });

  it('opens the detail pane of the interrupted READ with its INTERRUPT frame and hex dump', async () => {
    const { type } = await start(fx.session);
    await type('/', 'op==READ && state==interrupted', ENTER);
    let f = await type(ENTER);
    expect(f).toContain('unique 8  READ  EINTR  state interrupted (eintr)');
    expect(f).toMatch(/\+2\.00ms +frame 7 +rx 9 INTERRUPT n0 unique 8/);
    expect(f).toMatch(/\+2\.20ms +frame 8 +tx 8 EINTR/);
    // Scroll down to the hex dump of the request.
    f = await type('G');
    expect(f).toMatch(/00000000 {2}50 00 00 00 0f 00 00 00 {2}08 00 00 00 00 00 00 00/);
    const bottom = f.split('\n');
    const up = (await type('k')).split('\n');
    // One line up: the pane's lines move down by one.
    const at = bottom.findIndex((l) => /00000000 {2}50 00 00 00 0f/.test(l));
    expect(up[at + 1]).toBe(bottom[at]);
    f = await type(ESC);
    expect(f).not.toContain('frames of this request');
  });

  it('quick toggles: errors only, then interrupted/late/unanswered/aborted only', async () => {
    const { type } = await start(fx.session);
    let f = await type('x');
    expect(tableLines(f).map((l) => l.trim().split(/\s+/)[2])).toEqual(['READ', 'GETATTR']);
    f = await type('x', 'i');
    expect(f).toContain('state in {interrupted late unanswered aborted}');
    expect(tableLines(f).map((l) => l.match(/(interrupted|aborted)/)?.[1])).toEqual(['interrupted', 'aborted']);
  });

  it('follows the READ\'s fh to the OPEN that handed it out, and lists requests on the same nodeid', async () => {
    const { type } = await start(fx.session);
    await type('j', 'j', 'j');
    let f = await type('o');
    expect(f).toContain('unique 6  OPEN  OK');
    expect(f).toMatch(/tx 6 OK open fh 3/);
    f = await type(ESC, 'n');
    expect(f).toContain('filter: (nodeid==7)');
    expect(tableLines(f).map((l) => l.trim().split(/\s+/)[2])).toEqual(['OPEN', 'READ', 'GETATTR', 'FORGET', 'READ']);
  });

  it('shows what was in flight at a request\'s start', async () => {
    const { type } = await start(fx.session);
    await type('/', 'unique==8', ENTER, 'c');
    const f = await type('j', 'j', 'j', 'w');
    expect(f).toMatch(/in flight at 0\.001080s \(unique 8\)/);
    expect(tableLines(f)).toHaveLength(1);
  });

  it('sorts by duration, slowest first', async () => {
    const { type } = await start(fx.session);
    const f = await type('s');
    expect(f).toContain('sort: duration');
    expect(tableLines(f)[0]).toMatch(/LOOKUP +\/file20 .* 25\.0ms/);
  });

  it('stats view: per-op percentiles, histogram and timeline', async () => {
    const { type } = await start(fx.session);
    const f = await type('3');
    expect(f).toMatch(/LOOKUP +41 +0 /);
    expect(f).toContain('latency histogram');
    expect(f).toMatch(/rate +[ ▁▂▃▄▅▆▇█]+ max/);
    expect(f).toMatch(/in flight +[ ▁▂▃▄▅▆▇█]+ max/);
  });

  it('? lists the keys from the keymap; R asks for a server command and reports a bad one', async () => {
    const { type } = await start(fx.session);
    let f = await type('?');
    expect(f).toMatch(/j ↓ +next row/);
    expect(f).toMatch(/o +follow: jump to where the nodeid/);
    f = await type('?', 'R');
    expect(f).toContain('replay against server>');
    f = await type('/nonexistent/fs -f', ENTER);
    await settle(200);
    expect(f + (await type())).toContain('server not found or not executable: /nonexistent/fs');
  });

  it('live mode re-reads the counts of a session being written', async () => {
    const live = writeTuiFixture({ lookups: 5, name: 'live' });
    const src = new TuiSource(openTraceDb(live.file, { readonly: true }));
    const writer = openTraceDb(live.file);
    try {
      const app = render(<App source={src} session={live.session} live columns={150} rows={30} />);
      await settle(100);
      expect(app.lastFrame()).toContain('row 1 of 12');
      // The recorder commits one more request (a copy of the last one under a new seq and unique).
      writer.exec(`INSERT INTO requests SELECT session, seq + 1000, unique_id + 1000, opcode, nodeid, fh, path, pid, comm, uid, gid,
        start_ns + 1000000, fwd_ns, reply_ns, dur_ns, errno, len, reply_len, state, outcome, background, reply_seq, interrupt_seq
        FROM requests WHERE seq = (SELECT max(seq) FROM requests)`);
      await settle(1500);
      expect(app.lastFrame()).toContain('row 1 of 13');
      expect(app.lastFrame()).toContain('[live]');
    } finally {
      writer.close();
      src.db.close();
      live.remove();
    }
  });
});
