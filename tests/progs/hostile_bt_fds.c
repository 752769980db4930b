/* hostile_bt_fds — a daemon-like program run in warn mode (backtraces on):
 * does the shim, or a library it calls to unwind the stack, keep fds where
 * the program can reach them?
 *
 *   hostile_bt_fds fds
 *     Lists /proc/self/fd, makes one risky close (1 unread byte: the shim
 *     warns with a backtrace), forks a child that makes one too (after fork),
 *     lists again, and prints "new N: FD..." for
 *     the fds below 1024 that appeared (a library's pipe, say). The shim's
 *     own fds sit near RLIMIT_NOFILE (the test runs with 4096) and are left
 *     out. Exit 0.
 *
 *   hostile_bt_fds bytes ROUNDS THREADS
 *     One risky close first (so that whatever the unwinder opens is open),
 *     then, ROUNDS times: close every fd from 3 up (a close loop to 1023 on
 *     even rounds, close_range(3, ~0U) on odd ones), open THREADS socketpairs
 *     (blocking) on the freed numbers, and run THREADS threads, each on a
 *     stack of its own (mmap'd, pthread_attr_setstack). Each thread sends
 *     numbered 64-byte messages over its pair and checks every byte it reads
 *     back, making a risky close (another socketpair, 1 byte unread) between
 *     messages. At the end of a round every pair must be empty both ways
 *     (FIONREAD 0). Prints "ok MESSAGES RISKY" or "bad ..." lines; exit 0
 *     only if every byte was as expected. A read that hangs (a byte stolen
 *     by someone else) ends the program after 20 s (SIGALRM, exit 3). */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MSG 64
#define PER_THREAD 40
#define STACK (2 << 20) /* TSan wants about 1 MiB of its own */

static atomic_int bad, risky_done;

static void risky_close(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		atomic_fetch_add(&bad, 1);
		return;
	}
	if (write(sv[0], "x", 1) != 1)
		atomic_fetch_add(&bad, 1);
	/* sv[1] goes with one byte unread: the shim warns, with a backtrace. */
	if (close(sv[1]) != 0 || close(sv[0]) != 0)
		atomic_fetch_add(&bad, 1);
	atomic_fetch_add(&risky_done, 1);
}

static int list_fds(char *seen, int n)
{
	memset(seen, 0, n);
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9') {
			int fd = atoi(e->d_name);
			if (fd < n && fd != dirfd(d))
				seen[fd] = 1;
		}
	closedir(d);
	return 0;
}

static int mode_fds(void)
{
	char before[1024], after[1024];
	if (list_fds(before, 1024) < 0)
		return 1;
	risky_close();
	pid_t pid = fork();
	if (pid == 0) {
		risky_close();
		_exit(atomic_load(&bad) ? 1 : 0);
	}
	int status = -1;
	if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0)
		atomic_fetch_add(&bad, 1);
	if (list_fds(after, 1024) < 0)
		return 1;
	int n = 0;
	char line[1024];
	size_t len = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (after[fd] && !before[fd]) {
			n++;
			len += snprintf(line + len, sizeof line - len, " %d", fd);
			if (len >= sizeof line - 16)
				break;
		}
	printf("new %d:%s\n", n, len ? line : "");
	return atomic_load(&bad) ? 1 : 0;
}

struct worker {
	int a, b, id, msgs;
};

static int read_all(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	char out[MSG], in[MSG];
	for (int i = 0; i < PER_THREAD; i++) {
		/* Both directions: a -> b, then b -> a. */
		for (int dir = 0; dir < 2; dir++) {
			int from = dir ? w->b : w->a, to = dir ? w->a : w->b;
			for (int k = 0; k < MSG; k++)
				out[k] = (char)(w->id * 31 + i * 7 + dir * 3 + k);
			if (write(from, out, MSG) != MSG || read_all(to, in, MSG) < 0 ||
			    memcmp(in, out, MSG) != 0) {
				printf("bad thread %d message %d dir %d\n", w->id, i, dir);
				fflush(stdout);
				atomic_fetch_add(&bad, 1);
				return NULL;
			}
			w->msgs++;
		}
		risky_close();
	}
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char m[] = "bad hang: a read never returned\n";
	if (write(1, m, sizeof m - 1) < 0) {
	}
	_exit(3);
}

static int mode_bytes(int rounds, int nthreads)
{
	signal(SIGALRM, on_alarm);
	alarm(20);
	risky_close();
	int msgs = 0;
	struct worker w[64];
	pthread_t th[64];
	void *stacks[64];
	if (nthreads > 64)
		nthreads = 64;
	for (int r = 0; r < rounds; r++) {
		fflush(stdout);
		if (r % 2 == 0) {
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
		} else if (syscall(SYS_close_range, 3, ~0U, 0) != 0 && close_range(3, ~0U, 0) != 0) {
			printf("bad close_range %d\n", errno);
			atomic_fetch_add(&bad, 1);
		}
		for (int t = 0; t < nthreads; t++) {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
				atomic_fetch_add(&bad, 1);
				return 1;
			}
			w[t] = (struct worker){.a = sv[0], .b = sv[1], .id = t};
		}
		for (int t = 0; t < nthreads; t++) {
			stacks[t] = mmap(NULL, STACK, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
			pthread_attr_t at;
			pthread_attr_init(&at);
			if (stacks[t] == MAP_FAILED || pthread_attr_setstack(&at, stacks[t], STACK) != 0 ||
			    pthread_create(&th[t], &at, work, &w[t]) != 0) {
				printf("bad thread start\n");
				return 1;
			}
			pthread_attr_destroy(&at);
		}
		for (int t = 0; t < nthreads; t++) {
			pthread_join(th[t], NULL);
			munmap(stacks[t], STACK);
			msgs += w[t].msgs;
			int qa = -1, qb = -1;
			if (ioctl(w[t].a, FIONREAD, &qa) != 0 || ioctl(w[t].b, FIONREAD, &qb) != 0 ||
			    qa != 0 || qb != 0) {
				printf("bad round %d thread %d: %d and %d byte(s) nobody sent\n", r, t, qa, qb);
				atomic_fetch_add(&bad, 1);
			}
		}
	}
	printf("%s %d %d\n", atomic_load(&bad) ? "bad total" : "ok", msgs, atomic_load(&risky_done));
	return atomic_load(&bad) ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 2 && strcmp(argv[1], "fds") == 0)
		return mode_fds();
	if (argc == 4 && strcmp(argv[1], "bytes") == 0)
		return mode_bytes(atoi(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: hostile_bt_fds fds | bytes ROUNDS THREADS\n");
	return 2;
}
