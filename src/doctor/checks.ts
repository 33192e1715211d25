import fs from 'node:fs';
import { traceFileProblem } from '../store/db.js';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { readMountInfo } from '../proxy/mountinfo.js';
import { preloadPath } from '../proxy/native.js';
import { WRITE_HEADERS_SIZE } from '../protocol/index.js';

/** One line of `fusetrace doctor`: what was checked, the verdict, and what to do about it. */
export interface Check {
  /** Short name of what was checked, e.g. "/dev/fuse". */
  name: string;
  /** ok: fine; warn: recording works but something is limited; fail: recording cannot work. */
  verdict: 'ok' | 'warn' | 'fail';
  /** What was found, one line. */
  detail: string;
  /** What to do about it, one line; empty when nothing needs doing. */
  advice: string;
}

/** The facts the checks are computed from; gathered by `gatherFacts`, injectable in tests. */
export interface Facts {
  uid: number;
  devFuse: { exists: boolean; isCharDevice: boolean; readWrite: boolean; mode: number | null };
  fusermount: { path: string | null; setuidRoot: boolean };
  fuseConf: { readable: boolean; userAllowOther: boolean };
  fusectlMounted: boolean;
  wmemMax: number | null;
  dbPath: string;
  dbWritable: { ok: boolean; reason: string };
  /** Whether the in-process recording library loads into a program (LD_PRELOAD), or why not. */
  preload: { ok: boolean; detail: string };
  /** The kernel's INIT as read from a real mount, or why it could not be read; null when not probed. */
  kernelInit: { ok: true; major: number; minor: number; masked: string } | { ok: false; error: string } | null;
}

const FUSE_CONF = '/etc/fuse.conf';

function findInPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** The same checks `record` makes before it writes (store/db.ts traceFileProblem), so the two agree. */
function dbWritable(dbPath: string): { ok: boolean; reason: string } {
  const abs = path.resolve(dbPath);
  const problem = traceFileProblem(abs);
  if (problem !== null) return { ok: false, reason: problem };
  return { ok: true, reason: fs.existsSync(abs) ? `${abs} exists and is writable` : `${abs} can be created` };
}

/** Loads the in-process recording library into /bin/true the way record loads it into a server. */
function preloadLoads(): { ok: boolean; detail: string } {
  const lib = preloadPath();
  if (!fs.existsSync(lib)) return { ok: false, detail: `${lib} is missing` };
  const r = spawnSync('/bin/true', { env: { ...process.env, LD_PRELOAD: lib }, encoding: 'utf8', timeout: 10_000 });
  // ld.so says "object '...' from LD_PRELOAD cannot be preloaded (...): ignored." and goes on.
  const complaint = (r.stderr ?? '').split('\n').find((l) => l.includes('LD_PRELOAD'));
  if (r.error || complaint) return { ok: false, detail: (complaint ?? r.error?.message ?? 'does not load').trim() };
  return { ok: true, detail: lib };
}

/** Reads the machine's state; no side effects. */
export function gatherFacts(dbPath: string): Facts {
  const uid = process.getuid?.() ?? -1;
  let devFuse: Facts['devFuse'] = { exists: false, isCharDevice: false, readWrite: false, mode: null };
  try {
    const st = fs.statSync('/dev/fuse');
    let rw = false;
    try {
      fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
      rw = true;
    } catch {
      rw = false;
    }
    devFuse = { exists: true, isCharDevice: st.isCharacterDevice(), readWrite: rw, mode: st.mode & 0o7777 };
  } catch {
    // absent
  }
  const fm = findInPath('fusermount3');
  let setuidRoot = false;
  if (fm) {
    try {
      const st = fs.statSync(fm);
      setuidRoot = st.uid === 0 && (st.mode & 0o4000) !== 0;
    } catch {
      setuidRoot = false;
    }
  }
  let fuseConf = { readable: false, userAllowOther: false };
  try {
    const text = fs.readFileSync(FUSE_CONF, 'utf8');
    fuseConf = { readable: true, userAllowOther: /^\s*user_allow_other\s*$/m.test(text) };
  } catch {
    // absent or unreadable
  }
  const fusectlMounted = readMountInfo().some((m) => m.fsType === 'fusectl');
  let wmemMax: number | null = null;
  try {
    wmemMax = Number(fs.readFileSync('/proc/sys/net/core/wmem_max', 'utf8').trim());
  } catch {
    wmemMax = null;
  }
  return {
    uid,
    devFuse,
    fusermount: { path: fm, setuidRoot },
    fuseConf,
    fusectlMounted,
    wmemMax,
    dbPath,
    dbWritable: dbWritable(dbPath),
    preload: preloadLoads(),
    kernelInit: null,
  };
}

/** fuse_in_header + fuse_write_in: what a WRITE frame carries besides its data. */
const WRITE_OVERHEAD = WRITE_HEADERS_SIZE;
/** libfuse's default max_write (FUSE_MAX_MAX_PAGES-independent default in lib/fuse_lowlevel.c): 1 MiB. */
const LIBFUSE_DEFAULT_MAX_WRITE = 1 << 20;

/**
 * The largest SEQPACKET message a socket can carry when its SO_SNDBUF is set to `bytes`:
 * the kernel doubles the value (sock_setsockopt) and unix_dgram_sendmsg refuses a message
 * larger than sk_sndbuf - 32 with EMSGSIZE.
 */
export function largestFrame(sndbufRequest: number): number {
  return sndbufRequest * 2 - 32;
}

/** Turns facts into verdict lines; pure, so the exact advice is testable. */
export function evaluate(f: Facts, opts: { allowOther?: boolean } = {}): Check[] {
  const out: Check[] = [];
  const root = f.uid === 0;

  if (!f.devFuse.exists) {
    out.push({
      name: '/dev/fuse',
      verdict: 'fail',
      detail: 'missing',
      advice: 'load the fuse module (modprobe fuse); in a container, pass the device (docker run --device /dev/fuse)',
    });
  } else if (!f.devFuse.isCharDevice) {
    out.push({ name: '/dev/fuse', verdict: 'fail', detail: 'present but not a character device', advice: 'recreate it: mknod /dev/fuse c 10 229' });
  } else if (f.devFuse.readWrite) {
    out.push({ name: '/dev/fuse', verdict: 'ok', detail: `character device, mode ${f.devFuse.mode?.toString(8)}, read/write for this user`, advice: '' });
  } else {
    // fusermount3 opens /dev/fuse with the caller's own permissions (util/fusermount.c drops its
    // privileges around the open), so an ordinary user needs read/write access too.
    out.push({
      name: '/dev/fuse',
      verdict: 'fail',
      detail: `mode ${f.devFuse.mode?.toString(8)}, not read/write for uid ${f.uid}`,
      advice: root
        ? 'check the device permissions and any security module denying access'
        : 'chmod 0666 /dev/fuse (the usual mode; fusermount3 opens it with your own permissions), or run as root',
    });
  }

  if (root) {
    out.push({ name: 'privileges', verdict: 'ok', detail: 'running as root: mounts with mount(2)', advice: '' });
  } else if (!f.fusermount.path) {
    out.push({ name: 'privileges', verdict: 'fail', detail: 'not root and no fusermount3 in PATH', advice: 'install fuse3 (apt-get install fuse3) or run as root' });
  } else if (!f.fusermount.setuidRoot) {
    out.push({
      name: 'privileges',
      verdict: 'fail',
      detail: `not root and ${f.fusermount.path} is not setuid root`,
      advice: `chown root ${f.fusermount.path} && chmod u+s ${f.fusermount.path}, or run as root`,
    });
  } else {
    out.push({ name: 'privileges', verdict: 'ok', detail: `not root: mounts through ${f.fusermount.path} (setuid root)`, advice: '' });
  }

  if (!root) {
    const need = opts.allowOther === true;
    if (f.fuseConf.userAllowOther) {
      out.push({ name: 'allow_other', verdict: 'ok', detail: `user_allow_other is set in ${FUSE_CONF}`, advice: '' });
    } else {
      out.push({
        name: 'allow_other',
        verdict: need ? 'fail' : 'warn',
        detail: `user_allow_other is not set in ${FUSE_CONF}: -o allow_other will be refused`,
        advice: `add a line "user_allow_other" to ${FUSE_CONF} if your server uses -o allow_other`,
      });
    }
  }

  if (f.kernelInit !== null) {
    out.push(
      f.kernelInit.ok
        ? {
            name: 'kernel protocol',
            verdict: 'ok',
            detail: `a test mount got FUSE ${f.kernelInit.major}.${f.kernelInit.minor}; masked from servers: ${f.kernelInit.masked}`,
            advice: '',
          }
        : {
            name: 'kernel protocol',
            verdict: 'fail',
            detail: `a test mount failed: ${f.kernelInit.error}`,
            advice: 'fix the lines above; inside a container, mounting needs CAP_SYS_ADMIN or a working fusermount3',
          },
    );
  }

  out.push(
    f.fusectlMounted
      ? { name: 'fusectl', verdict: 'ok', detail: 'mounted at /sys/fs/fuse/connections', advice: '' }
      : {
          name: 'fusectl',
          verdict: 'warn',
          detail: 'not mounted: a wedged connection cannot be aborted cleanly',
          advice: 'mount -t fusectl none /sys/fs/fuse/connections',
        },
  );

  if (root) {
    out.push({ name: 'socket buffer', verdict: 'ok', detail: 'root sets SO_SNDBUFFORCE: max_write is never clamped', advice: '' });
  } else if (f.wmemMax === null) {
    out.push({ name: 'socket buffer', verdict: 'warn', detail: 'net.core.wmem_max unreadable', advice: '' });
  } else {
    const frame = largestFrame(f.wmemMax);
    const maxWrite = frame - WRITE_OVERHEAD;
    const clamped = maxWrite < LIBFUSE_DEFAULT_MAX_WRITE;
    out.push({
      name: 'socket buffer',
      verdict: clamped ? 'warn' : 'ok',
      detail: `net.core.wmem_max ${f.wmemMax}: largest frame ${frame} bytes, max_write ${clamped ? `clamped to ${maxWrite}` : 'not clamped'}`,
      advice: clamped ? `sysctl -w net.core.wmem_max=${2 * (LIBFUSE_DEFAULT_MAX_WRITE + 4096)} to record 1 MiB writes unclamped` : '',
    });
  }

  out.push(
    f.preload.ok
      ? {
          name: 'in-process recording',
          verdict: 'ok',
          detail: 'servers that read /dev/fuse through libc (libfuse, pyfuse3, fuser) record without the relay',
          advice: '',
        }
      : {
          name: 'in-process recording',
          verdict: 'warn',
          detail: `the preload library does not load (${f.preload.detail}): every server is relayed, about 2x slower on metadata`,
          advice: 'rebuild the native part: npm ci (or npm rebuild fusetrace)',
        },
  );

  out.push(
    f.dbWritable.ok
      ? { name: 'trace file', verdict: 'ok', detail: f.dbWritable.reason, advice: '' }
      : { name: 'trace file', verdict: 'fail', detail: `not writable: ${f.dbWritable.reason}`, advice: 'pass --db with a writable location, or set FUSETRACE_DB' },
  );
  return out;
}
