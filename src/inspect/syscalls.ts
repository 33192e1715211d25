/**
 * System call numbers as /proc/PID/task/TID/syscall prints them (proc(5)), for the calls a task
 * blocked on a FUSE mount or a FUSE server's thread is typically in. Numbers are per architecture
 * (arch/x86/entry/syscalls/syscall_64.tbl; arm64 uses include/uapi/asm-generic/unistd.h).
 * A number missing here prints as `syscall-N`, never as a wrong name.
 */

/** What the arguments of a call name: an fd (arg 0), a path (arg 0), or a dirfd + path (args 0, 1). */
export type ArgKind = 'fd' | 'path' | 'at' | 'none';

/** How a call can wait: indefinitely unless an event comes (`forever`), with a timeout in its
 *  arguments (`timed`, see waitsForever), on I/O, or not at all. */
export type WaitKind = 'forever' | 'timed' | 'io' | 'none';

interface Row {
  name: string;
  args: ArgKind;
  wait: WaitKind;
}

const R = (name: string, args: ArgKind = 'none', wait: WaitKind = 'none'): Row => ({ name, args, wait });

/** Calls by name, shared by both architectures. */
const BY_NAME: Record<string, Row> = Object.fromEntries(
  [
    R('read', 'fd', 'io'), R('write', 'fd', 'io'), R('readv', 'fd', 'io'), R('writev', 'fd', 'io'),
    R('pread64', 'fd', 'io'), R('pwrite64', 'fd', 'io'), R('preadv', 'fd', 'io'), R('pwritev', 'fd', 'io'),
    R('preadv2', 'fd', 'io'), R('pwritev2', 'fd', 'io'), R('splice', 'fd', 'io'), R('vmsplice', 'fd', 'io'),
    R('tee', 'fd', 'io'), R('sendfile', 'fd', 'io'), R('copy_file_range', 'fd', 'io'),
    R('close', 'fd'), R('fstat', 'fd'), R('fstatfs', 'fd'), R('lseek', 'fd'), R('ioctl', 'fd', 'io'),
    R('fcntl', 'fd', 'io'), R('flock', 'fd', 'io'), R('fsync', 'fd'), R('fdatasync', 'fd'),
    R('ftruncate', 'fd'), R('fallocate', 'fd'), R('getdents64', 'fd'), R('getdents', 'fd'),
    R('fchmod', 'fd'), R('fchown', 'fd'), R('fgetxattr', 'fd'), R('fsetxattr', 'fd'),
    R('flistxattr', 'fd'), R('fchdir', 'fd'), R('syncfs', 'fd'), R('sync_file_range', 'fd'),
    R('mmap'), R('msync'),
    R('open', 'path'), R('creat', 'path'), R('stat', 'path'), R('lstat', 'path'), R('access', 'path'),
    R('truncate', 'path'), R('chdir', 'path'), R('rename', 'path'), R('mkdir', 'path'), R('rmdir', 'path'),
    R('link', 'path'), R('unlink', 'path'), R('symlink', 'path'), R('readlink', 'path'), R('chmod', 'path'),
    R('chown', 'path'), R('lchown', 'path'), R('statfs', 'path'), R('utime', 'path'), R('utimes', 'path'),
    R('setxattr', 'path'), R('lsetxattr', 'path'), R('getxattr', 'path'), R('lgetxattr', 'path'),
    R('listxattr', 'path'), R('llistxattr', 'path'), R('removexattr', 'path'), R('execve', 'path'),
    R('mknod', 'path'), R('umount2', 'path'), R('mount'),
    R('openat', 'at'), R('openat2', 'at'), R('mkdirat', 'at'), R('mknodat', 'at'), R('fchownat', 'at'),
    R('newfstatat', 'at'), R('unlinkat', 'at'), R('renameat', 'at'), R('renameat2', 'at'),
    R('linkat', 'at'), R('symlinkat', 'at'), R('readlinkat', 'at'), R('fchmodat', 'at'),
    R('faccessat', 'at'), R('faccessat2', 'at'), R('utimensat', 'at'), R('statx', 'at'), R('futimesat', 'at'),
    R('futex', 'none', 'timed'), R('futex_waitv', 'none', 'timed'), R('poll', 'none', 'timed'),
    R('ppoll', 'none', 'timed'), R('select', 'none', 'timed'), R('pselect6', 'none', 'timed'),
    R('epoll_wait', 'none', 'timed'), R('epoll_pwait', 'none', 'timed'), R('epoll_pwait2', 'none', 'timed'),
    R('rt_sigtimedwait', 'none', 'timed'), R('io_uring_enter', 'fd', 'io'),
    R('nanosleep', 'none', 'timed'), R('clock_nanosleep', 'none', 'timed'),
    R('pause', 'none', 'forever'), R('rt_sigsuspend', 'none', 'forever'), R('wait4', 'none', 'forever'),
    R('waitid', 'none', 'forever'),
    R('socket'), R('connect', 'fd', 'io'), R('accept', 'fd', 'io'), R('accept4', 'fd', 'io'),
    R('sendto', 'fd', 'io'), R('recvfrom', 'fd', 'io'), R('sendmsg', 'fd', 'io'), R('recvmsg', 'fd', 'io'),
    R('clone'), R('fork'), R('vfork'), R('exit'), R('exit_group'), R('kill'), R('tgkill'),
    R('getcwd'), R('sched_yield'), R('sync'),
  ].map((r) => [r.name, r]),
);

const X64: Record<number, string> = {
  0: 'read', 1: 'write', 2: 'open', 3: 'close', 4: 'stat', 5: 'fstat', 6: 'lstat', 7: 'poll', 8: 'lseek',
  9: 'mmap', 16: 'ioctl', 17: 'pread64', 18: 'pwrite64', 19: 'readv', 20: 'writev', 21: 'access',
  23: 'select', 24: 'sched_yield', 26: 'msync', 34: 'pause', 35: 'nanosleep', 40: 'sendfile', 41: 'socket',
  42: 'connect', 43: 'accept', 44: 'sendto', 45: 'recvfrom', 46: 'sendmsg', 47: 'recvmsg', 56: 'clone',
  57: 'fork', 58: 'vfork', 59: 'execve', 60: 'exit', 61: 'wait4', 62: 'kill', 72: 'fcntl', 73: 'flock',
  74: 'fsync', 75: 'fdatasync', 76: 'truncate', 77: 'ftruncate', 78: 'getdents', 79: 'getcwd', 80: 'chdir',
  81: 'fchdir', 82: 'rename', 83: 'mkdir', 84: 'rmdir', 85: 'creat', 86: 'link', 87: 'unlink',
  88: 'symlink', 89: 'readlink', 90: 'chmod', 91: 'fchmod', 92: 'chown', 93: 'fchown', 94: 'lchown',
  128: 'rt_sigtimedwait', 130: 'rt_sigsuspend', 132: 'utime', 133: 'mknod', 137: 'statfs', 138: 'fstatfs',
  162: 'sync', 165: 'mount', 166: 'umount2', 188: 'setxattr', 189: 'lsetxattr', 190: 'fsetxattr',
  191: 'getxattr', 192: 'lgetxattr', 193: 'fgetxattr', 194: 'listxattr', 195: 'llistxattr',
  196: 'flistxattr', 197: 'removexattr', 202: 'futex', 217: 'getdents64', 230: 'clock_nanosleep',
  231: 'exit_group', 232: 'epoll_wait', 234: 'tgkill', 235: 'utimes', 247: 'waitid', 257: 'openat',
  258: 'mkdirat', 259: 'mknodat', 260: 'fchownat', 261: 'futimesat', 262: 'newfstatat', 263: 'unlinkat',
  264: 'renameat', 265: 'linkat', 266: 'symlinkat', 267: 'readlinkat', 268: 'fchmodat', 269: 'faccessat',
  270: 'pselect6', 271: 'ppoll', 275: 'splice', 276: 'tee', 277: 'sync_file_range', 278: 'vmsplice',
  280: 'utimensat', 281: 'epoll_pwait', 285: 'fallocate', 288: 'accept4', 295: 'preadv', 296: 'pwritev',
  306: 'syncfs', 316: 'renameat2', 326: 'copy_file_range', 327: 'preadv2', 328: 'pwritev2', 332: 'statx',
  426: 'io_uring_enter', 437: 'openat2', 439: 'faccessat2', 441: 'epoll_pwait2', 449: 'futex_waitv',
};

const ARM64: Record<number, string> = {
  5: 'setxattr', 6: 'lsetxattr', 7: 'fsetxattr', 8: 'getxattr', 9: 'lgetxattr', 10: 'fgetxattr',
  11: 'listxattr', 12: 'llistxattr', 13: 'flistxattr', 14: 'removexattr', 17: 'getcwd', 22: 'epoll_pwait',
  25: 'fcntl', 29: 'ioctl', 32: 'flock', 33: 'mknodat', 34: 'mkdirat', 35: 'unlinkat', 36: 'symlinkat',
  37: 'linkat', 38: 'renameat', 39: 'umount2', 40: 'mount', 43: 'statfs', 44: 'fstatfs', 45: 'truncate',
  46: 'ftruncate', 47: 'fallocate', 48: 'faccessat', 49: 'chdir', 50: 'fchdir', 52: 'fchmod',
  53: 'fchmodat', 54: 'fchownat', 55: 'fchown', 56: 'openat', 57: 'close', 61: 'getdents64', 62: 'lseek',
  63: 'read', 64: 'write', 65: 'readv', 66: 'writev', 67: 'pread64', 68: 'pwrite64', 69: 'preadv',
  70: 'pwritev', 71: 'sendfile', 72: 'pselect6', 73: 'ppoll', 75: 'vmsplice', 76: 'splice', 77: 'tee',
  78: 'readlinkat', 79: 'newfstatat', 80: 'fstat', 81: 'sync', 82: 'fsync', 83: 'fdatasync',
  88: 'utimensat', 93: 'exit', 94: 'exit_group', 95: 'waitid', 98: 'futex', 101: 'nanosleep',
  115: 'clock_nanosleep', 124: 'sched_yield', 129: 'kill', 131: 'tgkill', 133: 'rt_sigsuspend',
  137: 'rt_sigtimedwait', 198: 'socket', 202: 'accept', 203: 'connect', 206: 'sendto', 207: 'recvfrom',
  211: 'sendmsg', 212: 'recvmsg', 220: 'clone', 221: 'execve', 222: 'mmap', 227: 'msync', 242: 'accept4',
  260: 'wait4', 267: 'syncfs', 276: 'renameat2', 285: 'copy_file_range', 286: 'preadv2', 287: 'pwritev2',
  291: 'statx', 426: 'io_uring_enter', 437: 'openat2', 439: 'faccessat2', 441: 'epoll_pwait2',
  449: 'futex_waitv',
};

const TABLE = process.arch === 'arm64' ? ARM64 : X64;

/** The name of system call `nr` on this machine's architecture, or `syscall-N`. */
export function syscallName(nr: number): string {
  return TABLE[nr] ?? `syscall-${nr}`;
}

/** What the arguments of the call named `name` refer to, and how it waits. */
export function syscallRow(name: string): Row {
  return BY_NAME[name] ?? { name, args: 'none', wait: 'none' };
}

const FUTEX_CMD_MASK = 0x7f; // ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME), include/uapi/linux/futex.h
const FUTEX_WAIT = 0;
const FUTEX_LOCK_PI = 6;
const FUTEX_WAIT_BITSET = 9;
const FUTEX_WAIT_REQUEUE_PI = 11;
const FUTEX_LOCK_PI2 = 13;

/**
 * True when a task blocked in `name` with these arguments can only be woken by another task (no
 * timeout): futex waits with a NULL timeout (a lock or condition variable: how a deadlock looks),
 * poll/epoll with an infinite timeout, pause, sigsuspend, wait. Sleeps and timed waits are false.
 */
export function waitsForever(name: string, args: readonly bigint[]): boolean {
  const row = syscallRow(name);
  if (row.wait === 'forever') return true;
  if (row.wait !== 'timed') return false;
  const a = (i: number) => args[i] ?? 0n;
  const asInt = (v: bigint) => Number(BigInt.asIntN(32, v));
  switch (name) {
    case 'futex': {
      const cmd = Number(a(1)) & FUTEX_CMD_MASK;
      const waits = [FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI, FUTEX_LOCK_PI2, FUTEX_WAIT_REQUEUE_PI].includes(cmd);
      return waits && a(3) === 0n;
    }
    case 'futex_waitv': return a(3) === 0n;
    case 'poll': return asInt(a(2)) < 0;
    case 'epoll_wait': case 'epoll_pwait': return asInt(a(3)) < 0;
    case 'ppoll': case 'rt_sigtimedwait': return a(2) === 0n;
    case 'select': case 'pselect6': return a(4) === 0n;
    case 'epoll_pwait2': return a(3) === 0n;
    default: return false;
  }
}
