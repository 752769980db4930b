/* The interposed functions: the only symbols libclosewatch.so exports
 * (besides closewatch_inspect and the name helpers of closewatch.h).
 *
 * Every hook is thin: a fast path that costs nothing for fds that are not
 * covered sockets, then cw_* helpers, then the real call, whose return value
 * and errno reach the program untouched. */
#include "backtrace.h"
#include "config.h"
#include "drain.h"
#include "fdtable.h"
#include "forkgate.h"
#include "ident.h"
#include "inspect.h"
#include "logwriter.h"
#include "notwatched.h"
#include "real.h"
#include "record.h"
#include "runstatus.h"
#include "verdict.h"
#include "warn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HOOK __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)

/* Nesting depth of the shim in this thread: > 1 means a signal handler
 * interrupted the shim (the shim's own calls use REAL() and never come back
 * through a hook for a socket). initial-exec: no allocation on first access
 * in a new thread. */
static __thread int depth __attribute__((tls_model("initial-exec")));

/* ---- initialisation --------------------------------------------------------- */

static atomic_int init_state; /* 0 not yet, 1 running, 2 done */

static const char *env_lookup(const char *name, void *arg)
{
	(void)arg;
	return getenv(name);
}

static void warn_stderr(const char *line, size_t len, void *arg)
{
	(void)arg;
	cw_log_stderr(line, len);
}

/* The process the shim's memory belongs to: a child that shares it (vfork,
 * posix_spawn's clone) has another pid. */
static atomic_int self_pid;

/* Every fork, also glibc's internal ones (daemon()) that bypass our fork():
 * the parent still holds every socket we have. */
static void after_fork_child(void)
{
	atomic_store(&self_pid, (int)getpid());
	cw_forkgate_after_fork_child();
	cw_ident_after_fork_child();
	cw_fd_mark_all_sockets(CW_FD_FORKED);
	cw_relatives_reset_to_parent();
	cw_log_after_fork_child();
}

static void init_body(void)
{
	atomic_store(&self_pid, (int)getpid());
	cw_ident_init();
	cw_real_bind();
	const char *host, *exe;
	cw_ident_where(&host, &exe); /* read once, now: no syscall per record */
	cw_config_parse(&cw_cfg, env_lookup, NULL, warn_stderr, NULL);
	cw_backtrace_init();
	cw_runstatus_init(env_lookup("CLOSEWATCH_RUN_STATUS", NULL));
	cw_log_open();
	cw_fd_scan_inherited();
	/* Inherited sockets may still be held by the parent (inetd, systemd,
	 * a server that passed them): it is the first relative to look at. */
	cw_relatives_add((int)getppid());
	pthread_atfork(NULL, NULL, after_fork_child);
	cw_drain_init(0);
	cw_watched_announce();
}

static int ready(void)
{
	return likely(atomic_load_explicit(&init_state, memory_order_acquire) == 2);
}

/* Idempotent; runs from our constructor, or earlier from the first hook that
 * needs it (another library's constructor may close a socket first). */
static void cw_init(void)
{
	if (ready())
		return;
	int expected = 0;
	if (atomic_compare_exchange_strong(&init_state, &expected, 1)) {
		int saved = errno;
		depth++;
		init_body();
		depth--;
		errno = saved;
		atomic_store_explicit(&init_state, 2, memory_order_release);
		return;
	}
	/* Another thread initialises: wait (we never re-enter here from the
	 * initialising thread, whose depth makes hooks pass straight through). */
	while (!ready())
		sched_yield();
}

__attribute__((constructor)) static void closewatch_constructor(void)
{
	cw_init();
}

/* ---- the common path: a covered socket is going away -------------------------- */

/* A hook entered while this thread is already inside the shim: a signal
 * handler that interrupted us. Everything on the record path is
 * async-signal-safe, so it is still logged; only the backtrace (dladdr takes
 * the dynamic linker's lock) and the drain engine (it takes a lock) are left out. */
static int nested(void)
{
	return depth > 1;
}

static void fill_meta(struct cw_event *ev, int call, int how)
{
	ev->call = call;
	ev->how = how;
	ev->action = CW_ACTION_NONE;
	ev->nframes = 0;
	ev->drain_result = 0;
	ev->discarded = ev->waited_ms = 0;
	clock_gettime(CLOCK_REALTIME, &ev->ts);
	cw_ident_get(&ev->pid, &ev->tid, ev->comm);
	cw_ident_where(&ev->host, &ev->exe);
	if (cw_cfg.backtrace && !nested())
		cw_backtrace(ev, cw_cfg.backtrace);
}

/* Inspect fd (a socket of kind, or unknown: kind 0), re-checking a stale
 * table entry against the kernel. Returns the kind, 0 if not covered. */
static uint8_t inspect_confirmed(int fd, uint8_t entry, struct closewatch_record *rec, int parts)
{
	uint8_t kind = entry & CW_KIND_MASK;
	/* A socket of ours whose SO_LINGER the program never touched. */
	int known = !(entry & (CW_FD_LINGER | CW_FD_DUPED | CW_FD_FORKED));
	if (kind && cw_inspect(fd, kind, rec, parts | (known ? CW_INSPECT_LINGER_OFF : 0)) == 0)
		return kind;
	/* Stale or unknown: ask the kernel what fd really is. */
	kind = cw_fd_classify(fd);
	if (!kind || cw_inspect(fd, kind, rec, parts) < 0) {
		cw_fd_clear(fd);
		return 0;
	}
	cw_fd_set(fd, kind | (entry & (CW_FD_DUPED | CW_FD_FORKED)) | CW_FD_LINGER);
	return kind;
}

/* fd (a socket, or unknown) is about to be closed by call. Inspect, predict,
 * log, and warn or drain as configured. The caller then closes it. */
static void socket_going_away(int fd, uint8_t entry, int call, int may_drain)
{
	struct cw_event ev;
	int parts = cw_inspect_parts(cw_cfg.events_all, cw_cfg.mode == CW_MODE_DRAIN);
	uint8_t kind = inspect_confirmed(fd, entry, &ev.rec, parts);
	if (!kind)
		return;
	ev.rec.shared = cw_inspect_shared(fd, entry);
	cw_verdict_close(&ev.rec);
	int risky = closewatch_verdict_is_risky(ev.rec.verdict);
	int drain = may_drain && !nested() && cw_cfg.mode == CW_MODE_DRAIN && cw_drain_wanted(&ev);
	if (!cw_cfg.events_all && !risky && !drain) {
		cw_fd_clear(fd);
		return;
	}
	/* A record is due (or a drain, whose records may be): now read the
	 * rest too. */
	cw_inspect_complete(fd, &ev.rec, parts);
	cw_verdict_close(&ev.rec);
	fill_meta(&ev, call, -1);
	struct cw_drain_ticket ticket = {.fd = -1, .slot = -1};
	if (drain)
		ev.action = cw_drain_prepare(fd, &ev, &ticket);
	else if (cw_cfg.mode == CW_MODE_WARN && risky)
		ev.action = CW_ACTION_WARNED;
	/* Forget fd before the real close: another thread may get the number
	 * back from socket() the moment it is closed. */
	cw_fd_clear(fd);
	/* A drain's close record is written by the drain thread; a quiet
	 * drain's only if its outcome makes it an event (drain.h). */
	if (ev.action != CW_ACTION_DRAINED)
		cw_log_event(&ev);
	if (ev.action == CW_ACTION_WARNED)
		cw_warn(&ev);
	if (ev.action == CW_ACTION_DRAINED)
		cw_drain_go(&ticket, &ev);
}

/* Entry for fd, or "unknown, look" for fds the table cannot say anything
 * about: before init, and past its end. */
static int needs_look(int fd, uint8_t entry)
{
	return entry || !ready() || !cw_fd_in_table(fd);
}

/* Shared frame of the hooks that close: errno kept, depth counted, and no
 * pthread_cancel acting inside the shim's own work: its write, poll, open and
 * nanosleep are cancellation points where the hooked call may have none
 * (shutdown, _exit), and a thread unwound from the middle of it would leave
 * the fork gate's and the drain's shared counts raised for good. */
#define SHIM_BEGIN()                                                            \
	int saved_errno_ = errno;                                               \
	int cancel_state_;                                                      \
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state_);         \
	depth++;                                                                \
	cw_init()
#define SHIM_END()                                                              \
	depth--;                                                                \
	pthread_setcancelstate(cancel_state_, NULL);                            \
	errno = saved_errno_

/* The real close of a hook that entered the fork gate is a cancellation
 * point (glibc acts on a pending cancel before the system call, the fd left
 * open): leave the gate on the way out of the thread too. */
static void close_gate_leave(void *unused)
{
	(void)unused;
	cw_forkgate_close_end();
}

/* ---- close ---------------------------------------------------------------------- */

HOOK int close(int fd)
{
	uint8_t entry = cw_fd_get(fd);
	if (likely(!entry && ready() && cw_fd_in_table(fd)) || fd < 0)
		return REAL(close)(fd);
	if (entry & CW_FD_PRIVATE)
		return REAL(close)(-1); /* ours (log, drain): to the program, not open */
	if (depth && !ready()) {
		/* Our own initialisation: nothing can be logged yet. */
		cw_fd_clear(fd);
		return REAL(close)(fd);
	}
	SHIM_BEGIN();
	cw_forkgate_close_begin(); /* no child created from the look to the close */
	/* Read again: a fork we waited for has marked it FORKED. */
	uint8_t now = cw_fd_get(fd);
	socket_going_away(fd, now ? now : entry, CW_CALL_CLOSE, 1);
	SHIM_END();
	/* Never retried on EINTR: on Linux the fd is gone either way. */
	int rc;
	pthread_cleanup_push(close_gate_leave, NULL);
	rc = REAL(close)(fd);
	pthread_cleanup_pop(1);
	return rc;
}

/* ---- shutdown -------------------------------------------------------------------- */

HOOK int shutdown(int fd, int how)
{
	uint8_t entry = cw_fd_get(fd);
	if (!needs_look(fd, entry) || (depth && !ready()) || fd < 0)
		return REAL(shutdown)(fd, how);
	if (entry & CW_FD_PRIVATE)
		return REAL(shutdown)(-1, how); /* the kernel's answer for a closed fd */
	/* how outside SHUT_RD..SHUT_RDWR: the kernel's EINVAL, nothing is shut. */
	if (how < SHUT_RD || how > SHUT_RDWR)
		return REAL(shutdown)(fd, how);
	SHIM_BEGIN();
	struct cw_event ev;
	int due = 0;
	if (inspect_confirmed(fd, entry, &ev.rec, CW_INSPECT_ALL)) {
		cw_verdict_shutdown(&ev.rec, how);
		due = cw_cfg.events_all || closewatch_verdict_is_risky(ev.rec.verdict);
		if (due)
			fill_meta(&ev, CW_CALL_SHUTDOWN, how);
	}
	SHIM_END();
	/* The record (read before, the state the call acts on) is written only
	 * once the call has succeeded: a TCP socket in CLOSE (never connected,
	 * or reset) gets ENOTCONN, and a call that fails shuts nothing. */
	int rc = REAL(shutdown)(fd, how);
	if (rc == 0 && due) {
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state_);
		depth++;
		if (cw_cfg.mode == CW_MODE_WARN && closewatch_verdict_is_risky(ev.rec.verdict))
			ev.action = CW_ACTION_WARNED;
		cw_log_event(&ev);
		if (ev.action == CW_ACTION_WARNED)
			cw_warn(&ev);
		depth--;
		pthread_setcancelstate(cancel_state_, NULL);
		errno = saved_errno_; /* a call that succeeded left errno alone */
	}
	return rc;
}

/* ---- close_range / closefrom ---------------------------------------------------- */

/* Log every covered socket in [first, last] that is about to go. */
static void sockets_in_range_going_away(unsigned first, unsigned last, int call)
{
	unsigned limit = (unsigned)cw_fd_limit();
	for (unsigned fd = first; fd < limit && fd <= last; fd++) {
		uint8_t e = cw_fd_get((int)fd);
		if ((e & CW_KIND_MASK) && !(e & CW_FD_PRIVATE))
			socket_going_away((int)fd, e, call, 1);
	}
}

/* Apply close_range to [first, last] minus our private fds. Returns the
 * first failure's -1 (errno set), else 0. */
static int close_range_around_private(unsigned first, unsigned last, int flags)
{
	int rc = 0, err = 0;
	unsigned lo = first;
	for (;;) {
		int p = cw_fd_next_private((int)(lo > (unsigned)cw_fd_limit() ? (unsigned)cw_fd_limit() : lo),
					   (int)(last > 0x7fffffffu ? 0x7fffffff : last));
		if (p < 0 || (unsigned)p > last)
			break;
		if ((unsigned)p > lo && REAL(close_range)(lo, (unsigned)p - 1, flags) < 0 && !rc) {
			rc = -1;
			err = errno;
		}
		if ((unsigned)p == last)
			return rc ? (errno = err, -1) : 0;
		lo = (unsigned)p + 1;
	}
	if (REAL(close_range)(lo, last, flags) < 0 && !rc) {
		rc = -1;
		err = errno;
	}
	if (rc)
		errno = err;
	return rc;
}

HOOK int close_range(unsigned int first, unsigned int last, int flags)
{
	/* Marking close-on-exec closes nothing (ours are close-on-exec already);
	 * a bad range or an unknown flag is the kernel's EINVAL, nothing closed. */
	if (depth || (flags & CLOSE_RANGE_CLOEXEC) || first > last ||
	    (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return REAL(close_range)(first, last, flags);
	SHIM_BEGIN();
	cw_forkgate_close_begin();
	sockets_in_range_going_away(first, last, CW_CALL_CLOSE_RANGE);
	SHIM_END();
	int rc = close_range_around_private(first, last, flags);
	cw_forkgate_close_end();
	return rc;
}

HOOK void closefrom(int lowfd)
{
	if (depth) {
		REAL(closefrom)(lowfd);
		return;
	}
	/* glibc closes from 0 then (MAX (0, lowfd)): our fds included. */
	if (lowfd < 0)
		lowfd = 0;
	SHIM_BEGIN();
	cw_forkgate_close_begin();
	sockets_in_range_going_away((unsigned)lowfd, ~0U, CW_CALL_CLOSEFROM);
	/* Close below each private fd; the tail goes to the real closefrom. */
	int lo = lowfd, p;
	while ((p = cw_fd_next_private(lo, 0x7fffffff)) >= 0) {
		if (p > lo && !(REAL(close_range) && REAL(close_range)((unsigned)lo, (unsigned)p - 1, 0) == 0))
			for (int fd = lo; fd < p; fd++)
				REAL(close)(fd);
		lo = p + 1;
	}
	SHIM_END();
	REAL(closefrom)(lo);
	cw_forkgate_close_end();
}

/* ---- dup family ------------------------------------------------------------------ */

/* newfd received a copy of oldfd (entry old_entry). */
static void note_dup(int oldfd, uint8_t old_entry, int newfd)
{
	uint8_t kind = old_entry & CW_KIND_MASK;
	if (kind && !(old_entry & CW_FD_PRIVATE)) {
		cw_fd_set(newfd, kind | CW_FD_DUPED | (old_entry & (CW_FD_FORKED | CW_FD_LINGER)));
		cw_fd_or(oldfd, CW_FD_DUPED);
	} else {
		cw_fd_clear(newfd);
	}
}

/* What dup2/dup3 (call) will do, decided as the kernel decides (ksys_dup3,
 * in its order): dup3 with flags other than O_CLOEXEC or with oldfd ==
 * newfd, EINVAL; newfd negative or past RLIMIT_NOFILE, EBADF; oldfd not open
 * (ours counts as not open), EBADF. A call that fails closes nothing. Returns
 * that errno, 0 if newfd will be replaced, -1 if the call succeeds without
 * touching anything (dup2(fd, fd)). Only on the slow path: one fcntl and
 * one getrlimit. (Another thread may close oldfd in between: a racy program
 * may then get a record for a dup2 that failed.) */
static int dup_outcome(int oldfd, int newfd, int flags, int call, uint8_t old_entry)
{
	if (call == CW_CALL_DUP3 && ((flags & ~O_CLOEXEC) || oldfd == newfd))
		return EINVAL;
	int old_open = !(old_entry & CW_FD_PRIVATE) && REAL(fcntl)(oldfd, F_GETFD) >= 0;
	if (oldfd == newfd)
		return old_open ? -1 : EBADF;
	struct rlimit rl;
	if (newfd < 0 || (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)newfd >= rl.rlim_cur))
		return EBADF;
	return old_open ? 0 : EBADF;
}

static int dup_onto(int oldfd, int newfd, int flags, int call)
{
	uint8_t old_entry = cw_fd_get(oldfd), new_entry = cw_fd_get(newfd);
	int ours = (old_entry | new_entry) & CW_FD_PRIVATE;
	if (ours || (!depth && needs_look(newfd, new_entry))) {
		int saved = errno;
		int outcome = dup_outcome(oldfd, newfd, flags, call, old_entry);
		errno = saved;
		if (outcome > 0 && ours) {
			/* The kernel's answer had our fd not been open; our fd is
			 * left alone. */
			errno = outcome;
			return -1;
		}
		if (outcome == 0 && (new_entry & CW_FD_PRIVATE)) {
			/* The program takes this number: our fd moves out of its way. */
			cw_log_relocate_if(newfd);
			cw_drain_relocate_if(newfd);
			new_entry = 0;
		}
		/* Only when the dup will succeed does newfd's socket go away. */
		if (outcome == 0 && !depth && needs_look(newfd, new_entry)) {
			SHIM_BEGIN();
			socket_going_away(newfd, new_entry, call, 1);
			SHIM_END();
		}
	}
	int rc = call == CW_CALL_DUP2 ? REAL(dup2)(oldfd, newfd) : REAL(dup3)(oldfd, newfd, flags);
	if (rc >= 0 && oldfd != newfd) {
		int saved = errno;
		note_dup(oldfd, old_entry, newfd);
		errno = saved;
	}
	return rc;
}

HOOK int dup2(int oldfd, int newfd)
{
	return dup_onto(oldfd, newfd, 0, CW_CALL_DUP2);
}

HOOK int dup3(int oldfd, int newfd, int flags)
{
	return dup_onto(oldfd, newfd, flags, CW_CALL_DUP3);
}

HOOK int dup(int oldfd)
{
	uint8_t e = cw_fd_get(oldfd);
	if (e & CW_FD_PRIVATE)
		return REAL(dup)(-1); /* the kernel's answer for a closed fd */
	int rc = REAL(dup)(oldfd);
	if (rc >= 0)
		note_dup(oldfd, e, rc);
	return rc;
}

/* Our fds (log, drain) are not open to the program, whatever the command
 * (F_GETFD, F_GETFL, F_SETFL, locks...): each hook that takes an fd passes
 * -1 instead, so the kernel answers as it would for a closed fd. */
static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
	uint8_t e = cw_fd_get(fd);
	if (e & CW_FD_PRIVATE)
		return real(-1, cmd, arg);
	if (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC)
		return real(fd, cmd, arg);
	int rc = real(fd, cmd, arg);
	if (rc >= 0)
		note_dup(fd, e, rc);
	return rc;
}

/* fcntl's third argument is an int or a pointer; both travel in one register
 * (as in glibc's own fcntl), so it is forwarded as a pointer. */
HOOK int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(REAL(fcntl), fd, cmd, arg);
}

HOOK int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(REAL(fcntl64) ? REAL(fcntl64) : REAL(fcntl), fd, cmd, arg);
}

/* ---- where sockets come from ------------------------------------------------------- */

/* A new socket fd's entry: marked FORKED too if a fork overlapped the call
 * (the child may have it, and the fork's marking ran before this entry). */
static void note_new(int fd, uint8_t entry, unsigned gen)
{
	cw_fd_set(fd, entry);
	/* After the entry is visible: a fork that marked before it is seen. */
	atomic_thread_fence(memory_order_seq_cst);
	if (entry && cw_forkgate_raced(gen))
		cw_fd_or(fd, CW_FD_FORKED | CW_FD_LINGER);
}

HOOK int socket(int domain, int type, int protocol)
{
	cw_forkgate_make_begin();
	unsigned gen = cw_forkgate_gen();
	int fd = REAL(socket)(domain, type, protocol);
	int saved = errno;
	if (fd >= 0)
		note_new(fd, cw_fd_kind_from_args(domain, type, protocol), gen);
	cw_forkgate_make_end();
	errno = saved;
	return fd;
}

HOOK int socketpair(int domain, int type, int protocol, int sv[2])
{
	cw_forkgate_make_begin();
	unsigned gen = cw_forkgate_gen();
	int rc = REAL(socketpair)(domain, type, protocol, sv);
	if (rc == 0) {
		uint8_t kind = cw_fd_kind_from_args(domain, type, protocol);
		note_new(sv[0], kind, gen);
		note_new(sv[1], kind, gen);
	}
	cw_forkgate_make_end();
	return rc;
}

static void note_accepted(int listener, int fd, unsigned gen)
{
	if (fd < 0)
		return;
	uint8_t le = cw_fd_get(listener);
	uint8_t kind = le & CW_KIND_MASK;
	/* An accepted socket inherits the listener's SO_LINGER (sk_clone). */
	uint8_t linger = le & (CW_FD_LINGER | CW_FD_FORKED | CW_FD_DUPED) ? CW_FD_LINGER : 0;
	if (!kind && !ready()) {
		int saved = errno;
		kind = cw_fd_classify(fd);
		errno = saved;
		linger = CW_FD_LINGER;
	}
	note_new(fd, kind ? kind | linger : 0, gen);
}

/* SO_LINGER on: from now on the close path asks the kernel (it never asks
 * for sockets whose SO_LINGER nobody set). */
HOOK int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
	if (cw_fd_get(fd) & CW_FD_PRIVATE)
		fd = -1;
	int rc = REAL(setsockopt)(fd, level, optname, optval, optlen);
	if (rc == 0 && level == SOL_SOCKET && optname == SO_LINGER && (cw_fd_get(fd) & CW_KIND_MASK))
		cw_fd_or(fd, CW_FD_LINGER);
	return rc;
}

/* accept() is a cancellation point: a thread cancelled in it (blocked on a
 * listener, the usual way to stop an acceptor) leaves `making` as it found
 * it, or every later child would take itself for one forked mid-accept. */
static void make_leave(void *unused)
{
	(void)unused;
	cw_forkgate_make_end();
}

HOOK int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	cw_forkgate_make_begin();
	unsigned gen = cw_forkgate_gen();
	int rc;
	pthread_cleanup_push(make_leave, NULL); /* a cancellation point */
	rc = REAL(accept)(cw_fd_get(fd) & CW_FD_PRIVATE ? -1 : fd, addr, len);
	pthread_cleanup_pop(0);
	note_accepted(fd, rc, gen);
	cw_forkgate_make_end();
	return rc;
}

HOOK int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	cw_forkgate_make_begin();
	unsigned gen = cw_forkgate_gen();
	int rc;
	pthread_cleanup_push(make_leave, NULL); /* a cancellation point */
	rc = REAL(accept4)(cw_fd_get(fd) & CW_FD_PRIVATE ? -1 : fd, addr, len, flags);
	pthread_cleanup_pop(0);
	note_accepted(fd, rc, gen);
	cw_forkgate_make_end();
	return rc;
}

/* fds passed with SCM_RIGHTS: the sender may still hold the same sockets. */
static void note_received_fds(struct msghdr *msg)
{
	if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr))
		return;
	int saved = errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *fds = (int *)CMSG_DATA(c);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, fds + i, sizeof fd);
			uint8_t kind = cw_fd_classify(fd);
			cw_fd_set(fd, kind ? kind | CW_FD_DUPED | CW_FD_LINGER : 0);
		}
	}
	errno = saved;
}

HOOK ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t rc = REAL(recvmsg)(cw_fd_get(fd) & CW_FD_PRIVATE ? -1 : fd, msg, flags);
	if (rc >= 0)
		note_received_fds(msg);
	return rc;
}

HOOK int recvmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags, struct timespec *tmo)
{
	int rc = REAL(recvmmsg)(cw_fd_get(fd) & CW_FD_PRIVATE ? -1 : fd, vec, n, flags, tmo);
	for (int i = 0; i < rc; i++)
		note_received_fds(&vec[i].msg_hdr);
	return rc;
}

/* ---- epoll: a drained socket must leave the program's epoll sets (drain.h) ------------ */

HOOK int epoll_create(int size)
{
	int fd = REAL(epoll_create)(size);
	if (fd >= 0 && ready())
		cw_drain_note_epoll(fd);
	return fd;
}

HOOK int epoll_create1(int flags)
{
	int fd = REAL(epoll_create1)(flags);
	if (fd >= 0 && ready())
		cw_drain_note_epoll(fd);
	return fd;
}

/* ---- fork, fclose, exit --------------------------------------------------------------- */

HOOK pid_t fork(void)
{
	/* The child's pid is known, and the sockets marked, before any close
	 * of another thread looks at them (forkgate.h). */
	if (ready()) {
		cw_ident_before_fork();
		cw_drain_before_fork();
	}
	cw_forkgate_fork_begin();
	pid_t pid = REAL(fork)();
	int saved = errno;
	if (pid == 0 && !ready()) {
		after_fork_child(); /* before our init no atfork handler is registered */
	} else if (pid > 0) {
		cw_fd_mark_all_sockets(CW_FD_FORKED);
		cw_relatives_add(pid);
	}
	cw_forkgate_fork_end();
	errno = saved;
	return pid;
}

HOOK int fclose(FILE *stream)
{
	/* glibc's fclose closes the fd internally, past our close(): log here.
	 * Not drained: fclose still has to flush its buffer to the socket. */
	int fd = stream && !depth ? fileno(stream) : -1;
	if (fd >= 0) {
		uint8_t entry = cw_fd_get(fd);
		if (needs_look(fd, entry) && !(entry & CW_FD_PRIVATE)) {
			SHIM_BEGIN();
			cw_forkgate_close_begin();
			uint8_t now = cw_fd_get(fd);
			socket_going_away(fd, now ? now : entry, CW_CALL_FCLOSE, 0);
			SHIM_END();
			int rc;
			pthread_cleanup_push(close_gate_leave, NULL);
			rc = REAL(fclose)(stream); /* its flush may write(): a cancellation point */
			pthread_cleanup_pop(1);
			return rc;
		}
	}
	return REAL(fclose)(stream);
}

/* One record per socket still open when the process exits (the kernel
 * closes them now, with the same consequences as close()). */
__attribute__((destructor)) static void closewatch_destructor(void)
{
	if (!ready() || depth)
		return;
	SHIM_BEGIN();
	/* Forked while another thread was making a socket (rare): our table
	 * may not know it, so ask the kernel which fds are sockets. Not at the
	 * fork: a thread blocked in accept() would make every fork pay. (A
	 * child that execs finds its sockets at start-up anyway.) */
	if (cw_forkgate_child_missed_fds())
		cw_fd_scan_inherited();
	/* While the table still names the sockets (the records below forget
	 * them). */
	cw_drain_cut_local_peers();
	int limit = cw_fd_limit();
	for (int fd = 0; fd < limit; fd++) {
		uint8_t e = cw_fd_get(fd);
		if ((e & CW_KIND_MASK) && !(e & CW_FD_PRIVATE))
			socket_going_away(fd, e, CW_CALL_EXIT, 0);
	}
	cw_drain_at_exit();
	cw_log_report_lost();
	SHIM_END();
}

/* _exit skips the destructor, yet pending drains get the same bounded wait
 * as at exit (<= the idle timeout): fork-per-connection servers (Python's
 * ForkingMixIn, many C servers) end each child with _exit right after its
 * close, and a drain ended there would reset the very client it was
 * lingering for. The wait takes no lock a signal handler could hold (the
 * engine's lock refuses re-entry from our own locked section). Then the
 * close records of drains still going are written. Not in a vfork child:
 * the drains and records are its parent's. */
static void exit_now(void)
{
	if (ready() && (int)getpid() == atomic_load(&self_pid)) {
		/* _exit is no cancellation point; the writes here are. */
		int cancel_state;
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
		cw_drain_cut_local_peers();
		cw_drain_at_exit();
		cw_drain_flush_close_records();
		cw_log_report_lost();
		pthread_setcancelstate(cancel_state, NULL);
	}
}

HOOK void _exit(int status)
{
	exit_now();
	REAL(_exit)(status);
	__builtin_unreachable();
}

HOOK void _Exit(int status)
{
	exit_now();
	REAL(_Exit)(status);
	__builtin_unreachable();
}

/* ---- children that exec without our fork(): posix_spawn, vfork ------------------------ */

/* A spawned child inherits every socket not marked close-on-exec. */
static void note_spawned(int rc, const pid_t *pid)
{
	if (rc == 0 && pid && *pid > 0 && ready()) {
		cw_fd_mark_all_sockets(CW_FD_FORKED);
		cw_relatives_add(*pid);
	}
}

HOOK int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	pid_t local;
	pid_t *p = pid ? pid : &local;
	cw_forkgate_fork_begin();
	int rc = REAL(posix_spawn)(p, path, fa, attr, argv, envp);
	note_spawned(rc, p);
	cw_forkgate_fork_end();
	if (rc == 0 && ready())
		cw_notwatched_check(path, 0, *p);
	return rc;
}

HOOK int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		      const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	pid_t local;
	pid_t *p = pid ? pid : &local;
	cw_forkgate_fork_begin();
	int rc = REAL(posix_spawnp)(p, file, fa, attr, argv, envp);
	note_spawned(rc, p);
	cw_forkgate_fork_end();
	if (rc == 0 && ready())
		cw_notwatched_check(file, 1, *p);
	return rc;
}

/* exec from a child that shares our memory (vfork): what we note here is
 * noted in the parent. Returns the pid noted, 0 if none. */
static int exec_begin(void)
{
	int me = (int)getpid();
	if (!ready())
		return 0;
	if (me == atomic_load(&self_pid)) {
		/* Our drain thread ends with this image: its records now (exec is
		 * no cancellation point; the writes here are). */
		int cancel_state;
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
		cw_drain_flush_close_records();
		cw_log_report_lost();
		pthread_setcancelstate(cancel_state, NULL);
		return 0;
	}
	cw_fd_mark_all_sockets(CW_FD_FORKED);
	cw_relatives_add(me);
	return me;
}

static void exec_failed(int me)
{
	if (me) {
		int saved = errno;
		cw_relatives_remove(me);
		errno = saved;
	}
}

HOOK int execve(const char *path, char *const argv[], char *const envp[])
{
	int me = exec_begin();
	if (ready())
		cw_notwatched_check(path, 0, getpid());
	int rc = REAL(execve)(path, argv, envp);
	exec_failed(me);
	return rc;
}

HOOK int execv(const char *path, char *const argv[])
{
	int me = exec_begin();
	if (ready())
		cw_notwatched_check(path, 0, getpid());
	int rc = REAL(execv)(path, argv);
	exec_failed(me);
	return rc;
}

HOOK int execvp(const char *file, char *const argv[])
{
	int me = exec_begin();
	if (ready())
		cw_notwatched_check(file, 1, getpid());
	int rc = REAL(execvp)(file, argv);
	exec_failed(me);
	return rc;
}

HOOK int execvpe(const char *file, char *const argv[], char *const envp[])
{
	int me = exec_begin();
	if (ready())
		cw_notwatched_check(file, 1, getpid());
	int rc = REAL(execvpe)(file, argv, envp);
	exec_failed(me);
	return rc;
}

/* execl, execlp, execle: their arguments into an array, then the above. */
#define CW_EXECL_ARGV(first, ap, argv)                                            \
	size_t n_ = 1;                                                          \
	va_start(ap, first);                                                    \
	while (va_arg(ap, char *))                                              \
		n_++;                                                           \
	va_end(ap);                                                             \
	char *argv[n_ + 1];                                                     \
	argv[0] = (char *)(first);                                              \
	va_start(ap, first);                                                    \
	for (size_t i_ = 1; i_ <= n_; i_++)                                     \
		argv[i_] = va_arg(ap, char *)

HOOK int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	CW_EXECL_ARGV(arg, ap, argv);
	va_end(ap);
	return execv(path, argv);
}

HOOK int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	CW_EXECL_ARGV(arg, ap, argv);
	va_end(ap);
	return execvp(file, argv);
}

HOOK int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	CW_EXECL_ARGV(arg, ap, argv);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}

/* ---- syscall(2) ---------------------------------------------------------------------- */

/* libuv (node and everything built on it) closes with syscall(SYS_close, fd),
 * not close(); such calls still go through libc's syscall() and so through
 * here. Only the numbers we watch are routed to the hooks above; the rest goes
 * straight on, with the six arguments glibc's own syscall() always passes. */
/* ---- thread names (ident.c caches comm) ----------------------------------------- */

HOOK int prctl(int option, ...)
{
	va_list ap;
	va_start(ap, option);
	unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
	unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
	va_end(ap);
	int rc = REAL(prctl)(option, a2, a3, a4, a5);
	if (option == PR_SET_NAME && rc == 0)
		cw_ident_names_changed();
	return rc;
}

HOOK int pthread_setname_np(pthread_t thread, const char *name)
{
	int rc = REAL(pthread_setname_np)(thread, name);
	if (rc == 0)
		cw_ident_names_changed();
	return rc;
}

/* A fork made with syscall(): the child (0) gets no pthread_atfork
 * handlers, so it is told here. CLONE_VM children share our memory. */
static long forked_raw(long rc, unsigned long flags)
{
	if (rc == 0 && !(flags & CLONE_VM) && ready()) {
		int saved = errno;
		after_fork_child();
		errno = saved;
	}
	return rc;
}

HOOK long syscall(long nr, ...)
{
	va_list ap;
	va_start(ap, nr);
	long a0 = va_arg(ap, long), a1 = va_arg(ap, long), a2 = va_arg(ap, long);
	long a3 = va_arg(ap, long), a4 = va_arg(ap, long), a5 = va_arg(ap, long);
	va_end(ap);
	switch (nr) {
	case SYS_fork:
		return forked_raw(REAL(syscall)(nr), 0);
	case SYS_clone:
		return forked_raw(REAL(syscall)(nr, a0, a1, a2, a3, a4, a5), (unsigned long)a0);
	case SYS_clone3: {
		long rc = REAL(syscall)(nr, a0, a1, a2, a3, a4, a5);
		/* In the child the kernel has read struct clone_args: flags
		 * is its first field. */
		return rc == 0 ? forked_raw(rc, *(const unsigned long *)a0) : rc;
	}
	case SYS_prctl: {
		long rc = REAL(syscall)(nr, a0, a1, a2, a3, a4, a5);
		if (a0 == PR_SET_NAME && rc == 0)
			cw_ident_names_changed();
		return rc;
	}
	case SYS_close:
		return close((int)a0);
	case SYS_shutdown:
		return shutdown((int)a0, (int)a1);
	case SYS_close_range:
		return close_range((unsigned)a0, (unsigned)a1, (int)a2);
	case SYS_dup2:
		return dup2((int)a0, (int)a1);
	case SYS_dup3:
		return dup3((int)a0, (int)a1, (int)a2);
	default:
		return REAL(syscall)(nr, a0, a1, a2, a3, a4, a5);
	}
}
