/* The fd table. See fdtable.h. */
#include "fdtable.h"
#include "real.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint8_t table[CW_FDTAB_SIZE];
static atomic_int limit; /* one past the highest fd ever marked */

int cw_fd_in_table(int fd)
{
	return fd >= 0 && (unsigned)fd < CW_FDTAB_SIZE;
}

uint8_t cw_fd_get(int fd)
{
	if (!cw_fd_in_table(fd))
		return 0;
	return atomic_load_explicit(&table[fd], memory_order_relaxed);
}

static void raise_limit(int fd)
{
	int cur = atomic_load_explicit(&limit, memory_order_relaxed);
	while (cur <= fd && !atomic_compare_exchange_weak(&limit, &cur, fd + 1))
		;
}

void cw_fd_set(int fd, uint8_t entry)
{
	if (!cw_fd_in_table(fd))
		return;
	if (entry)
		raise_limit(fd);
	atomic_store_explicit(&table[fd], entry, memory_order_relaxed);
}

void cw_fd_clear(int fd)
{
	if (cw_fd_in_table(fd))
		atomic_store_explicit(&table[fd], 0, memory_order_relaxed);
}

void cw_fd_or(int fd, uint8_t flags)
{
	if (cw_fd_in_table(fd))
		atomic_fetch_or_explicit(&table[fd], flags, memory_order_relaxed);
}

int cw_fd_limit(void)
{
	return atomic_load_explicit(&limit, memory_order_relaxed);
}

int cw_fd_next_socket(int lo)
{
	int n = cw_fd_limit();
	for (int fd = lo < 0 ? 0 : lo; fd < n; fd++) {
		uint8_t e = cw_fd_get(fd);
		if ((e & CW_KIND_MASK) && !(e & CW_FD_PRIVATE))
			return fd;
	}
	return -1;
}

void cw_fd_mark_all_sockets(uint8_t flags)
{
	for (int fd = cw_fd_next_socket(0); fd >= 0; fd = cw_fd_next_socket(fd + 1))
		cw_fd_or(fd, flags);
}

uint8_t cw_fd_kind_from_args(int domain, int type, int protocol)
{
	type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	if ((domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM &&
	    (protocol == 0 || protocol == IPPROTO_TCP))
		return CW_KIND_TCP;
	if (domain == AF_UNIX && type == SOCK_STREAM)
		return CW_KIND_UNIX_STREAM;
	if (domain == AF_UNIX && type == SOCK_SEQPACKET)
		return CW_KIND_UNIX_SEQPACKET;
	return CW_KIND_NONE;
}

/* Ordered so that the common answers take the fewest calls (the supervisor
 * asks at every trapped close): a fd that is no socket fails the first
 * (ENOTSOCK), a datagram or raw socket is settled by it too, and a TCP socket
 * by two: SOCK_STREAM with protocol IPPROTO_TCP is made only by AF_INET and
 * AF_INET6 (every other family refuses protocol 6 for SOCK_STREAM or never
 * sets a protocol), so its family is not asked. Same answer as
 * cw_fd_kind_from_args() on all three. */
uint8_t cw_fd_classify(int fd)
{
	int domain, type, protocol = 0;
	socklen_t len = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return CW_KIND_NONE;
	if (type != SOCK_STREAM && type != SOCK_SEQPACKET)
		return CW_KIND_NONE;
	if (type == SOCK_STREAM) {
		len = sizeof protocol;
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) < 0)
			return CW_KIND_NONE;
		if (protocol == IPPROTO_TCP)
			return CW_KIND_TCP;
	}
	len = sizeof domain;
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return CW_KIND_NONE;
	return cw_fd_kind_from_args(domain, type, protocol);
}


int cw_fd_dir_each(int dir, int (*fn)(int dir, const char *name, int fd, void *arg), void *arg)
{
	char buf[2048]; /* small: this may run on a signal handler's stack */
	long got;
	while ((got = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
		for (long off = 0; off < got;) {
			struct cw_dirent64 *d = (struct cw_dirent64 *)(buf + off);
			off += d->d_reclen;
			if (d->d_name[0] < '0' || d->d_name[0] > '9')
				continue;
			int fd = 0;
			for (const char *p = d->d_name; *p >= '0' && *p <= '9'; p++)
				fd = fd * 10 + (*p - '0');
			int r = fn(dir, d->d_name, fd, arg);
			if (r)
				return r;
		}
	}
	return got < 0 ? -1 : 0;
}

static int mark_inherited(int dir, const char *name, int fd, void *arg)
{
	(void)name;
	(void)arg;
	if (fd == dir || (cw_fd_get(fd) & CW_FD_PRIVATE))
		return 0;
	uint8_t kind = cw_fd_classify(fd);
	/* Inherited: the parent (inetd, systemd, a shell that
	 * passed it) may still hold the same socket. */
	if (kind)
		cw_fd_set(fd, kind | CW_FD_FORKED | CW_FD_LINGER | (cw_fd_get(fd) & CW_FD_DUPED));
	return 0;
}

void cw_fd_scan_inherited(void)
{
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return;
	cw_fd_dir_each(dir, mark_inherited, NULL);
	REAL(close)(dir);
}

/* Where private fds go: 128 below RLIMIT_NOFILE's soft limit (capped at the
 * table's size). The limit is read at most once a second (a program that
 * raises it at start-up sees our fds follow), and at once when the kernel
 * refuses the number (it lowered it): a drained close pays no getrlimit. */
static atomic_int private_base;
static atomic_llong private_base_read_s;

static long long coarse_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* the vDSO: no syscall */
	return ts.tv_sec;
}

static int read_private_base(void)
{
	struct rlimit rl;
	long top = CW_FDTAB_SIZE;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)top)
		top = (long)rl.rlim_cur;
	int base = (int)(top > 256 ? top - 128 : top / 2);
	atomic_store_explicit(&private_base, base, memory_order_relaxed);
	atomic_store_explicit(&private_base_read_s, coarse_seconds(), memory_order_relaxed);
	return base;
}

/* The supervisor's own fds need no distance from any program's numbers (the
 * program has its own table), and a high one makes every copy of its table
 * (the vfork of the drain's epoll step) as long as that number. */
static int private_low;

void cw_fd_private_low(void)
{
	private_low = 1;
}

int cw_fd_dup_private(int fd)
{
	if (private_low) {
		int low = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
		if (low >= 0)
			cw_fd_set(low, CW_FD_PRIVATE);
		return low;
	}
	/* Near the top of the program's fd range, where close-all loops still
	 * reach them (and find them "not open") but ordinary programs never
	 * allocate. */
	int base = atomic_load_explicit(&private_base, memory_order_relaxed);
	if (base <= 0 || coarse_seconds() != atomic_load_explicit(&private_base_read_s, memory_order_relaxed))
		base = read_private_base();
	int hidden = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, base);
	if (hidden < 0 && errno == EINVAL) { /* base past a lowered limit */
		int now = read_private_base();
		if (now != base)
			hidden = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, now);
	}
	if (hidden < 0)
		hidden = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
	if (hidden >= 0)
		cw_fd_set(hidden, CW_FD_PRIVATE);
	return hidden;
}

int cw_fd_hide(int fd)
{
	if (private_low) { /* where it is will do */
		cw_fd_set(fd, CW_FD_PRIVATE);
		return fd;
	}
	int hidden = cw_fd_dup_private(fd);
	if (hidden < 0) {
		/* No second number to be had (RLIMIT_NOFILE at its minimum): keep
		 * this one, hidden all the same, rather than leak it unmarked. */
		cw_fd_set(fd, CW_FD_PRIVATE);
		return fd;
	}
	REAL(close)(fd);
	return hidden;
}

int cw_fd_next_private(int lo, int hi)
{
	int n = cw_fd_limit();
	if (lo < 0)
		lo = 0;
	for (int fd = lo; fd < n && fd <= hi; fd++)
		if (cw_fd_get(fd) & CW_FD_PRIVATE)
			return fd;
	return -1;
}
