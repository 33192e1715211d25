// `fusetrace demo` in a real terminal: the real CLI in a tmux pane (its own session, unique name,
// killed by that name in cleanup), driven with send-keys and read with capture-pane. The demo
// records, cleans up, and opens the TUI on the new session on the alternate screen; `q` quits and
// the shell gets its terminal back.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CleanupRegistry } from './helpers/mount.js';
import { buildForDemo, cleanupAfterDemo, CLI, demoTempDirs, fuseMountsUnder, parseDemoStderr, pidExists } from './demo-helpers.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => buildForDemo(), 180_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A tmux session of our own, 160x48, running a plain shell with a known prompt. */
function tmuxSession() {
  const name = `fusetrace-demo-tui-${process.pid}-${Date.now()}`;
  const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
  const r = tmux('new-session', '-d', '-s', name, '-x', '160', '-y', '48', 'env', 'PS1=e2e$ ', 'TERM=xterm-256color', 'bash', '--norc', '--noprofile');
  if (r.status !== 0) throw new Error(`tmux new-session failed: ${r.stderr}`);
  reg.defer(() => {
    tmux('kill-session', '-t', name);
  });
  const capture = () => tmux('capture-pane', '-p', '-J', '-S', '-', '-t', name).stdout;
  const waitFor = async (what: string, test: (screen: string) => boolean, ms = 30_000): Promise<string> => {
    const until = Date.now() + ms;
    for (;;) {
      const screen = capture();
      if (test(screen)) return screen;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}; screen:\n${screen}`);
      await sleep(100);
    }
  };
  return {
    keys: (...k: string[]) => tmux('send-keys', '-t', name, ...k),
    text: (s: string) => tmux('send-keys', '-t', name, '-l', s),
    capture,
    waitFor,
    alternate: () => tmux('display-message', '-p', '-t', name, '#{alternate_on}').stdout.trim(),
  };
}

describe('fusetrace demo in a real terminal (tmux)', () => {
  it('opens the TUI on the new session and quits with q, leaving nothing behind', async () => {
    const work = reg.tempDir('fusetrace-demo-test-');
    const db = join(work, 'trace.db');
    cleanupAfterDemo(reg, work);
    const t = tmuxSession();
    await t.waitFor('the shell prompt', (s) => s.includes('e2e$'));
    t.text(`TMPDIR=${work} node ${CLI} --db ${db} demo; echo EXIT=$?`);
    t.keys('Enter');

    // The TUI on the alternate screen, on the demo session, its requests listed.
    const screen = await t.waitFor('the TUI on session 1', (s) => /fusetrace +session 1 "demo"/.test(s) && /row 1 of \d+/.test(s));
    expect(t.alternate()).toBe('1');
    expect(screen).toMatch(/INIT +.*ok/);
    expect(screen).toMatch(/LOOKUP +\/hello\.txt/);

    t.keys('q');
    const after = await t.waitFor('the shell again', (s) => /EXIT=\d+/.test(s));
    expect(t.alternate()).toBe('0');
    expect(after).toContain('EXIT=0');
    // The progress lines were written before the TUI took the screen, and are back with the main screen.
    const { tempDir, pids } = parseDemoStderr(after);
    expect(tempDir.startsWith(`${work}/fusetrace-demo-`)).toBe(true);
    expect(existsSync(tempDir)).toBe(false);
    expect(demoTempDirs(work)).toEqual([]);
    expect(fuseMountsUnder(tempDir)).toEqual([]);
    for (const pid of pids) expect(pidExists(pid), `pid ${pid} still exists`).toBe(false);
  }, 90_000);
});
