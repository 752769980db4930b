/* close() latency of a socket with an unread upload: the close that the
 * kernel answers with RST and that drain mode turns into a lingering close.
 *
 *   closelat [-n ITERATIONS] [-u UPLOAD_BYTES] [-w WARMUP] [-d DEPTH]
 *
 * A client thread connects, uploads UPLOAD_BYTES and reads until EOF or
 * reset, then closes. The main thread accepts, waits until the whole upload
 * sits unread in its receive queue, and times its close(). Prints p50, p90,
 * p99, max and mean in microseconds. -d: the close is made DEPTH calls deep,
 * so that a backtrace of the close has that many frames of the program to
 * walk and name (the backtrace benchmark). */
#include "bench.h"

#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>

#define USAGE "[-n ITERATIONS] [-u UPLOAD_BYTES] [-w WARMUP] [-d DEPTH]"

static struct sockaddr_in addr;
static long total;
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
		int c = loopback_connect(&addr, NULL);
		size_t off = 0;
		while (off < upload) {
			ssize_t n = write(c, buf + off, upload - off);
			if (n < 0)
				die("upload");
			off += (size_t)n;
		}
		ssize_t n;
		while ((n = read(c, buf, 4096)) > 0)
			;
		if (n == 0)
			eofs++;
		else if (errno == ECONNRESET)
			resets++;
		else
			die("client read");
		close(c);
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

int main(int argc, char **argv)
{
	int depth = 0;
	long iters = 2000, warmup = 50;
	int opt;
	while ((opt = getopt(argc, argv, "n:u:w:d:")) != -1) {
		switch (opt) {
		case 'n': iters = (long)opt_num(optarg, USAGE); break;
		case 'u': upload = (size_t)opt_num(optarg, USAGE); break;
		case 'w': warmup = (long)opt_num(optarg, USAGE); break;
		case 'd': depth = (int)opt_num(optarg, USAGE); break;
		default: fprintf(stderr, "usage: %s %s\n", argv[0], USAGE); return 2;
		}
	}
	total = iters + warmup;
	int listener = loopback_listener(64, &addr);
	pthread_t th;
	if (pthread_create(&th, NULL, client, NULL))
		die("pthread_create");

	uint64_t *lat = calloc((size_t)iters, sizeof *lat);
	if (!lat)
		die("calloc");
	for (long i = 0; i < total; i++) {
		int c = accept(listener, NULL, NULL);
		if (c < 0)
			die("accept");
		/* Wait until the whole upload is there, unread. */
		for (;;) {
			int inq = 0;
			if (ioctl(c, SIOCINQ, &inq) < 0)
				die("SIOCINQ");
			if ((size_t)inq >= upload)
				break;
			struct pollfd p = {.fd = c, .events = POLLIN};
			poll(&p, 1, 10);
		}
		uint64_t dt = timed_close(c, depth);
		if (i >= warmup)
			lat[i - warmup] = dt;
	}
	pthread_join(th, NULL);
	close(listener);

	uint64_t sum = 0;
	for (long i = 0; i < iters; i++)
		sum += lat[i];
	sort_u64(lat, (size_t)iters);
	size_t n = (size_t)iters;
	printf("{\"bench\":\"closelat\",\"iters\":%ld,\"upload_bytes\":%zu,"
	       "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f,"
	       "\"client_saw_reset\":%lu,\"client_saw_eof\":%lu}\n",
	       iters, upload, quantile(lat, n, 0.5) / 1e3, quantile(lat, n, 0.9) / 1e3,
	       quantile(lat, n, 0.99) / 1e3, lat[n - 1] / 1e3, (double)sum / (double)n / 1e3,
	       resets, eofs);
	free(lat);
	return 0;
}
