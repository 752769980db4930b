/* Loopback TCP churn: one client thread connects, one server thread accepts,
 * writes a short answer and closes; the client reads to EOF and closes.
 * Every connection thus ends with two close() calls on sockets, neither of
 * them risky (the server's is clean or fin_pending, the client's clean).
 *
 *   churn [-d SECONDS] [-n MAX_CONNECTIONS] [-s ANSWER_BYTES]
 *
 * Runs until SECONDS have passed or MAX_CONNECTIONS are done, whichever is
 * first, and prints connections per second, the CPU time per connection, and
 * the median time of one connection (connect to close, as the client sees
 * it): unlike the mean, the median hardly moves when other load on the
 * machine preempts the benchmark now and then. */
#include "bench.h"

#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>

#define USAGE "[-d SECONDS] [-n MAX_CONNECTIONS] [-s ANSWER_BYTES]"

static int listener;

/* CPU time (user + system) of the whole process so far, in ns. */
static uint64_t cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}
static size_t answer_len = 64;
static atomic_int stopping;

static void *server(void *arg)
{
	(void)arg;
	char answer[65536];
	memset(answer, 'a', sizeof answer);
	for (;;) {
		int c = accept(listener, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		if (atomic_load(&stopping)) {
			close(c);
			return NULL;
		}
		size_t off = 0;
		while (off < answer_len) {
			ssize_t n = write(c, answer + off, answer_len - off);
			if (n < 0)
				die("write");
			off += (size_t)n;
		}
		close(c);
	}
}

int main(int argc, char **argv)
{
	double seconds = 1;
	unsigned long max_conns = ~0UL;
	int opt;
	while ((opt = getopt(argc, argv, "d:n:s:")) != -1) {
		switch (opt) {
		case 'd': seconds = opt_num(optarg, USAGE); break;
		case 'n': max_conns = (unsigned long)opt_num(optarg, USAGE); break;
		case 's':
			answer_len = (size_t)opt_num(optarg, USAGE);
			if (answer_len > 65536)
				answer_len = 65536;
			break;
		default: fprintf(stderr, "usage: %s %s\n", argv[0], USAGE); return 2;
		}
	}
	struct sockaddr_in addr;
	listener = loopback_listener(512, &addr);
	pthread_t th;
	if (pthread_create(&th, NULL, server, NULL))
		die("pthread_create");

	char buf[65536];
	unsigned long conns = 0, retries = 0;
	size_t cap = 4096;
	uint64_t *cycle = malloc(cap * sizeof *cycle);
	if (!cycle)
		die("malloc");
	uint64_t c0 = cpu_ns(), t0 = now_ns(), deadline = t0 + (uint64_t)(seconds * 1e9), t1;
	for (uint64_t start = t0;;) {
		int c = loopback_connect(&addr, &retries);
		ssize_t n;
		size_t got = 0;
		while ((n = read(c, buf, sizeof buf)) > 0)
			got += (size_t)n;
		if (n < 0)
			die("read");
		if (got != answer_len)
			die("short answer: %zu of %zu bytes", got, answer_len);
		close(c);
		t1 = now_ns();
		if (conns == cap && !(cycle = realloc(cycle, (cap *= 2) * sizeof *cycle)))
			die("realloc");
		cycle[conns++] = t1 - start;
		start = t1;
		if (conns >= max_conns || t1 >= deadline)
			break;
	}
	double elapsed = (double)(t1 - t0) / 1e9;
	double cpu = (double)(cpu_ns() - c0);
	sort_u64(cycle, conns);
	/* Release the server with one last connection. */
	atomic_store(&stopping, 1);
	close(loopback_connect(&addr, &retries));
	pthread_join(th, NULL);
	close(listener);
	printf("{\"bench\":\"churn\",\"conns\":%lu,\"seconds\":%.4f,\"conns_per_s\":%.1f,"
	       "\"cpu_us_per_conn\":%.3f,\"p50_conn_us\":%.3f,\"p90_conn_us\":%.3f,"
	       "\"answer_bytes\":%zu,\"connect_retries\":%lu}\n",
	       conns, elapsed, (double)conns / elapsed, cpu / 1e3 / (double)conns,
	       quantile(cycle, conns, 0.5) / 1e3, quantile(cycle, conns, 0.9) / 1e3, answer_len, retries);
	free(cycle);
	return 0;
}
