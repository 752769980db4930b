/* hostile_rlimit — sockets at the edges of RLIMIT_NOFILE (set by the caller,
 * before exec, so that the shim starts under it).
 *
 *   hostile_rlimit CAP
 *
 * 1. opens unix sockets until EMFILE (at most CAP), prints "cmp sockets N",
 *    closes them all ("cmp closed N"); close_range(3, ~0U, 0); opens and
 *    closes sockets again until EMFILE ("cmp sockets-again N").
 * 2. when the limit is at least 4096: the high end. A socketpair reader with
 *    1 byte unread is dup2'd onto LIMIT-1, the original closed (shared), then
 *    LIMIT-1 closed (rst_unread: its writer is still open); two more readers dup2'd onto
 *    LIMIT-2 and LIMIT-3 go with close_range(LIMIT-200, ~0U, 0) (LIMIT-200:
 *    the range covers the number the shim hides its log fd at); then a close
 *    loop over every fd from 3 to LIMIT-1 ("cmp closeloop K", timed).
 * 3. lists the fds open from 3 up as "fd N TARGET" (readlink of
 *    /proc/self/fd/N), then "done".
 * Every socket close the program makes is counted: "closes C". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long closes;

static int open_until_emfile(long cap, const char *label)
{
	int *fds = calloc((size_t)cap + 1, sizeof *fds);
	long n = 0;
	while (n < cap) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			if (errno != EMFILE)
				printf("cmp %s error %s\n", label, strerror(errno));
			break;
		}
		fds[n++] = fd;
	}
	printf("cmp %s %ld\n", label, n);
	long ok = 0;
	for (long i = 0; i < n; i++) {
		ok += close(fds[i]) == 0;
		closes++;
	}
	printf("cmp closed %ld\n", ok);
	free(fds);
	return 0;
}

/* A reader with one unread byte; *w gets its writer, still open (a reader
 * whose peer is gone closes as no_conn: nothing is reset). */
static int reader_with_byte(int *w)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	if (write(sv[0], "r", 1) != 1)
		return -1;
	*w = sv[0];
	return sv[1];
}

static int close_counted(int fd)
{
	closes++;
	return close(fd);
}

int main(int argc, char **argv)
{
	long cap = argc > 1 ? atol(argv[1]) : 64;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	long limit = (long)rl.rlim_cur;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("cmp limit %ld\n", limit);

	open_until_emfile(cap, "sockets");
	int rc = close_range(3, ~0U, 0);
	printf("cmp close_range %d\n", rc);
	open_until_emfile(cap, "sockets-again");

	if (limit >= 4096) {
		int w1, w2, w3, w4;
		int r = reader_with_byte(&w1);
		int hi = (int)(limit - 1);
		printf("cmp dup2 high %d\n", dup2(r, hi) == hi);
		printf("cmp close orig %d\n", close_counted(r));
		printf("cmp close high %d\n", close_counted(hi));
		close_counted(w1);
		int r2 = reader_with_byte(&w2), r3 = reader_with_byte(&w3);
		printf("cmp dup2 high2 %d\n", dup2(r2, hi - 1) == hi - 1 && dup2(r3, hi - 2) == hi - 2);
		close_counted(r2);
		close_counted(r3);
		printf("cmp close_range high %d\n", close_range((unsigned)(limit - 200), ~0U, 0));
		closes += 2;
		close_counted(w2);
		close_counted(w3);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		long k = 0;
		for (long fd = 3; fd < limit; fd++)
			k += close((int)fd) == 0;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("cmp closeloop %ld\n", k);
		printf("closeloop ms %ld\n",
		       (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
		int m = reader_with_byte(&w4);
		printf("cmp marker %d\n", m >= 0 && close_counted(m) == 0);
		close_counted(w4);
	}

	/* What is open now, from 3 up (the shim's fds, if any, show here). */
	long top = limit < 4096 ? limit : 4096;
	char name[64], target[512];
	for (long fd = 3; fd < limit; fd++) {
		if (fd >= top && fd < limit - 256)
			fd = limit - 256; /* the shim hides its fds near the top */
		if (fd < 3)
			fd = 3;
		snprintf(name, sizeof name, "/proc/self/fd/%ld", fd);
		ssize_t n = readlink(name, target, sizeof target - 1);
		if (n > 0) {
			target[n] = 0;
			printf("fd %ld %s\n", fd, target);
		}
	}
	printf("closes %ld\n", closes);
	printf("done\n");
	return 0;
}
