// Issue 12 item 8: `show --json`, `show --frames` and `export` stream a whole session in bounded
// memory. A synthetic session with real frames (src/store/fixture.ts addFramedSession) is read by
// the real CLI under GNU time, which reports the process's peak RSS. Measured on a 1,000,000-request
// session (README, Troubleshooting): show --json 160 MB, export 105 MB; the suite uses 50,000
// requests to stay quick, with the same bound.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTraceDb } from '../store/db.js';
import { addFramedSession } from '../store/requests.fixture.js';
import { compileDist } from '../../test/helpers/dist.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'fusetrace.js');
const REQUESTS = 50_000;
const RSS_LIMIT_KB = 300 * 1024;

let dir: string;
let file: string;

beforeAll(() => {
  compileDist();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusetrace-memory-'));
  file = path.join(dir, 'big.db');
  const db = openTraceDb(file, { create: true });
  addFramedSession(db, REQUESTS);
  db.close();
}, 120_000);
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI with stdout to a file; returns its peak RSS in KiB (GNU time %M) and the output's line count. */
function peak(args: string[]): { kb: number; lines: number } {
  const out = path.join(dir, 'out');
  const fd = fs.openSync(out, 'w');
  const r = spawnSync('/usr/bin/time', ['-f', 'RSS %M', process.execPath, BIN, '--db', file, ...args], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
  fs.closeSync(fd);
  expect(r.status, r.stderr).toBe(0);
  const kb = Number(/RSS (\d+)/.exec(r.stderr)?.[1]);
  let lines = 0;
  const buf = fs.readFileSync(out);
  for (const b of buf) if (b === 10) lines++;
  return { kb, lines };
}

describe('whole-session commands stream in bounded memory (issue 12 item 8)', () => {
  it('show --json decodes every request with its frames under the bound', () => {
    const r = peak(['show', '--json']);
    expect(r.lines).toBe(REQUESTS);
    expect(r.kb).toBeGreaterThan(0);
    expect(r.kb).toBeLessThan(RSS_LIMIT_KB);
  }, 300_000);

  it('export (jsonl and perfetto) under the bound', () => {
    const j = peak(['export', '--format', 'jsonl']);
    expect(j.lines).toBe(REQUESTS);
    expect(j.kb).toBeLessThan(RSS_LIMIT_KB);
    const p = peak(['export', '--format', 'perfetto']);
    expect(p.lines).toBeGreaterThan(0);
    expect(p.kb).toBeLessThan(RSS_LIMIT_KB);
  }, 300_000);
});
