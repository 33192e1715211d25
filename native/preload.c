/*
 * libfusetrace-preload.so: in-process recording, loaded into the FUSE server with LD_PRELOAD by
 * `fusetrace record` (see ring.h for why and for the handshake).
 *
 * It is inert unless FUSETRACE_FD names the fd the server was given as /dev/fd/N and that fd is
 * still the socket fusetrace created (FUSETRACE_SOCK_INO). With FUSETRACE_FD=any (mount
 * interception, src/proxy/intercept.ts) the socket lands at the number of the server's own
 * /dev/fuse fd when it mounts, or wherever fusermount3's SCM_RIGHTS message puts it: until it is
 * found, the first calls that could be frame reads on an fd (read, readv, poll, ...) fstat it
 * and compare the inode; once found, N is a plain integer compare as before. It wraps the libc calls a FUSE server
 * moves frames with: read/readv (requests), write/writev (replies and notifications), splice from
 * the device (libfuse SPLICE_READ). A server that bypasses libc (Go's raw syscalls) never calls
 * these wrappers on N, never asks for the takeover, and is relayed by the pump as before.
 *
 * Anything this file cannot do the same way as the relay makes it give up before the takeover
 * (epoll/select on N: the requests it holds from the takeover would never make the device
 * readable; poll and ppoll it answers itself), so the fallback is always the relay, never a
 * half-recorded session.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "populate.h"
#include "ring.h"

extern char** environ;

/* fuse_kernel.h: FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t) */
#define FT_DEV_IOC_CLONE _IOR(229, 0, uint32_t)

/* ST_REPLAY: `fusetrace replay` (FUSETRACE_REPLAY=1): no takeover and no ring; the server reads the
 * replay socket itself, and end-of-file on it becomes ENODEV (replay_readv). */
enum { ST_INERT = 0, ST_WAITING = 1, ST_ACTIVE = 2, ST_RELAY = 3, ST_REPLAY = 4 };

static int g_fd = -1;          /* N: the fd the server reads frames from */
static int g_state = ST_INERT;
static int g_orphan;           /* fusetrace is gone: reads return end-of-file, as through the relay */
static int g_watch_fd = -1;    /* the socket, kept after the takeover to notice fusetrace's end */
static unsigned long long g_sock_ino;
static int g_discover;         /* FUSETRACE_FD=any: N is wherever the socket lands (see above) */
static int g_replay_hello;     /* ST_REPLAY: the hello went out (once, at the first read of N) */
static unsigned g_test_delay_us;  /* FUSETRACE_TEST_WRITE_DELAY_US: widen the write-to-publish gap (tests) */
static unsigned g_test_read_delay_us;  /* FUSETRACE_TEST_READ_DELAY_US: widen the read-to-record gap of
                                          requests other than FUSE_INTERRUPT (tests) */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ft_ring_hdr* g_ring;
static uint8_t* g_data;

/* Requests the pump read from /dev/fuse and queued in the socket before the takeover (in practice
 * FUSE_INIT): the server reads them first. The pump recorded them already. */
struct pending {
  struct pending* next;
  size_t len;
  uint8_t data[];
};
static struct pending* g_pending;
static struct pending** g_pending_tail = &g_pending;
static int g_pending_count;

static ssize_t (*real_read)(int, void*, size_t);
static ssize_t (*real_readv)(int, const struct iovec*, int);
static ssize_t (*real_read_chk)(int, void*, size_t, size_t);
static ssize_t (*real_write)(int, const void*, size_t);
static ssize_t (*real_writev)(int, const struct iovec*, int);
static ssize_t (*real_splice)(int, loff_t*, int, loff_t*, size_t, unsigned int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_poll)(struct pollfd*, nfds_t, int);
static int (*real_ppoll)(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event*);
static int (*real_select)(int, fd_set*, fd_set*, fd_set*, struct timeval*);

static void resolve(void) {
  real_read = dlsym(RTLD_NEXT, "read");
  real_readv = dlsym(RTLD_NEXT, "readv");
  real_read_chk = dlsym(RTLD_NEXT, "__read_chk");
  real_write = dlsym(RTLD_NEXT, "write");
  real_writev = dlsym(RTLD_NEXT, "writev");
  real_splice = dlsym(RTLD_NEXT, "splice");
  real_ioctl = dlsym(RTLD_NEXT, "ioctl");
  real_close = dlsym(RTLD_NEXT, "close");
  real_dup2 = dlsym(RTLD_NEXT, "dup2");
  real_dup3 = dlsym(RTLD_NEXT, "dup3");
  real_poll = dlsym(RTLD_NEXT, "poll");
  real_ppoll = dlsym(RTLD_NEXT, "ppoll");
  real_epoll_ctl = dlsym(RTLD_NEXT, "epoll_ctl");
  real_select = dlsym(RTLD_NEXT, "select");
}

static size_t g_max_frame_env;  /* FUSETRACE_MAX_FRAME, read at load time (environ is cleaned then) */

/* True in fusetrace-exec, the seccomp helper fusetrace starts the server through: the variables
 * must reach the server it execs, so the helper leaves them alone. */
static int in_exec_helper(void) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 0;
  exe[n] = '\0';
  const char* base = strrchr(exe, '/');
  return strcmp(base ? base + 1 : exe, "fusetrace-exec") == 0;
}

/* Nothing of fusetrace reaches the server's own children (issue 12): once the variables are read,
 * FUSETRACE_* go from the environment and this library from LD_PRELOAD (other entries stay), so a
 * program the server runs (a mount helper, a shell, a child it forks and execs) starts as it would
 * natively. Runs in the constructor, before the server has threads, so editing environ is safe. */
static void clean_environment(void) {
  Dl_info self;
  const char* me = dladdr((void*)clean_environment, &self) && self.dli_fname ? self.dli_fname : NULL;
  const char* pre = getenv("LD_PRELOAD");
  if (pre && me) {
    const char* mebase = strrchr(me, '/') ? strrchr(me, '/') + 1 : me;
    size_t n = strlen(pre);
    char* keep = malloc(n + 1);
    char* copy = strdup(pre);
    if (keep && copy) {
      keep[0] = '\0';
      for (char* save = NULL, *tok = strtok_r(copy, ": ", &save); tok; tok = strtok_r(NULL, ": ", &save)) {
        const char* tb = strrchr(tok, '/') ? strrchr(tok, '/') + 1 : tok;
        if (strcmp(tok, me) == 0 || strcmp(tb, mebase) == 0) continue;
        if (keep[0]) strcat(keep, ":");
        strcat(keep, tok);
      }
      if (keep[0]) setenv("LD_PRELOAD", keep, 1);
      else unsetenv("LD_PRELOAD");
    }
    free(keep);
    free(copy);
  }
  /* Collect the names first: unsetenv() shifts environ under a running loop. */
  char names[32][64];
  int count = 0;
  for (char** e = environ; *e && count < 32; e++) {
    if (strncmp(*e, "FUSETRACE_", 10) != 0) continue;
    const char* eq = strchr(*e, '=');
    size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
    if (len >= sizeof names[0]) continue;
    memcpy(names[count], *e, len);
    names[count++][len] = '\0';
  }
  for (int i = 0; i < count; i++) unsetenv(names[i]);
}

__attribute__((constructor)) static void ft_init(void) {
  resolve();
  if (in_exec_helper()) return;
  const char* fd = getenv("FUSETRACE_FD");
  const char* ino = getenv("FUSETRACE_SOCK_INO");
  if (!fd || !ino) {
    clean_environment();
    return;
  }
  char* end;
  long n = -1;
  int ok = 1;
  if (strcmp(fd, "any") == 0) {
    /* Interception: the socket lands at the server's own fuse fd number (or wherever fusermount3's
     * SCM_RIGHTS puts it); it is found by inode at the first read or poll (discover()). */
    g_discover = 1;
  } else {
    n = strtol(fd, &end, 10);
    ok = *fd != '\0' && *end == '\0' && n >= 0 && n <= 1 << 20;
  }
  g_sock_ino = strtoull(ino, &end, 10);
  const char* delay = getenv("FUSETRACE_TEST_WRITE_DELAY_US");
  if (delay) g_test_delay_us = (unsigned)strtoul(delay, NULL, 10);
  const char* rdelay = getenv("FUSETRACE_TEST_READ_DELAY_US");
  if (rdelay) g_test_read_delay_us = (unsigned)strtoul(rdelay, NULL, 10);
  const char* mf = getenv("FUSETRACE_MAX_FRAME");
  if (mf && atol(mf) > 0) g_max_frame_env = (size_t)atol(mf);
  const char* replay = getenv("FUSETRACE_REPLAY");
  int replaying = replay && strcmp(replay, "1") == 0;
  clean_environment();
  if (!ok) return;
  /* fusetrace is this server's parent (it exec'd the server through fusetrace-exec, keeping its
   * pid). If fusetrace is SIGKILLed, a server that never reads its fd (one that never answered
   * INIT) would otherwise live on as an orphan: end it as fusetrace would have (SIGTERM). A server
   * that reads sees end-of-file or is sent SIGTERM by watch_main anyway. Not inherited by the
   * server's own children (cleared at fork), and cleared by the kernel for a setuid exec. */
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) raise(SIGTERM);
  /* The server's fuse fd is close-on-exec, as a /dev/fuse fd libfuse opens itself is
   * (fuse_mount_sys: O_CLOEXEC): fusetrace hands it over without the flag only so that it
   * survives the exec of the server; a program the server execs must not hold the connection
   * open (a crashed server's child would keep the mount alive: `ls` hangs instead of ENOTCONN). */
  struct stat st;
  if (n >= 0 && fstat((int)n, &st) == 0 && S_ISSOCK(st.st_mode) && (unsigned long long)st.st_ino == g_sock_ino)
    fcntl((int)n, F_SETFD, fcntl((int)n, F_GETFD) | FD_CLOEXEC);
  g_state = replaying ? ST_REPLAY : ST_WAITING;
  __atomic_store_n(&g_fd, (int)n, __ATOMIC_RELEASE);
}

static inline int state(void) { return __atomic_load_n(&g_state, __ATOMIC_ACQUIRE); }

/* Still looking for the socket (FUSETRACE_FD=any, before the takeover). */
static inline int discovering(void) {
  return g_discover && __atomic_load_n(&g_fd, __ATOMIC_RELAXED) < 0 && (state() == ST_WAITING || state() == ST_REPLAY);
}

/* Is `fd` fusetrace's socket? Then it becomes N. */
static int discover(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || (unsigned long long)st.st_ino != g_sock_ino) return 0;
  int none = -1;
  __atomic_compare_exchange_n(&g_fd, &none, fd, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  return __atomic_load_n(&g_fd, __ATOMIC_ACQUIRE) == fd;
}

static inline int tracked(int fd) {
  if (fd < 0) return 0;
  if (fd == __atomic_load_n(&g_fd, __ATOMIC_RELAXED)) return 1;
  return discovering() && discover(fd);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the ring (producer side; ring.h) ---- */

/* Reserves a record of `need` bytes (a multiple of 8); NULL when the ring is full. *pos is the
 * record's absolute position, for its stamp. */
static struct ft_ring_rec* ring_reserve(uint64_t need, uint64_t* pos) {
  struct ft_ring_hdr* h = g_ring;
  uint64_t size = h->size;
  uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
  for (;;) {
    uint64_t off = head & (size - 1);
    uint64_t skip = off + need > size ? size - off : 0;
    uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
    if (head + skip + need - tail > size) return NULL;
    if (__atomic_compare_exchange_n(&h->head, &head, head + skip + need, 1, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
      if (skip) {
        /* The stamp alone: when only 8 bytes are left, rec_len would lie past the data area (in
         * the server's own memory beyond the mapping; ring.h, FT_REC_SKIP). */
        struct ft_ring_rec* s = (struct ft_ring_rec*)(g_data + off);
        __atomic_store_n(&s->stamp, FT_STAMP(head, h->key, FT_REC_SKIP), __ATOMIC_RELEASE);
      }
      *pos = head + skip;
      return (struct ft_ring_rec*)(g_data + ((head + skip) & (size - 1)));
    }
  }
}

/* Backpressure by default: a server thread that finds the ring full waits until fusetrace has
 * made room, however long that takes, exactly as a server on the relay waits for the pump. The
 * filesystem then runs at the trace writer's pace and nothing is lost: dropping frames under
 * load (the old bounded 1 s wait) lost 76% of the frames of 8 parallel fio jobs, and a dropped
 * request or reply left its request `unknown` or `aborted` in the ledger. Only `record --lossy`
 * (FT_RING_LOSSY) drops, and then at once, without slowing the server, naming each dropped
 * frame's unique in the lost list. The wait ends when fusetrace is gone (g_orphan). */
static void wake_consumer(void) {
  struct ft_ring_hdr* h = g_ring;
  if (__atomic_load_n(&h->sleeping, __ATOMIC_RELAXED) && __atomic_exchange_n(&h->sleeping, 0, __ATOMIC_ACQ_REL))
    syscall(SYS_futex, &h->sleeping, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* `must`: an event or a patch (tiny and rare; an unmount event must never be lost): waits even
 * with --lossy. NULL when the record cannot be kept (counted by the caller). */
static struct ft_ring_rec* ring_reserve_wait(uint64_t need, uint64_t* pos, int must) {
  struct ft_ring_rec* r = ring_reserve(need, pos);
  if (r) return r;
  struct ft_ring_hdr* h = g_ring;
  if (need > h->size) return NULL;  /* can never fit (a server's huge notification) */
  if ((h->flags & FT_RING_LOSSY) && !must) return NULL;
  wake_consumer();
  uint64_t start = now_ns();
  long nap_ns = 20000;
  while (!(r = ring_reserve(need, pos))) {
    if (__atomic_load_n(&g_orphan, __ATOMIC_RELAXED)) return NULL;
    struct timespec nap = {0, nap_ns};
    nanosleep(&nap, NULL);
    if (nap_ns < 1000000) nap_ns *= 2;  /* 20 us .. 1 ms: the consumer drains every 2 ms when busy */
    wake_consumer();
  }
  __atomic_add_fetch(&h->waits, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&h->wait_ns, now_ns() - start, __ATOMIC_RELAXED);
  return r;
}

static void ring_publish(struct ft_ring_rec* r, uint64_t pos, uint32_t type) {
  struct ft_ring_hdr* h = g_ring;
  __atomic_store_n(&r->stamp, FT_STAMP(pos, h->key, type), __ATOMIC_RELEASE);
  /* The consumer sleeps on a timer; wake it early only when an eighth of the ring is in use. */
  if (__atomic_load_n(&h->sleeping, __ATOMIC_RELAXED) &&
      __atomic_load_n(&h->head, __ATOMIC_RELAXED) - __atomic_load_n(&h->tail, __ATOMIC_RELAXED) >= h->size / 8 &&
      __atomic_exchange_n(&h->sleeping, 0, __ATOMIC_ACQ_REL)) {
    syscall(SYS_futex, &h->sleeping, FUTEX_WAKE, 1, NULL, NULL, 0);
  }
}

/* A frame the ring could not keep (--lossy): counted, and its unique named in the lost list so
 * that its request is labelled `lost`. Both headers carry the unique at offset 8 (fuse_in_header
 * and fuse_out_header); a notification (unique 0) belongs to no request and is only counted. */
static void ring_drop(const struct iovec* iov, int iovcnt, uint64_t len) {
  struct ft_ring_hdr* h = g_ring;
  __atomic_add_fetch(&h->dropped, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&h->dropped_bytes, len, __ATOMIC_RELAXED);
  uint8_t hdr[16];
  size_t have = 0;
  for (int i = 0; i < iovcnt && have < sizeof hdr; i++) {
    size_t take = iov[i].iov_len < sizeof hdr - have ? iov[i].iov_len : sizeof hdr - have;
    memcpy(hdr + have, iov[i].iov_base, take);
    have += take;
  }
  uint64_t unique = 0;
  if (have >= 16 && len >= 16) memcpy(&unique, hdr + 8, 8);
  if (unique == 0 || h->lost_cap == 0) return;
  uint64_t slot = __atomic_fetch_add(&h->lost_head, 1, __ATOMIC_ACQ_REL);
  if (slot >= h->lost_cap) return;
  uint64_t* lost = (uint64_t*)(g_data + h->size);
  __atomic_store_n(&lost[slot], unique + 1, __ATOMIC_RELEASE);
}

/* Reserves and fills the record of a frame held in `iov` (total `len` bytes); the caller sets
 * fwd_ns/write_errno and publishes it (ring_publish). NULL when the ring had no room (counted). */
static struct ft_ring_rec* record_begin(uint8_t dir, const struct iovec* iov, int iovcnt, size_t len, uint64_t ts,
                                        uint64_t* pos) {
  uint32_t snap = g_ring->snaplen;
  size_t cap = snap && len > snap ? snap : len;
  struct ft_ring_rec* r = ring_reserve_wait(sizeof *r + FT_REC_ALIGN(cap), pos, 0);
  if (!r) {
    ring_drop(iov, iovcnt, len);
    return NULL;
  }
  uint8_t* out = (uint8_t*)(r + 1);
  size_t done = 0;
  uint8_t hdr[40];
  size_t hdr_have = 0;
  for (int i = 0; i < iovcnt && done < len; i++) {
    size_t take = iov[i].iov_len;
    if (take > len - done) take = len - done;
    if (done < cap) memcpy(out + done, iov[i].iov_base, take < cap - done ? take : cap - done);
    if (hdr_have < sizeof hdr) {
      size_t h = take < sizeof hdr - hdr_have ? take : sizeof hdr - hdr_have;
      memcpy(hdr + hdr_have, iov[i].iov_base, h);
      hdr_have += h;
    }
    done += take;
  }
  r->rec_len = (uint32_t)(sizeof *r + FT_REC_ALIGN(cap));
  r->ts_ns = ts;
  r->fwd_ns = ts;
  r->len = (uint32_t)len;
  r->cap_len = (uint32_t)cap;
  r->write_errno = 0;
  r->dir = dir;
  r->flags = 0;
  r->unique = 0;
  r->code = 0;
  r->pid = 0;
  if (dir == 0 && hdr_have >= 40) {
    /* fuse_in_header: len 0, opcode 4, unique 8, nodeid 16, uid 24, gid 28, pid 32 */
    memcpy(&r->code, hdr + 4, 4);
    memcpy(&r->unique, hdr + 8, 8);
    memcpy(&r->pid, hdr + 32, 4);
  } else if (dir == 1 && hdr_have >= 16) {
    /* fuse_out_header: len 0, error 4, unique 8 */
    memcpy(&r->code, hdr + 4, 4);
    memcpy(&r->unique, hdr + 8, 8);
  }
  return r;
}

static void record_patch(uint64_t target, uint64_t fwd, int werr) {
  uint64_t pos;
  struct ft_ring_rec* r = ring_reserve_wait(sizeof *r, &pos, 1);
  if (!r) return;  /* the notification keeps fwd_ns 0: "not known to be forwarded" */
  memset((uint8_t*)r + 8, 0, sizeof *r - 8);
  r->rec_len = sizeof *r;
  r->unique = target;
  r->fwd_ns = fwd;
  r->write_errno = werr;
  ring_publish(r, pos, FT_REC_PATCH);
}

static void record_event(int code) {
  uint64_t pos;
  struct ft_ring_rec* r = ring_reserve_wait(sizeof *r, &pos, 1);
  if (!r) return;
  memset((uint8_t*)r + 8, 0, sizeof *r - 8);
  r->rec_len = sizeof *r;
  r->ts_ns = now_ns();
  r->code = code;
  ring_publish(r, pos, FT_REC_EVENT);
}

/* ---- the takeover ---- */

/* fusetrace closed its end of the socket (it ended or was killed): end the server as the relay
 * would (its reads see end-of-file), and ask it to exit so that threads asleep in read() go too. */
static void* watch_main(void* arg) {
  (void)arg;
  char b[64];
  for (;;) {
    ssize_t r = recv(g_watch_fd, b, sizeof b, 0);
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      /* A dup of the server's fd: non-blocking if the server made it so. */
      struct pollfd pfd = {g_watch_fd, POLLIN, 0};
      real_poll(&pfd, 1, -1);
      continue;
    }
    break;
  }
  __atomic_store_n(&g_orphan, 1, __ATOMIC_RELEASE);
  kill(getpid(), SIGTERM);
  return NULL;
}

static void pending_push(const uint8_t* data, size_t len) {
  struct pending* p = malloc(sizeof *p + len);
  if (!p) return;
  p->next = NULL;
  p->len = len;
  memcpy(p->data, data, len);
  *g_pending_tail = p;
  g_pending_tail = &p->next;
  __atomic_add_fetch(&g_pending_count, 1, __ATOMIC_RELEASE);
}

/* Hands the next request queued before the takeover to a read; -2 when there is none. */
static ssize_t pending_pop(const struct iovec* iov, int iovcnt) {
  if (__atomic_load_n(&g_pending_count, __ATOMIC_ACQUIRE) == 0) return -2;
  pthread_mutex_lock(&g_mu);
  struct pending* p = g_pending;
  if (p) {
    g_pending = p->next;
    if (!g_pending) g_pending_tail = &g_pending;
    __atomic_sub_fetch(&g_pending_count, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&g_mu);
  if (!p) return -2;
  size_t room = 0;
  for (int i = 0; i < iovcnt; i++) room += iov[i].iov_len;
  if (room < p->len) {
    /* The kernel would refuse such a read (fs/fuse/dev.c: -EINVAL for a buffer smaller than the
     * request) and keep the request; do the same. */
    pthread_mutex_lock(&g_mu);
    p->next = g_pending;
    g_pending = p;
    if (!p->next) g_pending_tail = &p->next;
    __atomic_add_fetch(&g_pending_count, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_mu);
    errno = EINVAL;
    return -1;
  }
  size_t done = 0;
  for (int i = 0; i < iovcnt && done < p->len; i++) {
    size_t take = iov[i].iov_len < p->len - done ? iov[i].iov_len : p->len - done;
    memcpy(iov[i].iov_base, p->data + done, take);
    done += take;
  }
  ssize_t n = (ssize_t)p->len;
  free(p);
  return n;
}

/* The server's messages to fusetrace on its socket (ring.h): a 16-byte fuse_out_header
 * {16, code, FT_MAGIC}, which no kernel reply can be (the magic is never a unique). */
static void control_message(uint8_t m[16], int32_t code) {
  uint32_t len = 16;
  uint64_t magic = FT_MAGIC;
  memcpy(m, &len, 4);
  memcpy(m + 4, &code, 4);
  memcpy(m + 8, &magic, 8);
}

/* Maps the ring memfd (`bytes` long) with an inaccessible page after it, so that a write past the
 * ring faults here, in the preload, instead of landing in whatever the server mapped next (a
 * malloc arena's header, in the crash that ring version 2's 8-byte skip caused). *reserved is the
 * length to munmap. */
static void* map_ring(int fd, size_t bytes, size_t* reserved) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t rounded = (bytes + page - 1) / page * page;
  void* area = mmap(NULL, rounded + page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) return MAP_FAILED;
  void* map = mmap(area, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (map == MAP_FAILED) {
    munmap(area, rounded + page);
    return MAP_FAILED;
  }
  *reserved = rounded + page;
  return map;
}

/* Called with g_mu held, state ST_WAITING. Ends in ST_ACTIVE or ST_RELAY. */
static void takeover_locked(void) {
  int fd = g_fd;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || (unsigned long long)st.st_ino != g_sock_ino) {
    __atomic_store_n(&g_state, ST_RELAY, __ATOMIC_RELEASE);
    return;
  }
  uint8_t req[16];
  control_message(req, FT_TAKEOVER_CODE);
  /* Room for any frame the pump may have queued before its answer. */
  size_t bufsize = (1u << 20) + (64u << 10);
  if (g_max_frame_env > 0) bufsize = g_max_frame_env + 4096;
  uint8_t* buf = malloc(bufsize);
  if (!buf || send(fd, req, sizeof req, MSG_NOSIGNAL) != (ssize_t)sizeof req) {
    free(buf);
    __atomic_store_n(&g_state, ST_RELAY, __ATOMIC_RELEASE);
    return;
  }
  int fds[2] = {-1, -1};
  int accepted = 0;
  for (;;) {
    union {
      struct cmsghdr h;
      char space[CMSG_SPACE(sizeof(int) * 2)];
    } ctl;
    struct iovec iov = {buf, bufsize};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.space;
    m.msg_controllen = sizeof ctl.space;
    ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      /* The server made the socket non-blocking (an event loop): wait for the answer anyway. */
      struct pollfd pfd = {fd, POLLIN, 0};
      real_poll(&pfd, 1, -1);
      continue;
    }
    if (n <= 0) {
      __atomic_store_n(&g_orphan, 1, __ATOMIC_RELEASE);
      break;
    }
    uint32_t op = 0;
    uint64_t uq = 0;
    if (n >= 40) {
      memcpy(&op, buf + 4, 4);
      memcpy(&uq, buf + 8, 8);
    }
    if (n == FT_ACK_LEN && op == FT_ACK_OPCODE && uq == FT_MAGIC) {
      uint32_t status;
      memcpy(&status, buf + 40, 4);
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int) * 2)) {
          memcpy(fds, CMSG_DATA(c), sizeof fds);
        }
      }
      accepted = status == FT_ACK_ACCEPTED && fds[0] >= 0 && fds[1] >= 0;
      break;
    }
    pending_push(buf, (size_t)n);
  }
  free(buf);
  if (accepted) {
    struct stat rs;
    void* map = MAP_FAILED;
    size_t reserved = 0;
    if (fstat(fds[1], &rs) == 0 && rs.st_size > (off_t)FT_RING_HDR_BYTES)
      map = map_ring(fds[1], (size_t)rs.st_size, &reserved);
    struct ft_ring_hdr* h = map == MAP_FAILED ? NULL : (struct ft_ring_hdr*)map;
    int sane = h && h->magic == FT_RING_MAGIC && h->version == FT_RING_VERSION &&
               (uint64_t)rs.st_size >= FT_RING_HDR_BYTES + h->size + h->lost_cap * 8;
    int watch = sane ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
    int fdflags = fcntl(fd, F_GETFD);
    int flflags = fcntl(fd, F_GETFL);
    if (watch >= 0 && real_dup3(fds[0], fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) == fd) {
      /* The device blocks like the socket did, or not (the pump made it blocking). */
      if (flflags >= 0 && (flflags & O_NONBLOCK)) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      g_ring = h;
      g_data = (uint8_t*)map + FT_RING_HDR_BYTES;
      /* The ring's pages (fusetrace populated them) mapped now, in one call, rather than by a
       * page fault per 4 KiB on the server's threads as the first lap reaches them. */
      ft_populate_write(g_data, (size_t)h->size);
      g_watch_fd = watch;
      pthread_t t;
      pthread_attr_t a;
      sigset_t all, old;
      pthread_attr_init(&a);
      pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
      pthread_attr_setstacksize(&a, 64 << 10);
      /* Signals stay with the server's own threads. */
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      pthread_create(&t, &a, watch_main, NULL);
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      pthread_attr_destroy(&a);
      __atomic_store_n(&g_state, ST_ACTIVE, __ATOMIC_RELEASE);
    } else {
      /* Cannot happen short of running out of fds; the pump already stopped reading /dev/fuse,
       * so the session cannot go on through the socket either: the reads below fail. */
      if (watch >= 0) real_close(watch);
      if (map != MAP_FAILED) munmap(map, reserved);
      __atomic_store_n(&g_orphan, 1, __ATOMIC_RELEASE);
      __atomic_store_n(&g_state, ST_RELAY, __ATOMIC_RELEASE);
    }
    real_close(fds[0]);
    real_close(fds[1]);
    return;
  }
  if (fds[0] >= 0) real_close(fds[0]);
  if (fds[1] >= 0) real_close(fds[1]);
  __atomic_store_n(&g_state, ST_RELAY, __ATOMIC_RELEASE);
}

static void ensure_takeover(void) {
  if (state() != ST_WAITING) return;
  pthread_mutex_lock(&g_mu);
  if (state() == ST_WAITING) takeover_locked();
  pthread_mutex_unlock(&g_mu);
}

/* A server that waits for N with epoll or select must stay on the relay: the requests received
 * during a takeover would never make the device readable. */
static void no_takeover(void) {
  if (state() != ST_WAITING) return;
  pthread_mutex_lock(&g_mu);
  if (state() == ST_WAITING) __atomic_store_n(&g_state, ST_RELAY, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&g_mu);
}

/* ---- wrappers ---- */

/* Requesting pids already named in the ring. The name is read here, in the server thread that got
 * the pid's first request, because the requester is alive then: it waits for the reply (the ring
 * thread drains every few ms, long after a short-lived `ls` has gone). Open addressing, insert
 * only; once 3/4 full, new pids are left to the pump (named later, if still alive). */
#define FT_PIDS 8192
static uint32_t g_pids[FT_PIDS];
static uint32_t g_pids_used;

static int pid_first_seen(uint32_t pid) {
  if (pid == 0) return 0;
  if (__atomic_load_n(&g_pids_used, __ATOMIC_RELAXED) >= FT_PIDS / 4 * 3) return 0;
  for (uint32_t i = (pid * 2654435761u) % FT_PIDS, n = 0; n < FT_PIDS; i = (i + 1) % FT_PIDS, n++) {
    uint32_t cur = __atomic_load_n(&g_pids[i], __ATOMIC_ACQUIRE);
    if (cur == pid) return 0;
    if (cur != 0) continue;
    uint32_t zero = 0;
    if (__atomic_compare_exchange_n(&g_pids[i], &zero, pid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      __atomic_add_fetch(&g_pids_used, 1, __ATOMIC_RELAXED);
      return 1;
    }
    if (zero == pid) return 0;
  }
  return 0;
}

static void record_proc(uint32_t pid) {
  char path[32], comm[64];
  snprintf(path, sizeof path, "/proc/%u/comm", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = real_read(fd, comm, sizeof comm);
  real_close(fd);
  if (n <= 0) return;
  if (comm[n - 1] == '\n') n--;
  uint64_t pos;
  /* A process name is only a label: with --lossy it may go (the pump names the pid later). */
  struct ft_ring_rec* r = ring_reserve_wait(sizeof *r + FT_REC_ALIGN((uint64_t)n), &pos, 0);
  if (!r) return;
  memset((uint8_t*)r + 8, 0, sizeof *r - 8);
  memcpy(r + 1, comm, (size_t)n);
  r->rec_len = (uint32_t)(sizeof *r + FT_REC_ALIGN((uint64_t)n));
  r->pid = pid;
  r->len = r->cap_len = (uint32_t)n;
  ring_publish(r, pos, FT_REC_PROC);
}

/* Replay: a recorded session that ended at an unmount ends the same way. There the server's next
 * read of /dev/fuse failed with ENODEV (fs/fuse/dev.c fuse_dev_do_read: the connection is gone and
 * was not aborted), which libfuse's loop takes for a clean end (exit 0), whereas end-of-file on a
 * socket is "short read on fuse device" (exit 1). The replayer ends a session by closing its end of
 * the socket, so end-of-file on N is turned into ENODEV. The hello tells the replayer that this
 * translation is in place (a server that reads without libc, such as Go's, never sends it). */
static void replay_hello(int fd) {
  if (__atomic_exchange_n(&g_replay_hello, 1, __ATOMIC_ACQ_REL)) return;
  uint8_t m[16];
  control_message(m, FT_REPLAY_HELLO_CODE);
  int e = errno;
  send(fd, m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT);
  errno = e;
}

static ssize_t replay_readv(int fd, const struct iovec* iov, int iovcnt) {
  replay_hello(fd);
  ssize_t n = iovcnt == 1 ? real_read(fd, iov[0].iov_base, iov[0].iov_len) : real_readv(fd, iov, iovcnt);
  if (n == 0) {
    errno = ENODEV;
    return -1;
  }
  return n;
}

static ssize_t traced_readv(int fd, const struct iovec* iov, int iovcnt) {
  if (state() == ST_REPLAY) return replay_readv(fd, iov, iovcnt);
  ensure_takeover();
  ssize_t p = pending_pop(iov, iovcnt);
  if (p != -2) return p;
  if (__atomic_load_n(&g_orphan, __ATOMIC_ACQUIRE)) return 0;
  if (state() != ST_ACTIVE) return iovcnt == 1 ? real_read(fd, iov[0].iov_base, iov[0].iov_len) : real_readv(fd, iov, iovcnt);
  ssize_t n = iovcnt == 1 ? real_read(fd, iov[0].iov_base, iov[0].iov_len) : real_readv(fd, iov, iovcnt);
  if (n > 0) {
    uint64_t ts = now_ns();
    uint32_t pid = 0;
    /* fuse_in_header.pid at offset 32 */
    if (iov[0].iov_len >= 40 && n >= 40) memcpy(&pid, (const uint8_t*)iov[0].iov_base + 32, 4);
    if (g_test_read_delay_us && iov[0].iov_len >= 8 && ((const uint32_t*)iov[0].iov_base)[1] != 36) usleep(g_test_read_delay_us);
    if (pid_first_seen(pid)) record_proc(pid);
    uint64_t pos;
    struct ft_ring_rec* r = record_begin(0, iov, iovcnt, (size_t)n, ts, &pos);
    if (r) ring_publish(r, pos, FT_REC_FRAME);
  } else if (n < 0 && errno == ENODEV) {
    int e = errno;
    record_event(FT_EV_ENODEV);
    errno = e;
  }
  return n;
}

static ssize_t traced_writev(int fd, const struct iovec* iov, int iovcnt) {
  if (state() != ST_ACTIVE) return iovcnt == 1 ? real_write(fd, iov[0].iov_base, iov[0].iov_len) : real_writev(fd, iov, iovcnt);
  size_t len = 0;
  for (int i = 0; i < iovcnt; i++) len += iov[i].iov_len;
  uint64_t pos;
  struct ft_ring_rec* r = record_begin(1, iov, iovcnt, len, now_ns(), &pos);
  int notify = r && r->unique == 0;
  if (notify) {
    r->flags = FT_RECF_PATCH_FOLLOWS;
    r->fwd_ns = 0;
    ring_publish(r, pos, FT_REC_FRAME);
  } else if (r) {
    r->fwd_ns = 0;
    __atomic_store_n(&r->stamp, FT_STAMP(pos, g_ring->key, FT_REC_PENDING), __ATOMIC_RELEASE);
  }
  ssize_t n = iovcnt == 1 ? real_write(fd, iov[0].iov_base, iov[0].iov_len) : real_writev(fd, iov, iovcnt);
  int e = n < 0 ? errno : 0;
  uint64_t fwd = now_ns();
  if (g_test_delay_us) usleep(g_test_delay_us);
  if (notify) {
    record_patch(pos, fwd, e);
  } else if (r) {
    r->fwd_ns = fwd;
    r->write_errno = e;
    ring_publish(r, pos, FT_REC_FRAME);
  }
  if (n < 0) errno = e;
  return n;
}

ssize_t read(int fd, void* buf, size_t count) {
  if (!real_read) resolve();
  if (!tracked(fd)) return real_read(fd, buf, count);
  struct iovec iov = {buf, count};
  return traced_readv(fd, &iov, 1);
}

/* _FORTIFY_SOURCE turns read() into a fixed-size buffer into __read_chk(): the same call. */
ssize_t __read_chk(int fd, void* buf, size_t count, size_t buflen) {
  if (!real_read_chk) resolve();
  /* An overflow, or not ours: glibc's own check and read. */
  if (count > buflen || !tracked(fd)) return real_read_chk(fd, buf, count, buflen);
  struct iovec iov = {buf, count};
  return traced_readv(fd, &iov, 1);
}

ssize_t readv(int fd, const struct iovec* iov, int iovcnt) {
  if (!real_readv) resolve();
  if (!tracked(fd)) return real_readv(fd, iov, iovcnt);
  return traced_readv(fd, iov, iovcnt);
}

ssize_t write(int fd, const void* buf, size_t count) {
  if (!real_write) resolve();
  if (!tracked(fd)) return real_write(fd, buf, count);
  struct iovec iov = {(void*)buf, count};
  return traced_writev(fd, &iov, 1);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  if (!real_writev) resolve();
  if (!tracked(fd)) return real_writev(fd, iov, iovcnt);
  return traced_writev(fd, iov, iovcnt);
}

ssize_t splice(int fd_in, loff_t* off_in, int fd_out, loff_t* off_out, size_t len, unsigned int flags) {
  if (!real_splice) resolve();
  int out = tracked(fd_out) && state() == ST_ACTIVE;
  if (!out && !tracked(fd_in)) return real_splice(fd_in, off_in, fd_out, off_out, len, flags);
  if (!out && state() == ST_REPLAY) {
    /* libfuse SPLICE_READ from the replay socket: end-of-file becomes ENODEV here too (replay_readv). */
    replay_hello(fd_in);
    ssize_t n = real_splice(fd_in, off_in, fd_out, off_out, len, flags);
    if (n != 0) return n;
    errno = ENODEV;
    return -1;
  }
  /* The frame passes through this thread's buffer instead of a pipe, so it is recorded like any
   * other (the fusetrace-exec seccomp filter already makes vmsplice fail, so libfuse and go-fuse
   * normally write replies with writev; this path is for a server started without it). */
  static __thread uint8_t* tbuf;
  static __thread size_t tcap;
  if (tcap < len) {
    uint8_t* nb = realloc(tbuf, len);
    if (!nb) {
      errno = ENOMEM;
      return -1;
    }
    tbuf = nb;
    tcap = len;
  }
  if (out) {
    /* A reply spliced from a pipe (libfuse SPLICE_WRITE: header vmspliced, data spliced behind
     * it): the pipe holds the whole reply of `len` bytes; read it and write it in one piece. */
    size_t got = 0;
    while (got < len) {
      ssize_t r = real_read(fd_in, tbuf + got, len - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (got == 0) return -1;
    struct iovec wiov = {tbuf, got};
    return traced_writev(fd_out, &wiov, 1);
  }
  ensure_takeover();
  if (state() != ST_ACTIVE && __atomic_load_n(&g_pending_count, __ATOMIC_ACQUIRE) == 0)
    return real_splice(fd_in, off_in, fd_out, off_out, len, flags);
  /* libfuse SPLICE_READ moves a request from the device into its pipe. Read it instead (so it is
   * recorded like any request), then fill the pipe: libfuse sized the pipe for a whole request
   * and drains it before the next one, so this write does not block. */
  struct iovec iov = {tbuf, len};
  ssize_t n = traced_readv(fd_in, &iov, 1);
  if (n <= 0) return n;
  size_t done = 0;
  while (done < (size_t)n) {
    ssize_t w = real_write(fd_out, tbuf + done, (size_t)n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    done += (size_t)w;
  }
  return n;
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (!real_ioctl) resolve();
  if (request == FT_DEV_IOC_CLONE && arg && state() != ST_INERT) {
    uint32_t master;
    memcpy(&master, arg, sizeof master);
    if (tracked((int)master)) {
      /* Through the relay the kernel refuses to clone a socket (EINVAL) and libfuse goes on
       * without clone_fd; keep that, so both transports read every request from N. */
      errno = EINVAL;
      return -1;
    }
  }
  return real_ioctl(fd, request, arg);
}

static void untrack(int fd) {
  if (tracked(fd)) __atomic_store_n(&g_fd, -1, __ATOMIC_RELEASE);
}

int close(int fd) {
  if (!real_close) resolve();
  if (tracked(fd)) untrack(fd);
  return real_close(fd);
}

int dup2(int oldfd, int newfd) {
  if (!real_dup2) resolve();
  if (oldfd != newfd && tracked(newfd)) untrack(newfd);
  return real_dup2(oldfd, newfd);
}

int dup3(int oldfd, int newfd, int flags) {
  if (!real_dup3) resolve();
  if (tracked(newfd)) untrack(newfd);
  return real_dup3(oldfd, newfd, flags);
}

/* poll/ppoll on N: the takeover happens here if the server polls before it reads (an event loop
 * such as test/servers/interrupt_fs.c), and requests held from the takeover make N readable, as
 * they would be if they were still queued in the kernel. */
static int poll_common(struct pollfd* fds, nfds_t n, int timeout, const struct timespec* ts, const sigset_t* mask,
                       int use_ppoll) {
  int mine = -1;
  if (__atomic_load_n(&g_fd, __ATOMIC_RELAXED) >= 0 || discovering())
    for (nfds_t i = 0; i < n; i++)
      if (tracked(fds[i].fd)) mine = (int)i;
  if (mine >= 0) {
    ensure_takeover();
    if (__atomic_load_n(&g_pending_count, __ATOMIC_ACQUIRE) > 0 && (fds[mine].events & POLLIN)) {
      struct timespec zero = {0, 0};
      int r = use_ppoll ? real_ppoll(fds, n, &zero, mask) : real_poll(fds, n, 0);
      if (r < 0) return r;
      if (fds[mine].revents == 0) r++;
      fds[mine].revents |= POLLIN;
      return r;
    }
  }
  return use_ppoll ? real_ppoll(fds, n, ts, mask) : real_poll(fds, n, timeout);
}

int poll(struct pollfd* fds, nfds_t n, int timeout) {
  if (!real_poll) resolve();
  return poll_common(fds, n, timeout, NULL, NULL, 0);
}

int ppoll(struct pollfd* fds, nfds_t n, const struct timespec* ts, const sigset_t* mask) {
  if (!real_ppoll) resolve();
  return poll_common(fds, n, 0, ts, mask, 1);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event* ev) {
  if (!real_epoll_ctl) resolve();
  if (tracked(fd)) no_takeover();
  return real_epoll_ctl(epfd, op, fd, ev);
}

int select(int nfds, fd_set* r, fd_set* w, fd_set* x, struct timeval* tv) {
  if (!real_select) resolve();
  if (discovering() && r)
    for (int i = 0; i < nfds && i < FD_SETSIZE && discovering(); i++)
      if (FD_ISSET(i, r)) tracked(i);
  int fd = g_fd;
  if (fd >= 0 && fd < nfds && fd < FD_SETSIZE && ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))))
    no_takeover();
  return real_select(nfds, r, w, x, tv);
}
