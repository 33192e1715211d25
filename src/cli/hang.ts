import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { UserError } from '../errors.js';
import { abortConnection, findFuseMount } from '../inspect/connection.js';
import { inspectMount, type BlockedTask, type HangReport, type ServerThread } from '../inspect/inspect.js';
import { formatSessionLength } from '../format.js';
import { parseDurationOption } from './options.js';

interface HangFlags {
  json?: boolean;
  abort?: boolean;
  yes?: boolean;
  hungAfter: string;
}

const ms = (v: number | null): string => (v === null ? '?' : formatSessionLength(BigInt(Math.round(v)) * 1_000_000n));

function threadLine(t: ServerThread): string {
  const call = t.syscall.kind === 'syscall' ? t.syscall.name : t.syscall.kind;
  const cols = [`  thread ${t.tid}`, t.comm, t.state, `${call}${t.file ? ` ${t.file}` : ''}`, t.wchan || '-', ms(t.sinceMs)];
  if (t.activity === 'reading') cols.push('reads the device');
  if (t.stack && t.stack.length > 0 && t.activity !== 'reading') cols.push(`[${t.stack.slice(0, 3).join(' < ')}]`);
  return cols.join('  ');
}

function blockedLine(b: BlockedTask): string {
  const who = b.tid === b.pid ? `pid ${b.pid}` : `pid ${b.pid} tid ${b.tid}`;
  const how = b.inRequest ? 'in a FUSE request' : `waiting in ${b.wchan || 'the kernel'} (behind another request)`;
  return `  ${who}  ${b.comm}  ${b.syscall}  ${b.file}  waiting ${ms(b.waitMs)}${b.hung ? '  HUNG' : ''}  ${how}`;
}

/** The report as text, one fact per line. */
export function formatReport(r: HangReport): string {
  const c = r.connection;
  const lines = [
    `mount       ${r.mount.mountPoint} (${r.mount.fsType}, source ${r.mount.source || '-'}), fusectl connection ${c.id}`,
    `connection  waiting ${c.waiting}, max_background ${c.max_background}, congestion_threshold ${c.congestion_threshold}`,
  ];
  if (r.servers.length === 0) lines.push('server      none: no process holds this connection\'s /dev/fuse');
  for (const s of r.servers) {
    lines.push(`server      pid ${s.pid} ${s.comm}: ${s.cmdline}  (device fds ${s.fds.join(', ')}; matched by ${r.matchedBy})`);
    for (const t of s.threads) lines.push(threadLine(t));
  }
  lines.push(r.blocked.length === 0 ? 'blocked     none' : `blocked     ${r.blocked.length}, oldest first (hung after ${ms(r.hungAfterMs)}):`);
  for (const b of r.blocked) lines.push(blockedLine(b));
  lines.push(`verdict     ${r.verdict.line}`);
  for (const a of r.verdict.actions) lines.push(`action      ${a}`);
  return lines.join('\n') + '\n';
}

/** Asks on the terminal; refuses without one (a script passes --yes). */
async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new UserError('--abort needs a confirmation and stdin is not a terminal: add --yes');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

export function registerHang(program: Command): void {
  program
    .command('hang')
    .alias('inspect')
    .description('What a FUSE mount is doing now: its connection, the server\'s threads, the processes waiting, and a verdict')
    .argument('<mount>', 'the mountpoint, or any path on the FUSE mount')
    .option('--json', 'one JSON object instead of text')
    .option('--hung-after <duration>', 'a wait at least this long is flagged as hung (e.g. 500ms, 5s)', '5s')
    .option('--abort', 'abort the connection: every waiting request fails with ECONNABORTED (asks first)')
    .option('--yes', 'with --abort: do not ask')
    .action(async (mountArg: string, flags: HangFlags) => {
      const hungAfterMs = parseDurationOption('--hung-after', flags.hungAfter) / 1e6;
      if (flags.abort && !flags.yes && !process.stdin.isTTY) {
        throw new UserError('--abort needs a confirmation and stdin is not a terminal: add --yes');
      }
      const mount = findFuseMount(mountArg);
      const report = inspectMount(mount, hungAfterMs);
      process.stdout.write(flags.json ? `${JSON.stringify(report, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}\n` : formatReport(report));
      if (!flags.abort) return;
      const q = `abort FUSE connection ${report.connection.id} (${mount.mountPoint})? every waiting request fails with ECONNABORTED`;
      if (!flags.yes && !(await confirm(q))) {
        process.stderr.write('fusetrace: not aborted\n');
        process.exitCode = 1;
        return;
      }
      abortConnection(report.connection);
      process.stderr.write(`fusetrace: aborted connection ${report.connection.id}: waiting requests fail with ECONNABORTED, later ones with ENOTCONN; the mount stays until umount ${mount.mountPoint}\n`);
    });
}
