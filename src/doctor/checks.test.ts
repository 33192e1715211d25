import { describe, expect, it } from 'vitest';
import { evaluate, largestFrame, type Facts } from './checks.js';
import { formatCheck } from '../cli/doctor.js';

function facts(over: Partial<Facts> = {}): Facts {
  return {
    uid: 1000,
    devFuse: { exists: true, isCharDevice: true, readWrite: true, mode: 0o666 },
    fusermount: { path: '/usr/bin/fusermount3', setuidRoot: true },
    fuseConf: { readable: true, userAllowOther: false },
    fusectlMounted: true,
    wmemMax: 4194304,
    dbPath: './fusetrace.db',
    dbWritable: { ok: true, reason: '/w/fusetrace.db can be created' },
    preload: { ok: true, detail: '/x/build/Release/libfusetrace-preload.so' },
    interception: null,
    kernelInit: { ok: true, major: 7, minor: 45, masked: 'FUSE_PASSTHROUGH' },
    ...over,
  };
}

const lines = (f: Facts, o?: { allowOther?: boolean }) => evaluate(f, o).map(formatCheck);

describe('doctor verdicts', () => {
  it('an ordinary user with a usable /dev/fuse and setuid fusermount3 can record', () => {
    const out = lines(facts());
    expect(out).toEqual([
      'ok    /dev/fuse: character device, mode 666, read/write for this user',
      'ok    privileges: not root: mounts through /usr/bin/fusermount3 (setuid root)',
      'warn  allow_other: user_allow_other is not set in /etc/fuse.conf: -o allow_other will be refused  -> add a line "user_allow_other" to /etc/fuse.conf if your server uses -o allow_other',
      'ok    kernel protocol: a test mount got FUSE 7.45; masked from servers: FUSE_PASSTHROUGH',
      'ok    fusectl: mounted at /sys/fs/fuse/connections',
      'ok    socket buffer: net.core.wmem_max 4194304: largest frame 8388576 bytes, max_write not clamped',
      'ok    in-process recording: servers that read /dev/fuse through libc (libfuse, pyfuse3, fuser) record without the relay',
      'ok    trace file: /w/fusetrace.db can be created',
    ]);
    expect(evaluate(facts()).some((c) => c.verdict === 'fail')).toBe(false);
  });

  it('allow_other asked for without user_allow_other fails', () => {
    const c = evaluate(facts(), { allowOther: true }).find((x) => x.name === 'allow_other');
    expect(c?.verdict).toBe('fail');
  });

  it.each([
    [
      'missing /dev/fuse',
      { devFuse: { exists: false, isCharDevice: false, readWrite: false, mode: null } },
      'FAIL  /dev/fuse: missing  -> load the fuse module (modprobe fuse); in a container, pass the device (docker run --device /dev/fuse)',
    ],
    [
      '/dev/fuse not a device',
      { devFuse: { exists: true, isCharDevice: false, readWrite: true, mode: 0o644 } },
      'FAIL  /dev/fuse: present but not a character device  -> recreate it: mknod /dev/fuse c 10 229',
    ],
    [
      '/dev/fuse 0600 for a user',
      { devFuse: { exists: true, isCharDevice: true, readWrite: false, mode: 0o600 } },
      'FAIL  /dev/fuse: mode 600, not read/write for uid 1000  -> chmod 0666 /dev/fuse (the usual mode; fusermount3 opens it with your own permissions), or run as root',
    ],
    [
      'no fusermount3',
      { fusermount: { path: null, setuidRoot: false } },
      'FAIL  privileges: not root and no fusermount3 in PATH  -> install fuse3 (apt-get install fuse3) or run as root',
    ],
    [
      'fusermount3 not setuid',
      { fusermount: { path: '/usr/bin/fusermount3', setuidRoot: false } },
      'FAIL  privileges: not root and /usr/bin/fusermount3 is not setuid root  -> chown root /usr/bin/fusermount3 && chmod u+s /usr/bin/fusermount3, or run as root',
    ],
    [
      'unwritable trace file',
      { dbWritable: { ok: false, reason: '/ro/fusetrace.db: EACCES' } },
      'FAIL  trace file: not writable: /ro/fusetrace.db: EACCES  -> pass --db with a writable location, or set FUSETRACE_DB',
    ],
    [
      'test mount failed',
      { kernelInit: { ok: false as const, error: 'fusermount3 failed (exit 1)' } },
      'FAIL  kernel protocol: a test mount failed: fusermount3 failed (exit 1)  -> fix the lines above; inside a container, mounting needs CAP_SYS_ADMIN or a working fusermount3',
    ],
  ])('%s: exact advice', (_name, over, expected) => {
    const out = lines(facts(over as Partial<Facts>));
    expect(out).toContain(expected);
  });

  it('warns, without failing, when the in-process library does not load: every server is then relayed', () => {
    const out = lines(facts({ preload: { ok: false, detail: '/x/libfusetrace-preload.so is missing' } }));
    expect(out).toContain(
      'warn  in-process recording: the preload library does not load (/x/libfusetrace-preload.so is missing): every server is relayed, about 2x slower on metadata  -> rebuild the native part: npm ci (or npm rebuild fusetrace)',
    );
    expect(evaluate(facts({ preload: { ok: false, detail: 'x' } })).some((c) => c.verdict === 'fail')).toBe(false);
  });

  it('says whether mount interception works; without it record falls back to /dev/fd/N (a warning)', () => {
    const ok = lines(facts({ interception: { ok: true, detail: 'a FUSE mount(2) was intercepted (fuse.x / fd=3) and answered with ADDFD' } }));
    expect(ok).toContain(
      'ok    mount interception: a FUSE mount(2) was intercepted (fuse.x / fd=3) and answered with ADDFD: servers mount by themselves, command lines unchanged',
    );
    const f = facts({ interception: { ok: false, detail: 'mount answered ENOSYS' } });
    expect(lines(f)).toContain(
      "warn  mount interception: mount answered ENOSYS: record falls back to /dev/fd/N (libfuse >= 3.3, pyfuse3 and go-fuse >= 2.2 only; options set in a server's own code are lost)  -> Linux >= 5.9 with seccomp user notification; in a container, a seccomp profile that allows seccomp(2)",
    );
    expect(evaluate(f).some((c) => c.verdict === 'fail')).toBe(false);
  });

  it('warns about fusectl and a small socket buffer, without failing', () => {
    const f = facts({ fusectlMounted: false, wmemMax: 212992 });
    const out = lines(f);
    expect(out).toContain('warn  fusectl: not mounted: a wedged connection cannot be aborted cleanly  -> mount -t fusectl none /sys/fs/fuse/connections');
    expect(out).toContain(
      'warn  socket buffer: net.core.wmem_max 212992: largest frame 425952 bytes, max_write clamped to 425872  -> sysctl -w net.core.wmem_max=2105344 to record 1 MiB writes unclamped',
    );
    expect(evaluate(f).some((c) => c.verdict === 'fail')).toBe(false);
  });

  it('root needs no fusermount3 and is never clamped', () => {
    const out = lines(facts({ uid: 0, fusermount: { path: null, setuidRoot: false }, wmemMax: 1000 }));
    expect(out).toContain('ok    privileges: running as root: mounts with mount(2)');
    expect(out).toContain('ok    socket buffer: root sets SO_SNDBUFFORCE: max_write is never clamped');
    expect(out.some((l) => l.includes('allow_other'))).toBe(false);
  });

  it('largest frame follows the kernel: SO_SNDBUF doubled, minus 32 (unix_dgram_sendmsg)', () => {
    expect(largestFrame(212992)).toBe(425952);
  });
});
