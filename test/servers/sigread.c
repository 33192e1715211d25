/*
 * sigread: a test client, not a server. Opens FILE, starts one read(2) of up to 64 KiB and,
 * DELAY_MS later, sends SIGINT to the reading thread. SIGINT has a handler installed without
 * SA_RESTART, so the read is not restarted and its own outcome is visible: the kernel sends
 * FUSE_INTERRUPT for a request that is already with the server (fs/fuse/dev.c
 * request_wait_answer) and the read returns whatever the server answered (-EINTR, or the data).
 *
 * Prints one line: "data <n> <first bytes, escaped>" or "error <ERRNO NAME>", then
 * " signal=<0|1> ms=<elapsed>". Exits 0 when the read returned, 2 on usage or open errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_signal;
static pthread_t reader;
static unsigned delay_ms;

static void on_sigint(int sig)
{
	(void)sig;
	got_signal = 1;
}

static void *interrupter(void *arg)
{
	(void)arg;
	usleep(delay_ms * 1000);
	pthread_kill(reader, SIGINT);
	return NULL;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char *argv[])
{
	static char buf[65536];
	struct sigaction sa;
	pthread_t thr;
	sigset_t block;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE DELAY_MS\n", argv[0]);
		return 2;
	}
	delay_ms = (unsigned)atoi(argv[2]);
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		printf("open-error %s\n", strerrorname_np(errno));
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint; /* no SA_RESTART */
	sigaction(SIGINT, &sa, NULL);
	reader = pthread_self();
	/* The helper thread must not take the signal itself. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	pthread_create(&thr, NULL, interrupter, NULL);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);

	long long start = now_ms();
	ssize_t n = read(fd, buf, sizeof(buf));
	int err = errno;
	long long ms = now_ms() - start;
	pthread_join(thr, NULL);
	if (n < 0) {
		printf("error %s", strerrorname_np(err));
	} else {
		printf("data %zd ", n);
		for (ssize_t i = 0; i < n && i < 64; i++)
			if (buf[i] >= 32 && buf[i] < 127 && buf[i] != '\\')
				putchar(buf[i]);
			else
				printf("\\x%02x", (unsigned char)buf[i]);
	}
	printf(" signal=%d ms=%lld\n", (int)got_signal, ms);
	close(fd);
	return 0;
}
