/* hostile_threads — many threads closing and shutting down sockets while
 * another thread forks and execs.
 *
 *   hostile_threads THREADS ITERS FORKS
 *
 * Each of THREADS threads runs ITERS rounds; a round is
 *   a socketpair: 1 byte written, shutdown(SHUT_WR) of the writer, the reader
 *   closed with the byte unread, then the writer closed;
 *   every 4th round also a loopback TCP connection to the thread's own
 *   listener: 1 byte sent, shutdown(SHUT_WR) of the client, the accepted
 *   socket closed with the byte unread, then the client closed;
 * and at the end it closes its listener. Every call's return value is
 * checked. Meanwhile the main thread runs FORKS rounds of: socketpair
 * (close-on-exec); then either fork() — the child closes one end, then
 * execs this program as "child" — or posix_spawn() of the same; the parent
 * closes both ends and waits for the child.
 *
 *   hostile_threads child   socketpair, 3 bytes unread, both ends closed, exit 0.
 *
 * Output: "child PID fork|spawn STATUS" per child, then
 * "closes C shutdowns S errors E" (closes and shutdowns of sockets made by
 * this process, all of which the shim logs with CLOSEWATCH_EVENTS=all).
 * Exit status 0 when E == 0 and every child exited 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static atomic_long closes, shutdowns, errors;
static int iters;

static void fail(const char *what, int rc)
{
	fprintf(stderr, "hostile_threads: %s returned %d (%s)\n", what, rc, strerror(errno));
	atomic_fetch_add(&errors, 1);
}

static void do_close(int fd)
{
	errno = 4242;
	int rc = close(fd);
	if (rc != 0)
		fail("close", rc);
	else if (errno != 4242)
		fail("close kept errno", rc); /* a successful call leaves errno alone */
	atomic_fetch_add(&closes, 1);
}

static void do_shutdown(int fd, int how)
{
	int rc = shutdown(fd, how);
	if (rc != 0)
		fail("shutdown", rc);
	atomic_fetch_add(&shutdowns, 1);
}

static void wait_readable(int fd, int bytes)
{
	for (int i = 0; i < 10000; i++) {
		int n = 0;
		if (ioctl(fd, FIONREAD, &n) == 0 && n >= bytes)
			return;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, 1);
	}
	fail("wait for data", -1);
}

static void pair_round(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		fail("socketpair", -1);
		return;
	}
	if (write(sv[0], "x", 1) != 1)
		fail("write", -1);
	do_shutdown(sv[0], SHUT_WR);
	do_close(sv[1]);
	do_close(sv[0]);
}

static void tcp_round(int lfd, const struct sockaddr_in *addr)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0) {
		fail("socket", c);
		return;
	}
	if (connect(c, (const struct sockaddr *)addr, sizeof *addr) != 0) {
		fail("connect", -1);
		do_close(c);
		return;
	}
	int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0) {
		fail("accept4", s);
		do_close(c);
		return;
	}
	if (write(c, "y", 1) != 1)
		fail("write", -1);
	do_shutdown(c, SHUT_WR);
	wait_readable(s, 1);
	do_close(s);
	do_close(c);
}

static void *worker(void *arg)
{
	(void)arg;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 8) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) != 0) {
		fail("listener", lfd);
		return NULL;
	}
	for (int i = 0; i < iters; i++) {
		pair_round();
		if (i % 4 == 0)
			tcp_round(lfd, &a);
	}
	do_close(lfd);
	return NULL;
}

static int child_main(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || write(sv[0], "abc", 3) != 3)
		return 3;
	if (close(sv[1]) != 0 || close(sv[0]) != 0)
		return 4;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "child"))
		return child_main();
	if (argc != 4) {
		fprintf(stderr, "usage: hostile_threads THREADS ITERS FORKS\n");
		return 2;
	}
	int nthreads = atoi(argv[1]), forks = atoi(argv[3]);
	iters = atoi(argv[2]);
	pthread_t *t = calloc((size_t)nthreads, sizeof *t);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, NULL) != 0)
			fail("pthread_create", -1);

	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 2;
	self[n] = 0;
	char *cargv[] = {self, "child", NULL};
	int bad_children = 0;
	for (int i = 0; i < forks; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
			fail("socketpair", -1);
			continue;
		}
		pid_t pid;
		int spawned = i % 2;
		if (spawned) {
			int rc = posix_spawn(&pid, self, NULL, NULL, cargv, environ);
			if (rc != 0) {
				errno = rc;
				fail("posix_spawn", rc);
				pid = -1;
			}
		} else {
			pid = fork();
			if (pid == 0) {
				/* Only async-signal-safe calls until exec: close is one. */
				if (close(sv[0]) != 0)
					_exit(5);
				execve(self, cargv, environ);
				_exit(127);
			}
			if (pid < 0)
				fail("fork", -1);
		}
		do_close(sv[0]);
		do_close(sv[1]);
		if (pid > 0) {
			int st = 0;
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			printf("child %d %s %d\n", (int)pid, spawned ? "spawn" : "fork",
			       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			bad_children += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	free(t);
	printf("closes %ld shutdowns %ld errors %ld\n", atomic_load(&closes), atomic_load(&shutdowns),
	       atomic_load(&errors));
	return atomic_load(&errors) || bad_children ? 1 : 0;
}
