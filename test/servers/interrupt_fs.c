/*
 * interrupt_fs: a FUSE server (libfuse 3 low-level API) whose files each create one request
 * lifecycle or notification scenario, for fusetrace's tests. It runs unmodified under
 * `fusetrace record` (it accepts /dev/fd/N as its mountpoint through fuse_session_mount).
 *
 * Scenarios, chosen by file name (all in the root directory):
 *
 *   slow_eintr       READ parks until FUSE_INTERRUPT names it, then answers -EINTR
 *                    (fuse_req_interrupt_func); answers the data after --wait-ms otherwise.
 *   slow_ignore      READ parks; on FUSE_INTERRUPT it answers the data normally anyway.
 *   slow_eagain      READ parks; the first FUSE_INTERRUPT for it is answered -EAGAIN ("unique
 *                    not known yet"), which makes the kernel queue the INTERRUPT again
 *                    (fs/fuse/dev.c fuse_dev_do_write -> queue_interrupt); the second one is
 *                    answered -EINTR. libfuse only does this itself in a race (find_interrupted
 *                    does not know the unique yet, check_interrupt answers EAGAIN on the next
 *                    request), so this server writes that reply frame on the fd itself.
 *   slow             READ answered normally after --delay-ms; interrupts are ignored.
 *   eio              READ answers -EIO.
 *   blackhole        WRITE never gets an answer: the writer waits until it is killed or the
 *                    connection ends (unmount/abort: ECONNABORTED/ENOTCONN).
 *   data             32 bytes "generation N" served with keep_cache, so the kernel page cache
 *                    holds it across opens and only a notification changes what readers see.
 *   ctl_inval_inode  reading it bumps data's generation and sends NOTIFY_INVAL_INODE(data).
 *   ctl_inval_entry  reading it sends NOTIFY_INVAL_ENTRY(root, "data").
 *   ctl_store        reading it sends NOTIFY_STORE(data, offset 0, "stored by notify N").
 *   ctl_retrieve     reading it sends NOTIFY_RETRIEVE(data, 0..32); the kernel answers with a
 *                    kernel->server NOTIFY_REPLY frame, handled by retrieve_reply.
 *   retrieved        what the last NOTIFY_REPLY carried (empty before).
 *   stats            counters: READs and LOOKUPs of data, INTERRUPTs seen, EAGAINs sent,
 *                    NOTIFY_REPLYs, data's generation.
 *
 * Every file but `data` is opened with direct_io so each read(2) reaches the server. Control
 * files act on the READ at offset 0 and send the notification before answering it, so it has
 * reached the kernel when the reader's read(2) returns. The loop is single-threaded and never
 * blocks in a handler: parked requests are answered from the loop (poll with a deadline).
 *
 * Options (consumed here, never passed to mount(2)): --delay-ms=N (default 300),
 * --wait-ms=N (default 20000). Everything else is libfuse's: -f, -d, -o ..., MOUNTPOINT.
 */
#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
	INO_ROOT = 1,
	INO_SLOW_EINTR,
	INO_SLOW_IGNORE,
	INO_SLOW_EAGAIN,
	INO_SLOW,
	INO_EIO,
	INO_BLACKHOLE,
	INO_DATA,
	INO_CTL_INVAL_INODE,
	INO_CTL_INVAL_ENTRY,
	INO_CTL_STORE,
	INO_CTL_RETRIEVE,
	INO_RETRIEVED,
	INO_STATS,
	INO_COUNT
};

static const char *names[INO_COUNT] = {
	[INO_SLOW_EINTR] = "slow_eintr",
	[INO_SLOW_IGNORE] = "slow_ignore",
	[INO_SLOW_EAGAIN] = "slow_eagain",
	[INO_SLOW] = "slow",
	[INO_EIO] = "eio",
	[INO_BLACKHOLE] = "blackhole",
	[INO_DATA] = "data",
	[INO_CTL_INVAL_INODE] = "ctl_inval_inode",
	[INO_CTL_INVAL_ENTRY] = "ctl_inval_entry",
	[INO_CTL_STORE] = "ctl_store",
	[INO_CTL_RETRIEVE] = "ctl_retrieve",
	[INO_RETRIEVED] = "retrieved",
	[INO_STATS] = "stats",
};

#define DATA_SIZE 32
#define SLOW_ANSWER "slow answer\n"

struct options {
	unsigned delay_ms;
	unsigned wait_ms;
	int nonblock;
};

static struct options opt = { .delay_ms = 300, .wait_ms = 20000 };

static const struct fuse_opt option_spec[] = {
	{ "--delay-ms=%u", offsetof(struct options, delay_ms), 0 },
	{ "--wait-ms=%u", offsetof(struct options, wait_ms), 0 },
	/* An event loop's fd: reads that find nothing return EAGAIN (the loop polls first anyway). */
	{ "--nonblock", offsetof(struct options, nonblock), 1 },
	FUSE_OPT_END
};

static struct fuse_session *se;
static unsigned data_generation;
static unsigned store_count;
static char retrieved[DATA_SIZE * 2];
static size_t retrieved_len;
static unsigned long long n_data_reads, n_data_lookups, n_interrupts, n_eagain, n_retrieve_replies;

/* unique of the request being dispatched; the loop is single-threaded, so the handler that
 * fuse_session_process_buf calls belongs to it (libfuse has no public getter for it). */
static uint64_t current_unique;

/* A READ answered later from the loop. */
struct parked {
	fuse_req_t req;
	uint64_t unique;
	fuse_ino_t ino;
	size_t size;
	off_t off;
	long long deadline_ms;
	int interrupted; /* set by the interrupt callback, acted on by the loop */
	int eagain_sent;
	struct parked *next;
};

static struct parked *parked_list;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fill_data(char *out)
{
	char tmp[DATA_SIZE + 1];
	snprintf(tmp, sizeof(tmp), "generation %-20u", data_generation);
	memcpy(out, tmp, DATA_SIZE - 1);
	out[DATA_SIZE - 1] = '\n';
}

static void fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	/* A constant mtime: with FUSE_CAP_AUTO_INVAL_DATA a changed mtime would drop data's
	 * page cache by itself and hide what the notifications do. */
	st->st_mtime = 1700000000;
	st->st_atime = st->st_ctime = st->st_mtime;
	if (ino == INO_ROOT) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	st->st_nlink = 1;
	st->st_mode = S_IFREG | (ino == INO_BLACKHOLE ? 0666 : 0444);
	switch (ino) {
	case INO_DATA: st->st_size = DATA_SIZE; break;
	case INO_SLOW_EINTR: case INO_SLOW_IGNORE: case INO_SLOW_EAGAIN: case INO_SLOW:
		st->st_size = strlen(SLOW_ANSWER); break;
	case INO_RETRIEVED: st->st_size = retrieved_len; break;
	default: st->st_size = 0; break; /* direct_io files: the size is what READ returns */
	}
}

static void ifs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	if (parent != INO_ROOT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (fuse_ino_t ino = 2; ino < INO_COUNT; ino++) {
		if (strcmp(name, names[ino]) == 0) {
			memset(&e, 0, sizeof(e));
			e.ino = ino;
			if (ino == INO_DATA)
				n_data_lookups++;
			/* data keeps long timeouts so the kernel caches it; the rest revalidate. */
			e.attr_timeout = e.entry_timeout = ino == INO_DATA ? 3600.0 : 1.0;
			fill_stat(ino, &e.attr);
			fuse_reply_entry(req, &e);
			return;
		}
	}
	fuse_reply_err(req, ENOENT);
}

static void ifs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	if (ino >= INO_COUNT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_stat(ino, &st);
	fuse_reply_attr(req, &st, ino == INO_DATA ? 3600.0 : 1.0);
}

static void ifs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	/* Only O_TRUNC/truncate of blackhole gets here; nothing changes. */
	(void)attr; (void)to_set;
	ifs_getattr(req, ino, fi);
}

static void ifs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	char buf[4096];
	size_t used = 0;
	(void)fi;
	if (ino != INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	/* Entry i (0 ".", 1 "..", then the files) has offset i+1 for the next call. */
	for (off_t i = off; i < INO_COUNT; i++) {
		struct stat st;
		const char *name = i == 0 ? "." : i == 1 ? ".." : names[i];
		fill_stat(i < 2 ? INO_ROOT : (fuse_ino_t)i, &st);
		size_t len = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
}

static void ifs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == INO_ROOT) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (ino != INO_BLACKHOLE && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if (ino == INO_DATA)
		fi->keep_cache = 1;
	else
		fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void reply_slice(fuse_req_t req, const char *content, size_t len, size_t size, off_t off)
{
	if ((size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, content + off, len - off < size ? len - off : size);
}

static void on_interrupt(fuse_req_t req, void *data)
{
	struct parked *p = data;
	(void)req;
	/* Called by libfuse (do_interrupt -> find_interrupted) inside fuse_session_process_buf;
	 * only flag it: the loop answers once libfuse has let go of the request's lock. */
	p->interrupted = 1;
}

static void park(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, unsigned ms, int interruptible)
{
	struct parked *p = calloc(1, sizeof(*p));
	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->unique = current_unique;
	p->ino = ino;
	p->size = size;
	p->off = off;
	p->deadline_ms = now_ms() + ms;
	p->next = parked_list;
	parked_list = p;
	if (interruptible)
		fuse_req_interrupt_func(req, on_interrupt, p);
}

static void send_notification(fuse_ino_t ino)
{
	int res = 0;
	char buf[DATA_SIZE + 1];
	switch (ino) {
	case INO_CTL_INVAL_INODE:
		data_generation++;
		res = fuse_lowlevel_notify_inval_inode(se, INO_DATA, 0, 0);
		break;
	case INO_CTL_INVAL_ENTRY:
		res = fuse_lowlevel_notify_inval_entry(se, INO_ROOT, "data", strlen("data"));
		break;
	case INO_CTL_STORE: {
		struct fuse_bufvec bufv = FUSE_BUFVEC_INIT(DATA_SIZE);
		snprintf(buf, sizeof(buf), "stored by notify %-15u", ++store_count);
		buf[DATA_SIZE - 1] = '\n';
		bufv.buf[0].mem = buf;
		res = fuse_lowlevel_notify_store(se, INO_DATA, 0, &bufv, 0);
		break;
	}
	case INO_CTL_RETRIEVE:
		res = fuse_lowlevel_notify_retrieve(se, INO_DATA, DATA_SIZE, 0, NULL);
		break;
	}
	if (res != 0)
		fprintf(stderr, "interrupt_fs: notification for %s failed: %s\n", names[ino], strerror(-res));
}

static void ifs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	char text[512];
	(void)fi;
	switch (ino) {
	case INO_SLOW_EINTR:
	case INO_SLOW_IGNORE:
	case INO_SLOW_EAGAIN:
		if ((size_t)off >= strlen(SLOW_ANSWER))
			fuse_reply_buf(req, NULL, 0);
		else
			park(req, ino, size, off, opt.wait_ms, 1);
		return;
	case INO_SLOW:
		if ((size_t)off >= strlen(SLOW_ANSWER))
			fuse_reply_buf(req, NULL, 0);
		else
			park(req, ino, size, off, opt.delay_ms, 0);
		return;
	case INO_EIO:
		fuse_reply_err(req, EIO);
		return;
	case INO_DATA:
		n_data_reads++;
		fill_data(text);
		reply_slice(req, text, DATA_SIZE, size, off);
		return;
	case INO_CTL_INVAL_INODE:
	case INO_CTL_INVAL_ENTRY:
	case INO_CTL_STORE:
	case INO_CTL_RETRIEVE:
		if (off == 0)
			send_notification(ino);
		reply_slice(req, "ok\n", 3, size, off);
		return;
	case INO_RETRIEVED:
		reply_slice(req, retrieved, retrieved_len, size, off);
		return;
	case INO_STATS: {
		int n = snprintf(text, sizeof(text),
				 "data_reads %llu\ndata_lookups %llu\ninterrupts %llu\neagain_sent %llu\n"
				 "retrieve_replies %llu\ndata_generation %u\n",
				 n_data_reads, n_data_lookups, n_interrupts, n_eagain, n_retrieve_replies, data_generation);
		reply_slice(req, text, (size_t)n, size, off);
		return;
	}
	default:
		reply_slice(req, "", 0, size, off);
	}
}

static void ifs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	(void)buf; (void)off; (void)fi;
	if (ino == INO_BLACKHOLE)
		return; /* never answered: libfuse keeps the request until the session ends */
	fuse_reply_write(req, size);
}

static void ifs_retrieve_reply(fuse_req_t req, void *cookie, fuse_ino_t ino, off_t offset,
			       struct fuse_bufvec *bufv)
{
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(sizeof(retrieved));
	ssize_t n;
	(void)cookie; (void)ino; (void)offset;
	dst.buf[0].mem = retrieved;
	n = fuse_buf_copy(&dst, bufv, 0);
	retrieved_len = n > 0 ? (size_t)n : 0;
	n_retrieve_replies++;
	fuse_reply_none(req);
}

static void ifs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Requests must arrive in memory so the loop can read their header (no splice read). */
	conn->want &= ~FUSE_CAP_SPLICE_READ;
}

static const struct fuse_lowlevel_ops ops = {
	.init = ifs_init,
	.lookup = ifs_lookup,
	.getattr = ifs_getattr,
	.setattr = ifs_setattr,
	.readdir = ifs_readdir,
	.open = ifs_open,
	.read = ifs_read,
	.write = ifs_write,
	.retrieve_reply = ifs_retrieve_reply,
};

/* Answers parked READs that were interrupted or reached their deadline. */
static void settle_parked(void)
{
	long long now = now_ms();
	struct parked **pp = &parked_list;
	while (*pp) {
		struct parked *p = *pp;
		int done = 1;
		if (p->interrupted && (p->ino == INO_SLOW_EINTR || p->ino == INO_SLOW_EAGAIN))
			fuse_reply_err(p->req, EINTR);
		else if (p->interrupted || now >= p->deadline_ms)
			reply_slice(p->req, SLOW_ANSWER, strlen(SLOW_ANSWER), p->size, p->off);
		else
			done = 0;
		if (done) {
			*pp = p->next;
			free(p);
		} else {
			pp = &p->next;
		}
	}
}

static int next_timeout_ms(void)
{
	long long now = now_ms(), best = -1;
	for (struct parked *p = parked_list; p; p = p->next) {
		long long left = p->deadline_ms > now ? p->deadline_ms - now : 0;
		if (best < 0 || left < best)
			best = left;
	}
	return (int)best;
}

/*
 * Looks at a request before libfuse does. Returns 1 when the request was answered here (the
 * EAGAIN scenario) and must not reach libfuse.
 */
static int inspect(const struct fuse_buf *buf)
{
	const struct fuse_in_header *in = buf->mem;
	if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(*in))
		return 0;
	current_unique = in->unique;
	if (in->opcode != FUSE_INTERRUPT || buf->size < sizeof(*in) + sizeof(struct fuse_interrupt_in))
		return 0;
	n_interrupts++;
	const struct fuse_interrupt_in *arg = (const void *)(in + 1);
	for (struct parked *p = parked_list; p; p = p->next) {
		if (p->unique != arg->unique || p->ino != INO_SLOW_EAGAIN || p->eagain_sent)
			continue;
		/* The reply to an INTERRUPT carries the INTERRUPT's own unique (the kernel sets
		 * FUSE_INT_REQ_BIT in it) and no payload. */
		struct fuse_out_header out = { .len = sizeof(out), .error = -EAGAIN, .unique = in->unique };
		if (write(fuse_session_fd(se), &out, sizeof(out)) != sizeof(out))
			perror("interrupt_fs: EAGAIN reply");
		p->eagain_sent = 1;
		n_eagain++;
		return 1;
	}
	return 0;
}

static int loop(void)
{
	struct fuse_buf buf = { .mem = NULL };
	int res = 0;
	while (!fuse_session_exited(se)) {
		struct pollfd pfd = { .fd = fuse_session_fd(se), .events = POLLIN };
		int r = poll(&pfd, 1, next_timeout_ms());
		if (r < 0 && errno != EINTR) {
			res = -errno;
			break;
		}
		settle_parked();
		if (r <= 0)
			continue;
		res = fuse_session_receive_buf(se, &buf);
		if (res == -EINTR || res == -EAGAIN)
			continue;
		if (res <= 0)
			break;
		if (!inspect(&buf))
			fuse_session_process_buf(se, &buf);
		settle_parked();
	}
	free(buf.mem);
	fuse_session_reset(se);
	return res < 0 ? -1 : 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd;
	int ret = 1;

	if (fuse_opt_parse(&args, &opt, option_spec, NULL) == -1)
		return 1;
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		return 1;
	if (cmd.show_help || !cmd.mountpoint) {
		printf("usage: %s [--delay-ms=N] [--wait-ms=N] [--nonblock] [options] <mountpoint>\n", argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = cmd.show_help ? 0 : 1;
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
	if (opt.nonblock) {
		int fd = fuse_session_fd(se);
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	}
	ret = loop() == 0 ? 0 : 1;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
