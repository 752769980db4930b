/* A classic daemon start-up, then ordinary socket work.
 *
 * usage: daemonize PORT
 * Closes every fd from 3 up (a close() loop to the fd limit, then close_range and
 * closefrom for good measure), calls daemon(0, 0) (fork, setsid, chdir /, stdio to
 * /dev/null), opens and closes a file and a pipe (not sockets: no records), talks over
 * a socketpair, then connects to 127.0.0.1:PORT, sends "daemon <pid>", reads to EOF
 * and closes. Exit status 0 when everything worked; the original process exits 0 from
 * daemon() at once. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	/* stderr is /dev/null after daemon(): leave a trace the test can find. */
	FILE *f = fopen("/tmp/closewatch-daemonize.err", "a");
	if (f) {
		fprintf(f, "%d: %s failed\n", (int)getpid(), what);
		fclose(f);
	}
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int port = atoi(argv[1]);
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 3; fd < max; fd++)
		close(fd);
	close_range(3, ~0U, 0);
	closefrom(3);
	if (daemon(0, 0) < 0)
		die("daemon");

	int f = open("/proc/self/status", O_RDONLY);
	char buf[4096];
	if (f < 0 || read(f, buf, sizeof buf) <= 0 || close(f) < 0)
		die("file");
	int p[2];
	if (pipe(p) < 0 || write(p[1], "x", 1) != 1 || read(p[0], buf, 1) != 1 ||
	    close(p[0]) < 0 || close(p[1]) < 0)
		die("pipe");
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || write(sv[0], "hello", 5) != 5 ||
	    read(sv[1], buf, 5) != 5 || close(sv[0]) < 0 || close(sv[1]) < 0)
		die("socketpair");

	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	int n = snprintf(buf, sizeof buf, "daemon %d\n", (int)getpid());
	if (write(s, buf, n) != n)
		die("write");
	ssize_t r;
	while ((r = read(s, buf, sizeof buf)) > 0)
		;
	if (r < 0 || close(s) < 0)
		die("read");
	return 0;
}
