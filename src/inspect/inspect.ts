/**
 * `fusetrace hang`: what a FUSE mount is doing right now, from /proc and fusectl alone (no
 * tracer, no restart, nothing sent to the server). Builds a HangReport; verdict.ts judges it.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';
import { connectionId, readConnection, type ConnectionInfo } from './connection.js';
import {
  clearMountCache, cmdline, fdinfo, listNumeric, monotonicMs, mountsOf, readLink, readProc, readString,
  readTasks, parseStat, parseSyscall, parseStack, sleptMs, type Task,
} from './proc.js';
import { syscallRow, waitsForever } from './syscalls.js';
import { judge, type Verdict } from './verdict.js';
import type { MountEntry } from '../proxy/mountinfo.js';
import { UserError } from '../errors.js';

/** What a server thread is doing, for the verdict. */
export type Activity = 'reading' | 'polling' | 'forever' | 'timed' | 'io' | 'running' | 'stopped' | 'other';

/** A thread of a process that holds the device. */
export interface ServerThread extends Task {
  activity: Activity;
  /** The file of the fd the current call works on (`/dev/fuse`, `socket:[123]`, ...), if any. */
  file: string | null;
}

/** A process holding a /dev/fuse fd of this connection. */
export interface ServerProcess {
  pid: number;
  comm: string;
  cmdline: string;
  /** Its fds on /dev/fuse attached to this connection. */
  fds: number[];
  threads: ServerThread[];
}

/** A thread blocked in a system call on a file of the mount. */
export interface BlockedTask {
  pid: number;
  tid: number;
  comm: string;
  syscall: string;
  /** The file the call works on: the fd's path, or the path argument resolved. */
  file: string;
  /** ms since it last ran: how long it has waited. */
  waitMs: number | null;
  /** Inside a FUSE request (request_wait_answer etc. in its kernel stack or wchan), rather than
   *  waiting for a lock that another waiter holds (i_rwsem of a directory, a page lock). */
  inRequest: boolean;
  wchan: string;
  /** Waiting for at least the --hung-after threshold. */
  hung: boolean;
}

/** How the server processes were matched to the connection (see findServers). */
export type MatchMethod = 'fdinfo' | 'cmdline' | 'only-mount';

export interface HangReport {
  mount: { mountPoint: string; fsType: string; source: string; device: string };
  connection: ConnectionInfo;
  matchedBy: MatchMethod;
  servers: ServerProcess[];
  /** Oldest first. */
  blocked: BlockedTask[];
  /** PIDs whose fds could not be read (permission): a server may hide among them. */
  unreadable: number[];
  /** With no server: whether the kernel has already aborted the connection (statfs gave ENOTCONN). */
  aborted: boolean | null;
  hungAfterMs: number;
  verdict: Verdict;
}

const SELF = process.pid;

interface DeviceFd {
  pid: number;
  fd: number;
  /** fdinfo's fuse_connection (Linux 6.16+, commit "fs: fuse: add dev id to /dev/fuse fdinfo"); undefined before. */
  conn: number | undefined;
}

/** Every /dev/fuse fd on the machine, and the PIDs whose fd table we may not read. */
function scanDeviceFds(): { fds: DeviceFd[]; unreadable: number[] } {
  const fds: DeviceFd[] = [];
  const unreadable: number[] = [];
  for (const pid of listNumeric('/proc')) {
    if (pid === SELF) continue;
    let entries: number[];
    try {
      entries = readdirNumeric(`/proc/${pid}/fd`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') unreadable.push(pid);
      continue;
    }
    for (const fd of entries) {
      if (readLink(`/proc/${pid}/fd/${fd}`) !== '/dev/fuse') continue;
      const info = fdinfo(pid, fd);
      const c = info?.fuse_connection;
      fds.push({ pid, fd, conn: c === undefined ? undefined : Number(c) });
    }
  }
  return { fds, unreadable };
}

function readdirNumeric(dir: string): number[] {
  return readdirSync(dir).filter((n) => /^\d+$/.test(n)).map(Number);
}

/**
 * The processes holding this connection's device. Since Linux 6.16 each /dev/fuse fd's fdinfo
 * names its connection (`fuse_connection: N`, fc->dev, the same number fusectl uses), which is
 * exact. Older kernels show nothing that ties a device fd to a connection (all share the one
 * character device inode), so we fall back to elimination: holders whose command line names the
 * mountpoint (libfuse, go-fuse and most servers take it as an argument); failing that, when this
 * is the only FUSE mount, every holder.
 */
function findServers(mount: MountEntry, connId: number, fds: DeviceFd[]): { pids: Map<number, number[]>; method: MatchMethod } {
  const group = (list: DeviceFd[]) => {
    const m = new Map<number, number[]>();
    for (const d of list) m.set(d.pid, [...(m.get(d.pid) ?? []), d.fd]);
    return m;
  };
  if (fds.some((d) => d.conn !== undefined)) return { pids: group(fds.filter((d) => d.conn === connId)), method: 'fdinfo' };
  const named = fds.filter((d) => cmdline(d.pid).split(' ').includes(mount.mountPoint));
  if (named.length > 0) return { pids: group(named), method: 'cmdline' };
  const fuseMounts = mountsOf(SELF).filter((m) => m.fsType.startsWith('fuse') && m.fsType !== 'fusectl');
  return { pids: group(fuseMounts.length === 1 ? fds : []), method: 'only-mount' };
}

/** What thread `t` of a server holding `devFds` is doing. */
function classify(pid: number, t: Task, devFds: number[]): ServerThread {
  const base = { ...t, file: null as string | null };
  if (t.state === 'T' || t.state === 't') return { ...base, activity: 'stopped' };
  const sc = t.syscall;
  if (t.state === 'R' || sc.kind === 'running') return { ...base, activity: 'running' };
  if (sc.kind !== 'syscall') return { ...base, activity: 'other' };
  const row = syscallRow(sc.name);
  const fd = row.args === 'fd' ? Number(BigInt.asIntN(32, sc.args[0] ?? -1n)) : -1;
  const file = fd >= 0 ? readLink(`/proc/${pid}/fd/${fd}`) : null;
  const withFile = { ...base, file };
  if (['read', 'readv', 'splice'].includes(sc.name) && devFds.includes(fd)) return { ...withFile, activity: 'reading' };
  if (/poll|select/.test(sc.name)) return { ...withFile, activity: 'polling' };
  if (waitsForever(sc.name, sc.args)) return { ...withFile, activity: 'forever' };
  if (row.wait === 'timed') return { ...withFile, activity: 'timed' };
  if (row.wait === 'io') return { ...withFile, activity: 'io' };
  return { ...withFile, activity: 'other' };
}

/** Where a path syscall's path argument points, resolved against its dirfd or cwd. */
function pathTarget(pid: number, name: string, args: bigint[]): { path: string; base: string | null } | null {
  const row = syscallRow(name);
  const at = row.args === 'at';
  const p = readString(pid, args[at ? 1 : 0] ?? 0n);
  if (p === null) return null;
  if (isAbsolute(p)) return { path: p, base: null };
  const dirfd = at ? Number(BigInt.asIntN(32, args[0] ?? 0n)) : -100;
  const base = dirfd === -100 ? readLink(`/proc/${pid}/cwd`) : readLink(`/proc/${pid}/fd/${dirfd}`);
  if (base === null) return null;
  return { path: p === '' ? base : join(base, p), base };
}

/** The device of the mount `path` is on, in `pid`'s mount namespace (lexical longest prefix). */
function deviceOfPath(pid: number, path: string): string | undefined {
  let best: MountEntry | undefined;
  for (const m of mountsOf(pid)) {
    const under = path === m.mountPoint || m.mountPoint === '/' || path.startsWith(m.mountPoint + sep);
    if (under && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best?.device;
}

/** The file a blocked call of `pid` works on, when that file is on the mount with `device`. */
function targetOnMount(pid: number, name: string, args: bigint[], device: string): string | null {
  const row = syscallRow(name);
  if (row.args === 'fd') {
    const fd = Number(BigInt.asIntN(32, args[0] ?? -1n));
    const mntId = fdinfo(pid, fd)?.mnt_id;
    if (mntId === undefined) return null;
    const m = mountsOf(pid).find((x) => x.mountId === Number(mntId));
    return m?.device === device ? readLink(`/proc/${pid}/fd/${fd}`) : null;
  }
  if (row.args === 'path' || row.args === 'at') {
    const t = pathTarget(pid, name, args);
    return t && deviceOfPath(pid, t.path) === device ? t.path : null;
  }
  return null;
}

const IN_REQUEST = /^(request_wait_answer|fuse_|__fuse_)/;

/** Every thread on the machine sleeping in a system call on a file of the mount, oldest first. */
function findBlocked(device: string, nowMs: number, hungAfterMs: number): BlockedTask[] {
  const out: BlockedTask[] = [];
  for (const pid of listNumeric('/proc')) {
    if (pid === SELF) continue;
    for (const tid of listNumeric(`/proc/${pid}/task`)) {
      const dir = `/proc/${pid}/task/${tid}`;
      const st = parseStat(readProc(`${dir}/stat`));
      if (!st || (st.state !== 'S' && st.state !== 'D')) continue;
      const sc = parseSyscall(readProc(`${dir}/syscall`));
      if (sc.kind !== 'syscall') continue;
      const file = targetOnMount(pid, sc.name, sc.args, device);
      if (file === null) continue;
      const wchan = (readProc(`${dir}/wchan`) ?? '').trim();
      const stack = parseStack(readProc(`${dir}/stack`));
      const waitMs = sleptMs(dir, nowMs);
      out.push({
        pid, tid, comm: st.comm, syscall: sc.name, file, waitMs, wchan,
        inRequest: IN_REQUEST.test(wchan) || (stack ?? []).some((f) => f === 'request_wait_answer'),
        hung: waitMs !== null && waitMs >= hungAfterMs,
      });
    }
  }
  return out.sort((a, b) => (b.waitMs ?? 0) - (a.waitMs ?? 0));
}

/**
 * With no server process left, has the kernel already aborted the connection? It does when the
 * last reference to the device file goes (fs/fuse/dev.c fuse_dev_release -> fuse_abort_conn); a
 * file that lives on unseen (in flight in a unix socket, or held in another PID namespace) keeps
 * the connection up. statfs(2) on an aborted connection fails with ENOTCONN at once; on a live one
 * it waits, so it runs in a child that is killed after a second (a fatal signal ends a request
 * nobody has read yet, fs/fuse/dev.c request_wait_answer).
 */
function probeAborted(mountPoint: string): boolean | null {
  const code = `try { require('fs').statfsSync(${JSON.stringify(mountPoint)}); process.stdout.write('ok') } catch (e) { process.stdout.write(String(e.code)) }`;
  const r = spawnSync(process.execPath, ['-e', code], { timeout: 1500, killSignal: 'SIGKILL', encoding: 'utf8' });
  if (r.signal || r.error) return false;
  if (r.stdout === 'ENOTCONN' || r.stdout === 'ECONNABORTED') return true;
  return r.stdout === 'ok' ? false : null;
}

/** The processes holding the connection of `mount`'s device fds (for attach), and how they were matched. */
export function deviceHolders(mount: MountEntry): { pids: Map<number, number[]>; method: MatchMethod; unreadable: number[] } {
  clearMountCache();
  const { fds, unreadable } = scanDeviceFds();
  return { ...findServers(mount, connectionId(mount.device), fds), unreadable };
}

/** Inspects the FUSE mount `mount`. */
export function inspectMount(mount: MountEntry, hungAfterMs: number): HangReport {
  clearMountCache();
  const connection = readConnection(connectionId(mount.device));
  const nowMs = monotonicMs();
  const { fds, unreadable } = scanDeviceFds();
  const { pids, method } = findServers(mount, connection.id, fds);
  const servers: ServerProcess[] = [...pids].map(([pid, devFds]) => ({
    pid,
    comm: (readProc(`/proc/${pid}/comm`) ?? '').trim(),
    cmdline: cmdline(pid),
    fds: devFds,
    threads: readTasks(pid, nowMs).map((t) => classify(pid, t, devFds)),
  }));
  if (servers.length === 0 && unreadable.length > 0) {
    throw new UserError(`permission denied: the fds of ${unreadable.length} processes cannot be read, so the server cannot be found: run as root`);
  }
  const blocked = findBlocked(mount.device, nowMs, hungAfterMs);
  const aborted = servers.length === 0 ? probeAborted(mount.mountPoint) : null;
  const report = {
    mount: { mountPoint: mount.mountPoint, fsType: mount.fsType, source: mount.source, device: mount.device },
    connection, matchedBy: method, servers, blocked, unreadable, aborted, hungAfterMs,
  };
  return { ...report, verdict: judge(report) };
}
