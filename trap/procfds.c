/* /proc readers for the supervisor. See procfds.h. This runs in the
 * closewatch process, never in the program: it may allocate. */
#include "procfds.h"
#include "../core/fdtable.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long read_small(const char *path, char *buf, size_t cap)
{
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -1;
	ssize_t n = read(f, buf, cap - 1);
	close(f);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

struct fd_list {
	unsigned lo, hi;
	int **fds;
	size_t *cap;
	long count;
};

static int add_fd(int dir, const char *name, int fd, void *arg)
{
	(void)dir;
	(void)name;
	struct fd_list *l = arg;
	if ((unsigned)fd < l->lo || (unsigned)fd > l->hi)
		return 0;
	if ((size_t)l->count >= *l->cap) {
		size_t cap = *l->cap ? *l->cap * 2 : 64;
		int *grown = realloc(*l->fds, cap * sizeof **l->fds);
		if (!grown)
			return 1; /* keep what we have */
		*l->cap = cap;
		*l->fds = grown;
	}
	(*l->fds)[l->count++] = fd;
	return 0;
}

long cw_proc_fds(pid_t pid, unsigned lo, unsigned hi, int **fds, size_t *cap)
{
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -1;
	struct fd_list l = {lo, hi, fds, cap, 0};
	cw_fd_dir_each(dir, add_fd, &l);
	long count = l.count;
	close(dir);
	/* getdents order is the fd table's order, but say so explicitly. */
	for (long i = 1; i < count; i++)
		for (long j = i; j > 0 && (*fds)[j - 1] > (*fds)[j]; j--) {
			int t = (*fds)[j];
			(*fds)[j] = (*fds)[j - 1];
			(*fds)[j - 1] = t;
		}
	return count;
}

/* The socket inode behind name in dir, or 0; *epoll (if given) says whether
 * it is an epoll instance instead. */
static unsigned long link_at(int dir, const char *name, int *epoll)
{
	char link[64];
	ssize_t l = readlinkat(dir, name, link, sizeof link - 1);
	if (epoll)
		*epoll = l == 22 && memcmp(link, "anon_inode:[eventpoll]", 22) == 0;
	if (l < 9 || memcmp(link, "socket:[", 8) != 0)
		return 0;
	link[l] = 0;
	return strtoul(link + 8, NULL, 10);
}

static unsigned long socket_ino_at(int dir, const char *name)
{
	return link_at(dir, name, NULL);
}

/* The epoll fds of the closing process, noted while its fds are read for
 * cw_watch_socket_held (drain mode needs them, and the pass is made anyway). */
static int *epolls;
static size_t nepolls, capepolls;
static pid_t epolls_of; /* 0: the last pass did not read all of its fds */

static void note_epoll(int fd)
{
	if (nepolls == capepolls) {
		size_t cap = capepolls ? capepolls * 2 : 8;
		int *grown = realloc(epolls, cap * sizeof *grown);
		if (!grown) {
			epolls_of = 0; /* incomplete: the caller looks itself */
			return;
		}
		epolls = grown;
		capepolls = cap;
	}
	epolls[nepolls++] = fd;
}

long cw_watch_epolls(pid_t pid, const int **fds)
{
	*fds = epolls;
	return pid > 0 && pid == epolls_of ? (long)nepolls : -1;
}

unsigned long cw_proc_fd_socket(pid_t pid, int fd)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
	return socket_ino_at(AT_FDCWD, path);
}

int cw_proc_fd_cloexec(pid_t pid, int fd)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", (int)pid, fd);
	if (read_small(path, buf, sizeof buf) < 0)
		return 0;
	const char *f = strstr(buf, "flags:");
	return f && (strtoul(f + 6, NULL, 8) & O_CLOEXEC) != 0;
}

pid_t cw_proc_tgid(pid_t tid)
{
	char path[48], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	if (read_small(path, buf, sizeof buf) < 0)
		return -1;
	const char *t = strstr(buf, "\nTgid:");
	return t ? (pid_t)strtol(t + 6, NULL, 10) : -1;
}

void cw_proc_comm(pid_t tid, char comm[17])
{
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/comm", (int)tid);
	long n = read_small(path, comm, 17);
	if (n < 0)
		n = 0;
	if (n > 0 && comm[n - 1] == '\n')
		n--;
	comm[n] = 0;
}

/* ---- the watched processes --------------------------------------------------- */

static pid_t *watched;
static size_t nwatched, capwatched;
static int dirty = 1;
static pid_t root;
static struct timespec last_dirty;

void cw_watch_dirty(void)
{
	dirty = 1;
	clock_gettime(CLOCK_MONOTONIC, &last_dirty);
}

/* A fork is trapped before the kernel makes the child: a rescan made right
 * after the answer might not see it yet. So /proc is read again at every
 * check for a short while after each fork. */
static int need_rescan(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (long)(now.tv_sec - last_dirty.tv_sec) * 1000 +
		  (now.tv_nsec - last_dirty.tv_nsec) / 1000000;
	return dirty || ms < 100;
}

void cw_watch_root(pid_t pid)
{
	root = pid;
	dirty = 1;
}

static void add_watched(pid_t pid)
{
	if (nwatched == capwatched) {
		size_t cap = capwatched ? capwatched * 2 : 16;
		pid_t *grown = realloc(watched, cap * sizeof *grown);
		if (!grown)
			return;
		watched = grown;
		capwatched = cap;
	}
	watched[nwatched++] = pid;
}

/* Every process whose parent chain reaches us: one pass over /proc for the
 * parent of each process, then the descendants level by level. Only after a
 * watched process forked: a process that never forked is alone (its threads
 * share its fd table). */
static void rescan(void)
{
	struct pp { pid_t pid, ppid; } *all = NULL;
	size_t n = 0, cap = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		char path[300], buf[512];
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if (read_small(path, buf, sizeof buf) < 0)
			continue;
		const char *close_paren = strrchr(buf, ')');
		int ppid;
		if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			struct pp *grown = realloc(all, cap * sizeof *grown);
			if (!grown)
				break;
			all = grown;
		}
		all[n++] = (struct pp){(pid_t)atoi(e->d_name), (pid_t)ppid};
	}
	closedir(d);
	nwatched = 0;
	pid_t self = getpid();
	for (size_t i = 0; i < n; i++)
		if (all[i].ppid == self)
			add_watched(all[i].pid);
	for (size_t k = 0; k < nwatched; k++)
		for (size_t i = 0; i < n; i++)
			if (all[i].ppid == watched[k])
				add_watched(all[i].pid);
	free(all);
	dirty = 0;
}

static int in_list(int fd, const int *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == fd)
			return 1;
	return 0;
}

struct holder_search {
	unsigned long ino;
	int skip_own;       /* p is the closing process: fd and the earlier closing ones are not holders */
	int fd, mine;
	const int *closing;
	size_t n;
};

static int holds_at(int dir, const char *name, int other, void *arg)
{
	const struct holder_search *h = arg;
	if (h->skip_own && (other == h->fd || (in_list(other, h->closing, h->n) && other < h->fd)))
		return 0;
	int epoll = 0;
	int found = link_at(dir, name, h->mine ? &epoll : NULL) == h->ino;
	if (epoll && epolls_of)
		note_epoll(other);
	return found;
}

/* Does process p hold socket ino at an fd other than the ones closing? */
static int process_holds(pid_t p, unsigned long ino, pid_t pid, int fd, const int *closing, size_t n)
{
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)p);
	int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return 0; /* gone, or a zombie: holds nothing */
	int mine = p == pid;
	if (mine) {
		nepolls = 0;
		epolls_of = pid;
	}
	struct holder_search h = {ino, p == pid, fd, mine, closing, n};
	int r = cw_fd_dir_each(dir, holds_at, &h);
	if (mine && r < 0)
		epolls_of = 0; /* not every fd was read */
	close(dir);
	return r > 0;
}

int cw_watch_socket_held(unsigned long ino, pid_t pid, int fd, const int *closing, size_t n)
{
	epolls_of = 0;
	if (!ino)
		return 0;
	if (need_rescan())
		rescan();
	if (process_holds(pid, ino, pid, fd, closing, n))
		return 1;
	for (size_t i = 0; i < nwatched; i++)
		if (watched[i] != pid && process_holds(watched[i], ino, pid, fd, closing, n))
			return 1;
	(void)root;
	return 0;
}
