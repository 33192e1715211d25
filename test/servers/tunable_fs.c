/*
 * tunable_fs: a flat, read-only FUSE server (libfuse 3 low-level API) whose behaviour is set on the
 * command line, so that two recordings of one workload differ in exactly one known way; the
 * `fusetrace diff` tests compare such pairs.
 *
 *   /fNN           --files=N regular files (default 20) of 4096 bytes each ('a' + NN % 26)
 *
 * Options (consumed here, never passed to mount(2)):
 *   --read-delay-ms=N    every READ answers after N ms (default 0)
 *   --timeout=S          entry and attribute timeout in seconds (default 60). With 0 the kernel
 *                        forgets every entry at once, so `ls -l` sends a LOOKUP per READDIRPLUS
 *                        entry and a GETATTR per stat: the amplification `diff` reports.
 *   --fail=NAME          READs of file NAME answer EIO
 * Everything else is libfuse's: -f, -d, -o ..., MOUNTPOINT (or /dev/fd/N under fusetrace).
 */
#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE 4096
#define MAX_FILES 1000

static int nfiles = 20;
static long read_delay_ms;
static double timeout_s = 60.0;
static const char *fail_name;

/* ino 1 is the root; file k (0-based) is ino k + 2. */
static int file_index(fuse_ino_t ino)
{
	return ino >= 2 && ino < (fuse_ino_t)nfiles + 2 ? (int)(ino - 2) : -1;
}

static void file_name(int k, char *buf, size_t len)
{
	snprintf(buf, len, "f%02d", k);
}

static void fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = FILE_SIZE;
	}
}

static void fill_entry(fuse_ino_t ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr_timeout = timeout_s;
	e->entry_timeout = timeout_s;
	fill_stat(ino, &e->attr);
}

static void t_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char buf[16];
	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (int k = 0; k < nfiles; k++) {
		file_name(k, buf, sizeof(buf));
		if (strcmp(buf, name) == 0) {
			struct fuse_entry_param e;
			fill_entry((fuse_ino_t)k + 2, &e);
			fuse_reply_entry(req, &e);
			return;
		}
	}
	fuse_reply_err(req, ENOENT);
}

static void t_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	if (ino != FUSE_ROOT_ID && file_index(ino) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_stat(ino, &st);
	fuse_reply_attr(req, &st, timeout_s);
}

/* Entries are ".", ".." and the files; `off` is the index of the next one. */
static void t_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	char *buf;
	size_t used = 0;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t i = off; i < nfiles + 2; i++) {
		char name[16];
		fuse_ino_t child = i < 2 ? FUSE_ROOT_ID : (fuse_ino_t)(i - 2) + 2;
		size_t n;
		if (i == 0) strcpy(name, ".");
		else if (i == 1) strcpy(name, "..");
		else file_name((int)(i - 2), name, sizeof(name));
		if (plus) {
			struct fuse_entry_param e;
			fill_entry(child, &e);
			/* The kernel takes a lookup reference for every entry but . and .. (fs/fuse/readdir.c). */
			if (i < 2) e.ino = 0;
			n = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1);
		} else {
			struct stat st;
			fill_stat(child, &st);
			n = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
		}
		if (n > size - used) break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void t_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	t_readdir_common(req, ino, size, off, 0);
}

static void t_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	t_readdir_common(req, ino, size, off, 1);
}

static void t_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (file_index(ino) < 0) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	/* direct_io: every read(2) reaches the server, so READ counts follow the workload exactly. */
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void t_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	char name[16], data[FILE_SIZE];
	int k = file_index(ino);
	(void)fi;
	if (read_delay_ms > 0) {
		struct timespec ts = { read_delay_ms / 1000, (read_delay_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	file_name(k, name, sizeof(name));
	if (fail_name && strcmp(fail_name, name) == 0) {
		fuse_reply_err(req, EIO);
		return;
	}
	if (off >= FILE_SIZE) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	memset(data, 'a' + k % 26, sizeof(data));
	fuse_reply_buf(req, data + off, off + size > FILE_SIZE ? FILE_SIZE - (size_t)off : size);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = t_lookup,
	.getattr = t_getattr,
	.readdir = t_readdir,
	.readdirplus = t_readdirplus,
	.open = t_open,
	.read = t_read,
};

/* Takes our --name=value options out of argv; returns the new argc. */
static int own_options(int argc, char *argv[])
{
	int out = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--read-delay-ms=", 16) == 0) read_delay_ms = atol(a + 16);
		else if (strncmp(a, "--timeout=", 10) == 0) timeout_s = atof(a + 10);
		else if (strncmp(a, "--fail=", 7) == 0) fail_name = a + 7;
		else if (strncmp(a, "--files=", 8) == 0) nfiles = atoi(a + 8);
		else argv[out++] = argv[i];
	}
	if (nfiles < 0 || nfiles > MAX_FILES) nfiles = 20;
	return out;
}

int main(int argc, char *argv[])
{
	struct fuse_args args;
	struct fuse_session *se;
	struct fuse_cmdline_opts opts;
	int ret = 1;

	argc = own_options(argc, argv);
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	if (fuse_parse_cmdline(&args, &opts) != 0) return 1;
	if (!opts.mountpoint) {
		fprintf(stderr, "usage: %s [--read-delay-ms=N] [--timeout=S] [--fail=NAME] [--files=N] -f MOUNTPOINT\n", argv[0]);
		goto out_args;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se) goto out_args;
	if (fuse_set_signal_handlers(se) != 0) goto out_session;
	if (fuse_session_mount(se, opts.mountpoint) != 0) goto out_signals;
	ret = fuse_session_loop(se);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	return ret ? 1 : 0;
}
