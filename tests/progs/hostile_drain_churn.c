/* hostile_drain_churn — thousands of connections closed with unread data
 * (drain mode drains every one), half of them reset by the peer.
 *
 *   hostile_drain_churn server N
 *       Counts its fds ("fds-start ALL SOCKETS"), listens on 127.0.0.1
 *       ("port P"), accepts N connections one after the other, reads the
 *       4-byte header of each and closes it with the rest (1000 bytes)
 *       unread. Then closes the listener and waits (at most 60 s) until at
 *       most one socket fd is left (the drain engine's channel), and prints "fds-end ALL SOCKETS NEWFDS" (NEWFDS:
 *       the targets of fds that were not there at the start).
 *   hostile_drain_churn peer PORT N CONC
 *       (run without the shim) N connections, at most CONC at once: each
 *       sends its index (4 bytes) and 1000 bytes, then waits for the
 *       server's side to end; on EOF an even connection closes normally and
 *       an odd one resets (SO_LINGER {1,0}). Prints "peer eof E reset R
 *       other O" (how each connection's end looked from here) — with the
 *       drain every end is an EOF; without it the unread data makes every
 *       end a reset. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 1000

/* Counts of open fds and of sockets; optionally the list of targets. */
static void count_fds(int *all, int *socks, char *list, size_t cap)
{
	*all = *socks = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	struct dirent *e;
	size_t n = list ? strlen(list) : 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == self)
			continue;
		char path[300], target[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(path, target, sizeof target - 1);
		target[k > 0 ? k : 0] = 0;
		(*all)++;
		if (!strncmp(target, "socket:", 7))
			(*socks)++;
		if (list && strstr(list, target) == NULL && n + strlen(target) + 2 < cap) {
			/* remember each new kind of target once */
			n += (size_t)snprintf(list + n, cap - n, "%s%s", n ? "," : "", target);
		}
	}
	closedir(d);
}

static int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int server(long n)
{
	int all0, socks0, all1, socks1;
	char before[4096] = "", after[4096] = "";
	count_fds(&all0, &socks0, before, sizeof before);
	printf("fds-start %d %d\n", all0, socks0);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 512) ||
	    getsockname(lfd, (struct sockaddr *)&a, &len)) {
		perror("listen");
		return 1;
	}
	printf("port %d\n", ntohs(a.sin_port));
	fflush(stdout);
	long bad = 0;
	for (long i = 0; i < n; i++) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			perror("accept4");
			return 1;
		}
		uint32_t idx;
		if (read_full(c, &idx, sizeof idx) != 0)
			bad++;
		if (close(c) != 0) /* PAYLOAD bytes unread: rst_unread, drained */
			bad++;
	}
	close(lfd);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		count_fds(&all1, &socks1, NULL, 0);
		if (socks1 <= 1) /* the drain engine's channel stays */
			break;
		usleep(10000);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 60);
	/* new targets since the start (the drain engine's channel) */
	char now[4096] = "";
	count_fds(&all1, &socks1, now, sizeof now);
	size_t m = 0;
	for (char *tok = strtok(now, ","); tok; tok = strtok(NULL, ","))
		if (!strstr(before, tok))
			m += (size_t)snprintf(after + m, sizeof after - m, "%s%s", m ? "," : "", tok);
	printf("fds-end %d %d %s\n", all1, socks1, m ? after : "-");
	printf("errors %ld\n", bad);
	return bad ? 1 : 0;
}

struct conn {
	int fd;
	uint32_t idx;
};

static int peer(int port, long n, int conc)
{
	struct conn *c = calloc((size_t)conc, sizeof *c);
	struct pollfd *p = calloc((size_t)conc, sizeof *p);
	long next = 0, done = 0, eof = 0, reset = 0, other = 0;
	static char payload[4 + PAYLOAD];
	for (int i = 0; i < conc; i++)
		c[i].fd = -1;
	while (done < n) {
		for (int i = 0; i < conc && next < n; i++) {
			if (c[i].fd >= 0)
				continue;
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
						.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
			if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
				perror("peer connect");
				return 1;
			}
			uint32_t idx = (uint32_t)next++;
			memcpy(payload, &idx, 4);
			if (write(fd, payload, sizeof payload) != (ssize_t)sizeof payload) {
				perror("peer write");
				return 1;
			}
			c[i].fd = fd;
			c[i].idx = idx;
		}
		for (int i = 0; i < conc; i++) {
			p[i].fd = c[i].fd;
			p[i].events = POLLIN;
			p[i].revents = 0;
		}
		if (poll(p, (nfds_t)conc, 30000) <= 0) {
			fprintf(stderr, "peer: no progress in 30 s\n");
			return 1;
		}
		for (int i = 0; i < conc; i++) {
			if (c[i].fd < 0 || !p[i].revents)
				continue;
			char buf[4096];
			ssize_t r = read(c[i].fd, buf, sizeof buf);
			if (r > 0)
				continue; /* the server sends nothing, but be tolerant */
			if (r == 0)
				eof++;
			else if (errno == ECONNRESET)
				reset++;
			else
				other++;
			if (c[i].idx % 2) {
				struct linger l = {1, 0};
				setsockopt(c[i].fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
			}
			close(c[i].fd);
			c[i].fd = -1;
			done++;
		}
	}
	printf("peer eof %ld reset %ld other %ld\n", eof, reset, other);
	free(c);
	free(p);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "server"))
		return server(atol(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "peer"))
		return peer(atoi(argv[2]), atol(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: hostile_drain_churn server N | peer PORT N CONC\n");
	return 2;
}
