/* review_cancel MODE [FORKS] — a thread with a cancel pending calls one socket call.
 *
 * close:    close() is a cancellation point: glibc acts on the pending cancel
 *           before the system call (the fd stays open) and the thread unwinds
 *           out of the call. Then the program forks FORKS times; each fork
 *           must proceed as without a preloaded library (the test counts the
 *           waiting syscalls, sched_yield and nanosleep, under strace: the
 *           program makes none).
 * shutdown: shutdown() is not a cancellation point: the thread returns from
 *           it and goes on (it then turns cancellation off and says so).
 * spawn:    posix_spawn() of /bin/true is not one either: likewise, and the
 *           child is reaped ("spawned 1").
 * exec:     execv() of /bin/true is not one: the process becomes /bin/true
 *           and prints nothing more.
 * accept:   accept() on a listener is a cancellation point: the thread ends
 *           there; then FORKS children that exit with exit() (the test counts
 *           their getdents64 under strace: the program makes none).
 *
 * Prints "cancelled 0|1", "fd_open 1|0", "forks N". */
#include <pthread.h>
#include <spawn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int sock = -1;
static const char *mode;

static void *victim(void *arg)
{
	(void)arg;
	pthread_cancel(pthread_self()); /* deferred: acts at the next cancellation point */
	char *argv[] = {"true", NULL};
	pid_t pid = -1;
	int rc = 0;
	if (!strcmp(mode, "close"))
		close(sock);
	else if (!strcmp(mode, "spawn"))
		rc = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
	else if (!strcmp(mode, "exec"))
		execv("/bin/true", argv);
	else if (!strcmp(mode, "accept"))
		accept(sock, NULL, NULL);
	else
		shutdown(sock, SHUT_RDWR);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	if (!strcmp(mode, "spawn"))
		printf("spawned %d\n", rc == 0 && waitpid(pid, NULL, 0) == pid);
	return NULL;
}

int main(int argc, char **argv)
{
	mode = argc > 1 ? argv[1] : "close";
	int forks = argc > 2 ? atoi(argv[2]) : 3;
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
		return 2;
	sock = pair[0];
	if (!strcmp(mode, "accept")) {
		sock = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		if (sock < 0 || bind(sock, (struct sockaddr *)&a, sizeof a) || listen(sock, 1))
			return 2;
	}
	if (write(pair[1], "x", 1) != 1) /* an unread byte: a risky verdict */
		return 2;
	printf("start\n");
	fflush(stdout);
	pthread_t t;
	void *res = NULL;
	if (pthread_create(&t, NULL, victim, NULL) || pthread_join(t, &res))
		return 3;
	printf("cancelled %d\n", res == PTHREAD_CANCELED);
	printf("fd_open %d\n", fcntl(sock, F_GETFD) >= 0);
	fflush(stdout);
	int done = 0;
	for (int i = 0; i < forks; i++) {
		pid_t p = fork();
		if (p == 0) {
			if (!strcmp(mode, "accept"))
				exit(0);
			_exit(0);
		}
		if (p > 0 && waitpid(p, NULL, 0) == p)
			done++;
	}
	printf("forks %d\n", done);
	return 0;
}
