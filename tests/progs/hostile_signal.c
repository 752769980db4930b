/* hostile_signal — close() and shutdown() from a signal handler that
 * interrupts the main thread while it is inside the shim.
 *
 *   hostile_signal ROUNDS HANDLER_RUNS INTERVAL_US MAX_MS
 *
 * SIGALRM fires every INTERVAL_US (setitimer, ITIMER_REAL). The handler makes
 * a socketpair, writes 2 bytes, shuts the writer down (SHUT_RDWR) and closes
 * both ends, the reader with its 2 bytes unread. The main thread meanwhile
 * runs ITERS rounds of: socketpair, 1 byte written, shutdown(SHUT_WR) of the
 * writer, close of the reader (1 byte unread) and of the writer, plus a
 * close(-1) that must fail with EBADF. Every return value is checked, and
 * errno across calls that succeed: the main thread sets errno to a marker
 * before each close and expects it back (the handler saves and restores errno,
 * as a handler must).
 *
 * The main loop runs until it has done at least ROUNDS rounds and the handler
 * has closed its sockets at least HANDLER_RUNS times: an amount of work, not a
 * time, so that a slow machine only makes it take longer. The handler does its
 * work only when the main loop has completed a round since its last one (it
 * returns at once otherwise): a handler slower than the interval, which would
 * be entered again as soon as it returns, cannot starve the main loop.
 * MAX_MS only ends a hang: past it the program prints "timeout" and exits 3.
 *
 * Output: "main N handler K errors E"; exit status 0 when E == 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handler_runs, handler_errors, in_handler;
static volatile sig_atomic_t main_rounds; /* the handler's view of main's progress */
static sig_atomic_t rounds_seen = -1;      /* the handler's only */
static long main_errors;

static void on_alarm(int sig)
{
	(void)sig;
	if (main_rounds == rounds_seen)
		return; /* main has not finished a round since our last work */
	rounds_seen = main_rounds;
	int saved = errno;
	in_handler = 1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		/* EMFILE cannot happen: main holds at most 2 fds at a time */
		handler_errors++;
	} else {
		if (write(sv[0], "hh", 2) != 2)
			handler_errors++;
		if (shutdown(sv[0], SHUT_RDWR) != 0)
			handler_errors++;
		if (close(sv[1]) != 0)
			handler_errors++;
		if (close(sv[0]) != 0)
			handler_errors++;
	}
	handler_runs++;
	in_handler = 0;
	errno = saved;
}

static void check(int ok, const char *what, int i)
{
	if (!ok) {
		main_errors++;
		if (main_errors < 10)
			fprintf(stderr, "hostile_signal: round %d: %s (errno %d)\n", i, what, errno);
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: hostile_signal ROUNDS HANDLER_RUNS INTERVAL_US MAX_MS\n");
		return 2;
	}
	long rounds = atol(argv[1]), want_handler = atol(argv[2]), us = atol(argv[3]),
	     max_ms = atol(argv[4]);
	int timed_out = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, us}, {0, us}};
	setitimer(ITIMER_REAL, &it, NULL);

	long i;
	for (i = 0; i < rounds || handler_runs < want_handler; i++) {
		main_rounds = (sig_atomic_t)(i & 0x3fffffff);
		if (i % 64 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > max_ms) {
				timed_out = 1;
				break;
			}
		}
		int sv[2];
		int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		check(rc == 0, "socketpair", (int)i);
		if (rc != 0)
			continue;
		check(write(sv[0], "m", 1) == 1, "write", (int)i);
		check(shutdown(sv[0], SHUT_WR) == 0, "shutdown", (int)i);
		errno = 777;
		rc = close(sv[1]);
		check(rc == 0 && errno == 777, "close of the reader", (int)i);
		errno = 778;
		rc = close(sv[0]);
		check(rc == 0 && errno == 778, "close of the writer", (int)i);
		errno = 0;
		rc = close(-1);
		check(rc == -1 && errno == EBADF, "close(-1) is EBADF", (int)i);
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	if (timed_out)
		printf("timeout after %ld ms\n", max_ms);
	printf("main %ld handler %ld errors %ld\n", i, (long)handler_runs,
	       main_errors + (long)handler_errors);
	return main_errors || handler_errors ? 1 : timed_out ? 3 : 0;
}
