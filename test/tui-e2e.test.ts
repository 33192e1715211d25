// End-to-end test of `fusetrace tui` in a real terminal: a session recorded by the real
// `fusetrace record` (interrupt_fs under it, a reader SIGINTed in the middle of a READ), then the
// real CLI (node bin/fusetrace.js, from dist/) run in a tmux pane driven with send-keys and read
// with capture-pane. The tmux session has a unique name and is killed by that name in cleanup;
// mounts and processes are registered with a CleanupRegistry (never a lazy unmount).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { requireFuse, repoRoot } from './helpers/fuse-env.js';
import { buildServer } from './helpers/build.js';
import { CleanupRegistry, isMounted, runCommand, unmount, waitExit } from './helpers/mount.js';
import { buildCli, CLI } from './helpers/record.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());

const ROOT = repoRoot();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(() => {
  requireFuse();
  buildCli();
}, 180_000);

/** Records interrupt_fs while sigread reads slow_eintr and gets SIGINT 200 ms in; returns the trace file. */
async function recordInterruptedRead(): Promise<string> {
  const work = reg.tempDir('fusetrace-tui-e2e-');
  const mnt = reg.mountpoint();
  const db = join(work, 'trace.db');
  const logPath = join(work, 'record.log');
  const fd = openSync(logPath, 'w');
  const child = spawn(process.execPath, [CLI, '--db', db, 'record', '--', buildServer('interrupt_fs'), '-f', '--delay-ms=300', '--wait-ms=10000', mnt], {
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  reg.process(child);
  const exited = waitExit(child);
  const deadline = Date.now() + 15_000;
  while (!isMounted(mnt)) {
    if (child.exitCode !== null) throw new Error(`fusetrace record exited early:\n${readFileSync(logPath, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`no mount after 15 s:\n${readFileSync(logPath, 'utf8')}`);
    await sleep(20);
  }
  await stat(mnt);
  const r = spawnSync(buildServer('sigread'), [join(mnt, 'slow_eintr'), '200'], { encoding: 'utf8', timeout: 20_000 });
  expect(r.stdout.trim()).toMatch(/^error EINTR/);
  expect(readFileSync(join(mnt, 'data'), 'utf8')).toMatch(/^generation/);
  expect(spawnSync('umount', [mnt]).status).toBe(0);
  await exited;
  // The request ledger is filled by record itself, live.
  const h = new Database(db);
  try {
    const session = h.prepare('SELECT max(id) FROM sessions').pluck().get() as number;
    expect(h.prepare("SELECT count(*) FROM requests WHERE session = ? AND state = 'interrupted'").pluck().get(session)).toBe(1);
    h.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    h.close();
  }
  return db;
}

/** A tmux session of our own, 160x48, running a plain shell with a known prompt. */
function tmuxSession(tag: string) {
  const name = `fusetrace-tui-${tag}-${process.pid}-${Date.now()}`;
  const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
  const r = tmux('new-session', '-d', '-s', name, '-x', '160', '-y', '48', 'env', 'PS1=e2e$ ', 'TERM=xterm-256color', 'bash', '--norc', '--noprofile');
  if (r.status !== 0) throw new Error(`tmux new-session failed: ${r.stderr}`);
  reg.defer(() => {
    tmux('kill-session', '-t', name);
  });
  const capture = () => tmux('capture-pane', '-p', '-t', name).stdout;
  const waitFor = async (what: string, test: (screen: string) => boolean, ms = 10_000): Promise<string> => {
    const until = Date.now() + ms;
    for (;;) {
      const screen = capture();
      if (test(screen)) return screen;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}; screen:\n${screen}`);
      await sleep(50);
    }
  };
  return {
    name,
    keys: (...k: string[]) => tmux('send-keys', '-t', name, ...k),
    text: (s: string) => tmux('send-keys', '-t', name, '-l', s),
    capture,
    waitFor,
    alternate: () => tmux('display-message', '-p', '-t', name, '#{alternate_on}').stdout.trim(),
  };
}

/** Saves a screen for the README (docs/tui-*.txt) when UPDATE_DOCS is set. */
function saveCapture(name: string, screen: string): void {
  // Blank screen rows between the list and the status line are collapsed to one.
  if (process.env.UPDATE_DOCS) writeFileSync(join(ROOT, 'docs', `tui-${name}.txt`), screen.replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n');
}

/** The captures in the order docs/tui-views.md shows them, with what each one is. */
const VIEWS: Array<[string, string]> = [
  ['sessions', 'Sessions view (`1`): the sessions in the file with their headline numbers; Enter opens one.'],
  ['requests', 'Requests view (`2`): one line per request, coloured by lifecycle state; only the rows on screen are read from SQLite.'],
  ['filter-error', 'Filter bar (`/`): a mistake is shown under the expression, the caret at its column.'],
  ['detail', 'Detail pane (Enter): the frames of the request (here the READ, the FUSE_INTERRUPT naming it, the EINTR reply), then every field decoded.'],
  ['detail-hex', 'The end of the detail pane (`G`): hex dumps of the raw frames.'],
  ['stats', 'Stats view (`3`): per-opcode counts and percentiles, latency histogram, timeline of request rate and in-flight count.'],
  ['replay', 'Replay (`R`): the session replayed against a server command, no mount needed.'],
  ['help', 'Keys (`?`), from src/tui/keymap.ts (also in docs/keymap.md).'],
];

/** docs/tui-views.md: every capture, for the README to link or include. */
function writeViewsDoc(): void {
  if (!process.env.UPDATE_DOCS) return;
  let md = '# fusetrace tui, view by view\n\nCaptured from a real terminal (tmux capture-pane) by test/tui-e2e.test.ts (`UPDATE_DOCS=1`), on a session recorded from test/servers/interrupt_fs with a reader SIGINTed during a READ.\n';
  for (const [name, what] of VIEWS) {
    md += `\n## ${what}\n\n\`\`\`\n${readFileSync(join(ROOT, 'docs', `tui-${name}.txt`), 'utf8')}\`\`\`\n`;
  }
  writeFileSync(join(ROOT, 'docs', 'tui-views.md'), md);
}

describe('fusetrace tui in a real terminal (tmux)', () => {
  it('opens a recorded session, filters with /, shows the INTERRUPT frame in the detail pane, replays it, quits with q and restores the terminal', async () => {
    const db = await recordInterruptedRead();
    const t = tmuxSession('e2e');
    await t.waitFor('the shell prompt', (s) => s.includes('e2e$'));
    t.text('echo BEFORE-THE-TUI');
    t.keys('Enter');
    await t.waitFor('the marker', (s) => s.includes('\nBEFORE-THE-TUI'));
    t.text(`node ${CLI} tui --db ${db}; echo EXIT=$?`);
    t.keys('Enter');

    // One session in the file: it opens at once, on the requests view.
    let screen = await t.waitFor('the requests view', (s) => /row 1 of \d+/.test(s) && s.includes('fusetrace  session 1'));
    expect(t.alternate()).toBe('1');
    expect(screen).toMatch(/INIT +.*ok/);
    expect(screen).toMatch(/READ +\/slow_eintr +\d+ server-sigread .* EINTR +interrupted \(eintr\)/);
    saveCapture('requests', screen);

    t.keys('1');
    saveCapture('sessions', await t.waitFor('the sessions view', (s) => /started \(UTC\)/.test(s) && /interrupt_fs/.test(s)));
    t.keys('Enter');
    await t.waitFor('the requests view again', (s) => /row 1 of \d+/.test(s));

    t.keys('/');
    await t.waitFor('the filter bar', (s) => s.includes('filter>'));
    t.text('op==READ && state=interrupted');
    t.keys('Enter');
    screen = await t.waitFor('the filter error', (s) => s.includes("'=' is not an operator"));
    // The caret sits under the offending '=' (column 26 of the expression, after 'filter> ').
    const lines = screen.split('\n');
    const bar = lines.findIndex((l) => l.startsWith('filter> op==READ && state=interrupted'));
    expect(lines[bar + 1]!.indexOf('^')).toBe('filter> '.length + 'op==READ && state'.length);
    saveCapture('filter-error', screen);
    t.keys('C-u');
    await t.waitFor('an empty filter bar', (s) => !s.includes('filter> op==READ'));
    t.text('op==READ && state==interrupted');
    t.keys('Enter');
    screen = await t.waitFor('the filtered list', (s) => s.includes('filter: (op==READ && state==interrupted)') && s.includes('row 1 of 1'));
    expect(screen).toMatch(/READ +\/slow_eintr .* interrupted \(eintr\)/);

    t.keys('Enter');
    screen = await t.waitFor('the detail pane', (s) => s.includes('frames of this request'));
    // The lifecycle: the READ, the kernel's FUSE_INTERRUPT naming it, the server's EINTR reply.
    const intr = screen.match(/\+\S+ +frame (\d+) +rx (\d+) INTERRUPT n0 unique (\d+)/);
    expect(intr, screen).not.toBeNull();
    expect(BigInt(intr![2]!)).toBe(BigInt(intr![3]!) | 1n);
    expect(screen).toMatch(new RegExp(`tx ${intr![3]} EINTR`));
    expect(screen).toMatch(/unique \d+ {2}READ {2}EINTR {2}state interrupted \(eintr\)/);
    saveCapture('detail', screen);
    t.keys('G');
    saveCapture('detail-hex', await t.waitFor('the hex dump', (s) => /hex: INTERRUPT/.test(s) || /^ {2}00000000 {2}/m.test(s)));

    t.keys('Escape');
    t.keys('c');
    await t.waitFor('the whole list', (s) => s.includes('filter: (none)'));
    t.keys('3');
    saveCapture('stats', await t.waitFor('the stats view', (s) => s.includes('latency histogram') && s.includes('in flight')));
    t.keys('?');
    saveCapture('help', await t.waitFor('the key list', (s) => s.includes('keys (? or Esc to close)')));
    t.keys('?');

    // R: replay the session against the same server, no mount; the report replaces the list.
    t.keys('R');
    await t.waitFor('the server prompt', (s) => s.includes('replay against server>'));
    t.text(`${buildServer('interrupt_fs')} -f --delay-ms=300 --wait-ms=10000`);
    t.keys('Enter');
    screen = await t.waitFor('the replay report', (s) => /^result: /m.test(s), 60_000);
    expect(screen).toMatch(/requests replayed \d+, compared \d+: matched \d+, diverged 0/);
    expect(screen).toContain('result: all replies matched');
    saveCapture('replay', screen);
    t.keys('Escape');
    await t.waitFor('the requests view after the replay', (s) => /row \d+ of \d+/.test(s));

    t.keys('q');
    screen = await t.waitFor('the shell after q', (s) => s.includes('EXIT=0'));
    expect(t.alternate()).toBe('0');
    // The pre-TUI screen is back: the marker and the command line, no TUI frame left over.
    expect(screen).toContain('\nBEFORE-THE-TUI');
    expect(screen).not.toContain('fusetrace  session');
    expect(screen.trimEnd().split('\n').at(-1)).toBe('e2e$');
    writeViewsDoc();
  });

  it('restores the terminal and prints one line when the TUI dies of an error or a signal', async () => {
    const dir = reg.tempDir('fusetrace-tui-e2e-');
    const { writeTuiFixture } = await import('../src/tui/session.fixture.js');
    const fx = writeTuiFixture();
    reg.defer(() => fx.remove());
    // A trace file that passes the format checks but lost its requests table: the first query in
    // a render throws, inside Ink.
    const broken = join(dir, 'broken.db');
    copyFileSync(fx.file, broken);
    const h = new Database(broken);
    h.exec('DROP TABLE requests');
    h.close();

    const t = tmuxSession('err');
    await t.waitFor('the shell prompt', (s) => s.includes('e2e$'));
    t.text(`node ${CLI} tui --db ${broken}; echo EXIT=$?`);
    t.keys('Enter');
    let screen = await t.waitFor('the exit status', (s) => /EXIT=\d+/.test(s));
    expect(t.alternate()).toBe('0');
    expect(screen).toMatch(/fusetrace tui: internal error: no such table: requests\nEXIT=70/);
    expect(screen).not.toContain('fusetrace  session');

    t.keys('C-l');
    t.text(`node ${CLI} tui --db ${fx.file}; echo EXIT=$?`);
    t.keys('Enter');
    await t.waitFor('the TUI', (s) => /row 1 of \d+/.test(s));
    expect(t.alternate()).toBe('1');
    // SIGTERM the TUI (the shell's child: a process this test started, found by PID).
    const shellPid = spawnSync('tmux', ['display-message', '-p', '-t', t.name, '#{pane_pid}'], { encoding: 'utf8' }).stdout.trim();
    const kids = readFileSync(`/proc/${shellPid}/task/${shellPid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(kids).toHaveLength(1);
    process.kill(kids[0]!, 'SIGTERM');
    screen = await t.waitFor('the exit status', (s) => /EXIT=\d+/.test(s));
    expect(t.alternate()).toBe('0');
    expect(screen).toMatch(/EXIT=143/);
  });

  it('refuses to start without a terminal, and names the sessions when SESSION is wrong', async () => {
    const { writeTuiFixture } = await import('../src/tui/session.fixture.js');
    const fx = writeTuiFixture();
    reg.defer(() => fx.remove());
    const piped = spawnSync(process.execPath, [CLI, 'tui', '--db', fx.file], { encoding: 'utf8', timeout: 20_000 });
    expect(piped.status).toBe(2);
    expect(piped.stderr).toBe('fusetrace: tui needs a terminal: stdin and stdout must be a tty (for scripts use show, stats or export)\n');
    const t = tmuxSession('args');
    await t.waitFor('the shell prompt', (s) => s.includes('e2e$'));
    t.text(`node ${CLI} tui --db ${fx.file} 7; echo EXIT=$?`);
    t.keys('Enter');
    const screen = await t.waitFor('the exit status', (s) => /EXIT=\d+/.test(s));
    expect(screen).toMatch(/fusetrace: no session 7 in the trace file \(sessions: 1 \(fixture\)\)\nEXIT=2/);
    expect(t.alternate()).toBe('0');
  });
  it('works on a trace on a read-only file system: the TUI opens it and replays from it, and so does `replay` (issue 12)', async () => {
    const db = await recordInterruptedRead();
    // A tmpfs holding a copy of the trace (no -wal, no -shm: checkpointed above), remounted read-only.
    const ro = reg.tempDir('fusetrace-tui-ro-');
    const m = await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'fusetrace-test-ro', ro]);
    expect(m.code, m.stderr).toBe(0);
    reg.defer(async () => {
      await unmount(ro);
    });
    const file = join(ro, 'trace.db');
    copyFileSync(db, file);
    const r = await runCommand('mount', ['-o', 'remount,ro', ro]);
    expect(r.code, r.stderr).toBe(0);

    const t = tmuxSession('ro');
    await t.waitFor('the shell prompt', (s) => s.includes('e2e$'));
    t.text(`node ${CLI} tui --db ${file} 2>/dev/null; echo EXIT=$?`);
    t.keys('Enter');
    let screen = await t.waitFor('the requests view', (s) => /row 1 of \d+/.test(s) && s.includes('fusetrace  session 1'));
    expect(screen).toMatch(/READ +\/slow_eintr +\d+ server-sigread .* EINTR +interrupted \(eintr\)/);
    t.keys('R');
    await t.waitFor('the server prompt', (s) => s.includes('replay against server>'));
    t.text(`${buildServer('interrupt_fs')} -f --delay-ms=300 --wait-ms=10000`);
    t.keys('Enter');
    screen = await t.waitFor('the replay report', (s) => /^result: /m.test(s), 60_000);
    expect(screen).toContain('result: all replies matched');
    t.keys('Escape');
    await t.waitFor('the requests view after the replay', (s) => /row \d+ of \d+/.test(s));
    t.keys('q');
    await t.waitFor('the shell after q', (s) => s.includes('EXIT=0'));

    const cli = spawnSync(process.execPath, [CLI, '--db', file, 'replay', '--', buildServer('interrupt_fs'), '-f', '--delay-ms=300', '--wait-ms=10000'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('result: all replies matched');
    // Nothing was written next to it (it could not be), and the file is unchanged.
    expect(readFileSync(file).equals(readFileSync(db))).toBe(true);
  });
});
