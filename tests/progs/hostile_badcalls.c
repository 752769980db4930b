/* hostile_badcalls — every failing form of the calls that close or shut down
 * a socket, aimed at live sockets that hold unread data.
 *
 *   hostile_badcalls
 *
 * It makes a loopback TCP connection (c, 6 unread bytes from its peer) and a
 * unix socketpair (u, 5 unread bytes), then calls close, shutdown,
 * close_range, closefrom, dup2, dup3, fcntl(F_DUPFD) and their syscall()
 * forms in every way the kernel refuses: bad flags, bad how, oldfd == newfd,
 * an oldfd that is not open, newfd past RLIMIT_NOFILE, a non-socket, an
 * unconnected socket. Each line "cmp NAME rc ERRNO" is what the call
 * returned: it must be the same with and without a preload. Then it checks
 * that c and u are untouched (unread bytes still there, still writable, no
 * SIGPIPE) and closes both for real.
 *
 * Prints "fd c N" and "fd u N" so that a caller can find the records of the
 * two real closes. Exit status 0 unless a check failed (141 if a write hit a
 * socket shut behind our back). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

static int bad;

static void show(const char *name, long rc, int err)
{
	printf("cmp %s %ld %s\n", name, rc, rc < 0 ? strerrorname_np(err) : "0");
}

#define TRY(name, expr)                                                          \
	do {                                                                     \
		errno = 0;                                                       \
		long rc_ = (long)(expr);                                         \
		show(name, rc_, errno);                                          \
	} while (0)

/* fd still open, with unread bytes, and writable: nothing closed, drained
 * or shut it. */
static void intact(const char *what, int fd, int peer, int unread)
{
	int n = -1;
	int open_ = fcntl(fd, F_GETFD) >= 0;
	if (ioctl(fd, FIONREAD, &n) < 0)
		n = -1;
	int wrote = (int)write(fd, "z", 1);
	char got = 0;
	int read_ = (int)read(peer, &got, 1);
	printf("cmp intact %s open %d unread %d write %d peer read %d %c\n", what, open_, n, wrote,
	       read_, got ? got : '-');
	if (!open_ || n != unread || wrote != 1 || read_ != 1)
		bad = 1;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);

	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&a, &alen)) {
		perror("listen");
		return 2;
	}
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a)) {
		perror("connect");
		return 2;
	}
	int cp = accept(l, NULL, NULL);
	int sv[2];
	if (cp < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
		perror("accept/socketpair");
		return 2;
	}
	int u = sv[0], up = sv[1];
	if (write(cp, "unread", 6) != 6 || write(up, "still", 5) != 5) {
		perror("write");
		return 2;
	}
	/* Let the 6 bytes arrive before the first call (bounded). */
	int n = 0;
	for (int i = 0; i < 1000 && n < 6; i++) {
		ioctl(c, FIONREAD, &n);
		if (n < 6)
			usleep(1000);
	}
	int pfd[2];
	if (pipe(pfd)) {
		perror("pipe");
		return 2;
	}
	int unconnected = socket(AF_INET, SOCK_STREAM, 0);
	/* A number that is not open, well above the ones the process (and the
	 * libraries in it) allocate next. */
	int closed = 777;
	if (fcntl(closed, F_GETFD) >= 0) {
		fprintf(stderr, "fd %d is open\n", closed);
		return 2;
	}
	printf("fd c %d\nfd u %d\n", c, u);

	for (int k = 0; k < 2; k++) {
		int s = k ? u : c;
		char name[64];
#define N(x) (snprintf(name, sizeof name, "%s %s", k ? "u" : "c", x), name)
		/* dup3: bad flags, oldfd == newfd, oldfd not open. */
		TRY(N("dup3 O_NONBLOCK"), dup3(pfd[0], s, O_NONBLOCK));
		TRY(N("dup3 flags 0x1"), dup3(pfd[0], s, 0x1));
		TRY(N("dup3 flags ~0"), dup3(pfd[0], s, ~0));
		TRY(N("dup3 same"), dup3(s, s, 0));
		TRY(N("dup3 same cloexec"), dup3(s, s, O_CLOEXEC));
		TRY(N("dup3 closed old"), dup3(closed, s, 0));
		TRY(N("dup3 closed old cloexec"), dup3(closed, s, O_CLOEXEC));
		TRY(N("dup3 negative old"), dup3(-1, s, 0));
		/* dup2: oldfd not open (newfd is NOT closed), oldfd == newfd. */
		TRY(N("dup2 closed old"), dup2(closed, s));
		TRY(N("dup2 negative old"), dup2(-1, s));
		TRY(N("dup2 same"), dup2(s, s));
		/* close_range: unknown flags, first > last. */
		TRY(N("close_range flag 0x8"), close_range((unsigned)s, (unsigned)s, 0x8));
		TRY(N("close_range flags ~0"), close_range((unsigned)s, (unsigned)s, ~0));
		TRY(N("close_range unshare+0x8"), close_range((unsigned)s, (unsigned)s, CLOSE_RANGE_UNSHARE | 0x8));
		TRY(N("close_range first>last"), close_range((unsigned)s + 1, (unsigned)s, 0));
		TRY(N("close_range 0..~0 flag 0x8"), close_range(0, ~0U, 0x8));
		/* shutdown: how out of range. */
		TRY(N("shutdown how 3"), shutdown(s, 3));
		TRY(N("shutdown how -1"), shutdown(s, -1));
		TRY(N("shutdown how INT_MAX"), shutdown(s, INT_MAX));
		TRY(N("shutdown how INT_MIN"), shutdown(s, INT_MIN));
		/* fcntl F_DUPFD that fails closes nothing either. */
		TRY(N("fcntl F_DUPFD -1"), fcntl(s, F_DUPFD, -1));
		TRY(N("fcntl F_DUPFD_CLOEXEC INT_MAX"), fcntl(s, F_DUPFD_CLOEXEC, INT_MAX));
		/* The same through syscall(). */
		TRY(N("SYS_dup3 flags 0x1"), syscall(SYS_dup3, pfd[0], s, 0x1));
		TRY(N("SYS_dup3 same"), syscall(SYS_dup3, s, s, 0));
		TRY(N("SYS_dup3 closed old"), syscall(SYS_dup3, closed, s, 0));
		TRY(N("SYS_dup2 closed old"), syscall(SYS_dup2, closed, s));
		TRY(N("SYS_dup2 same"), syscall(SYS_dup2, s, s));
		TRY(N("SYS_close_range flag 0x8"), syscall(SYS_close_range, s, s, 0x8));
		TRY(N("SYS_close_range first>last"), syscall(SYS_close_range, s + 1, s, 0));
		TRY(N("SYS_shutdown how 3"), syscall(SYS_shutdown, s, 3));
		TRY(N("SYS_shutdown how -1"), syscall(SYS_shutdown, s, -1));

		/* newfd past RLIMIT_NOFILE: EBADF, newfd not closed. */
		struct rlimit rl, low;
		getrlimit(RLIMIT_NOFILE, &rl);
		low = rl;
		low.rlim_cur = (rlim_t)s;
		if (setrlimit(RLIMIT_NOFILE, &low) == 0) {
			TRY(N("dup2 newfd past rlimit"), dup2(pfd[0], s));
			TRY(N("dup3 newfd past rlimit"), dup3(pfd[0], s, 0));
			TRY(N("dup3 newfd past rlimit cloexec"), dup3(pfd[0], s, O_CLOEXEC));
			TRY(N("SYS_dup2 newfd past rlimit"), syscall(SYS_dup2, pfd[0], s));
			setrlimit(RLIMIT_NOFILE, &rl);
		} else {
			printf("cmp %s setrlimit failed\n", k ? "u" : "c");
		}
		intact(k ? "u" : "c", s, k ? up : cp, k ? 5 : 6);
#undef N
	}

	/* Calls that fail on what the fd is, not on their arguments. */
	TRY("shutdown pipe", shutdown(pfd[0], SHUT_RDWR));
	TRY("shutdown closed", shutdown(closed, SHUT_RDWR));
	TRY("shutdown negative", shutdown(-1, SHUT_RDWR));
	TRY("shutdown unconnected tcp rdwr", shutdown(unconnected, SHUT_RDWR));
	TRY("shutdown unconnected tcp wr", shutdown(unconnected, SHUT_WR));
	TRY("SYS_shutdown unconnected tcp", syscall(SYS_shutdown, unconnected, SHUT_RDWR));
	TRY("close closed", close(closed));
	TRY("close negative", close(-1));
	TRY("close INT_MAX", close(INT_MAX));
	TRY("SYS_close closed", syscall(SYS_close, closed));
	TRY("dup2 closed onto closed", dup2(closed, closed));
	TRY("dup3 closed onto closed", dup3(closed, closed, 0));
	TRY("dup2 onto negative", dup2(pfd[0], -1));
	TRY("fcntl closed F_DUPFD", fcntl(closed, F_DUPFD, 0));
	/* fclose: a stream whose fd the program already closed. */
	int fd2 = dup(pfd[0]);
	FILE *f = fdopen(fd2, "r");
	close(fd2);
	TRY("fclose of a closed fd", fclose(f));

	/* The fds open now: only the program's own (warn mode has taken
	 * backtraces by now; libunwind keeps a pipe of its own). */
	printf("cmp open fds");
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			printf(" %d", fd);
	printf("\n");
	intact("c again", c, cp, 6);
	intact("u again", u, up, 5);
	/* The real closes: c and u each logged once, as rst_unread. c's peer
	 * goes first, so that a drain of c ends at once (u's peer must still
	 * be there for u's unread bytes to matter). */
	TRY("close cp", close(cp));
	TRY("close c", close(c));
	TRY("close u", close(u));
	TRY("close up", close(up));
	TRY("close unconnected", close(unconnected));
	close(l);
	printf("done\n");
	return bad;
}
