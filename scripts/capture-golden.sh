#!/usr/bin/env bash
# Capture real FUSE frames for the protocol codec's golden tests.
#
# Builds libfuse's `hello` and `passthrough_ll` examples, runs each under strace (single-threaded,
# foreground), drives a workload through the mount that makes the kernel send as many opcodes as
# it can, unmounts, and converts every read()/write()/writev() on the /dev/fuse fd into
# test/fixtures/frames/<name>.json (scripts/capture-golden.mjs does the conversion).
#
# Needs: root (mount(2) without fusermount3), gcc, pkg-config fuse3, strace, python3 (workload).
# Usage: scripts/capture-golden.sh [outdir]   (default: test/fixtures/frames)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$repo/test/fixtures/frames}
examples=/usr/share/doc/libfuse3-dev/examples

work=$(mktemp -d "${TMPDIR:-/tmp}/fusetrace-golden.XXXXXX")
server_pid=
mnt=

cleanup() {
  set +e
  if [ -n "$mnt" ] && grep -q " $mnt " /proc/mounts; then
    fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null
    if grep -q " $mnt " /proc/mounts; then
      # Wedged: abort the connection through fusectl (its number is the mount's minor device).
      dev=$(stat -c '%d' "$mnt" 2>/dev/null)
      [ -n "$dev" ] && [ -w "/sys/fs/fuse/connections/$((dev & 0xff))/abort" ] && \
        echo 1 > "/sys/fs/fuse/connections/$((dev & 0xff))/abort"
      umount "$mnt" 2>/dev/null
    fi
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cflags=$(pkg-config fuse3 --cflags --libs)
# HAVE_* turn on passthrough_ll's fallocate and copy_file_range handlers (meson defines them upstream).
gcc -Wall -O1 -DHAVE_FALLOCATE -DHAVE_COPY_FILE_RANGE -o "$work/passthrough_ll" \
  "$examples/passthrough_ll.c" $cflags
gcc -Wall -O1 -o "$work/hello" "$examples/hello.c" $cflags

wait_mounted() {
  for _ in $(seq 100); do
    grep -q " $1 " /proc/mounts && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "server exited before mounting" >&2; return 1; }
    sleep 0.05
  done
  echo "timed out waiting for the mount on $1" >&2; return 1
}

# run NAME WORKLOAD-FUNCTION SERVER-ARGS...: trace one server through one workload.
run() {
  local name=$1 workload=$2; shift 2
  mnt=$work/mnt-$name
  mkdir -p "$mnt"
  # -y names the fd's path (we keep only </dev/fuse>), -xx prints every byte in hex, -ttt orders
  # lines from different threads, -s is large enough for max_write-sized frames.
  strace -f -y -ttt -xx -s 2000000 -e trace=read,write,writev -o "$work/$name.strace" \
    "$@" -f -s "$mnt" &
  server_pid=$!
  wait_mounted "$mnt"
  "$workload" "$mnt"
  # Let the kernel's background work (releases, forgets) reach the server before unmounting.
  sync; sleep 0.3
  fusermount3 -u "$mnt"
  wait "$server_pid" || true   # libfuse servers may exit non-zero at unmount; the trace is what matters
  server_pid=
  node "$here/capture-golden.mjs" "$work/$name.strace" "$out/$name.json" "$name"
  rmdir "$mnt"; mnt=
}

hello_workload() {
  local m=$1
  ls -la "$m" >/dev/null
  stat "$m/hello" >/dev/null
  cat "$m/hello" >/dev/null
  cat "$m/nonexistent" 2>/dev/null || true
  stat -f "$m" >/dev/null
}

passthrough_workload() {
  python3 - "$1" <<'PY'
import os, sys, fcntl, stat, errno
m = sys.argv[1]
p = lambda *a: os.path.join(m, *a)
os.listdir(m)
try: os.stat(p('missing'))
except FileNotFoundError: pass
os.mkdir(p('dir'), 0o755)
fd = os.open(p('dir', 'a.txt'), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)   # CREATE
os.write(fd, b'hello fusetrace\n' * 4)                                            # WRITE
os.fsync(fd)                                                                      # FSYNC
os.fdatasync(fd)
os.close(fd)                                                                      # FLUSH, RELEASE
with open(p('dir', 'a.txt'), 'rb') as f: f.read()                                 # OPEN, READ
os.stat(p('dir', 'a.txt'))
os.chmod(p('dir', 'a.txt'), 0o600)                                                # SETATTR mode
os.truncate(p('dir', 'a.txt'), 32)                                                # SETATTR size
os.utime(p('dir', 'a.txt'), ns=(1_000_000_000, 2_000_000_000))                   # SETATTR times
os.rename(p('dir', 'a.txt'), p('dir', 'b.txt'))                                   # RENAME
os.link(p('dir', 'b.txt'), p('dir', 'c.txt'))                                     # LINK
os.symlink('b.txt', p('dir', 'sym'))                                              # SYMLINK
os.readlink(p('dir', 'sym'))                                                      # READLINK
os.mkfifo(p('dir', 'fifo'), 0o644)                                                # MKNOD
os.access(p('dir', 'b.txt'), os.R_OK)
os.setxattr(p('dir', 'b.txt'), 'user.color', b'blue')                             # SETXATTR
os.getxattr(p('dir', 'b.txt'), 'user.color')                                      # GETXATTR
try: os.getxattr(p('dir', 'b.txt'), 'user.missing')
except OSError: pass
os.listxattr(p('dir', 'b.txt'))                                                   # LISTXATTR
os.removexattr(p('dir', 'b.txt'), 'user.color')                                   # REMOVEXATTR
fd = os.open(p('dir', 'b.txt'), os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)                                                    # SETLK (flock)
fcntl.flock(fd, fcntl.LOCK_UN)
fcntl.lockf(fd, fcntl.LOCK_EX, 4, 0)   # POSIX lock: handled by the kernel unless the fs wants POSIX_LOCKS
fcntl.lockf(fd, fcntl.LOCK_UN, 4, 0)
os.posix_fallocate(fd, 0, 8192)                                                   # FALLOCATE
try: os.lseek(fd, 0, os.SEEK_DATA)                                                # LSEEK
except OSError: pass
try: os.lseek(fd, 0, os.SEEK_HOLE)
except OSError: pass
dst = os.open(p('dir', 'copy.txt'), os.O_CREAT | os.O_RDWR, 0o644)
try: os.copy_file_range(fd, dst, 16, 0, 0)                                        # COPY_FILE_RANGE
except OSError: pass
os.close(dst)
os.close(fd)
os.statvfs(m)                                                                     # STATFS
dfd = os.open(p('dir'), os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)                                                                     # FSYNCDIR
os.close(dfd)
os.listdir(p('dir'))                                                              # OPENDIR, READDIR(PLUS), RELEASEDIR
for n in ('b.txt', 'c.txt', 'sym', 'fifo', 'copy.txt'):
    os.unlink(p('dir', n))                                                        # UNLINK
try: os.rmdir(p('nope'))
except OSError: pass
os.rmdir(p('dir'))                                                                # RMDIR
PY
}

mkdir -p "$out"
run hello hello_workload "$work/hello"
src=$work/src; mkdir -p "$src"
run passthrough_ll passthrough_workload "$work/passthrough_ll" -o "source=$src,xattr,flock"
ls -la "$out"
