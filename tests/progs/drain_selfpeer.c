/* drain_selfpeer — a program that holds both ends of a connection (a test
 * harness, an in-process client of its own server): it closes the server end
 * with the client's request unread (a close a drain takes over), then exits
 * with the client end still open.
 *
 * usage: drain_selfpeer [--unix] [--then exit|_exit] [--other]
 *   --unix      a socketpair instead of a loopback TCP connection
 *   --then HOW  how it ends: exit(0) (default) or _exit(0)
 *   --other     first, a second connection whose peer is NOT in this
 *               process: a child connects, sends a request and closes its
 *               end only when its stdin (shared with us) reaches EOF; we
 *               close ours with the request unread (TCP)
 * Prints "closed" after the close, "other closed" after the second one.
 * Exits 0, or 99 after "error WHAT: reason" on stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

/* A listener on 127.0.0.1, any port; *a says where. */
static int listen_loopback(struct sockaddr_in *a, socklen_t *n)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	*a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	*n = sizeof *a;
	if (l < 0 || bind(l, (struct sockaddr *)a, *n) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)a, n) < 0)
		die("listen");
	return l;
}

/* A loopback connection: *srv the accepted end, *cli the client end. */
static void tcp_pair(int *srv, int *cli)
{
	struct sockaddr_in a;
	socklen_t n;
	int l = listen_loopback(&a, &n);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	if (*cli < 0 || connect(*cli, (struct sockaddr *)&a, n) < 0)
		die("connect");
	*srv = accept(l, NULL, NULL);
	if (*srv < 0)
		die("accept");
	close(l);
}

/* Close srv with a request unread: the client's bytes are there first. */
static void close_unread(int srv, int cli)
{
	if (write(cli, "request", 7) != 7)
		die("write");
	char c;
	if (recv(srv, &c, 1, MSG_PEEK) != 1)
		die("recv");
	if (close(srv) != 0)
		die("close");
}

int main(int argc, char **argv)
{
	int unix_pair = 0, other = 0;
	const char *then = "exit";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--unix"))
			unix_pair = 1;
		else if (!strcmp(argv[i], "--other"))
			other = 1;
		else if (!strcmp(argv[i], "--then") && i + 1 < argc)
			then = argv[++i];
		else {
			fprintf(stderr, "usage: drain_selfpeer [--unix] [--then exit|_exit] [--other]\n");
			return 2;
		}
	}
	if (other) {
		/* The child connects: its end exists only there, ours only here. */
		struct sockaddr_in a;
		socklen_t n;
		int l = listen_loopback(&a, &n);
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			/* The other peer: sends a request, holds its end until our
			 * stdin ends. */
			close(l);
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&a, n) < 0 || write(c, "request", 7) != 7)
				die("child connect");
			char buf[64];
			while (read(0, buf, sizeof buf) > 0)
				;
			close(c);
			_exit(0);
		}
		int osrv = accept(l, NULL, NULL);
		char c;
		if (osrv < 0 || recv(osrv, &c, 1, MSG_PEEK) != 1)
			die("other request");
		close(l);
		if (close(osrv) != 0)
			die("close");
		printf("other closed\n");
	}
	/* Made after the fork: the child holds none of it. */
	int srv, cli;
	if (unix_pair) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			die("socketpair");
		srv = sv[0];
		cli = sv[1];
	} else {
		tcp_pair(&srv, &cli);
	}
	close_unread(srv, cli);
	printf("closed\n");
	fflush(stdout);
	if (!strcmp(then, "_exit"))
		_exit(0);
	return 0;
}
