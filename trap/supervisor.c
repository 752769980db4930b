/* The supervisor: start the program under the filter, answer every trapped
 * call, write the records. See trap.h.
 *
 * One thread answers every notification. Each answer is a handful of
 * syscalls (receive, pidfd_getfd, one getsockopt for a non-socket, four
 * getsockopt/ioctl for a TCP socket, close, send), so many threads
 * trapping at once wait at most for the few notifications ahead of them;
 * the kernel queues them and none is lost (tests/test_trap.py counts them).
 *
 * Rules the kernel imposes (each one checked on Linux 6.18):
 *  - Our duplicate of the program's fd is closed BEFORE we let the call go
 *    ahead: while we hold it, the program's close() is not the last
 *    reference and nothing would be sent.
 *  - A record is written only once the answer was accepted: a notification
 *    aborted on the way (its thread killed, or on kernels without
 *    WAIT_KILLABLE_RECV a signal that restarts the call) is not a close, and
 *    a restarted call is trapped and answered again, so it is logged once.
 *  - Since Linux 6.11 a RECV blocked with nothing to receive returns (ENOENT)
 *    once every process under the filter has ended, so the loop blocks in
 *    RECV: no poll before each notification (one syscall, about 1.3 us of a
 *    trapped call here). Before, a blocked RECV never notices (6.8 is known
 *    to hang so): poll, and POLLHUP says so. Signals (forwarded ones,
 *    SIGCHLD) are read by a thread of their own, so that nothing needs to
 *    interrupt the RECV; should a RECV still outlast the program (a kernel
 *    that says 6.11 without that change), that thread interrupts it.
 *  - If this process dies, every trapped call of the program fails with
 *    ENOSYS: we forward the usual signals and outlive the program. */
#include "trap.h"
#include "drains.h"
#include "foreign.h"
#include "filter.h"
#include "procfds.h"
#include "../core/config.h"
#include "../core/fdtable.h"
#include "../core/inspect.h"
#include "../core/logwriter.h"
#include "../core/runstatus.h"
#include "../core/verdict.h"
#include "../core/warn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/kcmp.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int (*cw_trap_backtrace)(pid_t pid, pid_t tid, struct cw_event *ev, int max);

static int listener = -1;

/* ---- tasks: a pidfd per trapping thread ------------------------------------- */

/* A thread pidfd (PIDFD_THREAD, Linux 6.9) names exactly the task that
 * trapped: once that task is gone the entry is made again, so a reused tid
 * never reads another process's fds. Older kernels: the process's pidfd
 * (threads share its fd table). */
struct task {
	pid_t tid, tgid;
	int pidfd;
	char *exe; /* its process's /proc/PID/exe, read at its first record; NULL: not yet */
};
#define NTASKS 4096
static struct task tasks[NTASKS];

static void task_drop(struct task *t)
{
	if (t->pidfd >= 0)
		close(t->pidfd);
	t->pidfd = -1;
	t->tid = 0;
	free(t->exe);
	t->exe = NULL;
}

/* The program's path for t's records: read once per task (its pidfd keeps a
 * reused tid from getting another program's), and again after an exec. */
static const char *task_exe(struct task *t)
{
	if (!t->exe) {
		char path[48], buf[CW_EXE_MAX];
		snprintf(path, sizeof path, "/proc/%d/exe", (int)t->tgid);
		ssize_t n = readlink(path, buf, sizeof buf - 1);
		buf[n > 0 ? n : 0] = 0;
		t->exe = strdup(buf);
	}
	return t->exe ? t->exe : "";
}

/* An exec of process tgid: its threads' paths are read again (the thread
 * that execs may take the leader's tid; the others are gone). */
static void exe_forget(pid_t tgid)
{
	for (size_t i = 0; i < NTASKS; i++)
		if (tasks[i].exe && tasks[i].tgid == tgid) {
			free(tasks[i].exe);
			tasks[i].exe = NULL;
		}
}

/* The host name, read once (the program runs on our host). */
static const char *host_name(void)
{
	static char host[sizeof(((struct utsname *)0)->nodename)];
	static int done;
	if (!done) {
		struct utsname u;
		if (uname(&u) == 0)
			memcpy(host, u.nodename, sizeof host);
		host[sizeof host - 1] = 0;
		done = 1;
	}
	return host;
}

/* The task behind notification req, or NULL when it is gone. An entry for
 * tid whose task died means the tid was reused: it is made again. check: ask
 * whether the entry's task lives (signal 0); without it the entry is taken
 * as it is, for a caller whose first use is getfd(), which fails with ESRCH
 * for a dead task (getfd_first() then makes the entry again): one syscall
 * less on every close, shutdown and dup2. */
static struct task *task_for(pid_t tid, uint64_t id, int check)
{
	struct task *t = &tasks[(unsigned)tid % NTASKS];
	if (t->tid == tid && t->pidfd >= 0 &&
	    (!check || syscall(SYS_pidfd_send_signal, t->pidfd, 0, NULL, 0) == 0))
		return t;
	task_drop(t);
	int pfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
	pid_t tgid = cw_proc_tgid(tid);
	if (pfd < 0 && errno == EINVAL && tgid > 0) /* before 6.9: no thread pidfds */
		pfd = (int)syscall(SYS_pidfd_open, tgid, 0);
	/* The notification still pending proves tid was the trapping task when
	 * the pidfd was taken (and tgid read). */
	if (pfd < 0 || tgid <= 0 || seccomp_notify_id_valid(listener, id) != 0) {
		if (pfd >= 0)
			close(pfd);
		return NULL;
	}
	t->tid = tid;
	t->tgid = tgid;
	t->pidfd = pfd;
	return t;
}

/* Our duplicate of the program's fd, or -1 (not open: the call will fail). */
static int getfd(struct task *t, int fd)
{
	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	return (int)syscall(SYS_pidfd_getfd, t->pidfd, fd, 0);
}

/* The first getfd() of a notification, on an entry task_for() did not check:
 * ESRCH says the entry's task is gone (its tid was reused by the task that
 * trapped now), so the entry is made again and asked once more. *tp becomes
 * that entry, or NULL when the trapping task is gone too. */
static int getfd_first(struct task **tp, uint64_t id, int fd)
{
	int dup = getfd(*tp, fd);
	if (dup >= 0 || errno != ESRCH)
		return dup;
	*tp = task_for((*tp)->tid, id, 1);
	if (!*tp)
		return -1;
	return getfd(*tp, fd);
}

/* ---- records of one notification --------------------------------------------- */

/* A record waiting for the answer to its call, with the socket's inode (for
 * the records of an exec, which wait for the exec to be seen done). */
struct slot {
	struct cw_event ev;
	unsigned long ino;
	pid_t exec_tid; /* pending exec records: the thread that called exec */
	char exe[CW_EXE_MAX]; /* the program's path when the record was made (ev.exe at emit) */
	struct cw_drain_ticket ticket; /* action drained: the engine's slot */
};

static struct slot *batch;
static size_t nbatch, capbatch;

static struct slot *grow(struct slot **arr, size_t n, size_t *cap)
{
	if (n == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		struct slot *grown = realloc(*arr, c * sizeof *grown);
		if (!grown)
			return NULL;
		*arr = grown;
		*cap = c;
	}
	return &(*arr)[n];
}

static struct slot *batch_slot(void)
{
	return grow(&batch, nbatch, &capbatch);
}

/* Slots move (realloc, copies): ev's exe points into its own slot only now. */
static void emit(struct slot *s)
{
	struct cw_event *ev = &s->ev;
	ev->host = host_name();
	ev->exe = s->exe;
	cw_log_event(ev);
	if (ev->action == CW_ACTION_WARNED)
		cw_warn(ev);
}

/* ---- exec: records written once the exec is seen done ------------------------------ */

/* The close-on-exec sockets die only if the exec succeeds, which the kernel
 * decides after we let the call go. Their state is read before (it is gone
 * after); the record is written when the socket is seen gone from that fd
 * (the exec closed it), and dropped when the thread that called exec traps
 * again with the socket still there (the exec failed). */
static struct slot *pending;
static size_t npending, cappending;

/* tgid, tid: a notification from this task (0: a periodic look). */
static void pending_resolve(pid_t tgid, pid_t tid)
{
	size_t k = 0;
	for (size_t i = 0; i < npending; i++) {
		struct slot *s = &pending[i];
		if (tgid && s->ev.pid != tgid) {
			pending[k++] = *s;
			continue;
		}
		if (cw_proc_fd_socket(s->ev.pid, s->ev.rec.fd) != s->ino)
			emit(s); /* closed by the exec (or the process is gone) */
		else if (!(tid && tid == s->exec_tid))
			pending[k++] = *s; /* not known yet */
		/* else: the exec failed, the socket lives on: no record */
	}
	npending = k;
}

/* ---- drain mode: the program's epoll sets ------------------------------------- */

/* epoll keys a registration by file and fd number, and it goes only when the
 * file's last reference does: our duplicate keeps a drained socket alive,
 * so the program's epoll sets would go on reporting it after its close.
 * Remove it as its close would have: for each epoll instance of the program
 * that lists (fd, inode) (/proc/PID/fdinfo), EPOLL_CTL_DEL through a
 * duplicate of that epoll fd, from a fd table where fd is that socket. Our
 * own table cannot be used (fd may be taken there, and the drain thread
 * opens and closes fds): a vfork child, which has a copy of our table,
 * puts the socket at fd in its copy, removes, and exits. */
static int epoll_lists(pid_t pid, int epfd, int fd, unsigned long ino)
{
	/* kcmp(KCMP_EPOLL_TFD) compares the file registered in epfd under
	 * number fd (the toff-th such: an older file may still be registered
	 * there) with the socket at fd, in one call; the fdinfo text is read
	 * only where the kernel refuses (ENOSYS, EPERM). */
	for (unsigned toff = 0; toff < 64; toff++) {
		struct kcmp_epoll_slot sl = {(__u32)epfd, (__u32)fd, toff};
		long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, (unsigned long)fd, &sl);
		if (r == 0)
			return 1;
		if (r > 0)
			continue; /* another file under that number: the next one */
		if (errno == ENOENT)
			return 0;
		if (errno == EINVAL || errno == EBADF) { /* not an epoll instance (any more) */
			cw_watch_epoll_gone(pid);
			return 0;
		}
		break;
	}
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", (int)pid, epfd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return 0;
	int found = 0;
	size_t have = 0;
	ssize_t n;
	/* "tfd: N events: E data: D pos:P ino:I sdev:S" per registration. */
	while (!found && (n = read(f, buf + have, sizeof buf - 1 - have)) > 0) {
		have += (size_t)n;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			int tfd;
			char *i = strstr(line, " ino:");
			if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd && i &&
			    strtoul(i + 5, NULL, 16) == ino)
				found = 1;
			line = nl + 1;
		}
		have = strlen(line);
		memmove(buf, line, have);
	}
	close(f);
	return found;
}

/* The epoll fds of t's process: those the sharing check just saw (it reads
 * every fd of the process), else a look of our own. */
static long program_epolls(struct task *t, const int **out)
{
	static int *fds;
	static size_t cap;
	long n = cw_watch_epolls(t->tgid, out);
	if (n >= 0)
		return n;
	n = cw_proc_fds(t->tgid, 0, ~0U, &fds, &cap);
	long k = 0;
	for (long i = 0; i < n; i++) {
		char path[64], link[64];
		snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)t->tgid, fds[i]);
		ssize_t l = readlink(path, link, sizeof link - 1);
		if (l == 22 && memcmp(link, "anon_inode:[eventpoll]", 22) == 0)
			fds[k++] = fds[i];
	}
	*out = fds;
	return k;
}

/* EPOLL_CTL_DEL of fd from epoll ep, in a vfork child whose table has sock at fd. */
static void epoll_del_as(int ep, int fd, int sock)
{
	pid_t c = vfork();
	if (c == 0) {
		struct epoll_event unused;
		if (dup2(sock, fd) == fd)
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, &unused);
		_exit(0);
	}
	if (c > 0)
		waitpid(c, NULL, __WALL);
}

static void leave_program_epolls(struct task *t, int fd, int drained, unsigned long ino)
{
	const int *eps;
	long n = ino ? program_epolls(t, &eps) : 0;
	int sock = -1;
	for (long k = 0; k < n; k++) {
		if (!epoll_lists(t->tgid, eps[k], fd, ino))
			continue;
		/* The child gets a duplicate of its own: the supervisor's is
		 * the engine's once claimed (sent to its thread at drain_go). */
		if (sock < 0 && (sock = fcntl(drained, F_DUPFD_CLOEXEC, 3)) < 0)
			return;
		int ep = getfd(t, eps[k]);
		if (ep < 0)
			continue;
		if (ep == fd) { /* the child's dup2 would replace it: out of the way */
			int moved = fcntl(ep, F_DUPFD_CLOEXEC, fd + 1);
			close(ep);
			if ((ep = moved) < 0)
				continue;
		}
		epoll_del_as(ep, fd, sock);
		close(ep);
	}
	if (sock >= 0)
		close(sock);
}

/* Set while the close-on-exec sockets of an exec are looked at (their
 * records use the exit call too): never drained there, since the exec may
 * still fail and leave them the program's. */
static int at_exec;

/* Drain mode: the calls the shim drains, and exit: the supervisor outlives
 * the process, so a socket its exit would reset (a server whose child answers
 * and exits with the connection open, as inetd-style and forking servers like
 * busybox httpd do) is drained as its close would be. Never a shutdown or an
 * exec. */
static int drainable(int call)
{
	return cw_cfg.mode == CW_MODE_DRAIN &&
	       (call == CW_CALL_CLOSE || call == CW_CALL_CLOSE_RANGE || call == CW_CALL_DUP2 ||
		call == CW_CALL_DUP3 || (call == CW_CALL_EXIT && !at_exec));
}

/* fd of task t goes away in call (for a range, exit or exec, closing lists
 * every fd that goes in the same call). Inspect our duplicate like the shim's
 * close path does; keep a record if one is due. The duplicate is closed
 * before returning. */
static void dup_going(struct task *t, int fd, int dup, int call, int how, const int *closing, size_t n)
{
	uint8_t kind = cw_fd_classify(dup);
	struct slot *slot = kind ? batch_slot() : NULL;
	if (!slot) {
		close(dup);
		return;
	}
	struct cw_event *ev = &slot->ev;
	struct closewatch_record *r = &ev->rec;
	slot->ino = 0;
	slot->exec_tid = 0;
	slot->ticket.fd = slot->ticket.slot = -1;
	int drain = 0;
	if (call == CW_CALL_SHUTDOWN) {
		if (cw_inspect(dup, kind, r, CW_INSPECT_ALL) < 0)
			goto skip;
		cw_verdict_shutdown(r, how);
		if (!cw_cfg.events_all && !closewatch_verdict_is_risky(r->verdict))
			goto skip;
	} else {
		int parts = cw_inspect_parts(cw_cfg.events_all, drainable(call));
		if (cw_inspect(dup, kind, r, parts) < 0)
			goto skip;
		cw_verdict_close(r);
		r->shared = 0;
		drain = drainable(call) && cw_drain_wanted(ev);
		/* Sharing only ever turns a verdict into "shared" (not risky,
		 * never drained): when no record is due anyway, /proc is not
		 * read. */
		if (!cw_cfg.events_all && !closewatch_verdict_is_risky(r->verdict) && !drain)
			goto skip;
		struct stat st;
		slot->ino = fstat(dup, &st) == 0 ? (unsigned long)st.st_ino : 0;
		r->shared = cw_watch_socket_held(slot->ino, t->tgid, fd, closing, n);
		cw_inspect_complete(dup, r, parts);
		cw_verdict_close(r);
		drain = drain && cw_drain_wanted(ev);
		if (!cw_cfg.events_all && !closewatch_verdict_is_risky(r->verdict) && !drain)
			goto skip;
	}
	r->fd = fd;
	ev->call = call;
	ev->how = how;
	ev->action = cw_cfg.mode == CW_MODE_WARN && closewatch_verdict_is_risky(r->verdict)
			     ? CW_ACTION_WARNED : CW_ACTION_NONE;
	ev->drain_result = 0;
	ev->discarded = ev->waited_ms = 0;
	clock_gettime(CLOCK_REALTIME, &ev->ts);
	ev->pid = t->tgid;
	ev->tid = t->tid;
	cw_proc_comm(t->tid, ev->comm);
	const char *exe = task_exe(t);
	size_t elen = strnlen(exe, sizeof slot->exe - 1);
	memcpy(slot->exe, exe, elen);
	slot->exe[elen] = 0;
	ev->host = ev->exe = NULL; /* set at emit */
	ev->nframes = 0;
	if (cw_cfg.backtrace && cw_trap_backtrace)
		cw_trap_backtrace(t->tgid, t->tid, ev, cw_cfg.backtrace);
	/* The engine keeps our duplicate: the program's close is then not
	 * the last reference, nothing is sent, and the engine sends the queue
	 * and FIN itself (answer()). */
	if (drain)
		ev->action = cw_drain_prepare_adopt(dup, ev, &slot->ticket);
	nbatch++;
	if (ev->action == CW_ACTION_DRAINED) {
		leave_program_epolls(t, fd, dup, slot->ino);
		return; /* dup is the engine's now */
	}
skip:
	close(dup);
}

static void socket_going(struct task *t, int fd, int call, int how, const int *closing, size_t n)
{
	int dup = getfd(t, fd);
	if (dup >= 0)
		dup_going(t, fd, dup, call, how, closing, n);
}

/* Every fd of t's process in [lo, hi] (only the close-on-exec ones when
 * cloexec) goes away in call. */
static void fds_going(struct task *t, unsigned lo, unsigned hi, int call, int cloexec)
{
	static int *fds;
	static size_t cap;
	long n = cw_proc_fds(t->tgid, lo, hi, &fds, &cap);
	if (n <= 0)
		return;
	if (cloexec) {
		long k = 0;
		for (long i = 0; i < n; i++)
			if (cw_proc_fd_cloexec(t->tgid, fds[i]))
				fds[k++] = fds[i];
		n = k;
	}
	for (long i = 0; i < n; i++)
		socket_going(t, fds[i], call, -1, fds, (size_t)n);
}

/* Decide from the call and its arguments what the kernel will close, as the
 * kernel will: a call that is going to fail closes nothing. */
/* clone3 passes its flags in memory, out of the filter's reach: read them
 * (glibc creates every thread with clone3; a thread shares the fd table and
 * needs no new look at the processes). Unknown: treat as a new process. */
static int clone3_is_thread(const struct seccomp_notif *req)
{
	uint64_t flags = 0;
	struct iovec local = {&flags, sizeof flags};
	struct iovec remote = {(void *)(uintptr_t)req->data.args[0], sizeof flags};
	if (req->data.args[1] < sizeof flags ||
	    process_vm_readv((pid_t)req->pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof flags)
		return 0;
	return (flags & CLONE_THREAD) != 0;
}

static int is_exec(int nr)
{
	return nr == SCMP_SYS(execve) || nr == SCMP_SYS(execveat);
}

static void examine(const struct seccomp_notif *req)
{
	const __u64 *a = req->data.args;
	int nr = req->data.nr;
	if (nr == SCMP_SYS(fork) || nr == SCMP_SYS(vfork) || nr == SCMP_SYS(clone) ||
	    (nr == SCMP_SYS(clone3) && !clone3_is_thread(req))) {
		cw_watch_dirty(); /* one more process may hold our sockets */
		return;
	}
	if (nr == SCMP_SYS(clone3))
		return;
	if (nr == SCMP_SYS(epoll_create) || nr == SCMP_SYS(epoll_create1)) {
		cw_watch_epolls_stale(); /* drain mode reads the epoll fds again */
		return;
	}
	/* close, shutdown, dup2 and dup3 begin with getfd_first(), which finds
	 * a stale entry itself; the others read /proc by the entry's tgid, as
	 * does pending_resolve(): for them the entry is checked first. */
	int one_fd = nr == SCMP_SYS(close) || nr == SCMP_SYS(shutdown) ||
		     nr == SCMP_SYS(dup2) || nr == SCMP_SYS(dup3);
	struct task *t = task_for((pid_t)req->pid, req->id, !one_fd || npending);
	if (nr == SCMP_SYS(dup) || nr == SCMP_SYS(fcntl) || nr == SCMP_SYS(pidfd_getfd) ||
	    nr == SCMP_SYS(socket) || nr == SCMP_SYS(socketpair) || nr == SCMP_SYS(io_uring_setup)) {
		cw_watch_dups(t ? t->tgid : 0); /* its fds are looked at from now on */
		return;
	}
	if (!t)
		return;
	if (npending)
		pending_resolve(t->tgid, t->tid);
	if (nr == SCMP_SYS(close)) {
		int dup = getfd_first(&t, req->id, (int)a[0]);
		if (dup >= 0)
			dup_going(t, (int)a[0], dup, CW_CALL_CLOSE, -1, NULL, 0);
	} else if (nr == SCMP_SYS(shutdown)) {
		int how = (int)a[1];
		int dup = how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR
				  ? getfd_first(&t, req->id, (int)a[0]) : -1;
		if (dup >= 0)
			dup_going(t, (int)a[0], dup, CW_CALL_SHUTDOWN, how, NULL, 0);
	} else if (nr == SCMP_SYS(dup2) || nr == SCMP_SYS(dup3)) {
		int oldfd = (int)a[0], newfd = (int)a[1];
		if (nr == SCMP_SYS(dup3) && ((int)a[2] & ~O_CLOEXEC))
			return; /* EINVAL */
		if (oldfd == newfd)
			return; /* dup2: nothing closed; dup3: EINVAL */
		int old = getfd_first(&t, req->id, oldfd);
		if (old < 0)
			return; /* EBADF: newfd stays open */
		close(old);
		cw_watch_dups(t->tgid); /* oldfd's file gets a second fd */
		socket_going(t, newfd, nr == SCMP_SYS(dup2) ? CW_CALL_DUP2 : CW_CALL_DUP3, -1, &newfd, 1);
	} else if (nr == SCMP_SYS(close_range)) {
		unsigned first = (unsigned)a[0], last = (unsigned)a[1], flags = (unsigned)a[2];
		/* Marking close-on-exec closes nothing; bad flags or range: EINVAL. */
		if ((flags & ~(unsigned)(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) ||
		    (flags & CLOSE_RANGE_CLOEXEC) || first > last)
			return;
		fds_going(t, first, last, CW_CALL_CLOSE_RANGE, 0);
	} else if (nr == SCMP_SYS(exit_group)) {
		fds_going(t, 0, ~0U, CW_CALL_EXIT, 0);
	} else if (is_exec(nr)) {
		cw_trap_check_exec(t->tgid, nr, a);
		at_exec = 1;
		fds_going(t, 0, ~0U, CW_CALL_EXIT, 1);
		at_exec = 0;
		for (size_t i = 0; i < nbatch; i++)
			batch[i].exec_tid = t->tid;
		exe_forget(t->tgid); /* these records keep the old path; later ones read the new */
		cw_watch_epolls_stale();
	}
}

/* Hand b's drain to the engine, which copies the event and writes its records
 * later, from its thread: the exe the event points to must outlive the batch
 * slot. One copy per engine slot (mapped once; only the pages of slots used
 * get backed), rewritten only when that slot is claimed again, after its
 * records were written. */
static void drain_go(struct slot *b)
{
	static char *exes;
	static int mapped;
	if (!mapped) {
		size_t len = (size_t)cw_cfg.drain_max * CW_EXE_MAX;
		void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		exes = m == MAP_FAILED ? NULL : m;
		mapped = 1;
	}
	int s = b->ticket.slot;
	char *exe = exes && s >= 0 && s < cw_cfg.drain_max ? exes + (size_t)s * CW_EXE_MAX : NULL;
	if (exe)
		memcpy(exe, b->exe, CW_EXE_MAX);
	b->ev.host = host_name();
	b->ev.exe = exe; /* NULL: "" */
	cw_drain_go(&b->ticket, &b->ev);
}

/* ---- CLOSEWATCH_DRAIN_SYNC: the call is answered when its drains end ---------- */

/* The engine runs every drain in its thread (drain_sync is cleared for it):
 * a notification whose drains are in this list is answered once they are
 * all over, and other notifications are answered meanwhile. */
static int drain_sync;
struct held {
	uint64_t id;    /* the notification */
	int slot;       /* one of its drains */
	int64_t drain;  /* its ticket's id */
};
static struct held *held;
static size_t nheld, capheld;

/* Answer the notifications whose drains have all ended (the answer may
 * fail: the thread was killed meanwhile, and its call never happens). */
static void held_resolve(void)
{
	for (size_t i = 0; i < nheld; i++)
		if (cw_drain_over(held[i].slot, held[i].drain))
			held[i].slot = -1;
	for (size_t i = 0; i < nheld; i++) {
		if (held[i].slot != -1)
			continue;
		int due = 1;
		for (size_t j = 0; j < nheld && due; j++)
			if (held[j].id == held[i].id && (held[j].slot != -1 || j < i))
				due = 0; /* a drain still going, or answered at j */
		if (due) {
			struct seccomp_notif_resp r;
			memset(&r, 0, sizeof r);
			r.id = held[i].id;
			r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
			(void)seccomp_notify_respond(listener, &r);
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < nheld; i++)
		if (held[i].slot != -1)
			held[k++] = held[i];
	nheld = k;
}

static void answer(struct seccomp_notif *req, struct seccomp_notif_resp *resp)
{
	nbatch = 0;
	examine(req);
	memset(resp, 0, sizeof *resp);
	resp->id = req->id;
	resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	int hold = 0;
	for (size_t i = 0; drain_sync && i < nbatch; i++)
		hold |= batch[i].ev.action == CW_ACTION_DRAINED;
	if (hold) {
		/* Sync: the drains run now, with the program's fd still open
		 * (its close waits), and the call goes ahead when they end. */
		for (size_t i = 0; i < nbatch; i++) {
			struct slot *b = &batch[i];
			if (b->ev.action != CW_ACTION_DRAINED) {
				emit(b);
				continue;
			}
			struct held h = {req->id, b->ticket.slot, b->ticket.id};
			if (nheld == capheld) {
				size_t c = capheld ? capheld * 2 : 16;
				struct held *g = realloc(held, c * sizeof *g);
				if (g) {
					held = g;
					capheld = c;
				}
			}
			if (nheld < capheld)
				held[nheld++] = h;
			drain_go(b);
		}
		return;
	}
	if (seccomp_notify_respond(listener, resp) != 0) {
		/* aborted: the call did not happen (or is trapped again) */
		for (size_t i = 0; i < nbatch; i++)
			if (batch[i].ev.action == CW_ACTION_DRAINED)
				cw_trap_drain_abandon(&batch[i].ticket);
		return;
	}
	for (size_t i = 0; i < nbatch; i++) {
		struct slot *p;
		if (batch[i].ev.action == CW_ACTION_DRAINED)
			drain_go(&batch[i]); /* the engine logs it */
		else if (!is_exec(req->data.nr))
			emit(&batch[i]);
		else if ((p = grow(&pending, npending, &cappending)))
			pending[npending++] = batch[i];
	}
}

/* ---- starting the program ------------------------------------------------------- */

static void child(char **cmd, const sigset_t *mask, const struct cw_trap_filter *f, int tell,
		  int ack, int errp)
{
	int fd = cw_trap_filter_install(f);
	if (write(tell, &fd, sizeof fd) != sizeof fd || fd < 0)
		_exit(2);
	char c;
	if (read(ack, &c, 1) != 1)
		_exit(2);
	sigprocmask(SIG_SETMASK, mask, NULL);
	execvp(cmd[0], cmd);
	int e = errno;
	(void)!write(errp, &e, sizeof e);
	_exit(e == ENOENT ? 127 : 126);
}

static void warn_cfg(const char *line, size_t len, void *arg)
{
	(void)arg;
	(void)!write(2, line, len);
}

static const char *lookup_env(const char *name, void *arg)
{
	(void)arg;
	return getenv(name);
}

/* Does a RECV blocked with nothing to receive return once no process is
 * left under the filter? Linux 6.11 and later. */
static int recv_ends_with_program(void)
{
	struct utsname u;
	int major = 0, minor = 0;
	if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 0;
	return major > 6 || (major == 6 && minor >= 11);
}

static int setup_error(const char *why)
{
	fprintf(stderr, "closewatch: cannot watch through the trap: %s; nothing was run\n", why);
	return -2;
}

static void forward(int sig, const struct signalfd_siginfo *si, pid_t pid)
{
	/* The terminal already sent what it generated to the whole foreground
	 * group, the program included. */
	if (si->ssi_code == SI_KERNEL && getpgid(pid) == getpgrp())
		return;
	kill(pid, sig);
}

/* ---- signals: a thread of their own ------------------------------------------- */

/* It forwards the usual signals to the program and reaps its processes (the
 * program and the orphans that come back to us: a zombie still counts as a
 * user of the filter); the loop learns from procs_changed that the watched
 * processes changed. It ends when the loop writes to its stop pipe (every
 * process under the filter has ended), after a last reap. */
struct sigwatch {
	int sfd, stop, listener;
	pid_t pid;
	pthread_t loop; /* the receiving thread */
	int status, reaped;
};
static atomic_int procs_changed;

/* Sent to the receiving thread only when no process is left under the filter
 * and it still waits 200 ms later: its RECV did not return by itself. The
 * handler does nothing; installed without SA_RESTART, it makes RECV fail
 * with EINTR. */
#define CW_WAKE_SIG (SIGRTMIN + 2)
static void on_wake(int sig)
{
	(void)sig;
}

static void reap(struct sigwatch *w)
{
	int st;
	pid_t r;
	int any = 0;
	while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
		any = 1;
		if (r == w->pid) {
			w->status = st;
			w->reaped = 1;
		}
	}
	/* Only a process that ended changes the set: a SIGCHLD that reaps
	 * nothing (the vfork child of leave_program_epolls, reaped there) would
	 * have /proc read again after every drain. */
	if (any)
		atomic_store(&procs_changed, 1);
}

static void *signals_thread(void *arg)
{
	struct sigwatch *w = arg;
	/* The listener: no events asked, POLLHUP (no process left) comes anyway. */
	struct pollfd p[3] = {{.fd = w->sfd, .events = POLLIN}, {.fd = w->stop, .events = POLLIN},
			      {.fd = w->listener, .events = 0}};
	int ended = 0;
	for (;;) {
		int n = poll(p, 3, ended ? 200 : -1);
		if (n < 0)
			continue; /* EINTR: every signal is blocked here; bounded anyway */
		if (p[1].revents)
			break;
		if (n == 0) { /* ended 200 ms ago, and the loop has not seen it */
			pthread_kill(w->loop, CW_WAKE_SIG);
			continue;
		}
		if (p[2].revents) {
			ended = 1;
			p[2].fd = -1;
		}
		struct signalfd_siginfo si;
		if (!(p[0].revents & POLLIN) || read(w->sfd, &si, sizeof si) != sizeof si)
			continue;
		if (si.ssi_signo != SIGCHLD) {
			if (!w->reaped)
				forward((int)si.ssi_signo, &si, w->pid);
			continue;
		}
		reap(w);
	}
	reap(w);
	return NULL;
}

int cw_trap_run(char **cmd, const sigset_t *child_mask)
{
	char why[256];
	struct cw_trap_filter filter;
	if (!cw_trap_kernel_ok(why, sizeof why) || cw_trap_filter_build(&filter, why, sizeof why) != 0)
		return setup_error(why);
	/* Orphans of the program come back to us: they stay watched and are
	 * reaped, so that the filter's last user can go. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	int tell[2], ack[2], errp[2];
	if (pipe2(tell, O_CLOEXEC) || pipe2(ack, O_CLOEXEC) || pipe2(errp, O_CLOEXEC))
		return setup_error(strerror(errno));
	pid_t pid = fork();
	if (pid == 0)
		child(cmd, child_mask, &filter, tell[1], ack[0], errp[1]);
	free(filter.insns);
	if (pid < 0)
		return setup_error(strerror(errno));
	close(tell[1]);
	close(ack[0]);
	close(errp[1]);
	int fd = -1, e = 0;
	ssize_t n = read(tell[0], &fd, sizeof fd);
	close(tell[0]);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (n == sizeof fd && fd >= 0 && pidfd >= 0)
		listener = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	else
		e = n == sizeof fd && fd < 0 ? -fd : errno;
	if (pidfd >= 0)
		close(pidfd);
	if (listener < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		snprintf(why, sizeof why, "the seccomp filter cannot be installed (%s)",
			 strerror(e ? e : errno));
		return setup_error(why);
	}
	fcntl(listener, F_SETFD, FD_CLOEXEC);
	cw_trap_listener_sync_wakeup(listener);
	int blocking_recv = recv_ends_with_program();
	for (int i = 0; i < NTASKS; i++)
		tasks[i].pidfd = -1;
	/* A pidfd per trapping thread: room for them (only here, never in the
	 * program, which was forked with our limits). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	cw_config_parse(&cw_cfg, lookup_env, NULL, warn_cfg, NULL);
	cw_fd_private_low(); /* our table only: a high fd would lengthen each vfork's copy */
	cw_log_open();
	cw_log_file_per_watched_process(); /* %p: the watched process's pid, as under the shim */
	/* Records we cannot write are counted for run's summary, as the shim's are. */
	cw_runstatus_init(getenv("CLOSEWATCH_RUN_STATUS"));
	/* Drain mode: the shim's engine, in a thread of ours (the program was
	 * forked before: it inherits nothing of it). Sync drains too run in
	 * that thread; the call waits for them in held_resolve(). */
	drain_sync = cw_cfg.drain_sync;
	cw_cfg.drain_sync = 0;
	cw_drain_init(1);
	cw_watch_root(pid);

	sigset_t handled;
	sigemptyset(&handled);
	int fwd[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < 4; i++)
		sigaddset(&handled, fwd[i]);
	sigaddset(&handled, SIGCHLD);
	int sfd = signalfd(-1, &handled, SFD_CLOEXEC);

	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;
	if (seccomp_notify_alloc(&req, &resp) != 0) {
		kill(pid, SIGKILL);
		return setup_error("libseccomp: cannot allocate notification buffers");
	}
	(void)!write(ack[1], "g", 1);
	close(ack[1]);

	/* The thread starts with every signal of `handled` blocked, as here. */
	struct sigwatch sw = {.sfd = sfd, .stop = -1, .listener = listener, .pid = pid,
			      .loop = pthread_self()};
	int stop[2] = {-1, -1};
	pthread_t sigth;
	struct sigaction wake = {.sa_handler = on_wake}; /* no SA_RESTART */
	sigemptyset(&wake.sa_mask);
	sigset_t wakeset;
	sigemptyset(&wakeset);
	sigaddset(&wakeset, CW_WAKE_SIG);
	int sig_thread = sigaction(CW_WAKE_SIG, &wake, NULL) == 0 &&
			 pthread_sigmask(SIG_UNBLOCK, &wakeset, NULL) == 0 && pipe2(stop, O_CLOEXEC) == 0;
	if (sig_thread) {
		sw.stop = stop[0];
		sig_thread = pthread_create(&sigth, NULL, signals_thread, &sw) == 0;
	}
	if (!sig_thread) {
		kill(pid, SIGKILL);
		return setup_error("cannot start the thread that reads signals");
	}
	int hup = 0;
	while (!hup) {
		if (atomic_exchange(&procs_changed, 0))
			cw_watch_dirty();
		if (npending)
			pending_resolve(0, 0);
		if (nheld)
			held_resolve();
		/* While exec records or sync drains wait, look again every few
		 * milliseconds: poll, with a timeout. Else, on a kernel whose
		 * RECV ends when the program has, block in RECV. */
		if (!blocking_recv || nheld || npending) {
			struct pollfd p = {.fd = listener, .events = POLLIN};
			if (poll(&p, 1, nheld ? 1 : npending ? 5 : -1) < 0)
				continue; /* EINTR: every signal is blocked here; bounded anyway */
			if (!(p.revents & POLLIN)) {
				hup = (p.revents & (POLLHUP | POLLERR)) != 0;
				continue;
			}
		}
		memset(req, 0, sizeof *req);
		if (seccomp_notify_receive(listener, req) == 0) {
			answer(req, resp);
			continue;
		}
		/* ENOENT: the program has ended, or the notification's thread
		 * was killed between the wake-up and the receive; EINTR: the
		 * signal thread saw the program end before this RECV did. */
		struct pollfd p = {.fd = listener, .events = 0};
		hup = poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
	}
	/* No process under the filter is left: each one was reaped (a zombie
	 * still holds the filter), so the last reap is done or about to be. */
	(void)!write(stop[1], "s", 1);
	pthread_join(sigth, NULL);
	close(stop[0]);
	close(stop[1]);
	int status = sw.status;
	if (!sw.reaped && waitpid(pid, &status, 0) != pid)
		status = 0;
	pending_resolve(0, 0); /* every process has ended: their sockets are gone */
	cw_trap_drain_wait_all(); /* drains go on after the program, within their timeouts */
	cw_log_report_lost();
	seccomp_notify_free(req, resp);
	close(sfd);
	close(listener);
	listener = -1;
	e = 0;
	n = read(errp[0], &e, sizeof e);
	close(errp[0]);
	if (n == sizeof e) {
		fprintf(stderr, "closewatch: cannot run %s: %s\n", cmd[0], strerror(e));
		return -(e == ENOENT ? 127 : 126);
	}
	return status;
}
