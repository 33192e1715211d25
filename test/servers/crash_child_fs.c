/*
 * crash_child_fs: a FUSE server (libfuse 3 low-level API) that crashes with a child alive, for
 * fusetrace's test that a server's children inherit nothing of fusetrace (issue 12 item 4).
 *
 * Looking up "crash" forks a child that execs `sleep 60`, writes the child's pid to the file given
 * with --pidfile=PATH, and aborts (SIGABRT) without answering. Natively the child holds no /dev/fuse
 * fd (libfuse opens it O_CLOEXEC), so the crash aborts the connection: the mount answers ENOTCONN
 * at once. Any other name is ENOENT; the root directory is empty.
 *
 * Options (consumed here): --pidfile=PATH. Everything else is libfuse's: -f, -o ..., MOUNTPOINT.
 */
#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *pidfile;

static void cc_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct stat st = {0};
	st.st_ino = ino;
	st.st_mode = S_IFDIR | 0755;
	st.st_nlink = 2;
	fuse_reply_attr(req, &st, 0);
}

static void cc_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
	if (parent != FUSE_ROOT_ID || strcmp(name, "crash") != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	pid_t child = fork();
	if (child == 0) {
		execlp("sleep", "sleep", "60", (char *)NULL);
		_exit(127);
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (f) {
			fprintf(f, "%d\n", (int)child);
			fclose(f);
		}
	}
	/* Let the child reach its exec before the crash. */
	usleep(200 * 1000);
	abort();
}

static const struct fuse_lowlevel_ops ops = {
	.getattr = cc_getattr,
	.lookup = cc_lookup,
};

int main(int argc, char *argv[]) {
	int out = 1;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--pidfile=", 10) == 0) pidfile = argv[i] + 10;
		else argv[out++] = argv[i];
	}
	argc = out;
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts;
	if (fuse_parse_cmdline(&args, &opts) != 0 || !opts.mountpoint) return 1;
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
	if (!se) return 1;
	if (fuse_session_mount(se, opts.mountpoint) != 0) return 1;
	int ret = fuse_session_loop(se);
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
