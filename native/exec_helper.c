/*
 * fusetrace-exec [--private-mounts] [--notify CHANFD] SOCKFD|- SERVER [ARGS...]
 *
 * Started by `fusetrace record` and `replay` in place of the FUSE server. It installs a
 * seccomp filter, then execvp()s the server, so the filter applies to the unmodified server and
 * everything it starts (fusermount3 included).
 *
 * Splice: a FUSE server that replies with splice (libfuse FUSE_CAP_SPLICE_WRITE, go-fuse) fills
 * a pipe with vmsplice()/splice() and splices the pipe into its /dev/fuse fd. Under fusetrace
 * that fd is an AF_UNIX SOCK_SEQPACKET socket, and a pipe-to-socket splice is sent as several
 * messages once the reply is larger than about 61 KiB (splice_to_socket sends one message per
 * pipe-buffer batch), which breaks the one-frame-per-message contract. Failing vmsplice(), and
 * splice() whose output fd is SOCKFD, with EINVAL is what the frameworks treat as "splice not
 * supported here": libfuse (fuse_send_data_iov) and go-fuse fall back to writev()/write(), which
 * send one message per reply. splice() into other fds (file -> pipe) keeps working. With SOCKFD
 * "-" the socket's number is not known yet (it lands wherever the server's mount(2) says, see
 * below) and a filter cannot be changed from outside the process: every splice() fails with
 * EINVAL, and the frameworks copy instead.
 *
 * --notify CHANFD (mount interception, issue 11): the same filter also answers the mount family
 * with SECCOMP_RET_USER_NOTIF, and its listener fd (SECCOMP_FILTER_FLAG_NEW_LISTENER) is sent to
 * fusetrace over the unix socket CHANFD (one byte + SCM_RIGHTS), then both are closed before the
 * exec. Only calls that happen once per mount notify: mount(2), umount2(2) (and umount(2) where
 * the architecture has it). The new mount API (fsopen, fsconfig, fsmount, move_mount, open_tree,
 * fspick, mount_setattr) fails with ENOSYS in the filter itself, which is what libfuse and
 * fusermount3 take as "old kernel" before falling back to mount(2). ioctl(FUSE_DEV_IOC_CLONE)
 * (libfuse -o clone_fd) fails with EINVAL, matched by its request number: the kernel refuses to
 * clone anything but a /dev/fuse fd with EINVAL (fuse_dev_ioctl_clone), libfuse then goes on
 * without clone_fd, and every request keeps arriving on the one fd fusetrace placed. Nothing
 * per request (read, write, openat, ...) ever reaches fusetrace.
 *
 * --private-mounts (replay, as root): the server runs in a mount namespace of its own
 * (unshare(CLONE_NEWNS), every mount a slave of the caller's: mounts made inside never propagate
 * out), so that what the replayer puts at the server's mountpoint (src/replay/link.ts) is seen by
 * the server and its children only, and goes away with them.
 *
 * fusetrace-exec --probe-addfd (run by `fusetrace doctor` under the filter above): calls a FUSE
 * mount(2) with fd=N naming /dev/null and checks that fusetrace answered 0 and put a socket at N,
 * i.e. that user notification, reading the caller's memory and ADDFD with SETFD all work here.
 *
 * Without CAP_SYS_ADMIN the kernel requires no_new_privs before a filter: the setuid
 * fusermount3 then runs with the caller's rights, and its mount(2) is intercepted like the
 * server's own (fusetrace performs the real mount, through the real fusermount3 outside the
 * filter).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

/* fuse_kernel.h: FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t) */
#define FT_DEV_IOC_CLONE _IOR(229, 0, uint32_t)

#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ERRNO(e) RET(SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define MAX_INSNS 64

struct prog {
  struct sock_filter f[MAX_INSNS];
  unsigned n;
};

static void emit(struct prog* p, struct sock_filter insn) {
  if (p->n < MAX_INSNS) p->f[p->n] = insn;
  p->n++;
}

/* if (nr == sys) return ret; (the accumulator holds nr) */
static void on_nr(struct prog* p, unsigned sys, uint32_t ret) {
  emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sys, 0, 1));
  emit(p, (struct sock_filter)RET(ret));
}

/* The new mount API: ENOSYS, so that the server (or fusermount3) falls back to mount(2). */
static const unsigned new_mount_api[] = {
#ifdef __NR_fsopen
    __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_move_mount, __NR_open_tree, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
};

static void build(struct prog* p, long sockfd, int notify) {
  const uint32_t einval = SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA);
  emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0));
  emit(p, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
  emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  on_nr(p, __NR_vmsplice, einval);
  if (sockfd < 0) {
    on_nr(p, __NR_splice, einval);
  } else {
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_splice, 0, 3));
    /* splice(fd_in, off_in, fd_out, ...): fd_out is args[2] */
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)sockfd, 0, 1));
    emit(p, (struct sock_filter)RET(einval));
    /* the accumulator holds args[2] here, not nr: only ALLOW may follow a splice */
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  }
  if (notify) {
    on_nr(p, __NR_mount, SECCOMP_RET_USER_NOTIF);
    on_nr(p, __NR_umount2, SECCOMP_RET_USER_NOTIF);
#ifdef __NR_umount
    on_nr(p, __NR_umount, SECCOMP_RET_USER_NOTIF);
#endif
    for (size_t i = 0; i < sizeof new_mount_api / sizeof new_mount_api[0]; i++)
      on_nr(p, new_mount_api[i], SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
    /* ioctl(fd, request, arg): the request number is args[1]; the kernel compares its low 32 bits */
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)FT_DEV_IOC_CLONE, 0, 1));
    emit(p, (struct sock_filter)RET(einval));
  }
  emit(p, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
}

/* Returns the listener fd (notify), 0 (no listener) or -1 with errno. */
static int install(struct prog* p, int notify) {
  struct sock_fprog fp = {(unsigned short)p->n, p->f};
  unsigned flags = notify ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
  int r = (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fp);
  if (r >= 0) return r;
  /* Without CAP_SYS_ADMIN the kernel requires no_new_privs first. */
  if (errno != EACCES) return -1;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fp);
}

/* The fusetrace end of the channel takes the listener with one byte + SCM_RIGHTS. */
static int send_fd(int chan, int fd) {
  char byte = 'L';
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.space;
  m.msg_controllen = sizeof ctl.space;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t r;
  do { r = sendmsg(chan, &m, MSG_NOSIGNAL); } while (r < 0 && errno == EINTR);
  return r == 1 ? 0 : -1;
}

static long parse_fd(const char* s) {
  char* end = NULL;
  long fd = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20) return -1;
  return fd;
}

static int probe_addfd(void) {
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return 1;
  char data[128];
  snprintf(data, sizeof data, "fd=%d,rootmode=40000,user_id=%u,group_id=%u", fd, getuid(), getgid());
  if (mount("fusetrace-probe", "/", "fuse.fusetrace-probe", MS_NOSUID | MS_NODEV, data) != 0) {
    printf("mount answered %s\n", strerrorname_np(errno));
    return 1;
  }
  struct stat st;
  int fl = fcntl(fd, F_GETFD);
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || fl < 0 || !(fl & FD_CLOEXEC)) {
    printf("fd %d is not the socket fusetrace placed (or lost close-on-exec)\n", fd);
    return 1;
  }
  printf("ok\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "--probe-addfd") == 0) return probe_addfd();
  int arg = 1;
  long chan = -1;
  if (argc > 1 && strcmp(argv[1], "--private-mounts") == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) {
      fprintf(stderr, "fusetrace-exec: cannot make a private mount namespace: %s\n", strerror(errno));
      return 127;
    }
    arg = 2;
  }
  if (argc > arg + 1 && strcmp(argv[arg], "--notify") == 0) {
    chan = parse_fd(argv[arg + 1]);
    if (chan < 0) {
      fprintf(stderr, "fusetrace-exec: bad CHANFD '%s'\n", argv[arg + 1]);
      return 127;
    }
    arg += 2;
  }
  if (argc < arg + 2) {
    fprintf(stderr, "usage: fusetrace-exec [--private-mounts] [--notify CHANFD] SOCKFD|- SERVER [ARGS...]\n");
    return 127;
  }
  long fd = strcmp(argv[arg], "-") == 0 ? -1 : parse_fd(argv[arg]);
  if (fd < 0 && strcmp(argv[arg], "-") != 0) {
    fprintf(stderr, "fusetrace-exec: bad SOCKFD '%s'\n", argv[arg]);
    return 127;
  }
  struct prog p = {.n = 0};
  build(&p, fd, chan >= 0);
  if (p.n > MAX_INSNS) {
    fprintf(stderr, "fusetrace-exec: filter too long (%u instructions)\n", p.n);
    return 127;
  }
  int listener = install(&p, chan >= 0);
  if (listener < 0) {
    fprintf(stderr, "fusetrace-exec: cannot install the seccomp filter: %s\n", strerror(errno));
    return 127;
  }
  if (chan >= 0) {
    if (send_fd((int)chan, listener) != 0) {
      fprintf(stderr, "fusetrace-exec: cannot pass the seccomp listener: %s\n", strerror(errno));
      return 127;
    }
    /* The server must hold neither: a listener in the filtered process itself would deadlock
     * its own mount, and the channel is fusetrace's. */
    close(listener);
    close((int)chan);
  }
  execvp(argv[arg + 1], argv + arg + 1);
  fprintf(stderr, "fusetrace-exec: cannot run %s: %s\n", argv[arg + 1], strerror(errno));
  return 127;
}
