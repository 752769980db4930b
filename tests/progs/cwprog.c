/* cwprog — a small, ordinary socket program driven by a scenario on argv.
 *
 * It knows nothing of closewatch: the tests run it with or without
 * LD_PRELOAD=libclosewatch.so and compare what the shim logged with what the
 * kernel did. Actions are executed left to right; each action takes a fixed
 * number of arguments (optional ones are recognised by their form).
 *
 * State: the "current" fd (cur) — the one most actions work on — and the
 * listener (lfd). Every action that creates an fd makes it current and prints
 * "fd N" (flushed) so that a test knows which fd number a record must carry.
 * Any FD argument may be a number or a NAME given with `as`.
 *
 * Sockets
 *   listen HOST PORT [BACKLOG]   TCP listener (HOST 127.0.0.1, ::1, ::ffff:127.0.0.1;
 *                                PORT 0 = any). cur = lfd = it. Prints "fd N", "port P".
 *   accept                       accept on lfd. Prints "fd N" (and "pport P" for TCP).
 *   connect HOST PORT            TCP client. Prints "fd N", "lport P" (local port).
 *   socket KIND                  unconnected socket, KIND tcp4|tcp6|unix|seqpacket|udp.
 *   socketpair [stream|seqpacket] AF_UNIX pair: cur = first, name "pair" = second.
 *                                Prints "fd A B".
 *   unix-listen PATH [stream|seqpacket] [BACKLOG]   PATH "@name" = abstract. cur = lfd.
 *   unix-connect PATH [stream|seqpacket]
 *   open PATH                    open a file O_RDWR|O_CREAT (e.g. /dev/null). Prints "fd N".
 *   recvfd                       receive one fd over the AF_UNIX socket cur (SCM_RIGHTS);
 *                                it becomes cur. Prints "fd N".
 *   dupfd MIN                    fcntl(cur, F_DUPFD, MIN); the copy becomes cur. Prints "fd N".
 *   as NAME                      give the current fd a name.  use FD  make FD current.
 * Data
 *   read N          read exactly N bytes.       readeof   read to EOF, prints "eof BYTES"
 *                                                         or "readerr BYTES ERRNO".
 *   write N         write N bytes (blocking).   write-nb N  nonblocking writes until N
 *                                               bytes or EAGAIN; prints "wrote K".
 *   waitinq N       poll FIONREAD until >= N (10 s bound).
 *   waitoutq0       poll SIOCOUTQ until 0 (everything sent and acknowledged).
 *   waitbacklog N   poll TCP_INFO tcpi_unacked of lfd (accept queue) until >= N.
 *   waitrdhup       poll until the peer closed its side (POLLRDHUP/POLLHUP).
 *   queues          print "queues inq=A outq=B nsd=C" (SIOCINQ/SIOCOUTQ/SIOCOUTQNSD).
 *   sndbuf N | rcvbuf N | nodelay     setsockopt on cur.
 *   linger ON SECS  SO_LINGER {ON, SECS} on cur.
 * Closing
 *   close           close(cur).                 close-listener  close(lfd).
 *                   (Both print "close-err FD ERRNO" only if close fails.)
 *   shutdown rd|wr|rdwr                         prints "shutdown R [ERRNO]".
 *   dup             dup(cur), keep it; prints "dupfd N", names it "dup" (cur unchanged).
 *   dup2 FD | dup3 FD   dup2/dup3(cur, FD); prints "dup2 R" / "dup3 R".
 *   dup2range LO HI dup2 /dev/null onto every fd LO..HI (HI "max" = RLIMIT_NOFILE-1).
 *   closeloop LO HI close every fd LO..HI ignoring errors (HI may be "max");
 *                   prints "closed K" (how many returned 0).
 *   close-range LO HI   close_range(LO, HI, 0), HI may be "max" (~0U); prints "close_range R".
 *   closefrom LO    closefrom(LO).
 *   fclose          fdopen(cur, "r+") then fclose; prints "fclose R".
 *   close-minus1    close(-1); prints "ebadf ok" if -1/EBADF, else "ebadf FAIL R ERRNO".
 *   double-close    close(cur) twice; prints "double-close R1 E1 R2 E2" then "ebadf ok"
 *                   if the first returned 0 and the second -1/EBADF.
 *   fileloop PATH N open+close a regular file N times.
 * Processes, threads, sync
 *   fork-hold MS    fork a child that keeps every fd and sleeps MS ms; prints "child PID".
 *   reap            wait for the child of fork-hold.
 *   rename HOW NAME name this thread NAME; HOW prctl (PR_SET_NAME), pthread
 *                   (pthread_setname_np), syscall (syscall(SYS_prctl, ...)), or
 *                   proc (write /proc/self/task/TID/comm). Prints "renamed".
 *   rawfork-close   like fork-close, with syscall(SYS_fork) (no atfork handlers run).
 *   fork-close      fork a child that closes cur and _exits; wait for it; prints
 *                   "child PID R" (R = the child's close() result).
 *   sigstorm N      SIGALRM every 100 us whose handler does socket()+close() (once per
 *                   round of the main loop at most), while the main thread does N
 *                   socket()+close(); prints "sigstorm N K" (K = closes made by the handler).
 *   threads T N KIND  T threads, each doing N socket closes: KIND sock (socket+close),
 *                   pair (socketpair, 1 byte written, both closed; N even), tcp (a
 *                   listener per thread, N/2 connect+accept pairs both closed, then the
 *                   listener: N+1 closes). Prints "threads done".
 *   sleep MS | say TEXT | pid (prints "pid N") | wait (read one line from stdin)
 *   exit CODE       exit(CODE) without closing anything (atexit handlers run).
 *   _exit CODE      _exit(CODE).
 *   cloexec         set FD_CLOEXEC on cur.
 *   exec PROG ARGS… execv(PROG, PROG ARGS…): the rest of argv is the new program's.
 * A failing action prints "error ACTION: reason" on stderr and exits 99 without
 * closing anything. At the end of the scenario, the program returns 0.
 *
 * A program may #define CWPROG_EXTRA to a function name and #include this file to
 * add actions (tests/progs/cwinspect.c does, for closewatch_inspect()). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SIOCOUTQNSD
#define SIOCOUTQNSD 0x894B
#endif

static int cur = -1, lfd = -1;
static pid_t child = -1;
static const char *action = "";

#define MAXNAMES 32
static struct { char name[32]; int fd; } names[MAXNAMES];

static void die(const char *why)
{
	fprintf(stderr, "error %s: %s\n", action, why);
	fflush(stderr);
	_exit(99);
}

static void die_errno(const char *what)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s: %s", what, strerror(errno));
	die(buf);
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static const char *ename(int e)
{
	const char *n = e ? strerrorname_np(e) : "0";
	return n ? n : "?";
}

static void setname(const char *name, int fd)
{
	for (int i = 0; i < MAXNAMES; i++)
		if (names[i].name[0] == 0 || strcmp(names[i].name, name) == 0) {
			snprintf(names[i].name, sizeof names[i].name, "%s", name);
			names[i].fd = fd;
			return;
		}
	die("too many names");
}

static int fdarg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s && *end == 0)
		return (int)v;
	for (int i = 0; i < MAXNAMES; i++)
		if (strcmp(names[i].name, s) == 0)
			return names[i].fd;
	die("unknown fd name");
	return -1;
}

static long numarg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end)
		die("bad number");
	return v;
}

static long maxfd_arg(const char *s)
{
	if (strcmp(s, "max") == 0) {
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl))
			die_errno("getrlimit");
		return (long)rl.rlim_cur - 1;
	}
	return numarg(s);
}

static int isnum(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* An inet address: AF_INET for dotted quads, AF_INET6 otherwise. */
static socklen_t inaddr(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			die("bad IPv6 address");
		return sizeof *a;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
		die("bad IPv4 address");
	return sizeof *a;
}

static int portof(int fd, int peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&ss, &len))
		die_errno(peer ? "getpeername" : "getsockname");
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

static socklen_t unaddr(const char *path, struct sockaddr_un *a)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	size_t n = strlen(path);
	if (n >= sizeof a->sun_path)
		die("unix path too long");
	memcpy(a->sun_path, path, n);
	if (path[0] == '@') {
		a->sun_path[0] = 0; /* abstract: no trailing NUL counted */
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int unixtype(const char *s)
{
	if (s && strcmp(s, "seqpacket") == 0)
		return SOCK_SEQPACKET;
	return SOCK_STREAM;
}

static int inq(int fd)
{
	int n = -1;
	if (ioctl(fd, SIOCINQ, &n))
		die_errno("SIOCINQ");
	return n;
}

static int outq(int fd)
{
	int n = -1;
	if (ioctl(fd, SIOCOUTQ, &n))
		die_errno("SIOCOUTQ");
	return n;
}

static void readn(int fd, long n)
{
	char buf[65536];
	while (n > 0) {
		ssize_t r = read(fd, buf, n < (long)sizeof buf ? (size_t)n : sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die_errno("read");
		if (r == 0)
			die("EOF before all bytes");
		n -= r;
	}
}

static void writen(int fd, long n)
{
	static char buf[65536];
	memset(buf, 'x', sizeof buf);
	while (n > 0) {
		ssize_t w = write(fd, buf, n < (long)sizeof buf ? (size_t)n : sizeof buf);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die_errno("write");
		n -= w;
	}
}

static volatile sig_atomic_t handler_closes, handler_errors;
/* Rounds of the main loop: the handler works once per round at most, so a
 * slow handler (a sanitizer build) cannot starve the loop it interrupts. */
static volatile sig_atomic_t main_rounds;
static sig_atomic_t handler_saw = -1;

static void on_alarm(int sig)
{
	(void)sig;
	if (main_rounds == handler_saw)
		return;
	handler_saw = main_rounds;
	int saved = errno;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || close(fd))
		handler_errors = 1;
	else
		handler_closes = handler_closes + 1;
	errno = saved;
}

/* ---------------------------------------------------------------- threads */

struct thr { int n; int kind; };
enum { K_SOCK, K_PAIR, K_TCP };

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	if (t->kind == K_SOCK) {
		for (int i = 0; i < t->n; i++) {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			if (s < 0)
				die_errno("socket");
			if (close(s))
				die_errno("close");
		}
	} else if (t->kind == K_PAIR) {
		for (int i = 0; i < t->n / 2; i++) {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
				die_errno("socketpair");
			if (write(sv[0], "x", 1) != 1)
				die_errno("write");
			if (close(sv[1]) || close(sv[0]))
				die_errno("close");
		}
	} else {
		struct sockaddr_storage ss;
		socklen_t sl = inaddr("127.0.0.1", 0, &ss);
		int l = socket(AF_INET, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&ss, sl) || listen(l, 16))
			die_errno("listen");
		sl = sizeof ss;
		if (getsockname(l, (struct sockaddr *)&ss, &sl))
			die_errno("getsockname");
		for (int i = 0; i < t->n / 2; i++) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&ss, sl))
				die_errno("connect");
			int a = accept(l, NULL, NULL);
			if (a < 0)
				die_errno("accept");
			if (close(c) || close(a))
				die_errno("close");
		}
		if (close(l))
			die_errno("close");
	}
	return NULL;
}

static void run_threads(int nt, int n, const char *kind)
{
	struct thr t = { n, K_SOCK };
	if (strcmp(kind, "pair") == 0)
		t.kind = K_PAIR;
	else if (strcmp(kind, "tcp") == 0)
		t.kind = K_TCP;
	else if (strcmp(kind, "sock") != 0)
		die("threads KIND: sock, pair or tcp");
	pthread_t th[256];
	if (nt < 1 || nt > 256)
		die("1..256 threads");
	for (int i = 0; i < nt; i++)
		if ((errno = pthread_create(&th[i], NULL, thread_main, &t)))
			die_errno("pthread_create");
	for (int i = 0; i < nt; i++)
		pthread_join(th[i], NULL);
	out("threads done");
}

/* An optional extra action hook for programs that include this file
 * (cwinspect.c). Returns the number of arguments consumed, or -1. */
#ifdef CWPROG_EXTRA
static int CWPROG_EXTRA(const char *act, char **args, int nargs);
#endif

#define NEED(k)                                                               \
	do {                                                                  \
		if (i + (k) >= argc)                                          \
			die("missing argument");                              \
	} while (0)

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		action = a;
		if (strcmp(a, "listen") == 0) {
			NEED(2);
			struct sockaddr_storage ss;
			socklen_t sl = inaddr(argv[i + 1], (int)numarg(argv[i + 2]), &ss);
			int backlog = 16;
			i += 2;
			if (i + 1 < argc && isnum(argv[i + 1]))
				backlog = (int)numarg(argv[++i]);
			int s = socket(ss.ss_family, SOCK_STREAM, 0), one = 1, zero = 0;
			if (s < 0)
				die_errno("socket");
			setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
			if (ss.ss_family == AF_INET6)
				setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
			if (bind(s, (struct sockaddr *)&ss, sl))
				die_errno("bind");
			if (listen(s, backlog))
				die_errno("listen");
			cur = lfd = s;
			out("fd %d", s);
			out("port %d", portof(s, 0));
		} else if (strcmp(a, "accept") == 0) {
			int s = accept(lfd, NULL, NULL);
			if (s < 0)
				die_errno("accept");
			cur = s;
			out("fd %d", s);
			int p = portof(s, 1);
			if (p >= 0)
				out("pport %d", p);
		} else if (strcmp(a, "connect") == 0) {
			NEED(2);
			struct sockaddr_storage ss;
			socklen_t sl = inaddr(argv[i + 1], (int)numarg(argv[i + 2]), &ss);
			i += 2;
			int s = socket(ss.ss_family, SOCK_STREAM, 0);
			if (s < 0)
				die_errno("socket");
			if (connect(s, (struct sockaddr *)&ss, sl))
				die_errno("connect");
			cur = s;
			out("fd %d", s);
			out("lport %d", portof(s, 0));
		} else if (strcmp(a, "socket") == 0) {
			NEED(1);
			const char *k = argv[++i];
			int s;
			if (strcmp(k, "tcp4") == 0)
				s = socket(AF_INET, SOCK_STREAM, 0);
			else if (strcmp(k, "tcp6") == 0)
				s = socket(AF_INET6, SOCK_STREAM, 0);
			else if (strcmp(k, "unix") == 0)
				s = socket(AF_UNIX, SOCK_STREAM, 0);
			else if (strcmp(k, "seqpacket") == 0)
				s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
			else if (strcmp(k, "udp") == 0)
				s = socket(AF_INET, SOCK_DGRAM, 0);
			else
				die("socket KIND: tcp4 tcp6 unix seqpacket udp");
			if (s < 0)
				die_errno("socket");
			cur = s;
			out("fd %d", s);
		} else if (strcmp(a, "socketpair") == 0) {
			int type = SOCK_STREAM, sv[2];
			if (i + 1 < argc && (strcmp(argv[i + 1], "stream") == 0 ||
					     strcmp(argv[i + 1], "seqpacket") == 0))
				type = unixtype(argv[++i]);
			if (socketpair(AF_UNIX, type, 0, sv))
				die_errno("socketpair");
			cur = sv[0];
			setname("pair", sv[1]);
			out("fd %d %d", sv[0], sv[1]);
		} else if (strcmp(a, "unix-listen") == 0 || strcmp(a, "unix-connect") == 0) {
			NEED(1);
			int listening = a[5] == 'l';
			const char *path = argv[++i];
			int type = SOCK_STREAM, backlog = 16;
			if (i + 1 < argc && (strcmp(argv[i + 1], "stream") == 0 ||
					     strcmp(argv[i + 1], "seqpacket") == 0))
				type = unixtype(argv[++i]);
			if (listening && i + 1 < argc && isnum(argv[i + 1]))
				backlog = (int)numarg(argv[++i]);
			struct sockaddr_un ua;
			socklen_t sl = unaddr(path, &ua);
			int s = socket(AF_UNIX, type, 0);
			if (s < 0)
				die_errno("socket");
			if (listening) {
				if (path[0] != '@')
					unlink(path);
				if (bind(s, (struct sockaddr *)&ua, sl))
					die_errno("bind");
				if (listen(s, backlog))
					die_errno("listen");
				lfd = s;
			} else if (connect(s, (struct sockaddr *)&ua, sl)) {
				die_errno("connect");
			}
			cur = s;
			out("fd %d", s);
		} else if (strcmp(a, "open") == 0) {
			NEED(1);
			int fd = open(argv[++i], O_RDWR | O_CREAT, 0600);
			if (fd < 0)
				die_errno("open");
			cur = fd;
			out("fd %d", fd);
		} else if (strcmp(a, "recvfd") == 0) {
			char data[16];
			union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
			struct iovec iov = { data, sizeof data };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
					     .msg_control = u.buf, .msg_controllen = sizeof u.buf };
			if (recvmsg(cur, &mh, 0) < 0)
				die_errno("recvmsg");
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			if (!c || c->cmsg_type != SCM_RIGHTS)
				die("no fd received");
			memcpy(&cur, CMSG_DATA(c), sizeof(int));
			out("fd %d", cur);
		} else if (strcmp(a, "dupfd") == 0) {
			NEED(1);
			int d = fcntl(cur, F_DUPFD, (int)numarg(argv[++i]));
			if (d < 0)
				die_errno("F_DUPFD");
			cur = d;
			out("fd %d", d);
		} else if (strcmp(a, "as") == 0) {
			NEED(1);
			setname(argv[++i], cur);
		} else if (strcmp(a, "use") == 0) {
			NEED(1);
			cur = fdarg(argv[++i]);
		} else if (strcmp(a, "read") == 0) {
			NEED(1);
			readn(cur, numarg(argv[++i]));
		} else if (strcmp(a, "readeof") == 0) {
			char buf[65536];
			long total = 0;
			for (;;) {
				ssize_t r = read(cur, buf, sizeof buf);
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0) {
					out("readerr %ld %s", total, ename(errno));
					break;
				}
				if (r == 0) {
					out("eof %ld", total);
					break;
				}
				total += r;
			}
		} else if (strcmp(a, "write") == 0) {
			NEED(1);
			writen(cur, numarg(argv[++i]));
		} else if (strcmp(a, "write-nb") == 0) {
			NEED(1);
			long n = numarg(argv[++i]), total = 0;
			static char buf[65536];
			int fl = fcntl(cur, F_GETFL);
			fcntl(cur, F_SETFL, fl | O_NONBLOCK);
			while (total < n) {
				long k = n - total < (long)sizeof buf ? n - total : (long)sizeof buf;
				ssize_t w = write(cur, buf, (size_t)k);
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0 && errno == EAGAIN)
					break;
				if (w < 0)
					die_errno("write");
				total += w;
			}
			fcntl(cur, F_SETFL, fl);
			out("wrote %ld", total);
		} else if (strcmp(a, "waitinq") == 0 || strcmp(a, "waitoutq0") == 0 ||
			   strcmp(a, "waitbacklog") == 0) {
			long n = 0;
			if (a[4] != 'o') {
				NEED(1);
				n = numarg(argv[++i]);
			}
			double end = now() + 10;
			for (;;) {
				long v;
				if (a[4] == 'i') {
					v = inq(cur);
					if (v >= n)
						break;
				} else if (a[4] == 'o') {
					v = outq(cur);
					if (v == 0)
						break;
				} else {
					struct tcp_info ti;
					socklen_t tl = sizeof ti;
					if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &tl))
						die_errno("TCP_INFO");
					v = ti.tcpi_unacked;
					if (v >= n)
						break;
				}
				if (now() > end) {
					char b[64];
					snprintf(b, sizeof b, "timed out at %ld", v);
					die(b);
				}
				msleep(1);
			}
		} else if (strcmp(a, "waitrdhup") == 0) {
			struct pollfd p = { cur, POLLRDHUP, 0 };
			int r = poll(&p, 1, 10000);
			if (r <= 0)
				die("peer did not close within 10 s");
		} else if (strcmp(a, "queues") == 0) {
			int nsd = -1;
			if (ioctl(cur, SIOCOUTQNSD, &nsd))
				nsd = -1;
			out("queues inq=%d outq=%d nsd=%d", inq(cur), outq(cur), nsd);
		} else if (strcmp(a, "sndbuf") == 0 || strcmp(a, "rcvbuf") == 0) {
			NEED(1);
			int v = (int)numarg(argv[++i]);
			if (setsockopt(cur, SOL_SOCKET, a[0] == 's' ? SO_SNDBUF : SO_RCVBUF, &v, sizeof v))
				die_errno("setsockopt");
		} else if (strcmp(a, "nodelay") == 0) {
			int one = 1;
			if (setsockopt(cur, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one))
				die_errno("TCP_NODELAY");
		} else if (strcmp(a, "linger") == 0) {
			NEED(2);
			struct linger lg = { (int)numarg(argv[i + 1]), (int)numarg(argv[i + 2]) };
			i += 2;
			if (setsockopt(cur, SOL_SOCKET, SO_LINGER, &lg, sizeof lg))
				die_errno("SO_LINGER");
		} else if (strcmp(a, "close") == 0) {
			if (close(cur))
				out("close-err %d %s", cur, ename(errno));
		} else if (strcmp(a, "close-listener") == 0) {
			if (close(lfd))
				out("close-err %d %s", lfd, ename(errno));
		} else if (strcmp(a, "shutdown") == 0) {
			NEED(1);
			const char *h = argv[++i];
			int how = strcmp(h, "rd") == 0 ? SHUT_RD : strcmp(h, "wr") == 0 ? SHUT_WR
				: strcmp(h, "rdwr") == 0 ? SHUT_RDWR : -1;
			if (how < 0)
				die("shutdown rd|wr|rdwr");
			int r = shutdown(cur, how);
			if (r)
				out("shutdown %d %s", r, ename(errno));
			else
				out("shutdown 0");
		} else if (strcmp(a, "dup") == 0) {
			int d = dup(cur);
			if (d < 0)
				die_errno("dup");
			setname("dup", d);
			out("dupfd %d", d);
		} else if (strcmp(a, "dup2") == 0 || strcmp(a, "dup3") == 0) {
			NEED(1);
			int to = fdarg(argv[++i]);
			int r = a[3] == '2' ? dup2(cur, to) : dup3(cur, to, O_CLOEXEC);
			if (r < 0)
				die_errno(a);
			out("%s %d", a, r);
		} else if (strcmp(a, "dup2range") == 0) {
			NEED(2);
			long lo = numarg(argv[i + 1]), hi = maxfd_arg(argv[i + 2]);
			i += 2;
			int nul = open("/dev/null", O_RDWR);
			if (nul < 0)
				die_errno("open /dev/null");
			for (long fd = lo; fd <= hi; fd++)
				if (fd != nul)
					dup2(nul, (int)fd);
			if (nul < lo || nul > hi)
				close(nul);
		} else if (strcmp(a, "closeloop") == 0) {
			NEED(2);
			long lo = numarg(argv[i + 1]), hi = maxfd_arg(argv[i + 2]), k = 0;
			i += 2;
			for (long fd = lo; fd <= hi; fd++)
				if (close((int)fd) == 0)
					k++;
			out("closed %ld", k);
		} else if (strcmp(a, "close-range") == 0) {
			NEED(2);
			unsigned lo = (unsigned)numarg(argv[i + 1]);
			unsigned hi = strcmp(argv[i + 2], "max") == 0 ? ~0U : (unsigned)numarg(argv[i + 2]);
			i += 2;
			int r = close_range(lo, hi, 0);
			if (r)
				out("close_range %d %s", r, ename(errno));
			else
				out("close_range 0");
		} else if (strcmp(a, "closefrom") == 0) {
			NEED(1);
			closefrom((int)numarg(argv[++i]));
		} else if (strcmp(a, "fclose") == 0) {
			FILE *f = fdopen(cur, "r+");
			if (!f)
				die_errno("fdopen");
			int r = fclose(f);
			if (r)
				out("fclose %d %s", r, ename(errno));
			else
				out("fclose 0");
		} else if (strcmp(a, "close-minus1") == 0) {
			errno = 0;
			int r = close(-1), e = errno;
			if (r == -1 && e == EBADF)
				out("ebadf ok");
			else
				out("ebadf FAIL %d %s", r, ename(e));
		} else if (strcmp(a, "double-close") == 0) {
			errno = 0;
			int r1 = close(cur), e1 = r1 ? errno : 0;
			errno = 0;
			int r2 = close(cur), e2 = r2 ? errno : 0;
			out("double-close %d %s %d %s", r1, ename(e1), r2, ename(e2));
			if (r1 == 0 && r2 == -1 && e2 == EBADF)
				out("ebadf ok");
		} else if (strcmp(a, "fileloop") == 0) {
			NEED(2);
			const char *path = argv[i + 1];
			long n = numarg(argv[i + 2]);
			i += 2;
			for (long k = 0; k < n; k++) {
				int fd = open(path, O_RDONLY);
				if (fd < 0)
					die_errno("open");
				if (close(fd))
					die_errno("close");
			}
		} else if (strcmp(a, "fork-hold") == 0) {
			NEED(1);
			long ms = numarg(argv[++i]);
			fflush(stdout);
			pid_t p = fork();
			if (p < 0)
				die_errno("fork");
			if (p == 0) {
				msleep(ms);
				_exit(0);
			}
			child = p;
			out("child %d", (int)p);
		} else if (strcmp(a, "rename") == 0) {
			const char *how = argv[i + 1], *name = argv[i + 2];
			int r = -1;
			i += 2;
			if (strcmp(how, "prctl") == 0) {
				r = prctl(PR_SET_NAME, name, 0, 0, 0);
			} else if (strcmp(how, "pthread") == 0) {
				r = pthread_setname_np(pthread_self(), name);
			} else if (strcmp(how, "syscall") == 0) {
				r = (int)syscall(SYS_prctl, PR_SET_NAME, name, 0, 0, 0);
			} else if (strcmp(how, "proc") == 0) {
				char path[64];
				snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)gettid());
				int f = open(path, O_WRONLY);
				r = f >= 0 && write(f, name, strlen(name)) == (ssize_t)strlen(name) ? 0 : -1;
				if (f >= 0)
					close(f);
			}
			if (r != 0)
				die_errno("rename");
			out("renamed");
		} else if (strcmp(a, "fork-close") == 0 || strcmp(a, "rawfork-close") == 0) {
			fflush(stdout);
			int pfd[2];
			if (pipe(pfd))
				die_errno("pipe");
			pid_t p = strcmp(a, "fork-close") == 0 ? fork() : (pid_t)syscall(SYS_fork);
			if (p < 0)
				die_errno("fork");
			if (p == 0) {
				int r = close(cur);
				if (write(pfd[1], &r, sizeof r) != sizeof r)
					_exit(1);
				_exit(0);
			}
			int r = -2, st;
			close(pfd[1]);
			if (read(pfd[0], &r, sizeof r) != sizeof r)
				die("child did not report");
			close(pfd[0]);
			if (waitpid(p, &st, 0) < 0)
				die_errno("waitpid");
			out("child %d %d", (int)p, r);
		} else if (strcmp(a, "sigstorm") == 0) {
			NEED(1);
			long n = numarg(argv[++i]);
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on_alarm;
			sa.sa_flags = SA_RESTART;
			sigaction(SIGALRM, &sa, NULL);
			struct itimerval it = { { 0, 100 }, { 0, 100 } };
			setitimer(ITIMER_REAL, &it, NULL);
			for (long k = 0; k < n; k++) {
				int fd = socket(AF_INET, SOCK_STREAM, 0);
				if (fd < 0)
					die_errno("socket");
				if (close(fd))
					die_errno("close");
				main_rounds = (sig_atomic_t)(k + 1);
			}
			struct itimerval off = { { 0, 0 }, { 0, 0 } };
			setitimer(ITIMER_REAL, &off, NULL);
			signal(SIGALRM, SIG_IGN);
			if (handler_errors)
				die("socket or close failed in the signal handler");
			out("sigstorm %ld %ld", n, (long)handler_closes);
		} else if (strcmp(a, "reap") == 0) {
			int st;
			if (child > 0 && waitpid(child, &st, 0) < 0)
				die_errno("waitpid");
			child = -1;
		} else if (strcmp(a, "threads") == 0) {
			NEED(3);
			run_threads((int)numarg(argv[i + 1]), (int)numarg(argv[i + 2]), argv[i + 3]);
			i += 3;
		} else if (strcmp(a, "sleep") == 0) {
			NEED(1);
			msleep(numarg(argv[++i]));
		} else if (strcmp(a, "say") == 0) {
			NEED(1);
			out("%s", argv[++i]);
		} else if (strcmp(a, "pid") == 0) {
			out("pid %d", (int)getpid());
		} else if (strcmp(a, "wait") == 0) {
			char line[256];
			if (!fgets(line, sizeof line, stdin))
				die("stdin closed");
		} else if (strcmp(a, "exit") == 0) {
			NEED(1);
			exit((int)numarg(argv[++i]));
		} else if (strcmp(a, "_exit") == 0) {
			NEED(1);
			_exit((int)numarg(argv[++i]));
		} else if (strcmp(a, "cloexec") == 0) {
			if (fcntl(cur, F_SETFD, FD_CLOEXEC) != 0)
				die_errno("fcntl");
		} else if (strcmp(a, "exec") == 0) {
			NEED(1);
			fflush(stdout);
			execv(argv[i + 1], argv + i + 1);
			die_errno("execv");
		} else {
#ifdef CWPROG_EXTRA
			int k = CWPROG_EXTRA(a, argv + i + 1, argc - i - 1);
			if (k >= 0) {
				i += k;
				continue;
			}
#endif
			die("unknown action");
		}
	}
	return 0;
}
