/* Shared helpers of the benchmark programs: a monotonic clock, fatal errors,
 * option parsing, and loopback listeners. The programs know nothing of
 * closewatch: bench/run.py runs each one with and without the shim.
 * Every program prints exactly one JSON object on stdout. */
#ifndef CW_BENCH_H
#define CW_BENCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((noreturn, format(printf, 1, 2))) static inline void die(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", program_invocation_short_name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (saved)
		fprintf(stderr, ": %s", strerror(saved));
	fputc('\n', stderr);
	exit(1);
}

/* "-x VALUE" options: a positive number, or die with the usage line. */
static inline double opt_num(const char *arg, const char *usage)
{
	char *end;
	errno = 0;
	double v = strtod(arg ? arg : "", &end);
	if (!arg || errno || end == arg || *end || v <= 0) {
		errno = 0;
		fprintf(stderr, "usage: %s %s\n", program_invocation_short_name, usage);
		exit(2);
	}
	return v;
}

/* A TCP listener on 127.0.0.1, on a port the kernel picks. */
static inline int loopback_listener(int backlog, struct sockaddr_in *addr)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket");
	memset(addr, 0, sizeof *addr);
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof *addr;
	if (bind(s, (struct sockaddr *)addr, len) < 0 || listen(s, backlog) < 0 ||
	    getsockname(s, (struct sockaddr *)addr, &len) < 0)
		die("listen on 127.0.0.1");
	return s;
}

/* Connect to addr; on a transient lack of ports (many connections in
 * TIME_WAIT) wait a little and retry, counting the retries. */
static inline int loopback_connect(const struct sockaddr_in *addr, unsigned long *retries)
{
	for (;;) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c < 0)
			die("socket");
		if (connect(c, (const struct sockaddr *)addr, sizeof *addr) == 0)
			return c;
		if (errno != EADDRNOTAVAIL && errno != EAGAIN)
			die("connect");
		close(c);
		if (retries)
			++*retries;
		usleep(1000);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n sorted values, nearest rank. */
static inline uint64_t quantile(const uint64_t *v, size_t n, double q)
{
	if (!n)
		return 0;
	size_t i = (size_t)(q * (double)n);
	return v[i < n ? i : n - 1];
}

static inline void sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_u64);
}

#endif
