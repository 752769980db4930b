/* drain_epoll — an ordinary event-driven server (one epoll loop, non-blocking
 * sockets, level- or edge-triggered) that answers early and closes. It knows
 * nothing of closewatch.
 *
 * It checks one thing about its own epoll set: every event must belong to a
 * connection it has open. Each registration carries (generation << 32 | fd);
 * an event whose generation is not the current one of that fd — a connection
 * it closed, maybe under a number since reused — is "stale".
 *
 * usage: drain_epoll [--et] [--epoll2] [--read N] [--write N]
 *   For each connection: read N bytes (1024), answer N bytes (1000), close.
 *   --epoll2: after the first close, a second epoll set is made (its number
 *   is that connection's), and every connection accepted from then on is
 *   registered in it too; it is only looked at (every turn and at the end),
 *   and any event there of a connection closed is stale as well. Right after
 *   each close, both sets' registrations are read (/proc/self/fdinfo): one
 *   still under the number just closed is stale too (whatever the timing of
 *   events, which a drain that ends meanwhile would hide).
 *   stdin is in the set too: a line "quit" ends the loop.
 * Prints "port P", "accepted fd F gen G", "closed fd F gen G",
 * "stale fd F gen G events 0xE" for each stale event, and at the end "stale N".
 * Exits 0, or 99 after "error WHAT: reason" on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 4096

static struct conn {
	uint32_t gen; /* 0: not open */
	long got;
} conns[MAXFD];

static void die(const char *what)
{
	fprintf(stderr, "error %s: %s\n", what, strerror(errno));
	exit(99);
}

/* Is fd still registered in epoll set ep ("tfd: N" in its fdinfo)? */
static int registered(int ep, int fd)
{
	char path[64], buf[8192];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
	FILE *f = fopen(path, "r");
	if (!f)
		die("fdinfo");
	int found = 0, tfd;
	while (fgets(buf, sizeof buf, f))
		if (sscanf(buf, "tfd: %d", &tfd) == 1 && tfd == fd)
			found = 1;
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	int et = 0, epoll2 = 0, ep2 = -1;
	long to_read = 1024, to_write = 1000;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--et"))
			et = 1;
		else if (!strcmp(argv[i], "--epoll2"))
			epoll2 = 1;
		else if (!strcmp(argv[i], "--read") && i + 1 < argc)
			to_read = atol(argv[++i]);
		else if (!strcmp(argv[i], "--write") && i + 1 < argc)
			to_write = atol(argv[++i]);
		else {
			fprintf(stderr, "error args: unknown %s\n", argv[i]);
			return 99;
		}
	}
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 128) < 0)
		die("listen");
	getsockname(l, (struct sockaddr *)&a, &alen);
	printf("port %d\n", ntohs(a.sin_port));

	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)l};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
		die("epoll_ctl listener");
	ev.data.u64 = 0;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0)
		die("epoll_ctl stdin");

	static char buf[65536];
	uint32_t next_gen = 1;
	long stale = 0;
	for (int quit = 0; !quit;) {
		struct epoll_event evs[16];
		if (ep2 >= 0) {
			int n2 = epoll_wait(ep2, evs, 16, 0);
			for (int i = 0; i < n2; i++) {
				int fd = (int)(evs[i].data.u64 & 0xffffffffu);
				uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
				if (fd < 0 || fd >= MAXFD || conns[fd].gen != gen) {
					stale++;
					printf("stale fd %d gen %u events 0x%x (second set)\n", fd, gen,
					       evs[i].events);
				}
			}
		}
		int n = epoll_wait(ep, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			int fd = (int)(evs[i].data.u64 & 0xffffffffu);
			uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
			if (fd == 0 && gen == 0) {
				ssize_t r = read(0, buf, sizeof buf);
				if (r <= 0 || !strncmp(buf, "quit", 4))
					quit = 1;
				continue;
			}
			if (fd == l && gen == 0) {
				int c;
				while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (c >= MAXFD)
						die("fd too high");
					conns[c].gen = next_gen++;
					conns[c].got = 0;
					struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP | (et ? EPOLLET : 0),
								 .data.u64 = (uint64_t)conns[c].gen << 32 | (uint32_t)c};
					if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce) < 0)
						die("epoll_ctl conn");
					if (ep2 >= 0 && epoll_ctl(ep2, EPOLL_CTL_ADD, c, &ce) < 0)
						die("epoll_ctl conn, second set");
					printf("accepted fd %d gen %u\n", c, conns[c].gen);
				}
				continue;
			}
			if (fd < 0 || fd >= MAXFD || conns[fd].gen != gen) {
				stale++;
				printf("stale fd %d gen %u events 0x%x\n", fd, gen, evs[i].events);
				continue;
			}
			/* Read what this request still needs (edge-triggered: until
			 * EAGAIN or enough; we close as soon as we have enough). */
			struct conn *c = &conns[fd];
			int closed = 0;
			while (c->got < to_read) {
				long want = to_read - c->got;
				ssize_t r = read(fd, buf, want < (long)sizeof buf ? (size_t)want : sizeof buf);
				if (r > 0) {
					c->got += r;
					continue;
				}
				if (r < 0 && errno == EAGAIN)
					break;
				/* EOF or error before the whole request: give up on it. */
				printf("closed fd %d gen %u early\n", fd, gen);
				close(fd);
				c->gen = 0;
				closed = 1;
				break;
			}
			if (closed || c->got < to_read)
				continue;
			memset(buf, 'a', (size_t)to_write);
			if (write(fd, buf, (size_t)to_write) != to_write)
				die("write (answer larger than the send buffer?)");
			/* No EPOLL_CTL_DEL: close() takes the fd out of the set. */
			close(fd);
			c->gen = 0;
			/* Before saying so: the client ends the drain when told. */
			if (ep2 >= 0 && (registered(ep, fd) || registered(ep2, fd))) {
				stale++;
				printf("stale registration fd %d gen %u\n", fd, gen);
			}
			printf("closed fd %d gen %u\n", fd, gen);
			if (epoll2 && ep2 < 0) {
				if ((ep2 = epoll_create1(EPOLL_CLOEXEC)) < 0)
					die("epoll_create1, second set");
				printf("second set fd %d\n", ep2);
			}
		}
	}
	if (ep2 >= 0) { /* a last look: its events are level-triggered unless --et */
		struct epoll_event evs[16];
		int n2 = epoll_wait(ep2, evs, 16, 0);
		for (int i = 0; i < n2; i++) {
			int fd = (int)(evs[i].data.u64 & 0xffffffffu);
			if (fd < 0 || fd >= MAXFD || conns[fd].gen != (uint32_t)(evs[i].data.u64 >> 32))
				stale++;
		}
	}
	printf("stale %ld\n", stale);
	return 0;
}
