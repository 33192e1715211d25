/*
 * stuck_fs: a FUSE server (libfuse 3 low-level API) that gets stuck in the ways `fusetrace hang`
 * diagnoses. It mounts by itself (fusetrace does not start it), like the mounts users bring.
 *
 * Files, all in the root directory:
 *
 *   slow       READ: the handling thread sleeps --delay-ms (clock_nanosleep) before answering.
 *   deadlock   READ: the handling thread locks a mutex it already holds (a default glibc mutex
 *              has no owner check, so it waits in futex(FUTEX_WAIT) forever). With -s (the
 *              single-threaded loop) no thread is left to read the device: every later request
 *              waits too.
 *   hello      READ answers "hello\n" at once.
 *   held       READ at offset 0: the handling thread waits (pthread_cond_wait) until `wake` is
 *              read, then answers: a request that stays with the server as long as a test wants.
 *   wake       READ: releases every held READ, then answers.
 *
 * --limbo: after mounting, the device fd is sent over an AF_UNIX socketpair whose other end
 * nobody ever reads, then closed. The open file then lives only in the socket's receive queue
 * (SCM_RIGHTS keeps a reference, as fusermount3's hand-over does for an instant): no process
 * holds the device, yet the connection is not aborted (fs/fuse/dev.c aborts only when the last
 * reference to the file is released), so requests wait with nobody able to answer them. The
 * process then pause()s; killing it drops the socket, and with it the last reference: the kernel
 * aborts the connection.
 *
 * Prints "ready <pid>" on stdout once mounted. Options: --delay-ms=N (default 60000), --limbo.
 * Everything else is libfuse's: -f, -s, -d, -o ..., MOUNTPOINT.
 */
#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { INO_ROOT = 1, INO_SLOW, INO_DEADLOCK, INO_HELLO, INO_HELD, INO_WAKE, INO_COUNT };

static const char *names[INO_COUNT] = {
	[INO_SLOW] = "slow",
	[INO_DEADLOCK] = "deadlock",
	[INO_HELLO] = "hello",
	[INO_HELD] = "held",
	[INO_WAKE] = "wake",
};

#define HELLO "hello\n"

struct options {
	unsigned delay_ms;
	int limbo;
};

static struct options opt = { .delay_ms = 60000 };

static const struct fuse_opt option_spec[] = {
	{ "--delay-ms=%u", offsetof(struct options, delay_ms), 0 },
	{ "--limbo", offsetof(struct options, limbo), 1 },
	FUSE_OPT_END
};

static pthread_mutex_t stuck_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cond = PTHREAD_COND_INITIALIZER;
static unsigned wake_generation;

static void fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mtime = st->st_atime = st->st_ctime = 1700000000;
	if (ino == INO_ROOT) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = ino == INO_HELLO ? strlen(HELLO) : 0;
}

static void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	for (fuse_ino_t ino = 2; parent == INO_ROOT && ino < INO_COUNT; ino++) {
		if (strcmp(name, names[ino]) != 0)
			continue;
		memset(&e, 0, sizeof(e));
		e.ino = ino;
		e.attr_timeout = e.entry_timeout = 1.0;
		fill_stat(ino, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	fuse_reply_err(req, ENOENT);
}

static void sfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	if (ino >= INO_COUNT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_stat(ino, &st);
	fuse_reply_attr(req, &st, 1.0);
}

static void sfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* direct_io: every read(2) reaches the server, none is served from the page cache. */
	if (ino != INO_ROOT)
		fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	if (ino == INO_SLOW) {
		struct timespec ts = { opt.delay_ms / 1000, (long)(opt.delay_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (ino == INO_DEADLOCK) {
		/* The second lock never returns: the thread stays in futex(FUTEX_WAIT). */
		pthread_mutex_lock(&stuck_lock);
		pthread_mutex_lock(&stuck_lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (ino == INO_HELD && off == 0) {
		pthread_mutex_lock(&held_lock);
		unsigned gen = wake_generation;
		while (gen == wake_generation)
			pthread_cond_wait(&held_cond, &held_lock);
		pthread_mutex_unlock(&held_lock);
		fuse_reply_buf(req, HELLO, strlen(HELLO) < size ? strlen(HELLO) : size);
		return;
	}
	if (ino == INO_WAKE) {
		pthread_mutex_lock(&held_lock);
		wake_generation++;
		pthread_cond_broadcast(&held_cond);
		pthread_mutex_unlock(&held_lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (ino == INO_HELLO && off < (off_t)strlen(HELLO)) {
		size_t n = strlen(HELLO) - off;
		fuse_reply_buf(req, HELLO + off, n < size ? n : size);
		return;
	}
	fuse_reply_buf(req, NULL, 0);
}

static void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	char buf[512];
	size_t used = 0;
	(void)fi;
	if (ino != INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (fuse_ino_t i = off + 2; i < INO_COUNT; i++) {
		struct stat st;
		fill_stat(i, &st);
		size_t n = fuse_add_direntry(req, buf + used, sizeof(buf) - used, names[i], &st, i - 1);
		if (used + n > sizeof(buf) || used + n > size)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = sfs_lookup,
	.getattr = sfs_getattr,
	.open = sfs_open,
	.read = sfs_read,
	.readdir = sfs_readdir,
};

/* --limbo: leave the device file only in a socket's receive queue, then wait to be killed. */
static int limbo(struct fuse_session *se)
{
	int sv[2];
	int fd = fuse_session_fd(se);
	char byte = 0;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 1;
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sv[0], &msg, 0) != 1)
		return 1;
	close(fd);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd;
	struct fuse_session *se;
	int ret = 1;

	if (fuse_opt_parse(&args, &opt, option_spec, NULL) == -1)
		return 1;
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		return 1;
	if (cmd.show_help || !cmd.mountpoint) {
		printf("usage: %s [--delay-ms=N] [--limbo] [-s] [options] <mountpoint>\n", argv[0]);
		return cmd.show_help ? 0 : 1;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out_args;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cmd.mountpoint) != 0)
		goto out_signals;
	if (opt.limbo)
		return limbo(se);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	if (cmd.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		ret = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	return ret ? 1 : 0;
}
