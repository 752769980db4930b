/* fork_server — a fork-per-connection TCP server on 127.0.0.1 (Python's
 * ForkingMixIn, inetd-style C servers): the parent accepts and forks, closes
 * its copy of the connection and goes on; the child answers early, closes
 * without reading the upload, and ends. It knows nothing of closewatch; the
 * drain tests run it with LD_PRELOAD=libclosewatch.so in drain mode. A
 * child answers once the client's upload has begun (poll), so its close
 * leaves unread bytes, and once the parent has closed its copy (a pipe), so
 * that the child's close is the last one, which the kernel acts on.
 *
 * usage: fork_server [options]
 *   --conns N        connections to serve, a child each (1)
 *   --write N        each child answers N bytes (1000)
 *   --hold           each child first prints "child PID ready", then waits for
 *                    one byte on stdin before it answers and closes
 *   --parent-exit    once every child is forked, the parent prints "parent
 *                    exits" and exits (exit(0), its children left running:
 *                    what a daemon's first process does)
 * Prints "port P"; each child "child PID closed threads T" (T: its threads
 * right after its close, from /proc/self/task) and then _exit(0)s; the parent,
 * without --parent-exit, "reaped PID" for each child, then "done", and exits
 * after a line on stdin. A failing call prints "error CALL: reason" and exits
 * 99. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "error %s: %s\n", what, strerror(errno));
	_exit(99);
}

static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;
	if (!d)
		die("opendir");
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void say(const char *fmt, long a, long b)
{
	printf(fmt, a, b);
	fflush(stdout);
}

static void child(int c, int parent_closed, long write_n, int hold)
{
	/* The parent's copy goes first: ours is the last, the close that acts. */
	char b;
	while (read(parent_closed, &b, 1) < 0 && errno == EINTR)
		;
	close(parent_closed);
	/* The upload has begun: the close below leaves it unread (rst_unread). */
	struct pollfd p = {.fd = c, .events = POLLIN};
	if (poll(&p, 1, 10000) != 1)
		die("poll");
	if (hold) {
		say("child %ld ready\n", (long)getpid(), 0);
		while (read(0, &b, 1) < 0 && errno == EINTR)
			;
	}
	char *answer = malloc((size_t)write_n + 1);
	if (!answer)
		die("malloc");
	memset(answer, 'a', (size_t)write_n);
	for (long off = 0; off < write_n;) {
		ssize_t n = write(c, answer + off, (size_t)(write_n - off));
		if (n < 0 && errno != EINTR)
			die("write");
		off += n > 0 ? n : 0;
	}
	free(answer);
	if (close(c) < 0)
		die("close");
	say("child %ld closed threads %ld\n", (long)getpid(), count_threads());
	_exit(0);
}

int main(int argc, char **argv)
{
	long conns = 1, write_n = 1000;
	int hold = 0, parent_exit = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--conns") && i + 1 < argc)
			conns = atol(argv[++i]);
		else if (!strcmp(argv[i], "--write") && i + 1 < argc)
			write_n = atol(argv[++i]);
		else if (!strcmp(argv[i], "--hold"))
			hold = 1;
		else if (!strcmp(argv[i], "--parent-exit"))
			parent_exit = 1;
		else {
			fprintf(stderr, "error args: %s\n", argv[i]);
			return 99;
		}
	}
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		die("listen");
	say("port %ld\n", ntohs(a.sin_port), 0);
	pid_t kids[256];
	if (conns < 1 || conns > 256)
		die("conns");
	for (long i = 0; i < conns; i++) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			die("accept");
		int sync[2];
		if (pipe(sync) < 0)
			die("pipe");
		pid_t p = fork();
		if (p < 0)
			die("fork");
		if (p == 0) {
			close(l);
			close(sync[1]);
			child(c, sync[0], write_n, hold);
		}
		kids[i] = p;
		if (close(c) < 0) /* the child holds it: nothing is sent */
			die("close");
		if (write(sync[1], "c", 1) != 1)
			die("write");
		close(sync[0]);
		close(sync[1]);
	}
	close(l);
	if (parent_exit) {
		say("parent exits\n", 0, 0);
		exit(0);
	}
	for (long i = 0; i < conns; i++) {
		if (waitpid(kids[i], NULL, 0) < 0)
			die("waitpid");
		say("reaped %ld\n", (long)kids[i], 0);
	}
	say("done\n", 0, 0);
	char line[8];
	if (!fgets(line, sizeof line, stdin))
		return 0;
	return 0;
}
