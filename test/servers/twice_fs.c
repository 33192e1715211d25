/*
 * twice_fs: a FUSE server (libfuse 3 low-level API) that mounts twice from one process, for
 * fusetrace's test of servers with more than one mount (issue 11): MOUNTPOINT first, then
 * --second=DIR, each its own fuse_session (and its own mount(2) on its own /dev/fuse fd), each
 * served by its own thread. Both roots hold one file, `which`, reading "mount 1\n" or "mount 2\n".
 *
 * Ending, as two libfuse programs in one process would: when a mount's loop ends (unmounted:
 * end-of-file or ENODEV) its thread calls fuse_session_unmount; the process exits 0 once both
 * have. SIGTERM, SIGINT or SIGHUP ends both loops, each unmounts its mount, exit 0.
 * --exit-after-first: exit 0 as soon as the first mount's loop ends, without unmounting the
 * second (a program that quits when its main mount goes away, leaving its other mount to whoever
 * holds it: natively a disconnected mount).
 *
 * Prints "mounted <MOUNTPOINT>" and "mounted <DIR>" on stdout as each mount(2) returns.
 * Options (consumed here): --second=DIR, --exit-after-first. Everything else is libfuse's.
 */
#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct options {
	char *second;
	int exit_after_first;
};

static struct options opt;

static const struct fuse_opt option_spec[] = {
	{ "--second=%s", offsetof(struct options, second), 0 },
	{ "--exit-after-first", offsetof(struct options, exit_after_first), 1 },
	FUSE_OPT_END
};

#define INO_WHICH 2

/* The text of `which` in mount n (1 or 2): "mount n\n". */
static const char *text_of(fuse_req_t req)
{
	return *(int *)fuse_req_userdata(req) == 1 ? "mount 1\n" : "mount 2\n";
}

static void fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mtime = st->st_atime = st->st_ctime = 1700000000;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = strlen("mount 1\n");
	}
}

static void tw_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	if (parent != FUSE_ROOT_ID || strcmp(name, "which") != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = INO_WHICH;
	e.attr_timeout = e.entry_timeout = 1.0;
	fill_stat(INO_WHICH, &e.attr);
	fuse_reply_entry(req, &e);
}

static void tw_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != INO_WHICH) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_stat(ino, &st);
	fuse_reply_attr(req, &st, 1.0);
}

static void tw_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	const char *text = text_of(req);
	size_t len = strlen(text);
	(void)fi;
	if (ino != INO_WHICH) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off, len - (size_t)off < size ? len - (size_t)off : size);
}

static void tw_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	char buf[512];
	size_t n = 0;
	struct stat st;
	static const char *names[] = { ".", "..", "which" };
	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (off_t i = off; i < 3; i++) {
		fill_stat(i == 2 ? INO_WHICH : FUSE_ROOT_ID, &st);
		size_t want = fuse_add_direntry(req, buf + n, sizeof(buf) - n, names[i], &st, i + 1);
		if (want > sizeof(buf) - n || n + want > size)
			break;
		n += want;
	}
	fuse_reply_buf(req, buf, n);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = tw_lookup,
	.getattr = tw_getattr,
	.read = tw_read,
	.readdir = tw_readdir,
};

struct mount_slot {
	int n;
	struct fuse_session *se;
	pthread_t thread;
	volatile sig_atomic_t finished;
};

static struct mount_slot slots[2] = { { .n = 1 }, { .n = 2 } };
static sigset_t end_set;

/* Interrupts a blocked read() of the device (no SA_RESTART), so the loop sees fuse_session_exit. */
static void on_poke(int sig)
{
	(void)sig;
}

static void *serve(void *arg)
{
	struct mount_slot *s = arg;
	fuse_session_loop(s->se);
	if (s->n == 1 && opt.exit_after_first) {
		printf("exiting without unmounting %s\n", opt.second);
		fflush(stdout);
		_exit(0);
	}
	fuse_session_unmount(s->se);
	s->finished = 1;
	return NULL;
}

/* Takes SIGTERM/SIGINT/SIGHUP: ends both loops, poking their threads until each has left its read(). */
static void *on_end_signal(void *arg)
{
	int sig;
	(void)arg;
	if (sigwait(&end_set, &sig) != 0)
		return NULL;
	for (int i = 0; i < 2; i++)
		fuse_session_exit(slots[i].se);
	while (!slots[0].finished || !slots[1].finished) {
		for (int i = 0; i < 2; i++)
			if (!slots[i].finished)
				pthread_kill(slots[i].thread, SIGUSR1);
		usleep(50 * 1000);
	}
	return NULL;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd;
	pthread_t signal_thread;

	if (fuse_opt_parse(&args, &opt, option_spec, NULL) == -1)
		return 1;
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		return 1;
	if (!cmd.mountpoint || !opt.second) {
		printf("usage: %s --second=DIR [--exit-after-first] [options] <mountpoint>\n", argv[0]);
		return 1;
	}
	/* Every thread blocks the ending signals; one thread takes them in sigwait. */
	sigemptyset(&end_set);
	sigaddset(&end_set, SIGTERM);
	sigaddset(&end_set, SIGINT);
	sigaddset(&end_set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &end_set, NULL);
	struct sigaction sa = { .sa_handler = on_poke };
	sigaction(SIGUSR1, &sa, NULL);

	const char *where[2] = { cmd.mountpoint, opt.second };
	for (int i = 0; i < 2; i++) {
		slots[i].se = fuse_session_new(&args, &ops, sizeof(ops), &slots[i].n);
		if (!slots[i].se || fuse_session_mount(slots[i].se, where[i]) != 0) {
			fprintf(stderr, "twice_fs: cannot mount %s\n", where[i]);
			return 1;
		}
		printf("mounted %s\n", where[i]);
		fflush(stdout);
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&slots[i].thread, NULL, serve, &slots[i]);
	pthread_create(&signal_thread, NULL, on_end_signal, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(slots[i].thread, NULL);
	/* The signal thread may still name the sessions: exit without destroying them. */
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	return 0;
}
