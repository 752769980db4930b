/* hostile_logfd — a program that goes after the shim's own log fd.
 *
 *   hostile_logfd LOGPATH OWNFILE
 *
 * It finds the fd open on LOGPATH through /proc/self/fd (there is none
 * without the shim), closes it, dup2s its own file over it and writes there,
 * then wipes every fd with close_range, closefrom, a close loop up to
 * RLIMIT_NOFILE and dup2 of /dev/null onto every number. Between the steps it
 * closes a socketpair reader with K unread bytes (K = 1, 2, … : "marker K"),
 * which the shim logs as rst_unread with recvq K.
 *
 * Lines starting "cmp " are what the program sees of its own fds: they must
 * be the same with and without the shim. Lines starting "log " concern the
 * fd found on LOGPATH. Exit status 0 unless a step failed outright. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EBADF: return "EBADF";
	case EMFILE: return "EMFILE";
	case EINVAL: return "EINVAL";
	default: return strerror(e);
	}
}

static int marker(int k)
{
	int sv[2];
	char buf[16] = "markers";
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		printf("cmp marker %d socketpair %s\n", k, errname(errno));
		return -1;
	}
	int ok = write(sv[0], buf, (size_t)k) == k && close(sv[1]) == 0 && close(sv[0]) == 0;
	printf("cmp marker %d %s\n", k, ok ? "ok" : "FAILED");
	return ok ? 0 : -1;
}

/* Every hooked call that takes an fd, on fd: each must answer as for an fd
 * that is not open. Then calls the shim does not hook ("sees ..."). */
static void probes(const char *prefix, int fd)
{
	int v = 1;
	char buf[1];
	struct stat st;
	struct msghdr m = {0};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
#define PROBE(what, expr)                                                        \
	do {                                                                     \
		errno = 0;                                                       \
		long rc_ = (long)(expr);                                         \
		printf("%s probe closed %s %ld %s\n", prefix, what, rc_,          \
		       errname(rc_ < 0 ? errno : 0));                            \
	} while (0)
	PROBE("F_GETFD", fcntl(fd, F_GETFD));
	PROBE("F_SETFD", fcntl(fd, F_SETFD, 0));
	PROBE("F_GETFL", fcntl(fd, F_GETFL));
	PROBE("F_SETFL", fcntl(fd, F_SETFL, O_NONBLOCK));
	PROBE("F_DUPFD", fcntl(fd, F_DUPFD, 0));
	PROBE("F_BADCMD", fcntl(fd, 12345));
	PROBE("dup", dup(fd));
	PROBE("dup2 same", dup2(fd, fd));
	PROBE("dup3 same", dup3(fd, fd, 0));
	PROBE("dup3 0x1", dup3(fd, 0, 0x1));
	PROBE("shutdown", shutdown(fd, SHUT_WR));
	PROBE("shutdown how 7", shutdown(fd, 7));
	PROBE("setsockopt", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
	PROBE("accept", accept(fd, (struct sockaddr *)&ss, &sl));
	PROBE("accept4 bad flags", accept4(fd, NULL, NULL, 0x1));
	PROBE("recvmsg", recvmsg(fd, &m, MSG_DONTWAIT));
	PROBE("close", close(fd));
	/* Not hooked: these still show the shim's fd (README, Limits). */
	printf("%s sees fstat %s\n", prefix, fstat(fd, &st) == 0 ? "open" : errname(errno));
	printf("%s sees write0 %s\n", prefix, write(fd, buf, 0) == 0 ? "open" : errname(errno));
#undef PROBE
}

/* The fd open on path, or -1. */
static int find_fd(const char *path)
{
	char want[PATH_MAX], link[PATH_MAX + 1], name[64];
	if (!realpath(path, want))
		return -1;
	int found = -1;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	/* readlink on /proc/self/fd/N for every N: no directory fd of our own
	 * to get in the way of the numbers. */
	for (long fd = 0; fd < (long)rl.rlim_cur && found < 0; fd++) {
		snprintf(name, sizeof name, "/proc/self/fd/%ld", fd);
		ssize_t n = readlink(name, link, sizeof link - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strcmp(link, want))
			found = (int)fd;
	}
	return found;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: hostile_logfd LOGPATH OWNFILE\n");
		return 2;
	}
	const char *logpath = argv[1], *own_path = argv[2];
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	int max = (int)rl.rlim_cur;
	setvbuf(stdout, NULL, _IOLBF, 0); /* stdout (fd 1) is never wiped: fds from 3 up */
	int bad = 0;

	bad |= marker(1);
	int logfd = find_fd(logpath);
	printf("log found %s\n", logfd >= 0 ? "yes" : "no");
	/* What the calls the shim hooks say of its fd, and of a number that is
	 * not open ("probe closed ...": the same with and without the shim). */
	if (logfd >= 0)
		probes("log", logfd);
	probes("cmp", 300);
	if (logfd >= 0) {
		errno = 0;
		int rc = close(logfd);
		printf("log close %d %s\n", rc, errname(rc ? errno : 0));
	}
	bad |= marker(2);

	int own = open(own_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	printf("cmp open own %d\n", own);
	int target = own;
	if (logfd >= 0) {
		int rc = dup2(own, logfd);
		printf("log dup2 %s\n", rc == logfd ? "ok" : errname(errno));
		target = logfd;
	}
	printf("cmp write own %zd\n", write(target, "mine\n", 5));
	bad |= marker(3);
	int logfd2 = find_fd(logpath);
	printf("log found again %s\n", logfd2 >= 0 && logfd2 != logfd ? "moved" : logfd2 >= 0 ? "same" : "no");

	int rc = close_range(3, ~0U, 0);
	printf("cmp close_range %d %s\n", rc, errname(rc ? errno : 0));
	printf("cmp probe own %s\n", fcntl(own, F_GETFD) < 0 ? errname(errno) : "open");
	if (logfd >= 0)
		printf("log probe dup %s\n", fcntl(logfd, F_GETFD) < 0 ? errname(errno) : "open");
	bad |= marker(4);

	int nul = open("/dev/null", O_RDWR);
	printf("cmp open null %d\n", nul);
	closefrom(3);
	printf("cmp probe null %s\n", fcntl(nul, F_GETFD) < 0 ? errname(errno) : "open");
	bad |= marker(5);

	int closed = 0;
	for (int fd = 3; fd < max; fd++)
		closed += close(fd) == 0;
	printf("cmp closeloop %d\n", closed);
	bad |= marker(6);

	nul = open("/dev/null", O_RDWR);
	int duped = 0, failed = 0;
	for (int fd = 3; fd < max; fd++) {
		if (fd == nul)
			continue;
		if (dup2(nul, fd) == fd)
			duped++;
		else
			failed++;
	}
	printf("cmp dup2 every fd %d failed %d\n", duped, failed);
	/* Every number is taken: a socketpair must fail the same way. */
	bad |= marker(7) == 0;
	closed = 0;
	for (int fd = 3; fd < max; fd++)
		closed += close(fd) == 0;
	printf("cmp closeloop %d\n", closed);
	bad |= marker(8);
	int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_RDONLY), c = dup(a);
	printf("cmp new fds %d %d %d\n", a, b, c);
	printf("done\n");
	/* closefrom with a negative lowfd closes from 0 (glibc): stdout too,
	 * so marker 9 is only in the log. */
	closefrom(-1);
	bad |= marker(9);
	return bad ? 1 : 0;
}
