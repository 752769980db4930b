/* fork_storm — threads close TCP sockets with unread bytes while another
 * thread forks short-lived children that inherit them.
 *
 * usage: fork_storm THREADS CLOSES HOW
 *   THREADS closer threads, each CLOSES times: connect to its own loopback
 *   listener from a source address of its own (127.T.I/250.I%250+1: every
 *   connection has other addresses, so records tell sockets apart), send
 *   10 bytes, accept, wait until the 10 bytes sit unread,
 *   close the accepted socket (the close that resets, unless a child still
 *   holds the socket: then the child's exit is the last close), then close
 *   the client side after reading to EOF or reset.
 *   One forker thread meanwhile, until the closers are done:
 *     HOW = exec   fork, the child execs /bin/true
 *           exit   fork, the child calls exit(0) (destructors run)
 *   and the parent reaps it. Accepted sockets are not close-on-exec.
 * Prints "closes N children M" and exits 0; 99 after "error WHAT: reason". */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int closes;
static const char *how;
static atomic_int closers_left;
static atomic_long total_closes;

static void fail(const char *what)
{
	fprintf(stderr, "error %s: %s\n", what, strerror(errno));
	exit(99);
}

static void *closer(void *arg)
{
	int me = (int)(long)arg;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, len) < 0 || listen(l, 16) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		fail("listen");
	for (int i = 0; i < closes; i++) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in src = {.sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(0x7f000000u | (unsigned)(me + 1) << 16 |
								   (unsigned)(i / 250) << 8 | (unsigned)(i % 250 + 1))};
		if (c < 0 || bind(c, (struct sockaddr *)&src, sizeof src) < 0 ||
		    connect(c, (struct sockaddr *)&a, sizeof a) < 0)
			fail("connect");
		if (write(c, "0123456789", 10) != 10)
			fail("write");
		int s = accept(l, NULL, NULL); /* not close-on-exec: children inherit it */
		if (s < 0)
			fail("accept");
		for (int k = 0; k < 1000; k++) {
			int inq = 0;
			if (ioctl(s, SIOCINQ, &inq) < 0)
				fail("SIOCINQ");
			if (inq >= 10)
				break;
			struct pollfd p = {.fd = s, .events = POLLIN};
			poll(&p, 1, 10);
		}
		close(s);
		/* EOF or reset once the last holder of s has closed it. */
		char b[16];
		struct pollfd p = {.fd = c, .events = POLLIN};
		if (poll(&p, 1, 10000) == 1)
			(void)!read(c, b, sizeof b);
		close(c);
		atomic_fetch_add(&total_closes, 1);
	}
	close(l);
	atomic_fetch_sub(&closers_left, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int threads = atoi(argv[1]);
	closes = atoi(argv[2]);
	how = argv[3];
	if (threads < 1 || threads > 64 || closes < 1 || closes > 60000 ||
	    (strcmp(how, "exec") && strcmp(how, "exit")))
		return 2;
	atomic_store(&closers_left, threads);
	pthread_t t[64];
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, closer, (void *)(long)i))
			fail("pthread_create");
	long children = 0;
	/* Bounded: the closers end, each close bounded by its poll timeouts. */
	while (atomic_load(&closers_left) > 0) {
		pid_t pid = fork();
		if (pid < 0)
			fail("fork");
		if (pid == 0) {
			if (!strcmp(how, "exec")) {
				char *args[] = {"true", NULL};
				execv("/bin/true", args);
				_exit(127);
			}
			exit(0);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid)
			fail("waitpid");
		children++;
	}
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("closes %ld children %ld\n", atomic_load(&total_closes), children);
	return 0;
}
