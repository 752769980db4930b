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
	return bad ? 1 : 0;
}
