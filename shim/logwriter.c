/* The log writer. See logwriter.h. */
#include "logwriter.h"
#include "put.h"
#include "config.h"
#include "fdtable.h"
#include "real.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

static atomic_int log_fd = -1; /* our private fd for a file or /dev/log; -1: stderr */
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

#define LOG_FILE_FLAGS (O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW)

static void warn_stderr(const char *a, const char *b, const char *c)
{
	char line[CW_PATH_MAX + 256];
	size_t n = cw_put(line, sizeof line - 1, 0, "closewatch: ");
	n = cw_put(line, sizeof line - 1, n, a);
	n = cw_put(line, sizeof line - 1, n, b);
	n = cw_put(line, sizeof line - 1, n, c);
	line[n++] = '\n';
	(void)!write(2, line, n);
}

/* CLOSEWATCH_LOG with %p replaced by our pid. */
static void expand_path(char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = cw_cfg.log_path; *p && n + 1 < cap; p++) {
		if (p[0] == '%' && p[1] == 'p') {
			n = cw_put_uint(out, cap, n, (unsigned long)getpid());
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = 0;
}

static int open_syslog(void)
{
	int s = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, "/dev/log");
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		REAL(close)(s);
		return -1;
	}
	return s;
}

static void open_target(int quiet)
{
	int fd = -1;
	int kind = cw_cfg.log_kind;
	/* A setuid/setgid program must not be made to create or append to a
	 * file an unprivileged user named: records go to syslog instead. */
	if (kind == CW_LOG_FILE && getauxval(AT_SECURE))
		kind = CW_LOG_SYSLOG;
	if (kind == CW_LOG_FILE) {
		char path[CW_PATH_MAX + 32];
		expand_path(path, sizeof path);
		fd = open(path, LOG_FILE_FLAGS, 0600);
		if (fd < 0) {
			if (!quiet)
				warn_stderr("cannot open log file ", path, ": using stderr");
			kind = CW_LOG_STDERR;
		}
	} else if (kind == CW_LOG_SYSLOG) {
		fd = open_syslog();
		if (fd < 0) {
			if (!quiet)
				warn_stderr("cannot connect to /dev/log", "", ": using stderr");
			kind = CW_LOG_STDERR;
		}
	}
	if (fd >= 0)
		fd = cw_fd_hide(fd);
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
		if (atomic_exchange(&open_at_first_record, 0))
			warn_stderr("cannot open log file ", path, ": using stderr");
		return atomic_load(&log_fd);
	}
	fd = cw_fd_hide(fd);
	int expected = -1;
	if (!atomic_compare_exchange_strong(&log_fd, &expected, fd)) {
		cw_fd_clear(fd);
		REAL(close)(fd);
		return expected;
	}
	atomic_store(&open_at_first_record, 0);
	return fd;
}

void cw_log_after_fork_child(void)
{
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

static void emit_to(int fd, const char *buf, size_t len)
{
	ssize_t w;
	do
		w = write(fd, buf, len);
	while (w < 0 && errno == EINTR);
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
	int fd = current_fd();
	if (fd < 0 && atomic_load(&fallback) != CW_LOG_STDERR)
		return; /* the file could not be opened again: drop, never into stderr */
	emit_to(fd >= 0 ? fd : 2, buf, n);
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
		emit_to(current_fd(), buf, n);
		return;
	}
	/* Human lines stay out of a JSON log file: they go to stderr. */
	emit_to(2, line, len);
}
