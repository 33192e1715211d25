// `fusetrace record --tui` in a real terminal (tmux): the live TUI opens on the new session while
// the server runs, shows requests as they happen, and quitting it ends the recording cleanly
// (unmounted, trace committed, exit 0, the terminal back). The tmux session has a unique name and
// is killed by that name; mounts and temp dirs go through the CleanupRegistry.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { requireFuse, repoRoot } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry, isMounted } from './helpers/mount.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
const CLI = join(repoRoot(), 'bin', 'fusetrace.js');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(() => requireFuse());

function tmux(...args: string[]): string {
  const r = spawnSync('tmux', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function waitFor(what: string, pred: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('fusetrace record --tui', () => {
  it('shows the live session, and q ends the recording with the mount gone', async () => {
    const work = reg.tempDir('fusetrace-rectui-');
    const mnt = reg.mountpoint();
    const db = join(work, 'trace.db');
    const status = join(work, 'status');
    const name = `fusetrace-rectui-${process.pid}-${Date.now()}`;
    // TMPDIR: the server log record --tui writes lands in our temp dir and goes with it.
    const cmd = `TMPDIR=${work} ${process.execPath} ${CLI} --db ${db} record --tui -- ${buildExample('hello')} -f ${mnt}; echo $? > ${status}; exec sleep 60`;
    tmux('new-session', '-d', '-s', name, '-x', '150', '-y', '30', cmd);
    reg.defer(() => void spawnSync('tmux', ['kill-session', '-t', name]));
    const screen = () => tmux('capture-pane', '-p', '-t', name);
    await waitFor('the mount', () => isMounted(mnt));
    await waitFor('the live TUI', () => /session 1 .*\[live\]/.test(screen()));
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    // Live: the rows appear without a key press.
    await waitFor('the READ row', () => /READ\s+\/hello\s+\d+ /.test(screen()));
    expect(screen()).toMatch(/LOOKUP\s+\/hello/);
    tmux('send-keys', '-t', name, 'q');
    await waitFor('fusetrace to exit', () => {
      try {
        return readFileSync(status, 'utf8').trim() !== '';
      } catch {
        return false;
      }
    });
    expect(readFileSync(status, 'utf8').trim()).toBe('0');
    expect(isMounted(mnt)).toBe(false);
    const after = screen();
    expect(after).toMatch(/fusetrace: session 1 in .*ended by signal/);
    expect(after).toContain(`the server's output is in ${work}/fusetrace-server-`);
    const h = new Database(db, { readonly: true });
    try {
      const s = h.prepare('SELECT end_reason, exit_status FROM sessions WHERE id = 1').get() as { end_reason: string; exit_status: number };
      expect(s).toEqual({ end_reason: 'signal', exit_status: 0 });
      const reads = h.prepare("SELECT count(*) FROM requests WHERE session = 1 AND opcode = 15 AND state = 'ok' AND path = '/hello'").pluck().get();
      expect(reads).toBe(1);
    } finally {
      h.close();
    }
  });

  it('refuses without a terminal, in one line', () => {
    const r = spawnSync(process.execPath, [CLI, 'record', '--tui', '--', 'true', '/tmp'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('fusetrace: record --tui needs a terminal (stdin and stdout must be a tty)\n');
  });
});
