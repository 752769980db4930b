/* drain_server — a small, ordinary server (TCP on 127.0.0.1, or AF_UNIX) that
 * answers early and closes: the kind of program whose clients get "connection
 * reset by peer". It knows nothing of closewatch; the drain tests run it with
 * and without LD_PRELOAD=libclosewatch.so.
 *
 * usage: drain_server [options]
 *   --unix PATH      listen on an AF_UNIX stream socket at PATH (default TCP, port 0)
 *   --seqpacket      with --unix: SOCK_SEQPACKET
 *   --conns N        connections to serve (1)
 *   --batch          accept all N first (then close the listener), then serve each
 *   --read N         read exactly N bytes of each request (fewer at EOF)
 *   --write N        then answer N bytes
 *   --waitinq N      before closing, wait until N unread bytes are there (FIONREAD)
 *   --waitoutq0      before closing, wait until the answer is acknowledged (SIOCOUTQ 0)
 *   --sndbuf N       SO_SNDBUF on accepted sockets
 *   --nonblock       accepted sockets O_NONBLOCK (reads and writes wait with poll)
 *   --linger SECS    SO_LINGER {1, SECS} before closing (0: abortive close)
 *   --fork N         after the closes, fork N children: each prints
 *                    "child PID sockets S" (stream socket fds it holds: not the
 *                    shim's channel to the parent's drain thread, a seqpacket
 *                    socket a drain-mode child keeps), sleeps --child-ms,
 *                    and exits with exit(0); the parent forks them one after
 *                    the other, then reaps them all
 *   --child-ms MS    (0)
 *   --child-wait     each child, instead of sleeping, waits for one byte on
 *                    stdin (the test says when the children may exit)
 *   --dup2-range LO HI  after the closes, dup2 /dev/null onto every fd LO..HI
 *                    (HI "max": RLIMIT_NOFILE - 1), then close them all; prints
 *                    "dup2 failures N" (daemons do this to sanitise their fds)
 *   --wipe HOW       after the closes (and --dup2-range), what daemons do to
 *                    sanitise their fds, on every fd from 3 to RLIMIT_NOFILE - 1:
 *                    "closeloop" (close each; prints "wipe closed K"), or
 *                    "close_range" (prints "wipe rc R")
 *   --again N        after that, listen again (a new "port P") and serve N more
 *                    connections the same way (0)
 *   --then HOW       right after the closes: "_exit" (_exit(0)), "_Exit", or
 *                    "exec" (exec /bin/true): no exit handlers, no destructors
 *   --wait           at the end, wait for a line on stdin before exiting
 * Prints, line by line: "port P" or "listening", "accepted fd F",
 * "closed fd F ns T rc R" (T: nanoseconds spent in close()), "children done",
 * "done". Exits 0, or 99 after "error WHAT: reason" on stderr. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096

static const char *unix_path;
static int seqpacket;
static int conns = 1, batch, nonblock, want_wait, nfork, child_ms, child_wait;
static long to_read, to_write, waitinq = -1, sndbuf = -1, linger = -1;
static int waitoutq0;
static const char *dup2_lo, *dup2_hi;
static const char *then;
static const char *wipe;
static int again;

static void die(const char *what)
{
	fprintf(stderr, "error %s: %s\n", what, strerror(errno));
	_exit(99);
}

static long num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || end == s) {
		fprintf(stderr, "error args: bad number %s\n", s);
		_exit(99);
	}
	return v;
}

static void wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	if (poll(&p, 1, 10000) < 0 && errno != EINTR)
		die("poll");
}

static int listen_socket(void)
{
	int l;
	if (unix_path) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof a.sun_path, "%s", unix_path);
		unlink(unix_path);
		if ((l = socket(AF_UNIX, seqpacket ? SOCK_SEQPACKET : SOCK_STREAM, 0)) < 0)
			die("socket");
		if (bind(l, (struct sockaddr *)&a, sizeof a) < 0)
			die("bind");
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int one = 1;
		if ((l = socket(AF_INET, SOCK_STREAM, 0)) < 0)
			die("socket");
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(l, (struct sockaddr *)&a, sizeof a) < 0)
			die("bind");
	}
	if (listen(l, 1024) < 0)
		die("listen");
	if (unix_path) {
		printf("listening\n");
	} else {
		struct sockaddr_in a;
		socklen_t len = sizeof a;
		getsockname(l, (struct sockaddr *)&a, &len);
		printf("port %d\n", ntohs(a.sin_port));
	}
	return l;
}

static int accept_one(int l)
{
	int c = accept(l, NULL, NULL);
	if (c < 0)
		die("accept");
	if (sndbuf >= 0 && setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(int)) < 0)
		die("SO_SNDBUF");
	if (nonblock && fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK) < 0)
		die("O_NONBLOCK");
	printf("accepted fd %d\n", c);
	return c;
}

static void read_request(int c)
{
	char buf[4096];
	long got = 0;
	while (got < to_read) {
		size_t want = (size_t)(to_read - got) < sizeof buf ? (size_t)(to_read - got) : sizeof buf;
		ssize_t n = read(c, buf, want);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				wait_fd(c, POLLIN);
				continue;
			}
			die("read");
		}
		got += n;
	}
}

static void write_answer(int c)
{
	static char buf[65536];
	long left = to_write;
	memset(buf, 'a', sizeof buf);
	while (left > 0) {
		ssize_t n = write(c, buf, left < (long)sizeof buf ? (size_t)left : sizeof buf);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				wait_fd(c, POLLOUT);
				continue;
			}
			die("write");
		}
		left -= n;
	}
}

static void wait_until(int c, unsigned long req, int (*done)(int))
{
	for (int i = 0; i < 10000; i++) {
		int v = 0;
		if (ioctl(c, req, &v) < 0)
			die("ioctl");
		if (done(v))
			return;
		usleep(1000);
	}
	fprintf(stderr, "error wait: condition not met in 10 s\n");
	_exit(99);
}

static int inq_enough(int v) { return v >= waitinq; }
static int outq_empty(int v) { return v == 0; }

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((noinline)) static void close_conn(int c)
{
	if (waitinq >= 0)
		wait_until(c, SIOCINQ, inq_enough);
	if (waitoutq0)
		wait_until(c, SIOCOUTQ, outq_empty);
	if (linger >= 0) {
		struct linger lg = {1, (int)linger};
		if (setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
			die("SO_LINGER");
	}
	long long t0 = now_ns();
	int rc = close(c);
	long long t1 = now_ns();
	printf("closed fd %d ns %lld rc %d\n", c, t1 - t0, rc);
}

static int count_sockets(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	char path[300], link[64];
	if (!d)
		die("opendir");
	while ((e = readdir(d))) {
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t l = readlink(path, link, sizeof link - 1);
		if (l > 0) {
			link[l] = 0;
			int type = 0;
			socklen_t len = sizeof type;
			if (!strncmp(link, "socket:", 7) &&
			    getsockopt(atoi(e->d_name), SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
			    type == SOCK_STREAM)
				n++;
		}
	}
	closedir(d);
	return n;
}

static void spawn(int hold_ms)
{
	fflush(stdout);
	pid_t p = fork();
	if (p < 0)
		die("fork");
	if (p == 0) {
		printf("child %d sockets %d\n", (int)getpid(), count_sockets());
		fflush(stdout);
		if (child_wait) {
			char b; /* one byte each, unbuffered: the parent's --wait line stays */
			while (read(0, &b, 1) < 0 && errno == EINTR)
				;
		} else if (hold_ms) {
			usleep((useconds_t)hold_ms * 1000);
		}
		exit(0);
	}
}

static void dup2_range(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	int lo = (int)num(dup2_lo);
	int hi = !strcmp(dup2_hi, "max") ? (int)rl.rlim_cur - 1 : (int)num(dup2_hi);
	int null = open("/dev/null", O_RDWR);
	int failures = 0;
	if (null < 0)
		die("open /dev/null");
	for (int fd = lo; fd <= hi; fd++)
		if (fd != null && dup2(null, fd) != fd)
			failures++;
	for (int fd = lo; fd <= hi; fd++)
		if (fd != null && close(fd) != 0)
			failures++;
	close(null);
	printf("dup2 failures %d\n", failures);
}

static void wipe_fds(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (!strcmp(wipe, "closeloop")) {
		int k = 0;
		for (int fd = 3; fd < (int)rl.rlim_cur; fd++)
			k += close(fd) == 0;
		printf("wipe closed %d\n", k);
	} else if (!strcmp(wipe, "close_range")) {
		printf("wipe rc %d\n", close_range(3, ~0U, 0));
	} else {
		die("--wipe");
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(a, "--unix")) unix_path = v, i++;
		else if (!strcmp(a, "--conns")) conns = (int)num(v), i++;
		else if (!strcmp(a, "--batch")) batch = 1;
		else if (!strcmp(a, "--seqpacket")) seqpacket = 1;
		else if (!strcmp(a, "--read")) to_read = num(v), i++;
		else if (!strcmp(a, "--write")) to_write = num(v), i++;
		else if (!strcmp(a, "--waitinq")) waitinq = num(v), i++;
		else if (!strcmp(a, "--waitoutq0")) waitoutq0 = 1;
		else if (!strcmp(a, "--sndbuf")) sndbuf = num(v), i++;
		else if (!strcmp(a, "--nonblock")) nonblock = 1;
		else if (!strcmp(a, "--linger")) linger = num(v), i++;
		else if (!strcmp(a, "--fork")) nfork = (int)num(v), i++;
		else if (!strcmp(a, "--child-ms")) child_ms = (int)num(v), i++;
		else if (!strcmp(a, "--child-wait")) child_wait = 1;
		else if (!strcmp(a, "--wait")) want_wait = 1;
		else if (!strcmp(a, "--then")) then = v, i++;
		else if (!strcmp(a, "--wipe")) wipe = v, i++;
		else if (!strcmp(a, "--again")) again = (int)num(v), i++;
		else if (!strcmp(a, "--dup2-range") && i + 2 < argc) dup2_lo = argv[i + 1], dup2_hi = argv[i + 2], i += 2;
		else {
			fprintf(stderr, "error args: unknown %s\n", a);
			return 99;
		}
	}
	if (conns < 1 || conns > MAX_CONNS) {
		fprintf(stderr, "error args: --conns 1..%d\n", MAX_CONNS);
		return 99;
	}
	int l = listen_socket();
	static int fds[MAX_CONNS];
	if (batch) {
		for (int i = 0; i < conns; i++)
			fds[i] = accept_one(l);
		close(l);
		l = -1;
	}
	for (int i = 0; i < conns; i++) {
		int c = batch ? fds[i] : accept_one(l);
		read_request(c);
		write_answer(c);
		close_conn(c);
	}
	if (l >= 0)
		close(l);
	if (then) {
		fflush(stdout);
		if (!strcmp(then, "_exit"))
			_exit(0);
		if (!strcmp(then, "_Exit"))
			_Exit(0);
		if (!strcmp(then, "exec"))
			execl("/bin/true", "true", (char *)NULL);
		die("--then");
	}
	if (dup2_lo)
		dup2_range();
	if (wipe)
		wipe_fds();
	if (again) {
		l = listen_socket();
		for (int i = 0; i < again; i++) {
			int c = accept_one(l);
			read_request(c);
			write_answer(c);
			close_conn(c);
		}
		close(l);
	}
	for (int i = 0; i < nfork; i++)
		spawn(child_ms);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	if (nfork)
		printf("children done\n");
	printf("done\n");
	if (want_wait) {
		char line[64];
		if (!fgets(line, sizeof line, stdin))
			return 0;
	}
	return 0;
}
