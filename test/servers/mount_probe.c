/*
 * mount_probe DIR: what the mount family does under fusetrace's interception filter
 * (native/exec_helper.c --notify). Prints one line per call, "name=0" or "name=ERRNO_NAME":
 * - the new mount API (fsopen, open_tree) must fail with ENOSYS, so servers fall back to mount(2);
 * - a non-FUSE mount(2) (tmpfs on DIR) and its umount2 must run as the caller made them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char* name, long r) {
  printf("%s=%s\n", name, r < 0 ? strerrorname_np(errno) : "0");
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  long r = syscall(__NR_fsopen, "fuse", 0);
  report("fsopen", r);
  if (r >= 0) close((int)r);
  r = syscall(__NR_open_tree, -100 /* AT_FDCWD */, argv[1], 0);
  report("open_tree", r);
  if (r >= 0) close((int)r);
  report("mount_tmpfs", mount("probe", argv[1], "tmpfs", 0, "size=64k"));
  report("umount2_tmpfs", umount2(argv[1], 0));
  return 0;
}
