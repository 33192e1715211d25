/**
 * What `fusetrace attach MOUNT|PID` attaches to: the server process, its connection and its mount.
 */
import { existsSync } from 'node:fs';
import { UserError } from '../errors.js';
import { connectionId, findFuseMount, isFuseType } from '../inspect/connection.js';
import { deviceHolders } from '../inspect/inspect.js';
import { cmdline, fdinfo, listNumeric, readLink } from '../inspect/proc.js';
import { readMountInfo, type MountEntry } from '../proxy/mountinfo.js';

export interface AttachTarget {
  pid: number;
  /** The server's command line, as /proc shows it. */
  command: string[];
  /** fusectl connection number; 0 when the kernel does not say which connection a device fd has. */
  conn: number;
  mount: MountEntry | null;
}

/** The FUSE mount whose connection is `conn`. */
function mountOfConnection(conn: number): MountEntry | null {
  return readMountInfo().find((m) => isFuseType(m.fsType) && connectionId(m.device) === conn) ?? null;
}

function argvOf(pid: number): string[] {
  return cmdline(pid).split(' ').filter(Boolean);
}

/** A PID: the connection of its /dev/fuse fds (fdinfo, Linux 6.16+). */
function fromPid(pid: number): AttachTarget {
  if (!existsSync(`/proc/${pid}`)) throw new UserError(`no process ${pid}`);
  const conns = new Set<number>();
  let devices = 0;
  for (const fd of listNumeric(`/proc/${pid}/fd`)) {
    if (readLink(`/proc/${pid}/fd/${fd}`) !== '/dev/fuse') continue;
    devices++;
    const c = fdinfo(pid, fd)?.fuse_connection;
    if (c !== undefined) conns.add(Number(c));
  }
  if (devices === 0) throw new UserError(`process ${pid} holds no /dev/fuse fd: it is not a FUSE server (or its fds cannot be read: run as root)`);
  if (conns.size > 1) throw new UserError(`process ${pid} serves ${conns.size} FUSE connections: attach by MOUNT instead`);
  const conn = conns.size === 1 ? [...conns][0] : 0;
  return { pid, command: argvOf(pid), conn, mount: conn ? mountOfConnection(conn) : null };
}

/** MOUNT: the one process that holds its connection's device. */
function fromMount(path: string): AttachTarget {
  const mount = findFuseMount(path);
  const { pids, unreadable } = deviceHolders(mount);
  if (pids.size === 0) {
    if (unreadable.length > 0) throw new UserError(`permission denied: the fds of ${unreadable.length} processes cannot be read, so the server of ${mount.mountPoint} cannot be found: run as root`);
    throw new UserError(`no process holds the device of ${mount.mountPoint} (the server died?): nothing to attach to; fusetrace hang ${mount.mountPoint} says more`);
  }
  if (pids.size > 1) throw new UserError(`${pids.size} processes hold the device of ${mount.mountPoint} (${[...pids.keys()].join(', ')}): attach to one of them by PID`);
  const pid = [...pids.keys()][0];
  return { pid, command: argvOf(pid), conn: connectionId(mount.device), mount };
}

/** Resolves `MOUNT|PID`. */
export function resolveTarget(arg: string): AttachTarget {
  return /^\d+$/.test(arg) ? fromPid(Number(arg)) : fromMount(arg);
}
