// Issue 12 item 9: `fusetrace tui` opened on a trace that another `fusetrace record` is still
// writing follows it: new requests show up without restarting the TUI. A real record of libfuse's
// passthrough_ll, the real CLI's tui in a tmux pane (own session name, killed by that name),
// activity in the mount between two looks at the screen.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';
import { CleanupRegistry, runCommand } from './helpers/mount.js';
import { buildCli, CLI, dbIn, recorder } from './helpers/record.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
const startRecord = recorder(reg);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

beforeAll(() => {
  requireFuse();
  buildCli();
}, 120_000);

function tmux(...args: string[]) {
  return spawnSync('tmux', args, { encoding: 'utf8' });
}

/** The total in the requests view's footer ("row N of M"). */
function total(screen: string): number | undefined {
  const m = /row \d+ of ([\d,]+)/.exec(screen);
  return m ? Number(m[1]!.replace(/,/g, '')) : undefined;
}

describe('the TUI follows a trace another record is writing (issue 12 item 9)', () => {
  it('shows new requests between two looks without a restart', async () => {
    const work = reg.tempDir('fusetrace-tui-live-');
    const src = join(work, 'src');
    const mnt = join(work, 'mnt');
    mkdirSync(src);
    mkdirSync(mnt);
    for (let i = 0; i < 50; i++) writeFileSync(join(src, `f${i}`), `file ${i}\n`);
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work));
    await readdir(mnt);

    const name = `fusetrace-tui-live-${process.pid}-${Date.now()}`;
    const r = tmux('new-session', '-d', '-s', name, '-x', '160', '-y', '40', 'env', 'TERM=xterm-256color', process.execPath, CLI, '--db', dbIn(work), 'tui', '1');
    expect(r.status, r.stderr).toBe(0);
    reg.defer(() => {
      tmux('kill-session', '-t', name);
    });
    const screenWith = async (what: string, test: (n: number) => boolean): Promise<number> => {
      const until = Date.now() + 15_000;
      for (;;) {
        const screen = tmux('capture-pane', '-p', '-t', name).stdout;
        const n = total(screen);
        if (n !== undefined && test(n)) return n;
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}; screen:\n${screen}`);
        await sleep(100);
      }
    };
    const first = await screenWith('the requests view', (n) => n > 0);
    // New requests through the mount: a CREATE (and its FLUSH, RELEASE) per new file at least.
    // Not stat() of the existing names: the readdir above cached their entries for passthrough_ll's
    // 1 s timeout, and a TUI that starts within that second saw no new request at all.
    for (let i = 0; i < 50; i++) await writeFile(join(mnt, `new${i}`), `new ${i}\n`);
    const second = await screenWith('the new requests', (n) => n >= first + 50);
    expect(second).toBeGreaterThanOrEqual(first + 50);

    tmux('send-keys', '-t', name, 'q');
    const u = await runCommand('umount', [mnt]);
    expect(u.code, u.stderr).toBe(0);
    expect((await rec.exited).code, rec.stderr()).toBe(0);
  }, 90_000);
});
