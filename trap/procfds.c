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
#include <errno.h>
#include <linux/kcmp.h>

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

/* The socket inode behind name in dir, or 0. If given, *epoll says whether
 * it is an epoll instance instead, and *uring is set to 1 when it is an
 * io_uring instance (a full pass, procfds' dup-free). */
static unsigned long link_at(int dir, const char *name, int *epoll, int *uring)
{
	char link[64];
	ssize_t l = readlinkat(dir, name, link, sizeof link - 1);
	if (epoll)
		*epoll = l == 22 && memcmp(link, "anon_inode:[eventpoll]", 22) == 0;
	if (uring && l == 21 && memcmp(link, "anon_inode:[io_uring]", 21) == 0)
		*uring = 1;
	if (l < 9 || memcmp(link, "socket:[", 8) != 0)
		return 0;
	link[l] = 0;
	return strtoul(link + 8, NULL, 10);
}

static unsigned long socket_ino_at(int dir, const char *name)
{
	return link_at(dir, name, NULL, NULL);
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

/* Each record names its thread: /proc/TID/comm is kept open for the threads
 * seen last (one pread instead of an open, a read and a close). A kept file
 * of a thread that ended reads as an error (ESRCH), never as the comm of a
 * thread that reuses its tid: it is opened again then. */
#define COMMS 64
static struct { pid_t tid; int fd1; } comms[COMMS]; /* fd1: the fd + 1, 0: none */

void cw_proc_comm(pid_t tid, char comm[17])
{
	unsigned k = (unsigned)tid % COMMS;
	long n = -1;
	if (comms[k].tid == tid && comms[k].fd1 > 0)
		n = pread(comms[k].fd1 - 1, comm, 16, 0);
	if (n < 0) {
		if (comms[k].fd1 > 0)
			close(comms[k].fd1 - 1);
		char path[48];
		snprintf(path, sizeof path, "/proc/%d/comm", (int)tid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		comms[k].tid = tid;
		comms[k].fd1 = fd + 1;
		if (fd >= 0)
			n = pread(fd, comm, 16, 0);
	}
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
	cw_watch_epolls_stale(); /* a new process may reuse a pid */
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

/* ---- who else holds a socket; the closing process's epoll fds ---------------- */

/* A drained close needs two answers about the closing process: does any other
 * fd refer to the socket, and which of its fds are epoll instances (the
 * drained socket is removed from those that list it). Both once came from a
 * readlink of every fd, 2.4 us each here (a path walk in /proc and the link
 * text); kcmp(KCMP_FILE) answers the first for 1.5 us, but cannot tell an
 * epoll. So the epoll fds of a process are learnt by a full pass (readlink),
 * kept, and trusted until one of these: an epoll_create (trapped: the
 * supervisor calls cw_watch_epolls_stale), an exec or a fork (a new process
 * may reuse a pid), a number of the list that is no longer an epoll
 * (cw_watch_epoll_gone, from the supervisor's KCMP_EPOLL_TFD), or a second
 * since the full pass: an epoll instance can also arrive without an
 * epoll_create (SCM_RIGHTS, pidfd_getfd), and is seen within that second.
 * Each pass also keeps the /proc/PID/fd directory open: reading it again
 * from the start costs one lseek instead of an open and a close (a directory
 * of a dead process reads as an error, never as another process's, and is
 * opened again).
 *
 * And a process alone under the filter whose sockets are known to have one
 * fd each needs no look at all: "dup-free". A full pass finds it so when no
 * two fds refer to one socket, none is a unix socket and none an io_uring;
 * from then on a second reference to a socket can only come from calls the
 * filter traps (dup, fcntl F_DUPFD*, dup2/dup3, pidfd_getfd, fork and
 * clone; SCM_RIGHTS needs a unix socket: socket and socketpair AF_UNIX are
 * trapped, io_uring_setup too), and each of those makes the process
 * not dup-free for good (cw_watch_dups: it is trapped before it happens, so
 * no pass can miss one in flight). Like the shim's own dup tracking, an
 * unshare(CLONE_FILES) is not seen (a look at /proc/PID/fd would not see it
 * either). */
#define PROCS 16           /* processes remembered (a hash on the pid) */
#define PROC_EPOLLS 16     /* more epoll fds: always a full pass */
#define FULL_PASS_NS (1000 * 1000000LL)

struct proc_cache {
	pid_t pid;
	int dir;                /* /proc/PID/fd, or -1 */
	int nepolls;            /* -1: not known (a full pass is due) */
	int epolls[PROC_EPOLLS];
	long long full_ns;      /* when the epoll fds were read */
	int dupfree;            /* 1 yes, 0 not known (a full pass is due), -1 no (for good) */
};
static struct proc_cache procs[PROCS];
static int procs_ready;
static int dups_anywhere;   /* a not-dup-free mark was lost (or its process unknown): none is */
static int kcmp_works = 1;  /* 0: a kernel without kcmp (CONFIG_KCMP): readlink */

static long long mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct proc_cache *proc_entry(pid_t pid)
{
	if (!procs_ready) {
		for (int i = 0; i < PROCS; i++)
			procs[i] = (struct proc_cache){.dir = -1, .nepolls = -1};
		procs_ready = 1;
	}
	struct proc_cache *c = &procs[(unsigned)pid % PROCS];
	if (c->pid != pid) {
		if (c->dupfree < 0)
			dups_anywhere = 1;
		if (c->dir >= 0)
			close(c->dir);
		*c = (struct proc_cache){.pid = pid, .dir = -1, .nepolls = -1};
	}
	return c;
}

/* Also after a fork (a pid may be another process's now): dup-free is read
 * again too, but a mark of not dup-free stays. */
void cw_watch_epolls_stale(void)
{
	for (int i = 0; procs_ready && i < PROCS; i++) {
		procs[i].nepolls = -1;
		if (procs[i].dupfree > 0)
			procs[i].dupfree = 0;
	}
}

void cw_watch_dups(pid_t pid)
{
	if (pid <= 0)
		dups_anywhere = 1;
	else
		proc_entry(pid)->dupfree = -1;
}

static int cmp_ino(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
	return x < y ? -1 : x > y;
}

/* The inodes of the unix sockets of pid's network namespace, sorted, into a
 * growable array; -1 when they cannot be read. */
static long unix_inodes(pid_t pid, unsigned long **inos, size_t *cap)
{
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/net/unix", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char line[512];
	long n = 0;
	int ok = fgets(line, sizeof line, f) != NULL; /* the header */
	while (ok && fgets(line, sizeof line, f)) {
		unsigned long ino;
		/* "Num: RefCount Protocol Flags Type St Inode [Path]" */
		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %lu", &ino) != 1)
			continue;
		if ((size_t)n == *cap) {
			size_t c = *cap ? *cap * 2 : 64;
			unsigned long *g = realloc(*inos, c * sizeof *g);
			if (!g) {
				ok = 0;
				break;
			}
			*inos = g;
			*cap = c;
		}
		(*inos)[n++] = ino;
	}
	fclose(f);
	if (!ok)
		return -1;
	if (n > 1) /* with none, *inos may still be NULL */
		qsort(*inos, (size_t)n, sizeof **inos, cmp_ino);
	return n;
}

void cw_watch_epoll_gone(pid_t pid)
{
	proc_entry(pid)->nepolls = -1;
}

/* The fd directory of c's process, at its start; -1 when it is gone. */
static int proc_dir(struct proc_cache *c)
{
	if (c->dir >= 0 && lseek(c->dir, 0, SEEK_SET) == 0)
		return c->dir;
	if (c->dir >= 0)
		close(c->dir);
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)c->pid);
	c->dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return c->dir;
}

/* kcmp(KCMP_FILE): 1 same file, 0 another (or fd2 closed meanwhile), -1 no
 * answer (the caller reads the link). */
static int same_file(pid_t p1, int fd1, pid_t p2, int fd2)
{
	if (!kcmp_works)
		return -1;
	long r = syscall(SYS_kcmp, p1, p2, KCMP_FILE, (unsigned long)fd1, (unsigned long)fd2);
	if (r >= 0)
		return r == 0;
	if (errno == EBADF)
		return 0;
	if (errno == ENOSYS)
		kcmp_works = 0;
	return -1; /* EPERM (a process we may not look at): as readlink says */
}

struct holder_search {
	unsigned long ino;
	pid_t p, pid;       /* looking in p for socket fd of pid */
	int skip_own;       /* p is the closing process: fd and the earlier closing ones are not holders */
	int fd;
	const int *closing;
	size_t n;
	struct proc_cache *learn; /* a full pass: note the epoll fds here */
	int nepolls;              /* how many noted; -1: too many */
	int not_dupfree;          /* a full pass saw an io_uring, or had no room */
	size_t nsocks;            /* a full pass: the socket inodes seen, in socks */
};

static unsigned long *socks;
static size_t capsocks;

static int holds_at(int dir, const char *name, int other, void *arg)
{
	struct holder_search *h = arg;
	int own = h->skip_own && (other == h->fd || (in_list(other, h->closing, h->n) && other < h->fd));
	if (own && !h->learn)
		return 0;
	if (!h->learn) {
		int same = same_file(h->p, other, h->pid, h->fd);
		if (same >= 0)
			return same;
	}
	/* A full pass reads the closing fds too (dup-free counts every socket:
	 * an exec that fails keeps its close-on-exec ones), but they hold
	 * nothing. */
	int epoll = 0;
	unsigned long ino = h->learn ? link_at(dir, name, &epoll, &h->not_dupfree)
				     : link_at(dir, name, NULL, NULL);
	int found = !own && ino == h->ino;
	if (h->learn && ino) {
		if (h->nsocks == capsocks) {
			size_t c = capsocks ? capsocks * 2 : 64;
			unsigned long *g = realloc(socks, c * sizeof *g);
			if (g) {
				socks = g;
				capsocks = c;
			}
		}
		if (h->nsocks < capsocks)
			socks[h->nsocks++] = ino;
		else
			h->not_dupfree = 1;
	}
	if (epoll && h->nepolls >= 0) {
		if (h->nepolls < PROC_EPOLLS)
			h->learn->epolls[h->nepolls++] = other;
		else
			h->nepolls = -1;
	}
	return found;
}

/* After a full pass of p that saw nsocks socket inodes (in socks): is p
 * dup-free (see above)? */
static int dupfree_now(pid_t p, size_t nsocks, int not_dupfree)
{
	static unsigned long *unix_socks;
	static size_t capunix;
	if (not_dupfree)
		return 0;
	if (nsocks > 1)
		qsort(socks, nsocks, sizeof *socks, cmp_ino);
	for (size_t i = 1; i < nsocks; i++)
		if (socks[i] == socks[i - 1])
			return 0;
	long nu = nsocks ? unix_inodes(p, &unix_socks, &capunix) : 0;
	if (nu < 0)
		return 0;
	/* Both sorted: one merge. */
	for (size_t i = 0, j = 0; i < nsocks && j < (size_t)nu;) {
		if (socks[i] == unix_socks[j])
			return 0;
		if (socks[i] < unix_socks[j])
			i++;
		else
			j++;
	}
	return 1;
}

/* Does process p hold socket ino (fd of pid) at an fd other than the ones
 * closing? alone: pid is the only watched process. */
static int process_holds(pid_t p, unsigned long ino, pid_t pid, int fd, const int *closing, size_t n,
			 int alone)
{
	struct proc_cache *c = proc_entry(p);
	int full = p == pid && (c->nepolls < 0 || c->dupfree == 0 ||
				mono_ns() - c->full_ns > FULL_PASS_NS);
	if (p == pid && !full && alone && c->dupfree > 0 && !dups_anywhere)
		return 0; /* dup-free: the closing fd is the socket's only one */
	struct holder_search h = {ino, p, pid, p == pid, fd, closing, n, full ? c : NULL, 0, 0, 0};
	if (full)
		c->nepolls = -1;
	int r = -1;
	for (int tries = 0; r < 0 && tries < 2; tries++) {
		int dir = proc_dir(c);
		if (dir < 0)
			return 0; /* gone, or a zombie: holds nothing */
		h.nepolls = 0;
		h.nsocks = 0;
		h.not_dupfree = 0;
		r = cw_fd_dir_each(dir, holds_at, &h);
		if (r < 0 && tries == 0) {
			/* A kept directory of a process that died since (its
			 * pid may be another's now): open it again. */
			close(c->dir);
			c->dir = -1;
		}
	}
	/* Only a pass that read every fd knows them all. */
	if (full && r == 0 && h.nepolls >= 0) {
		c->nepolls = h.nepolls;
		c->full_ns = mono_ns();
	}
	if (full && r > 0)
		c->dupfree = -1; /* another fd of its own holds the socket */
	if (full && r == 0 && c->dupfree == 0)
		c->dupfree = dupfree_now(p, h.nsocks, h.not_dupfree) ? 1 : -1;
	return r > 0;
}

int cw_watch_socket_held(unsigned long ino, pid_t pid, int fd, const int *closing, size_t n)
{
	if (!ino)
		return 0;
	/* Alone: no fork since the last look at /proc (a fork is trapped
	 * before the child exists: not within its rescan window either). */
	int fresh = need_rescan();
	if (fresh)
		rescan();
	int alone = !fresh && nwatched == 1 && watched[0] == pid;
	if (process_holds(pid, ino, pid, fd, closing, n, alone))
		return 1;
	for (size_t i = 0; i < nwatched; i++)
		if (watched[i] != pid && process_holds(watched[i], ino, pid, fd, closing, n, 0))
			return 1;
	(void)root;
	return 0;
}

long cw_watch_epolls(pid_t pid, const int **fds)
{
	struct proc_cache *c = procs_ready ? &procs[(unsigned)pid % PROCS] : NULL;
	if (!c || c->pid != pid || c->nepolls < 0)
		return -1;
	*fds = c->epolls;
	return c->nepolls;
}
