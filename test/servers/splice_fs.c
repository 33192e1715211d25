/*
 * splice_fs: a FUSE server (libfuse 3 low-level API) that answers READ with splice, the way
 * libfuse's passthrough_hp does (Debian does not ship that example). It creates the "large
 * splice-write reply" scenario: with FUSE_CAP_SPLICE_WRITE, fuse_reply_data() on a
 * FUSE_BUF_IS_FD|FUSE_BUF_FD_SEEK buffer vmsplice()s the reply header into a pipe, splice()s the
 * file data behind it and splice()s the pipe into the fuse fd (FUSE_BUF_SPLICE_MOVE lets the
 * kernel move pages). Replies of 128 KiB (and up to max_pages with --direct-io) exceed the
 * ~61 KiB that one SEQPACKET message carried in the fusetrace prototype.
 *
 * One file, `big`, with the contents of --source=PATH (a regular file, served read-only).
 * --direct-io opens it with direct_io, so one read(2) of N bytes becomes one READ of N bytes
 * (bounded by max_read/max_pages) instead of page-cache readahead.
 * --no-splice answers with the same buffers but without the splice capability (libfuse copies
 * through read() + writev()), for comparisons.
 */
#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INO_BIG 2

struct options {
	char *source;
	int direct_io;
	int no_splice;
	int splice_read;
};

static struct options opt;

static const struct fuse_opt option_spec[] = {
	{ "--source=%s", offsetof(struct options, source), 0 },
	{ "--direct-io", offsetof(struct options, direct_io), 1 },
	{ "--no-splice", offsetof(struct options, no_splice), 1 },
	{ "--splice-read", offsetof(struct options, splice_read), 1 },
	FUSE_OPT_END
};

static int source_fd = -1;

static int fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if (ino == FUSE_ROOT_ID) {
		st->st_ino = ino;
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (ino != INO_BIG)
		return ENOENT;
	if (fstat(source_fd, st) != 0)
		return errno;
	st->st_ino = INO_BIG;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	return 0;
}

static void sfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (!opt.no_splice && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* Requests too: libfuse then splices each request from the fuse fd into a pipe. */
	if (opt.splice_read && (conn->capable & FUSE_CAP_SPLICE_READ))
		conn->want |= FUSE_CAP_SPLICE_READ;
	if (opt.no_splice)
		conn->want &= ~(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ);
}

static void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	if (parent != FUSE_ROOT_ID || strcmp(name, "big") != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	int err = fill_stat(INO_BIG, &e.attr);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	e.ino = INO_BIG;
	e.attr_timeout = e.entry_timeout = 1.0;
	fuse_reply_entry(req, &e);
}

static void sfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	int err = fill_stat(ino, &st);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, 1.0);
}

static void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	static const char *names[] = { ".", "..", "big" };
	char buf[1024];
	size_t used = 0;
	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (off_t i = off; i < 3; i++) {
		struct stat st;
		fill_stat(i < 2 ? FUSE_ROOT_ID : INO_BIG, &st);
		size_t len = fuse_add_direntry(req, buf + used, size - used, names[i], &st, i + 1);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
}

static void sfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != INO_BIG) {
		fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fi->direct_io = opt.direct_io;
	fuse_reply_open(req, fi);
}

static void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	(void)ino; (void)fi;
	/* The reply's data comes from the file descriptor at `off`: libfuse splices it (see the
	 * comment at the top) and shortens the reply at end of file. */
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = source_fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static const struct fuse_lowlevel_ops ops = {
	.init = sfs_init,
	.lookup = sfs_lookup,
	.getattr = sfs_getattr,
	.readdir = sfs_readdir,
	.open = sfs_open,
	.read = sfs_read,
};

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
	if (cmd.show_help || !cmd.mountpoint || !opt.source) {
		printf("usage: %s --source=FILE [--direct-io] [--no-splice] [--splice-read] [options] <mountpoint>\n", argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = cmd.show_help ? 0 : 1;
		goto out_args;
	}
	source_fd = open(opt.source, O_RDONLY);
	if (source_fd < 0) {
		fprintf(stderr, "splice_fs: %s: %s\n", opt.source, strerror(errno));
		goto out_args;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out_args;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cmd.mountpoint) != 0)
		goto out_signals;
	fuse_daemonize(cmd.foreground);
	ret = fuse_session_loop(se) == 0 ? 0 : 1;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	free(cmd.mountpoint);
	free(opt.source);
	fuse_opt_free_args(&args);
	return ret;
}
