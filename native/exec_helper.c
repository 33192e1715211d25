/*
 * fusetrace-exec SOCKFD SERVER [ARGS...]
 *
 * Started by `fusetrace record` in place of the FUSE server. It installs a
 * seccomp filter, then execvp()s the server, so the filter applies to the
 * unmodified server and everything it starts.
 *
 * Why: a FUSE server that replies with splice (libfuse FUSE_CAP_SPLICE_WRITE,
 * go-fuse) fills a pipe with vmsplice()/splice() and splices the pipe into its
 * /dev/fuse fd. Here that fd is an AF_UNIX SOCK_SEQPACKET socket, and a
 * pipe-to-socket splice is sent as several messages once the reply is larger
 * than about 61 KiB (splice_to_socket sends one message per pipe-buffer batch),
 * which breaks the one-frame-per-message contract. Failing vmsplice(), and
 * splice() whose output fd is SOCKFD, with EINVAL is what the frameworks treat
 * as "splice not supported here": libfuse (fuse_send_data_iov) and go-fuse
 * fall back to writev()/write(), which send one message per reply.
 * splice() into other fds (file -> pipe) keeps working.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_AARCH64
#else
#error "fusetrace-exec: add the AUDIT_ARCH_ value of this architecture"
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_LO(n) (offsetof(struct seccomp_data, args[n]))
#else
#define ARG_LO(n) (offsetof(struct seccomp_data, args[n]) + 4)
#endif

static int install_filter(unsigned sockfd) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_vmsplice, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_splice, 0, 3),
      /* splice(fd_in, off_in, fd_out, ...): fd_out is args[2] */
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sockfd, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0) return 0;
  /* Without CAP_SYS_ADMIN the kernel requires no_new_privs first. */
  if (errno != EACCES) return -1;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fusetrace-exec SOCKFD SERVER [ARGS...]\n");
    return 127;
  }
  char* end = NULL;
  long fd = strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20) {
    fprintf(stderr, "fusetrace-exec: bad SOCKFD '%s'\n", argv[1]);
    return 127;
  }
  if (install_filter((unsigned)fd) != 0) {
    fprintf(stderr, "fusetrace-exec: cannot install the seccomp filter: %s\n", strerror(errno));
    return 127;
  }
  execvp(argv[2], argv + 2);
  fprintf(stderr, "fusetrace-exec: cannot run %s: %s\n", argv[2], strerror(errno));
  return 127;
}
