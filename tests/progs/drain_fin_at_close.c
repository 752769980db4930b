/* drain_fin_at_close — does the peer see EOF once close() has returned?
 *
 * Both ends of a loopback connection in one thread: the client sends a
 * request, the server reads it all, answers and closes its end (a clean
 * close in ESTABLISHED: drain mode lingers on it). Right after close()
 * returns, and before this thread blocks even once, the client end is read
 * without waiting: the answer, then EOF if the FIN has been sent.
 *
 * Without closewatch, close() sends that FIN itself. With a drain, the same
 * must hold: the drain thread may run much later. To leave it no chance to
 * do it first, the process runs on one CPU and, where it may (root),
 * SCHED_FIFO: a SCHED_BATCH drain thread cannot run until this one blocks.
 *
 * Prints "answer=N eof=0|1 fifo=0|1", then waits for a line on stdin (so that
 * the drain can end: the client end is closed then) and exits 0; 99 after
 * "error WHAT: reason" on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "error %s: %s\n", what, strerror(errno));
	exit(99);
}

int main(void)
{
	cpu_set_t one;
	CPU_ZERO(&one);
	if (sched_getaffinity(0, sizeof one, &one) == 0) {
		int first = 0;
		while (first < CPU_SETSIZE && !CPU_ISSET(first, &one))
			first++;
		CPU_ZERO(&one);
		CPU_SET(first, &one);
		sched_setaffinity(0, sizeof one, &one);
	}
	struct sched_param fifo = {.sched_priority = 1};
	int is_fifo = sched_setscheduler(0, SCHED_FIFO, &fifo) == 0;

	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, n) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &n) < 0)
		die("listen");
	int cli = socket(AF_INET, SOCK_STREAM, 0);
	if (cli < 0 || connect(cli, (struct sockaddr *)&a, n) < 0)
		die("connect");
	int srv = accept(l, NULL, NULL);
	if (srv < 0)
		die("accept");
	char buf[64];
	if (write(cli, "request", 7) != 7)
		die("request");
	for (size_t got = 0; got < 7;) { /* all of it: nothing unread at close */
		ssize_t r = read(srv, buf, sizeof buf);
		if (r <= 0)
			die("read request");
		got += (size_t)r;
	}
	if (write(srv, "answer", 6) != 6)
		die("answer");
	if (close(srv) < 0)
		die("close");
	/* Not one blocking call from here to the print. */
	size_t answer = 0;
	int eof = 0;
	for (;;) {
		ssize_t r = recv(cli, buf, sizeof buf, MSG_DONTWAIT);
		if (r > 0) {
			answer += (size_t)r;
			continue;
		}
		eof = r == 0;
		if (r < 0 && errno != EAGAIN)
			die("recv");
		break;
	}
	printf("answer=%zu eof=%d fifo=%d\n", answer, eof, is_fifo);
	fflush(stdout);
	struct sched_param other = {0};
	sched_setscheduler(0, SCHED_OTHER, &other);
	if (!fgets(buf, sizeof buf, stdin))
		buf[0] = 0;
	close(cli);
	close(l);
	return 0;
}
