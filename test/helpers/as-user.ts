/**
 * Running a command as an ordinary user for the tests of fusetrace's non-root paths, without
 * changing anything on the host: the command runs in a private mount namespace (unshare) in which
 * - the checkout is bind-mounted at a fresh directory anyone may enter, and every argument that
 *   names a path inside the checkout is rewritten to that view (a fresh clone may sit below a 0700
 *   directory, e.g. one made by mktemp, which the user could not traverse);
 * - with `devMode`, /dev/fuse is a device node of that mode on a private tmpfs (this machine's own
 *   node is 0600 root, and fusermount3 opens it with the caller's permissions).
 * Everything vanishes with the namespace. The PID of the spawned process ends up being the command
 * itself: unshare, sh and setpriv each exec() the next.
 */
import { chmodSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { repoRoot } from './fuse-env.js';

export interface AsUser {
  cmd: string;
  args: string[];
  /** `p` as the user sees it inside the namespace. */
  view(p: string): string;
  /** Removes the view directory (after the namespace's processes have exited). */
  cleanup(): void;
}

const SCRIPT = [
  'set -e',
  'root="$1"; view="$2"; devdir="$3"; devmode="$4"; user="$5"; shift 5',
  'mount --bind "$root" "$view"',
  'if [ -n "$devmode" ]; then',
  '  mount -t tmpfs -o mode=0755 fusetrace-dev "$devdir"',
  '  mknod -m "$devmode" "$devdir/fuse" c 10 229',
  '  mount --bind "$devdir/fuse" /dev/fuse',
  'fi',
  'exec setpriv --reuid "$user" --regid "$user" --clear-groups "$@"',
].join('\n');

export function asUser(uid: number, argv: string[], opts: { devMode?: string } = {}): AsUser {
  const root = repoRoot();
  const view = mkdtempSync(join(tmpdir(), 'fusetrace-view-'));
  chmodSync(view, 0o755);
  const devDir = mkdtempSync(join(tmpdir(), 'fusetrace-devnode-'));
  const rewrite = (p: string) => (p === root ? view : p.startsWith(root + sep) ? view + p.slice(root.length) : p);
  return {
    cmd: 'unshare',
    args: ['--mount', '--propagation', 'private', 'sh', '-c', SCRIPT, 'sh', root, view, devDir, opts.devMode ?? '', String(uid), ...argv.map(rewrite)],
    view: rewrite,
    cleanup() {
      for (const d of [view, devDir]) {
        try {
          rmdirSync(d);
        } catch {
          // already gone
        }
      }
    },
  };
}
