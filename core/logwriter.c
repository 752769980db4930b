/* The log writer. See logwriter.h. */
#include "logwriter.h"
#include "put.h"
#include "config.h"
#include "fdtable.h"
#include "real.h"
#include "runstatus.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

/* ---- writing without ever stopping or killing the program -------------------------------
 *
 * A record write must never block the program indefinitely nor raise a signal in it:
 *  - our own descriptions (a log path, /dev/log) are opened O_NONBLOCK: a FIFO without a
 *    reader fails at once with ENXIO instead of blocking in open(), a full FIFO or
 *    socket answers EAGAIN;
 *  - stderr's description is the program's: its flags are never changed. A pipe there is
 *    written with pwritev2(RWF_NOWAIT), non-blocking for this one call. (A private
 *    description of the pipe, opened through /proc/self/fd/2, would keep its write end
 *    open after the program closes or redirects fd 2 - freopen() does so inside glibc,
 *    unseen - and a reader waiting for EOF, `x=$(daemon)`, would wait forever.)
 *    A kernel without RWF_NOWAIT on pipes (EOPNOTSUPP) gets poll() then a plain write();
 *  - EAGAIN: wait up to CW_LOG_WAIT_MS for room, once; still full, the record is dropped
 *    and counted, and later records do not wait until one goes through again (a reader
 *    that never reads costs the program one wait, not one per record);
 *  - a pipe or FIFO whose reader is gone raises SIGPIPE with EPIPE: the write runs with
 *    SIGPIPE blocked in this thread and the signal it raised is taken back with
 *    sigtimedwait(), unless one was already pending (the program's own). Only on pipe
 *    targets: a file keeps its one write(). Sockets use send(MSG_NOSIGNAL).
 * Every call used is async-signal-safe (records are written from signal handlers too). */

#define CW_LOG_WAIT_MS 100

enum wkind { W_PLAIN, W_PIPE, W_PIPE_SHARED, W_SOCK };

/* The last record to that target was dropped on a full pipe/socket. */
static atomic_int log_stalled, stderr_stalled;
static atomic_int nowait_unsupported; /* the kernel refused RWF_NOWAIT on a pipe */

static ssize_t one_write(int fd, int kind, const char *buf, size_t len)
{
	if (kind == W_SOCK)
		return send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (kind == W_PIPE_SHARED && !atomic_load_explicit(&nowait_unsupported, memory_order_relaxed)) {
		struct iovec v = {(void *)buf, len};
		ssize_t w = pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
		if (w >= 0 || errno != EOPNOTSUPP)
			return w;
		atomic_store(&nowait_unsupported, 1);
	}
	if (kind == W_PIPE_SHARED) {
		/* Old kernel: wait for room (bounded), then an ordinary write that can
		 * still block if another writer fills the pipe in between. */
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (poll(&p, 1, CW_LOG_WAIT_MS) == 0) {
			errno = EAGAIN;
			return -1;
		}
	}
	return write(fd, buf, len);
}

/* One write to a pipe or FIFO that raises no SIGPIPE in the program. */
static ssize_t pipe_write(int fd, int kind, const char *buf, size_t len)
{
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	int was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
	ssize_t w = one_write(fd, kind, buf, len);
	int e = errno;
	if (w < 0 && e == EPIPE && !was_pending) {
		const struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	if (!sigismember(&old, SIGPIPE))
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return w;
}

/* The whole buffer onto fd. Returns 0, or the errno that lost (part of) it. */
static int put_all(int fd, int kind, const char *buf, size_t len, atomic_int *stalled)
{
	int waited = atomic_load_explicit(stalled, memory_order_relaxed);
	/* Bounded: a short write (a stream socket, a disk filling up) is followed
	 * by a few more for the rest, never a loop without end. */
	for (int tries = 0; tries < 16; tries++) {
		ssize_t w = kind == W_PIPE || kind == W_PIPE_SHARED ? pipe_write(fd, kind, buf, len)
								  : one_write(fd, kind, buf, len);
		if (w >= 0) {
			if ((size_t)w >= len) {
				if (waited)
					atomic_store_explicit(stalled, 0, memory_order_relaxed);
				return 0;
			}
			buf += w;
			len -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return errno;
		if (waited) {
			atomic_store_explicit(stalled, 1, memory_order_relaxed);
			return EAGAIN;
		}
		waited = 1;
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		(void)poll(&p, 1, CW_LOG_WAIT_MS);
	}
	return EIO;
}

/* The program's stderr (fd 2, or the drain thread's copy of it), looked at
 * for each write (it may have been redirected since). */
static int put_stderr_fd(int fd, const char *buf, size_t len)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return errno;
	int kind = S_ISFIFO(st.st_mode) ? W_PIPE_SHARED : S_ISSOCK(st.st_mode) ? W_SOCK : W_PLAIN;
	return put_all(fd, kind, buf, len, &stderr_stalled);
}

/* The drain thread (cw_log_own_*): a table of its own. */
enum { OWN_OFF, OWN_FD = CW_LOG_OWN_FD, OWN_LAZY = CW_LOG_OWN_LAZY, OWN_STDERR = CW_LOG_OWN_STDERR };
static __thread int own_mode __attribute__((tls_model("initial-exec")));
static __thread int own_fd __attribute__((tls_model("initial-exec")));
static __thread int own_kind __attribute__((tls_model("initial-exec")));
static __thread int own_err __attribute__((tls_model("initial-exec")));

static int put_stderr(const char *buf, size_t len)
{
	/* The drain thread's fd 2 is not the program's (it may be a drained
	 * socket there): its copy of the program's stderr, if it has one. */
	if (own_mode != OWN_OFF)
		return own_err < 0 ? EBADF : CW_OWN_FD(put_stderr_fd(own_err, buf, len));
	return put_stderr_fd(2, buf, len);
}

void cw_log_stderr(const char *line, size_t len)
{
	(void)put_stderr(line, len);
}

/* ---- records that could not be written --------------------------------------------------
 * Counted; the first loss in a process gives one warning on stderr naming the target and
 * the error; at exit, exec and _exit the count goes to `closewatch run` (runstatus.c). */

static atomic_ulong lost_n, lost_reported;
static atomic_int lost_err, lost_warned;
static char target_name[CW_PATH_MAX + 32]; /* where records go: a path, stderr or syslog */

static const char *err_text(int e)
{
	const char *s = strerrordesc_np(e); /* untranslated, no allocation */
	return s ? s : "unknown error";
}

static void warn_stderr(const char *a, const char *b, const char *c);

static void record_lost(int err);

void cw_log_count_lost(unsigned long n, int err)
{
	if (n == 0)
		return;
	atomic_fetch_add(&lost_n, n - 1);
	record_lost(err);
}

static void record_lost(int err)
{
	atomic_fetch_add(&lost_n, 1);
	int none = 0;
	atomic_compare_exchange_strong(&lost_err, &none, err);
	if (atomic_exchange(&lost_warned, 1))
		return;
	char what[CW_PATH_MAX + 96];
	size_t n = cw_put(what, sizeof what, 0, target_name);
	n = cw_put(what, sizeof what, n, ": ");
	cw_put(what, sizeof what, n, err_text(err));
	warn_stderr("cannot write records to ", what,
		    ": records are lost (counted; this warning is not repeated)");
}

void cw_log_report_lost(void)
{
	unsigned long n = atomic_load(&lost_n);
	unsigned long before = atomic_exchange(&lost_reported, n);
	if (n <= before)
		return;
	char line[CW_PATH_MAX + 256];
	size_t k = cw_put(line, sizeof line, 0, "lost pid=");
	k = cw_put_uint(line, sizeof line, k, (unsigned long)getpid());
	k = cw_put(line, sizeof line, k, " records=");
	k = cw_put_uint(line, sizeof line, k, n - before);
	k = cw_runstatus_field(line, sizeof line, k, "target", target_name);
	k = cw_runstatus_field(line, sizeof line, k, "error", err_text(atomic_load(&lost_err)));
	cw_runstatus_put(line, k);
}

static atomic_int log_fd = -1; /* our private fd for a file or /dev/log; -1: stderr */
static atomic_int log_kind = W_PLAIN; /* how log_fd is written (enum wkind) */
static atomic_int reopen_err; /* why the last reopen failed */
static atomic_int log_is_syslog; /* written by a reopen in any thread */
static atomic_int reopen_pending; /* the log fd was given up: reopen by path */
/* Where records go when log_fd is -1: stderr (configured, or the first open
 * failed and the warning said "using stderr"), or nowhere (-1: a reopen
 * failed; never spill a file's records into the program's stderr). */
static atomic_int fallback = CW_LOG_STDERR;
/* A %p path names one file per process: it is opened by the process's first
 * record, so that processes that log nothing (a shell, a wrapper that execs)
 * leave no empty file behind. 1 while not yet opened. */
static atomic_int open_at_first_record;
/* The process this memory belongs to. A vfork() child shares the memory but
 * not the fd table: an fd it opened must never be published in log_fd. */
static atomic_int owner_pid;

/* O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of blocking the
 * program before main; a full FIFO answers EAGAIN. */
#define LOG_FILE_FLAGS (O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)

static void warn_stderr(const char *a, const char *b, const char *c)
{
	char line[CW_PATH_MAX + 256];
	size_t n = cw_put(line, sizeof line - 1, 0, "closewatch: ");
	n = cw_put(line, sizeof line - 1, n, a);
	n = cw_put(line, sizeof line - 1, n, b);
	n = cw_put(line, sizeof line - 1, n, c);
	line[n++] = '\n';
	(void)put_stderr(line, n);
}

/* CLOSEWATCH_LOG with %p replaced by pid. */
static void expand_path_for(char *out, size_t cap, pid_t pid)
{
	size_t n = 0;
	for (const char *p = cw_cfg.log_path; *p && n + 1 < cap; p++) {
		if (p[0] == '%' && p[1] == 'p') {
			n = cw_put_uint(out, cap, n, (unsigned long)pid);
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = 0;
}

static void expand_path(char *out, size_t cap)
{
	expand_path_for(out, cap, getpid());
}

static int open_syslog(void)
{
	int s = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, "/dev/log");
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = errno;
		REAL(close)(s);
		errno = e;
		return -1;
	}
	return s;
}

static void warn_cannot_open(const char *path, int e)
{
	char why[CW_PATH_MAX + 96];
	size_t n = cw_put(why, sizeof why, 0, path);
	n = cw_put(why, sizeof why, n, " (");
	n = cw_put(why, sizeof why, n, err_text(e));
	cw_put(why, sizeof why, n, ")");
	warn_stderr("cannot open log file ", why, ": using stderr");
}

/* How records are written to fd: a FIFO or a socket must never block the
 * program nor raise SIGPIPE in it; a file takes one plain write(). */
static int write_kind_of(int fd, int kind)
{
	struct stat st;
	if (fd >= 0 && kind == CW_LOG_SYSLOG)
		return W_SOCK;
	if (fd >= 0 && fstat(fd, &st) == 0)
		return S_ISFIFO(st.st_mode) ? W_PIPE : S_ISSOCK(st.st_mode) ? W_SOCK : W_PLAIN;
	return W_PLAIN;
}

/* Open the configured target: *kind becomes what it really is (a file, or
 * syslog for a setuid/setgid program; stderr: nothing to open, -1), path the
 * file's name. The fd, or -1 with errno. */
static int open_configured(int *kind, char *path, size_t cap)
{
	*kind = cw_cfg.log_kind;
	/* A setuid/setgid program must not be made to create or append to a
	 * file an unprivileged user named: records go to syslog instead. */
	if (*kind == CW_LOG_FILE && getauxval(AT_SECURE))
		*kind = CW_LOG_SYSLOG;
	if (*kind == CW_LOG_SYSLOG)
		return open_syslog();
	if (*kind != CW_LOG_FILE) {
		errno = EINVAL; /* stderr: nothing to open */
		return -1;
	}
	expand_path(path, cap);
	/* The system call itself, never a sanitizer's open: the drain thread
	 * opens the log in its own fd table, and ThreadSanitizer, which keeps
	 * one table per process, would record the number's creation (which no
	 * ignore annotation hides) and report the program's own fd of that
	 * number as a race. */
	return (int)REAL(syscall)(SYS_openat, AT_FDCWD, path, LOG_FILE_FLAGS, 0600);
}

static void open_target(int quiet)
{
	int kind;
	char path[CW_PATH_MAX + 32];
	int fd = open_configured(&kind, path, sizeof path);
	if (kind == CW_LOG_FILE) {
		if (fd < 0) {
			int e = errno;
			atomic_store(&reopen_err, e);
			if (!quiet)
				warn_cannot_open(path, e);
			kind = CW_LOG_STDERR;
		} else if (!quiet) {
			cw_put(target_name, sizeof target_name, 0, path);
		}
	} else if (kind == CW_LOG_SYSLOG) {
		if (fd < 0) {
			atomic_store(&reopen_err, errno);
			if (!quiet)
				warn_stderr("cannot connect to /dev/log", "", ": using stderr");
			kind = CW_LOG_STDERR;
		}
	}
	atomic_store(&log_kind, write_kind_of(fd, kind));
	if (fd >= 0)
		fd = cw_fd_hide(fd);
	/* The name losses are reported under. Not rewritten by a quiet reopen
	 * (any thread, while others may read it): the target is the same. */
	if (fd < 0 && !quiet)
		cw_put(target_name, sizeof target_name, 0, "stderr");
	else if (kind == CW_LOG_SYSLOG && fd >= 0 && !quiet)
		cw_put(target_name, sizeof target_name, 0, "syslog");
	log_is_syslog = kind == CW_LOG_SYSLOG && fd >= 0;
	atomic_store(&fallback, fd < 0 && quiet ? -1 : CW_LOG_STDERR);
	atomic_store(&log_fd, fd);
}

static int per_process_file(void)
{
	return cw_cfg.log_kind == CW_LOG_FILE && strstr(cw_cfg.log_path, "%p") && !getauxval(AT_SECURE);
}

void cw_log_open(void)
{
	atomic_store(&owner_pid, (int)getpid());
	if (per_process_file()) {
		atomic_store(&open_at_first_record, 1);
		return;
	}
	open_target(0);
}

/* The first record of a process with a %p file. Threads that race here each
 * open the file; the first to install its fd wins, the others close theirs:
 * nobody waits (a signal handler may log in the middle of an open), and no
 * record spills into stderr meanwhile. */
static int open_now(void)
{
	char path[CW_PATH_MAX + 32];
	expand_path(path, sizeof path);
	int fd = open(path, LOG_FILE_FLAGS, 0600);
	if (fd < 0) {
		int e = errno;
		atomic_store(&reopen_err, e);
		if (atomic_exchange(&open_at_first_record, 0))
			warn_cannot_open(path, e);
		return atomic_load(&log_fd);
	}
	/* Every racer sets the same kind for the same file, before any publishes its fd. */
	atomic_store(&log_kind, write_kind_of(fd, CW_LOG_FILE));
	fd = cw_fd_hide(fd);
	int expected = -1;
	if (!atomic_compare_exchange_strong(&log_fd, &expected, fd)) {
		cw_fd_clear(fd);
		REAL(close)(fd);
		return expected;
	}
	cw_put(target_name, sizeof target_name, 0, path); /* the winner names it */
	atomic_store(&open_at_first_record, 0);
	return fd;
}

void cw_log_after_fork_child(void)
{
	atomic_store(&owner_pid, (int)getpid());
	/* Losses so far are the parent's to report; the warning is not repeated. */
	atomic_store(&lost_n, 0);
	atomic_store(&lost_reported, 0);
	if (cw_cfg.log_kind != CW_LOG_FILE || !strstr(cw_cfg.log_path, "%p"))
		return;
	int old = atomic_exchange(&log_fd, -1);
	if (old >= 0) {
		cw_fd_clear(old);
		REAL(close)(old);
	}
	cw_log_open();
}

void cw_log_relocate_if(int fd)
{
	int cur = atomic_load(&log_fd);
	if (fd < 0 || fd != cur)
		return;
	int moved = REAL(fcntl)(cur, F_DUPFD_CLOEXEC, cur + 1);
	if (moved < 0)
		moved = REAL(fcntl)(cur, F_DUPFD_CLOEXEC, 3);
	/* The program's dup2 now replaces the old number; it is no longer ours. */
	cw_fd_clear(cur);
	if (moved < 0) {
		/* No free number left (a program that fills its whole table):
		 * give the fd up and open the log again at the next record. */
		atomic_store(&log_fd, -1);
		atomic_store(&reopen_pending, 1);
		return;
	}
	cw_fd_set(moved, CW_FD_PRIVATE);
	atomic_store(&log_fd, moved);
}

/* A %p file not opened yet, and this is a child sharing our memory (vfork):
 * its record goes to its own file (%p is its pid) through an fd of its own,
 * opened and closed here; nothing of it is left in the shared memory. */
static int write_from_memory_sharing_child(const char *buf, size_t len)
{
	if (!atomic_load(&open_at_first_record) || atomic_load(&log_fd) >= 0 ||
	    (int)getpid() == atomic_load(&owner_pid))
		return -1;
	char path[CW_PATH_MAX + 32];
	expand_path(path, sizeof path);
	int fd = open(path, LOG_FILE_FLAGS, 0600);
	if (fd < 0)
		return 0; /* no file, no record: the child's own stderr is not ours to use */
	atomic_int stalled = 0;
	(void)put_all(fd, write_kind_of(fd, CW_LOG_FILE), buf, len, &stalled);
	REAL(close)(fd);
	return 0;
}

/* After a failed relocation: one thread reopens the target, quietly (the
 * warning, if any, was given at start-up). */
static int current_fd(void)
{
	if (atomic_load(&open_at_first_record) && atomic_load(&log_fd) < 0)
		return open_now();
	int expected = 1;
	if (atomic_load(&reopen_pending) &&
	    atomic_compare_exchange_strong(&reopen_pending, &expected, 0))
		open_target(1);
	return atomic_load(&log_fd);
}

/* ---- a writer with a table of its own (the shim's drain thread) ---------------------------
 * Its fds are not the program's: it keeps its copy of the file or syslog socket as it was
 * when it started (a later relocation or reopen of log_fd is the program's table's), opens
 * a %p file itself if the program has not yet, and writes stderr records to the copy of
 * fd 2 that the latest drain brought. */

int cw_log_own_target(int *fd)
{
	*fd = atomic_load(&log_fd);
	if (*fd >= 0)
		return CW_LOG_OWN_FD;
	if (atomic_load(&open_at_first_record) || atomic_load(&reopen_pending))
		return CW_LOG_OWN_LAZY;
	return atomic_load(&fallback) == CW_LOG_STDERR ? CW_LOG_OWN_STDERR : CW_LOG_OWN_NOWHERE;
}

void cw_log_own_begin(int mode)
{
	own_mode = mode;
	own_fd = own_err = -1;
	own_kind = atomic_load(&log_kind);
}

void cw_log_own_fd(int fd)
{
	if (own_fd >= 0)
		CW_OWN_FD(REAL(close)(own_fd));
	own_fd = fd;
}

void cw_log_own_stderr(int fd)
{
	own_err = fd;
}

void cw_log_own_end(void)
{
	if (own_fd >= 0)
		CW_OWN_FD(REAL(close)(own_fd));
	own_fd = -1;
	own_mode = OWN_OFF;
}

/* A record from that thread: 0 or an errno. */
static int put_own(const char *buf, size_t len)
{
	if (own_mode == OWN_LAZY) {
		int kind;
		char path[CW_PATH_MAX + 32];
		/* The thread's own table (CW_OWN_FD, real.h): */
		int fd = CW_OWN_FD(open_configured(&kind, path, sizeof path));
		if (fd < 0)
			return errno; /* tried again at the next record */
		own_kind = CW_OWN_FD(write_kind_of(fd, kind));
		own_fd = fd;
		own_mode = OWN_FD;
	}
	if (own_mode == OWN_FD)
		return own_fd < 0 ? EBADF : CW_OWN_FD(put_all(own_fd, own_kind, buf, len, &log_stalled));
	if (own_mode == OWN_STDERR)
		return own_err < 0 ? EBADF : CW_OWN_FD(put_stderr_fd(own_err, buf, len));
	return atomic_load(&reopen_err);
}

/* ---- one file per watched process, for the trap's supervisor -----------------------------
 * The supervisor writes the records of every process it watches. A %p path then names the
 * file of the process each record is about (its pid), the file the shim would have written
 * in that process, so both ways in leave the same files. The most recently used few stay
 * open; a lock keeps the supervisor's threads (notifications, drains) apart: the supervisor
 * is not the program, and nothing of the program waits on it. */
#define PID_FILES 16

static struct pid_file {
	int pid; /* 0: free */
	int fd;
	unsigned long used; /* for eviction: the least recently used goes */
} pid_files[PID_FILES];
static pthread_mutex_t pid_files_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long pid_files_clock;
static int by_event_pid; /* set once, before any record */

int cw_log_file_per_watched_process(void)
{
	by_event_pid = per_process_file();
	if (by_event_pid) {
		atomic_store(&open_at_first_record, 0);
		cw_put(target_name, sizeof target_name, 0, cw_cfg.log_path);
	}
	return by_event_pid;
}

/* The open file of process pid (called with the lock held), or -1 with errno. */
static int pid_file_fd(pid_t pid)
{
	struct pid_file *f = NULL, *victim = &pid_files[0];
	for (int i = 0; i < PID_FILES && !f; i++) {
		if (pid_files[i].pid == pid)
			f = &pid_files[i];
		else if (pid_files[i].used < victim->used)
			victim = &pid_files[i];
	}
	if (!f) {
		char path[CW_PATH_MAX + 32];
		expand_path_for(path, sizeof path, pid);
		int fd = open(path, LOG_FILE_FLAGS, 0600);
		if (fd < 0)
			return -1;
		if (victim->pid)
			close(victim->fd);
		f = victim;
		f->pid = pid;
		f->fd = fd;
	}
	f->used = ++pid_files_clock;
	return f->fd;
}

/* A record to the file of the process it is about. Returns 0 or an errno. */
static int put_pid_file(pid_t pid, const char *buf, size_t len)
{
	static atomic_int stalled, open_warned;
	pthread_mutex_lock(&pid_files_lock);
	int fd = pid_file_fd(pid);
	int e = fd < 0 ? errno : put_all(fd, write_kind_of(fd, CW_LOG_FILE), buf, len, &stalled);
	pthread_mutex_unlock(&pid_files_lock);
	if (fd >= 0)
		return e;
	/* As in the shim: a file that cannot be opened sends records to stderr, said once. */
	if (!atomic_exchange(&open_warned, 1)) {
		char path[CW_PATH_MAX + 32];
		expand_path_for(path, sizeof path, pid);
		warn_cannot_open(path, e);
	}
	return put_stderr(buf, len);
}

/* comm as a syslog tag: it is the name the program was executed under (any
 * symlink's name, for a setuid program too), so nothing that could end the
 * line or fake another field goes through. */
static size_t put_tag(char *out, size_t cap, size_t n, const char *s)
{
	for (; *s && n + 1 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		out[n++] = c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == ':' ? '_' : (char)c;
	}
	out[n] = 0;
	return n;
}

/* syslog framing: "<PRI>comm[pid]: " with facility user, priority by kind. */
static size_t syslog_prefix(char *buf, size_t cap, const struct cw_event *ev, int warning)
{
	size_t n = cw_put(buf, cap, 0, "<");
	n = cw_put_uint(buf, cap, n, LOG_USER | (warning ? LOG_WARNING : LOG_INFO));
	n = cw_put(buf, cap, n, ">");
	n = put_tag(buf, cap, n, ev && ev->comm[0] ? ev->comm : "closewatch");
	n = cw_put(buf, cap, n, "[");
	n = cw_put_uint(buf, cap, n, (unsigned long)(ev ? ev->pid : getpid()));
	return cw_put(buf, cap, n, "]: ");
}

/* A record or a line to our fd (fd >= 0) or to stderr. Returns 0 or an errno. */
static int emit_to(int fd, const char *buf, size_t len)
{
	if (fd < 0)
		return put_stderr(buf, len);
	return put_all(fd, atomic_load_explicit(&log_kind, memory_order_relaxed), buf, len,
		       &log_stalled);
}

void cw_log_event(const struct cw_event *ev)
{
	char buf[CW_LINE_MAX + 128];
	size_t n = 0;
	if (log_is_syslog)
		n = syslog_prefix(buf, 96, ev, closewatch_verdict_is_risky(ev->rec.verdict));
	n += cw_record_format(buf + n, CW_LINE_MAX + 1, ev, cw_cfg.json);
	if (log_is_syslog && n && buf[n - 1] == '\n')
		n--; /* syslog messages carry no newline */
	if (by_event_pid) {
		int e = put_pid_file(ev->pid, buf, n);
		if (e)
			record_lost(e);
		return;
	}
	if (own_mode != OWN_OFF) {
		int e = CW_OWN_FD(put_own(buf, n));
		if (e)
			record_lost(e);
		return;
	}
	if (write_from_memory_sharing_child(buf, n) == 0)
		return;
	int fd = current_fd();
	if (fd < 0 && atomic_load(&fallback) != CW_LOG_STDERR) {
		/* the file could not be opened again: drop, never into stderr */
		record_lost(atomic_load(&reopen_err));
		return;
	}
	int e = emit_to(fd, buf, n);
	if (e)
		record_lost(e);
}

void cw_log_line(const char *line, size_t len)
{
	if (log_is_syslog) {
		char buf[CW_LINE_MAX + 128];
		size_t n = syslog_prefix(buf, 96, NULL, 1);
		if (len > CW_LINE_MAX)
			len = CW_LINE_MAX;
		memcpy(buf + n, line, len);
		n += len;
		if (n && buf[n - 1] == '\n')
			n--;
		int fd = current_fd();
		if (fd >= 0)
			(void)emit_to(fd, buf, n);
		return;
	}
	/* Human lines stay out of a JSON log file: they go to stderr. */
	(void)put_stderr(line, len);
}
