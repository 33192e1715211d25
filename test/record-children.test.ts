// Issue 12 item 4: the server's children inherit nothing of fusetrace. A server that forks a child
// (which execs `sleep`) and then crashes behaves under `fusetrace record` exactly as it does
// mounted directly: the child holds no fuse fd, so the crash aborts the connection and the mount
// answers ENOTCONN at once (before, the child kept fusetrace's socket-turned-/dev/fuse fd 3 open
// and `ls` hung); and the child's environment carries no LD_PRELOAD or FUSETRACE_* variable.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { requireFuse } from './helpers/fuse-env.js';
import { buildServer } from './helpers/build.js';
import { CleanupRegistry, runCommand, runDirect } from './helpers/mount.js';
import { buildCli, dbIn, recorder } from './helpers/record.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
const startRecord = recorder(reg);
let server: string;

beforeAll(() => {
  requireFuse();
  buildCli();
  server = buildServer('crash_child_fs');
}, 120_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What a crash with a live child left behind, in a form equal for two runs that behave alike. */
interface AfterCrash {
  /** `stat MNT` after the crash: its error, or 'ok', or 'hung'. */
  stat: string;
  /** The child's fds that point at /dev/fuse or at a socket (fusetrace's channel). */
  childFuseFds: string[];
  /** LD_PRELOAD / FUSETRACE_* in the child's environment. */
  childEnv: string[];
}

async function crashWithChild(mnt: string, pidfile: string): Promise<AfterCrash> {
  // The LOOKUP of "crash" never gets an answer: the server aborts while serving it.
  const trigger = await runCommand('stat', [join(mnt, 'crash')], 10_000);
  expect(trigger.timedOut, 'the lookup that crashed the server was not ended by the crash').toBe(false);
  for (let i = 0; i < 100 && !existsSync(pidfile); i++) await sleep(20);
  const child = Number(readFileSync(pidfile, 'utf8').trim());
  expect(child).toBeGreaterThan(0);
  reg.process(child);
  // sleep(1) has exec'd by now (the server waited 200 ms before aborting).
  const childFuseFds = readdirSync(`/proc/${child}/fd`)
    .map((fd) => {
      try {
        return readlinkSync(`/proc/${child}/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((t) => t === '/dev/fuse' || t.startsWith('socket:'));
  const childEnv = readFileSync(`/proc/${child}/environ`, 'utf8')
    .split('\0')
    .filter((e) => e.startsWith('LD_PRELOAD=') || e.startsWith('FUSETRACE_'));
  const st = await runCommand('stat', [mnt], 5_000);
  const stat = st.timedOut ? 'hung' : st.code === 0 ? 'ok' : /Transport endpoint is not connected/.test(st.stderr) ? 'ENOTCONN' : st.stderr.trim();
  return { stat, childFuseFds, childEnv };
}

describe("the server's children inherit nothing of fusetrace (issue 12 item 4)", () => {
  it('a server crash with a child alive behaves as natively: ENOTCONN at once, no fuse fd, no fusetrace variables in the child', async () => {
    const work = reg.tempDir('fusetrace-children-');
    const mntDirect = join(work, 'direct');
    const mntTraced = join(work, 'traced');
    mkdirSync(mntDirect);
    mkdirSync(mntTraced);

    const direct = await runDirect(server, ['-f', `--pidfile=${join(work, 'direct.pid')}`], mntDirect, { registry: reg });
    const native = await crashWithChild(mntDirect, join(work, 'direct.pid'));
    expect((await direct.exited).signal).toBe('SIGABRT');

    const rec = await startRecord(server, ['-f', `--pidfile=${join(work, 'traced.pid')}`], mntTraced, dbIn(work));
    const env = readFileSync(`/proc/${rec.serverPid}/environ`, 'utf8');
    // The server itself was started with the preload (in-process recording); its children are not.
    expect(env).toMatch(/(^|\0)LD_PRELOAD=/);
    const traced = await crashWithChild(mntTraced, join(work, 'traced.pid'));
    const ex = await rec.exited;
    expect(ex.code, rec.stderr()).toBe(128 + 6);
    expect(rec.stderr()).toMatch(/recorded in-process/);

    expect(native).toEqual({ stat: 'ENOTCONN', childFuseFds: [], childEnv: [] });
    expect(traced).toEqual(native);
  }, 60_000);
});
