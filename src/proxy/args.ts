/**
 * What `record` reads from the FUSE server's own command line: the mountpoint argument (replaced
 * by /dev/fd/N) and the `-o` mount options that libfuse no longer applies once it is handed an
 * already mounted fd (lib/helper.c fuse_session_mount -> fuse_mnt_parse_fuse_fd: with /dev/fd/N
 * no mount happens, so allow_other, default_permissions, ro, fsname=, subtype= ... would be lost).
 *
 * The server's argv is passed on unchanged apart from the mountpoint: libfuse still parses its
 * own -o options (clone_fd, max_idle_threads, ... in lib/helper.c; and it accepts the mount
 * options too, lib/mount.c fuse_mount_opts), so nothing must be removed.
 */

/** Mount options applied with mount(2) flags (lib/mount.c mount_flags[]). `set` false clears the flag. */
export const MOUNT_FLAG_OPTIONS: Readonly<Record<string, { flag: number; set: boolean }>> = {
  rw: { flag: 1, set: false }, // MS_RDONLY
  ro: { flag: 1, set: true },
  suid: { flag: 2, set: false }, // MS_NOSUID
  nosuid: { flag: 2, set: true },
  dev: { flag: 4, set: false }, // MS_NODEV
  nodev: { flag: 4, set: true },
  exec: { flag: 8, set: false }, // MS_NOEXEC
  noexec: { flag: 8, set: true },
  async: { flag: 16, set: false }, // MS_SYNCHRONOUS
  sync: { flag: 16, set: true },
  dirsync: { flag: 128, set: true }, // MS_DIRSYNC
  atime: { flag: 1024, set: false }, // MS_NOATIME
  noatime: { flag: 1024, set: true },
  diratime: { flag: 2048, set: false }, // MS_NODIRATIME
  nodiratime: { flag: 2048, set: true },
  norelatime: { flag: 1 << 21, set: false }, // MS_RELATIME
  relatime: { flag: 1 << 21, set: true },
  nostrictatime: { flag: 1 << 24, set: false }, // MS_STRICTATIME
  strictatime: { flag: 1 << 24, set: true },
  nolazytime: { flag: 1 << 25, set: false }, // MS_LAZYTIME
  lazytime: { flag: 1 << 25, set: true },
};

/** Options the kernel's fuse filesystem parses itself (fs/fuse/inode.c fuse_fs_parameters). */
export const KERNEL_OPTIONS = new Set(['default_permissions', 'allow_other', 'max_read', 'blksize']);

/** Options that name the mount in the mount table: fsname= is the source, subtype= the fs type suffix. */
export const NAME_OPTIONS = new Set(['fsname', 'subtype']);

/** Mount options as record applies them. */
export interface MountOptions {
  /** MS_* flags for mount(2). Starts at MS_NOSUID|MS_NODEV like libfuse's mount. */
  flags: number;
  /** Options for the kernel's data string (default_permissions, allow_other, max_read=, blksize=). */
  kernel: string[];
  fsname?: string;
  subtype?: string;
  /** Every mount option in the order given, for fusermount3 -o. */
  all: string[];
  /** Options we saw and do not apply (libfuse-only ones such as clone_fd), for the session meta. */
  ignored: string[];
}

export const MS_NOSUID = 2;
export const MS_NODEV = 4;

/** Splits a comma-separated -o value; `\,` escapes a comma as in libfuse's fuse_opt. */
export function splitOptions(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      cur += value[++i];
    } else if (c === ',') {
      if (cur) out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  if (cur) out.push(cur);
  return out;
}

/** The -o values of an argv (`-o a,b`, `-oa,b`), in order. */
export function collectDashO(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') break;
    if (a === '-o' && i + 1 < argv.length) out.push(...splitOptions(argv[++i]));
    else if (a.startsWith('-o') && a.length > 2) out.push(...splitOptions(a.slice(2)));
  }
  return out;
}

/** Sorts options into mount flags, kernel options, names, and the rest (kept for the server only). */
export function classifyMountOptions(options: readonly string[]): MountOptions {
  const mo: MountOptions = { flags: MS_NOSUID | MS_NODEV, kernel: [], all: [], ignored: [] };
  for (const opt of options) {
    const eq = opt.indexOf('=');
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? undefined : opt.slice(eq + 1);
    const fl = MOUNT_FLAG_OPTIONS[key];
    if (fl && value === undefined) {
      mo.flags = fl.set ? mo.flags | fl.flag : mo.flags & ~fl.flag;
      mo.all.push(opt);
    } else if (KERNEL_OPTIONS.has(key)) {
      mo.kernel.push(opt);
      mo.all.push(opt);
    } else if (key === 'allow_root') {
      // libfuse: allow_root mounts with allow_other and checks the uid itself (lib/fuse_lowlevel.c).
      mo.kernel.push('allow_other');
      mo.all.push(opt);
    } else if (key === 'fsname' && value !== undefined) {
      mo.fsname = value;
      mo.all.push(opt);
    } else if (key === 'subtype' && value !== undefined) {
      mo.subtype = value;
      mo.all.push(opt);
    } else {
      mo.ignored.push(opt);
    }
  }
  return mo;
}

/** Where the mountpoint is in the server's argv. */
export interface ServerArgs {
  /** Index of the mountpoint argument in argv (argv[0] is the server). */
  mountIndex: number;
  mountpoint: string;
}

/**
 * Finds the mountpoint: the last non-option argument that is an existing directory (`isDir`
 * decides; arguments of -o are skipped). `override` (--mountpoint) must appear in argv as given.
 * Returns undefined when there is none.
 */
export function findMountpoint(
  argv: readonly string[],
  isDir: (p: string) => boolean,
  override?: string,
): ServerArgs | undefined {
  const candidates: number[] = [];
  let optionsEnded = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!optionsEnded && a === '--') {
      optionsEnded = true;
      continue;
    }
    if (!optionsEnded && a === '-o') {
      i++;
      continue;
    }
    if (!optionsEnded && a.startsWith('-') && a !== '-') continue;
    candidates.push(i);
  }
  if (override !== undefined) {
    for (let k = candidates.length - 1; k >= 0; k--) {
      if (argv[candidates[k]] === override) return { mountIndex: candidates[k], mountpoint: override };
    }
    return undefined;
  }
  for (let k = candidates.length - 1; k >= 0; k--) {
    const a = argv[candidates[k]];
    if (isDir(a)) return { mountIndex: candidates[k], mountpoint: a };
  }
  return undefined;
}
