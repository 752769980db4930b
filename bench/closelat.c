/* close() latency of a socket with an unread upload: the close that the
 * kernel answers with RST and that drain mode turns into a lingering close.
 *
 *   closelat [-n ITERATIONS] [-u UPLOAD_BYTES] [-w WARMUP] [-d DEPTH] [-f]
 *
 * A client thread (with -f a client process) connects, uploads UPLOAD_BYTES
 * and reads until EOF or reset, then closes. The main thread accepts, waits until the whole upload
 * sits unread in its receive queue, and times its close(). Prints p50, p90,
 * p99, max and mean in microseconds. -d: the close is made DEPTH calls deep,
 * so that a backtrace of the close has that many frames of the program to
 * walk and name (the backtrace benchmark).
 *
 * -f: the first close of a fresh process, as in a prefork server. Per
 * iteration the main thread forks a child, which accepts the client's two
 * connections itself and times its close of the first (its first close of a
 * socket) and then of the second (the steady state of that same fresh
 * process). Prints the quantiles of the first closes, the p50 of the second
 * ones and the ratio of the two p50s. (A child that inherits its socket from
 * the parent, as in ForkingTCPServer, also pays for finding out whether the
 * parent still holds it: not measured here.) */
#include "bench.h"

#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#define USAGE "[-n ITERATIONS] [-u UPLOAD_BYTES] [-w WARMUP] [-d DEPTH] [-f]"

static struct sockaddr_in addr;
static long total;
static int per_iter = 1; /* connections per iteration: 2 with -f */
/* -f: the client reads only once the child is done (a byte on this pipe),
 * so that no close of the child wakes it: both timed closes alike. */
static int child_done[2] = {-1, -1};
/* -f: the client connects only once the child is forked, so that the child
 * never holds the client's end of its own connections (a server's child
 * does not): its drains end when the client closes, not at its exit. */
static int child_forked[2] = {-1, -1};
static size_t upload = 16384;
static unsigned long resets, eofs;

static void *client(void *arg)
{
	(void)arg;
	char *buf = malloc(upload > 4096 ? upload : 4096);
	if (!buf)
		die("malloc");
	memset(buf, 'u', upload);
	for (long i = 0; i < total; i++) {
		int cs[2];
		char b;
		if (child_forked[0] >= 0 && read(child_forked[0], &b, 1) != 1)
			die("client wait");
		for (int k = 0; k < per_iter; k++) {
			int c = cs[k] = loopback_connect(&addr, NULL);
			size_t off = 0;
			while (off < upload) {
				ssize_t n = write(c, buf + off, upload - off);
				if (n < 0)
					die("upload");
				off += (size_t)n;
			}
		}
		if (child_done[0] >= 0 && read(child_done[0], &b, 1) != 1)
			die("client wait");
		for (int k = 0; k < per_iter; k++) {
			ssize_t n;
			while ((n = read(cs[k], buf, 4096)) > 0)
				;
			if (n == 0)
				eofs++;
			else if (errno == ECONNRESET)
				resets++;
			else
				die("client read");
			close(cs[k]);
		}
	}
	free(buf);
	return NULL;
}

/* close(fd) depth calls deep, timed. noinline and the use of the result
 * after the call keep every level a real frame. */
__attribute__((noinline)) static uint64_t timed_close(int fd, int depth)
{
	if (depth > 0) {
		uint64_t dt = timed_close(fd, depth - 1);
		__asm__ volatile("" ::: "memory");
		return dt;
	}
	uint64_t t0 = now_ns();
	close(fd);
	return now_ns() - t0;
}

/* Accept one connection and wait until its whole upload is there, unread. */
static int accept_loaded(int listener)
{
	int c = accept(listener, NULL, NULL);
	if (c < 0)
		die("accept");
	for (;;) {
		int inq = 0;
		if (ioctl(c, SIOCINQ, &inq) < 0)
			die("SIOCINQ");
		if ((size_t)inq >= upload)
			return c;
		struct pollfd p = {.fd = c, .events = POLLIN};
		poll(&p, 1, 10);
	}
}

/* -f: a fresh child accepts two connections and closes them; dt[] gets the
 * two times. */
static void close_in_child(int listener, int depth, uint64_t dt[2])
{
	int go[2], back[2];
	if (pipe(go) < 0 || pipe(back) < 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char b;
		close(go[1]);
		close(back[0]);
		if (read(go[0], &b, 1) != 1)
			_exit(1);
		int c[2];
		c[0] = accept_loaded(listener);
		c[1] = accept_loaded(listener);
		uint64_t t[2];
		t[0] = timed_close(c[0], depth);
		t[1] = timed_close(c[1], depth);
		/* _exit, as fork-per-connection servers end their children
		 * (in drain mode the drains go on in the parent's drain
		 * thread, to which this child handed them; they end when the
		 * client, told below, reads to EOF and closes). */
		_exit(write(back[1], t, sizeof t) == sizeof t ? 0 : 1);
	}
	close(go[0]);
	close(back[1]);
	if (write(child_forked[1], "f", 1) != 1)
		die("pipe");
	if (write(go[1], "g", 1) != 1 || read(back[0], dt, 2 * sizeof *dt) != 2 * sizeof *dt)
		die("child");
	if (write(child_done[1], "d", 1) != 1) /* the client may read now */
		die("pipe");
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("child exit");
	close(go[1]);
	close(back[0]);
}

int main(int argc, char **argv)
{
	int depth = 0;
	long iters = 2000, warmup = 50;
	int opt;
	while ((opt = getopt(argc, argv, "n:u:w:d:f")) != -1) {
		switch (opt) {
		case 'n': iters = (long)opt_num(optarg, USAGE); break;
		case 'u': upload = (size_t)opt_num(optarg, USAGE); break;
		case 'w': warmup = (long)opt_num(optarg, USAGE); break;
		case 'd': depth = (int)opt_num(optarg, USAGE); break;
		case 'f': per_iter = 2; break;
		default: fprintf(stderr, "usage: %s %s\n", argv[0], USAGE); return 2;
		}
	}
	total = iters + warmup;
	if (per_iter == 2 && (pipe(child_done) < 0 || pipe(child_forked) < 0))
		die("pipe");
	int listener = loopback_listener(64, &addr);
	/* -f: the client is a process of its own, forked while this one has a
	 * single thread, as the parent of a prefork server has: a fork while
	 * another thread is inside malloc would hand each child that malloc's
	 * lock, held for good (glibc's malloc takes care of it; the allocator of
	 * GCC 12's ASan, under make check, does not, and a child's first
	 * pthread_create then waits for ever). */
	pthread_t th;
	int results[2] = {-1, -1};
	pid_t client_pid = -1;
	if (per_iter == 2) {
		if (pipe(results) < 0 || (client_pid = fork()) < 0)
			die("client fork");
		if (client_pid == 0) {
			client(NULL);
			unsigned long counts[2] = {resets, eofs};
			_exit(write(results[1], counts, sizeof counts) == sizeof counts ? 0 : 1);
		}
		close(results[1]);
	} else if (pthread_create(&th, NULL, client, NULL)) {
		die("pthread_create");
	}

	uint64_t *lat = calloc((size_t)iters, sizeof *lat);
	uint64_t *second = calloc((size_t)iters, sizeof *second);
	if (!lat || !second)
		die("calloc");
	for (long i = 0; i < total; i++) {
		uint64_t dt[2] = {0, 0};
		if (per_iter == 2) {
			close_in_child(listener, depth, dt);
		} else {
			dt[0] = timed_close(accept_loaded(listener), depth);
		}
		if (i >= warmup) {
			lat[i - warmup] = dt[0];
			second[i - warmup] = dt[1];
		}
	}
	if (client_pid > 0) {
		unsigned long counts[2];
		int st;
		if (read(results[0], counts, sizeof counts) != sizeof counts ||
		    waitpid(client_pid, &st, 0) != client_pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			die("client");
		resets = counts[0];
		eofs = counts[1];
		close(results[0]);
	} else {
		pthread_join(th, NULL);
	}
	close(listener);

	uint64_t sum = 0;
	for (long i = 0; i < iters; i++)
		sum += lat[i];
	sort_u64(lat, (size_t)iters);
	size_t n = (size_t)iters;
	printf("{\"bench\":\"closelat\",\"iters\":%ld,\"upload_bytes\":%zu,"
	       "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f,",
	       iters, upload, quantile(lat, n, 0.5) / 1e3, quantile(lat, n, 0.9) / 1e3,
	       quantile(lat, n, 0.99) / 1e3, lat[n - 1] / 1e3, (double)sum / (double)n / 1e3);
	if (per_iter == 2) {
		sort_u64(second, n);
		double p2 = quantile(second, n, 0.5);
		printf("\"fresh_process\":1,\"second_p50_us\":%.2f,\"first_over_second_p50\":%.3f,",
		       p2 / 1e3, p2 > 0 ? quantile(lat, n, 0.5) / p2 : 0.0);
	}
	printf("\"client_saw_reset\":%lu,\"client_saw_eof\":%lu}\n", resets, eofs);
	free(lat);
	free(second);
	return 0;
}
