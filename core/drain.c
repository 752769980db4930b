/* Drain engine, the program's side: policy, the slot table, the channel to
 * the drain thread, fork and exit. See drain.h for the design, drain_int.h
 * for the invariants, and drain_loop.c for the drain thread. */
#include "drain.h"
#include "config.h"
#include "drain_int.h"
#include "fdtable.h"
#include "forkgate.h"
#include "logwriter.h"
#include "verdict.h"
#include "real.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK (256 * 1024)
#define EXIT_GRACE_NS (500 * 1000000LL)  /* for the thread to write the last records */
#define FLUSH_WAIT_NS (1000 * 1000000LL) /* safety net: a drain thread that is stuck */
#define CHANNEL_BUF (4 * 1024 * 1024)    /* room for drains sent faster than the thread takes them */
#define MAX_PROGRAM_EPOLLS 64
#define SENDERS_WAIT_NS (100 * 1000000LL) /* safety net: a remote sender stopped mid-send */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CW_SANITIZED 1
#endif
#endif

struct cw_drain_shared *cw_drain_sh;
struct cw_drain_slot *cw_drain_slots;
struct cw_event *cw_drain_events;
int cw_drain_nslots;
atomic_int cw_drain_flushed, cw_drain_stderr_wanted, cw_drain_q_taken;
atomic_llong cw_drain_exit_deadline;

static void *table_base;        /* the mapping of head, slots and events */
static size_t table_len;
static int shared_table;        /* the shim: MAP_SHARED, a forked child may use our thread */
static atomic_int remote;       /* P leads to an ancestor's thread (invariant 7) */
static atomic_int in_region;    /* threads between entering (a claim) and the end of their send */
/* P, the channel's program end (-1: none yet, or given up); Q's number in
 * the program's table until the thread has its own copy (drop_program_q). */
static atomic_int chan_p = -1, start_q = -1;
static atomic_int sending;      /* threads between loading chan_p and the end of their send */
static atomic_int flush_seq;
atomic_int cw_drain_broken;     /* a thread could not take a table of its own: never drain */
#define broken cw_drain_broken
static atomic_uint generation;  /* of drain threads (slot owners) */
static int own_table;           /* the shim: the thread unshares its fd table */
/* start_lock: making a channel and moving P (rare), held across fork.
 * in_start: this thread holds it (a signal handler must not wait for it);
 * in_send: this thread is inside a send (a move of P in a signal handler
 * must not wait for its own thread). */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_start __attribute__((tls_model("initial-exec")));
static __thread int in_send __attribute__((tls_model("initial-exec")));
static __thread int fork_locked __attribute__((tls_model("initial-exec")));
static __thread int my_region __attribute__((tls_model("initial-exec")));

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

/* ---- policy ---------------------------------------------------------------- */

int cw_drain_wanted(const struct cw_event *ev)
{
	const struct closewatch_record *r = &ev->rec;
	if (r->listening || r->shared || r->linger == 0)
		return 0;
	switch (r->verdict) {
	case CLOSEWATCH_RST_UNREAD:
		return 1;
	case CLOSEWATCH_FIN_PENDING:
		return r->proto == CLOSEWATCH_PROTO_TCP;
	case CLOSEWATCH_CLEAN:
		/* The peer has not closed its side: what it sends after our
		 * close() would be answered with RST (the late RST). */
		return r->proto == CLOSEWATCH_PROTO_TCP && r->state == TCP_ESTABLISHED;
	case CLOSEWATCH_NO_CONN:
		/* The program shut its write side itself (node: shutdown, then
		 * close) and the peer still sends: the same late RST, which also
		 * throws away the answer still in our send queue. */
		return r->proto == CLOSEWATCH_PROTO_TCP &&
		       (r->state == TCP_FIN_WAIT1 || r->state == TCP_FIN_WAIT2);
	default:
		return 0;
	}
}

/* Under EVENTS=risky a drain is an event when its close would have thrown
 * data away (a risky verdict), or when the drain itself ends otherwise than
 * delivered with nothing discarded. A clean close in ESTABLISHED (every
 * answer of a Connection: close server) whose drain ends delivered, with
 * nothing discarded, lost nothing and had nothing at risk: no record. */
int cw_drain_quiet(const struct cw_event *ev)
{
	return !cw_cfg.events_all && !closewatch_verdict_is_risky(ev->rec.verdict);
}

/* ---- the program's epoll sets ---------------------------------------------- */

/* fd + 1 of each epoll instance the program created; 0 = empty. */
static atomic_int program_epolls[MAX_PROGRAM_EPOLLS];
static atomic_int program_epolls_hw;

void cw_drain_note_epoll(int epfd)
{
	if (cw_cfg.mode != CW_MODE_DRAIN || epfd < 0)
		return;
	int want = epfd + 1, free_at = -1;
	int hw = atomic_load(&program_epolls_hw);
	for (int i = 0; i < MAX_PROGRAM_EPOLLS; i++) {
		int v = atomic_load(&program_epolls[i]);
		if (v == want)
			return;
		if (!v && free_at < 0)
			free_at = i;
		if (i >= hw && free_at >= 0)
			break;
	}
	for (int i = free_at < 0 ? 0 : free_at; i < MAX_PROGRAM_EPOLLS; i++) {
		int expected = 0;
		if (atomic_compare_exchange_strong(&program_epolls[i], &expected, want)) {
			int cur = atomic_load(&program_epolls_hw);
			while (cur <= i && !atomic_compare_exchange_weak(&program_epolls_hw, &cur, i + 1))
				;
			return;
		}
	}
	/* Full: the oldest numbers are the likeliest to be stale. */
	static atomic_uint next;
	atomic_store(&program_epolls[atomic_fetch_add(&next, 1) % MAX_PROGRAM_EPOLLS], want);
	atomic_store(&program_epolls_hw, MAX_PROGRAM_EPOLLS);
}

/* What close(fd) would have done, had the message in flight not kept the
 * socket alive: take fd out of the program's epoll sets. */
static void leave_program_epolls(int fd)
{
	int hw = atomic_load(&program_epolls_hw);
	for (int i = 0; i < hw; i++) {
		int v = atomic_load(&program_epolls[i]);
		if (!v || v - 1 == fd)
			continue;
		struct epoll_event unused;
		if (epoll_ctl(v - 1, EPOLL_CTL_DEL, fd, &unused) < 0 && (errno == EBADF || errno == EINVAL))
			atomic_compare_exchange_strong(&program_epolls[i], &v, 0); /* closed since */
	}
}

/* ---- futex words ------------------------------------------------------------ */

/* Sleep while *word == val, at most ns (a re-check, never a correctness bound). */
static void wait_word(atomic_int *word, int val, int64_t ns)
{
	struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
	REAL(syscall)(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

void cw_drain_wake_word(atomic_int *word)
{
	REAL(syscall)(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* ---- the channel ------------------------------------------------------------ */

/* One message over p, with up to two fds (SCM_RIGHTS). */
static ssize_t send_on(int p, int type, int n, const int *fds, int nfds)
{
	struct cw_drain_msg m = {type, n};
	struct iovec v = {&m, sizeof m};
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u = {0};
	struct msghdr h = {.msg_iov = &v, .msg_iovlen = 1};
	if (nfds > 0) {
		h.msg_control = u.buf;
		h.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&h);
		*c = (struct cmsghdr){CMSG_LEN((size_t)nfds * sizeof(int)), SOL_SOCKET, SCM_RIGHTS};
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	ssize_t r = sendmsg(p, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
	return r == (ssize_t)sizeof m ? 0 : -1;
}

/* A send over P failed with e because P is no longer our socket (closed
 * behind our back, its number reused; EBADF: maybe), or because the thread
 * at the other end is gone: the channel is lost, not just full (EAGAIN). */
static int p_not_ours(int e)
{
	return e == ENOTSOCK || e == EOPNOTSUPP || e == EBADF;
}

static int thread_gone(int e)
{
	return e == EPIPE || e == ENOTCONN || e == ECONNREFUSED || e == ECONNRESET;
}

/* The same over P. 0 or -1 (errno). */
static int send_msg(int type, int n, const int *fds, int nfds)
{
	in_send++;
	atomic_fetch_add(&sending, 1);
	int p = atomic_load(&chan_p);
	/* Its number taken by a socket of the program's (P closed behind our
	 * back, then reused, seen by our socket hooks): never send our message
	 * there, it would be the program's data. */
	int reused = p >= 0 && cw_fd_in_table(p) && !(cw_fd_get(p) & CW_FD_PRIVATE);
	int r = p < 0 ? (errno = ENOTCONN, -1) : reused ? (errno = ENOTSOCK, -1) : send_on(p, type, n, fds, nfds);
	int e = errno;
	/* P closed behind our back (a raw close syscall), or its number
	 * reused since: give the channel up, the next drain makes another.
	 * The thread gone (EPIPE…) from a remote process: its ancestor ended
	 * without the word (a signal); detach() closes P. */
	int not_ours = p_not_ours(e) && (e != EBADF || REAL(fcntl)(p, F_GETFD) < 0);
	if (r < 0 && p >= 0 && (not_ours || (thread_gone(e) && !atomic_load(&remote))) &&
	    atomic_compare_exchange_strong(&chan_p, &p, -1) && !reused)
		cw_fd_clear(p);
	atomic_fetch_sub(&sending, 1);
	in_send--;
	errno = e;
	return r;
}

static void close_program_fd(int fd)
{
	if (fd >= 0) {
		cw_fd_clear(fd);
		REAL(close)(fd);
	}
}

/* The program's copy of Q goes once the thread has its own (it says so in
 * cw_drain_q_taken). wait: until then (a dup2 onto Q's number, a new
 * channel); not timed: a thread that was created runs. */
static void drop_program_q(int wait)
{
	int q = atomic_load(&start_q);
	while (q >= 0 && wait && !atomic_load(&cw_drain_q_taken))
		wait_word(&cw_drain_q_taken, 0, 1000000000LL);
	if (q >= 0 && atomic_load(&cw_drain_q_taken) && atomic_compare_exchange_strong(&start_q, &q, -1))
		close_program_fd(q);
}

/* Under start_lock: a socketpair and the thread. close() does not wait for
 * the thread to run: the program's copy of Q goes at a later drain. */
static int map_table(void);
static int start_locked(void)
{
	drop_program_q(1); /* of a channel given up: its thread runs by now */
	int sv[2];
	if (atomic_load(&broken) || (!cw_drain_slots && map_table() < 0) || REAL(socketpair)(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	int p = cw_fd_hide(sv[0]), q = sv[1];
	cw_fd_set(q, CW_FD_PRIVATE);
	/* Unix datagram room is the sender's: many drains in a burst, while
	 * the thread (SCHED_BATCH) waits for a CPU, must not find it full.
	 * SO_SNDBUFFORCE needs privilege; else up to net.core.wmem_max. */
	int room = CHANNEL_BUF;
	if (REAL(setsockopt)(p, SOL_SOCKET, SO_SNDBUFFORCE, &room, sizeof room) < 0)
		REAL(setsockopt)(p, SOL_SOCKET, SO_SNDBUF, &room, sizeof room);

	/* Its log target first: the thread's table keeps none of ours. */
	static struct cw_drain_start st; /* read by the thread before cw_drain_q_taken */
	int log, mode = own_table ? cw_log_own_target(&log) : 0;
	if (mode == CW_LOG_OWN_FD && send_on(p, CW_MSG_LOG, 0, &log, 1) < 0)
		mode = CW_LOG_OWN_LAZY;
	st = (struct cw_drain_start){q, atomic_fetch_add(&generation, 1) + 1, own_table, mode};
	atomic_store(&cw_drain_q_taken, 0);
	atomic_store(&cw_drain_stderr_wanted, mode == CW_LOG_OWN_STDERR);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	/* Our thread must never run the program's signal handlers. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	int rc = pthread_create(&t, &attr, cw_drain_thread, &st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		close_program_fd(q);
		close_program_fd(p);
		return -1;
	}
	if (own_table) /* else the thread shares our table and closes Q itself */
		atomic_store(&start_q, q);
	atomic_store(&chan_p, p);
#ifdef CW_SANITIZED
	/* The thread's start-up allocates in the sanitizer's runtime, whose
	 * allocator is not fork-safe: a child forked meanwhile would inherit
	 * its lock held. Once per thread; a production build does not wait. */
	drop_program_q(1);
#endif
	return 0;
}

/* The thread could not take a table of its own (a seccomp filter refusing
 * unshare and close_range's unshare, an old kernel): no drain from now on.
 * The drains it was sent are closed with the channel, as close() would
 * have; their records are counted as lost. Under start_lock. */
static void give_up_broken(void)
{
	close_program_fd(atomic_exchange(&chan_p, -1));
	drop_program_q(1);
	unsigned long lost = 0;
	for (int i = 0, hw = atomic_load(&cw_drain_sh->hw); i < hw; i++) {
		int sent = CW_SLOT_SENT;
		if (atomic_compare_exchange_strong(&cw_drain_slots[i].state, &sent, CW_SLOT_CLAIMED)) {
			atomic_fetch_sub(&cw_drain_sh->pending, 1);
			cw_drain_release(i);
			lost++;
		}
	}
	cw_log_count_lost(lost, EPERM);
}

/* A channel and its thread (and a table, in a child that did not keep its
 * parent's), made by the first drain, again after a channel was given up,
 * and by a fork (cw_drain_before_fork). */
static int start_channel(void)
{
	if (in_start)
		return -1; /* a signal handler inside our own section */
	pthread_mutex_lock(&start_lock);
	in_start = 1;
	if (atomic_load(&broken) && atomic_load(&chan_p) >= 0)
		give_up_broken();
	int rc = atomic_load(&chan_p) >= 0 ? 0 : start_locked();
	in_start = 0;
	pthread_mutex_unlock(&start_lock);
	return rc;
}

static void leave(void)
{
	atomic_fetch_sub(&in_region, 1);
	my_region--;
}

/* Counted in in_region, with the channel up: the table and P stay what they
 * are until leave() (detach waits for it). 0, or -1 (not counted). */
static int enter(void)
{
	for (int tries = 0; tries < 2; tries++) {
		my_region++;
		atomic_fetch_add(&in_region, 1); /* then look at chan_p: detach looks the other way */
		if (atomic_load(&chan_p) >= 0 && cw_drain_slots && !atomic_load(&broken)) {
			if (atomic_load(&start_q) >= 0)
				drop_program_q(0);
			return 0;
		}
		leave();
		if (tries || start_channel() < 0)
			break;
	}
	return -1;
}

static void unmap_table(void)
{
	if (table_base)
		munmap(table_base, table_len);
	table_base = NULL;
	cw_drain_slots = NULL;
	cw_drain_events = NULL;
	cw_drain_sh = NULL;
}

/* A remote process whose ancestor's thread is closing or gone (invariant 7):
 * once no other thread of ours is between a claim and the end of its send,
 * P goes, and so does the ancestor's table; the next drain maps a table and
 * starts a thread of our own. Not called inside the region. */
static void detach(void)
{
	if (in_start)
		return;
	pthread_mutex_lock(&start_lock);
	in_start = 1;
	if (atomic_load(&remote)) {
		int p = atomic_exchange(&chan_p, -1); /* then look at in_region: enter looks the other way */
		while (atomic_load(&in_region) > my_region)
			sched_yield();
		close_program_fd(p);
		unmap_table();
		atomic_store(&remote, 0);
	}
	in_start = 0;
	pthread_mutex_unlock(&start_lock);
}

int cw_drain_is_remote(void)
{
	return atomic_load(&remote);
}

/* May a forked child send to our thread? Not when close() waits for its
 * drain (a sync wait across processes), nor with a %p log file (the
 * thread would write the child's records into our file), nor under TSan
 * (CW_TSAN, real.h): it sees one process, and the other side of the shared
 * table would look like races to it. */
static int may_share(void)
{
#ifdef CW_TSAN
	return 0;
#else
	return shared_table && !cw_cfg.drain_sync &&
	       !(cw_cfg.log_kind == CW_LOG_FILE && strstr(cw_cfg.log_path, "%p"));
#endif
}

void cw_drain_relocate_if(int fd)
{
	if (fd < 0 || in_start || (fd != atomic_load(&chan_p) && fd != atomic_load(&start_q)))
		return;
	pthread_mutex_lock(&start_lock);
	in_start = 1;
	if (fd == atomic_load(&start_q))
		drop_program_q(1); /* the program's dup2 then takes a free number */
	int p = atomic_load(&chan_p);
	if (fd == p) {
		/* Above it first (out of the way of an upward dup2 loop). None
		 * to be had: the channel is given up; once the program's dup2
		 * replaces P, the thread sees EOF and ends with its drains. */
		int m = REAL(fcntl)(p, F_DUPFD_CLOEXEC, p + 1);
		if (m < 0)
			m = REAL(fcntl)(p, F_DUPFD_CLOEXEC, 3);
		if (m >= 0)
			cw_fd_set(m, CW_FD_PRIVATE);
		atomic_store(&chan_p, m);
		/* A sender that loaded the old number is counted: its send ends
		 * before the program's dup2 replaces it. Not our own thread's
		 * (a signal handler inside a send). */
		while (atomic_load(&sending) > in_send)
			sched_yield();
		cw_fd_clear(p);
	}
	in_start = 0;
	pthread_mutex_unlock(&start_lock);
}

/* ---- slots ------------------------------------------------------------------ */

/* Head, slots and events in one mapping: zero pages are free slots, and
 * only the pages of slots used get backed. MAP_SHARED in the shim, so that
 * a forked child can hand its drains to our thread (invariant 7). */
static int map_table(void)
{
	size_t n = (size_t)cw_cfg.drain_max, line = 64;
	size_t head = (sizeof *cw_drain_sh + line - 1) / line * line;
	size_t slots = (n * sizeof *cw_drain_slots + line - 1) / line * line;
	size_t len = head + slots + n * sizeof *cw_drain_events;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       (shared_table ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -1; /* every drain will be skipped */
	table_base = m;
	table_len = len;
	cw_drain_sh = (struct cw_drain_shared *)m;
	cw_drain_events = (struct cw_event *)(m + head + slots);
	cw_drain_nslots = (int)n;
	cw_drain_slots = (struct cw_drain_slot *)(m + head);
	return 0;
}

void cw_drain_init(int supervisor)
{
	if (cw_cfg.mode != CW_MODE_DRAIN || cw_cfg.drain_max <= 0 || cw_drain_slots)
		return;
	own_table = !supervisor;
	shared_table = !supervisor;
	if (map_table() == 0)
		pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* A free slot claimed for ev, or -1. Inside the region (enter). */
static int claim(const struct cw_event *ev, struct cw_drain_ticket *t)
{
	t->fd = t->slot = -1;
	if (atomic_fetch_add(&cw_drain_sh->active, 1) >= cw_drain_nslots) {
		atomic_fetch_sub(&cw_drain_sh->active, 1);
		return -1;
	}
	for (int i = 0; i < cw_drain_nslots; i++) {
		struct cw_drain_slot *sl = &cw_drain_slots[i];
		int expected = CW_SLOT_FREE;
		if (!atomic_compare_exchange_strong(&sl->state, &expected, CW_SLOT_CLAIMED))
			continue;
		int hw = atomic_load(&cw_drain_sh->hw);
		while (hw <= i && !atomic_compare_exchange_weak(&cw_drain_sh->hw, &hw, i + 1))
			;
		atomic_store(&sl->close_written, 0);
		sl->fd = -1;
		sl->armed = sl->closer_shuts = 0;
		sl->tcp = ev->rec.proto == CLOSEWATCH_PROTO_TCP;
		sl->seqpacket = ev->rec.sotype == SOCK_SEQPACKET;
		sl->linger = ev->rec.linger;
		sl->quiet = cw_drain_quiet(ev);
		sl->result = -1;
		sl->start_ns = sl->last_ns = cw_drain_now_ns();
		sl->discarded = 0;
		sl->ino = 0;
		atomic_store(&sl->cut, 0);
		atomic_store(&sl->id, sl->start_ns);
		t->slot = i;
		t->id = sl->start_ns;
		return i;
	}
	atomic_fetch_sub(&cw_drain_sh->active, 1);
	return -1;
}

void cw_drain_release(int s)
{
	atomic_store(&cw_drain_slots[s].owner, 0);
	atomic_store_explicit(&cw_drain_slots[s].state, CW_SLOT_FREE, memory_order_release);
	atomic_fetch_sub(&cw_drain_sh->active, 1);
	/* Only a sync close() waits for it (cw_drain_go); the supervisor's held
	 * calls look (cw_drain_over): no wake-up system call for an async one. */
	if (cw_cfg.drain_sync)
		cw_drain_wake_word(&cw_drain_slots[s].state);
}

/* Copy ev into slot s, publish it (the thread reads it once the message is
 * there) and send it with fd; the program's stderr too when records go
 * there (fd 2 closed meanwhile, EBADF: the socket alone). -1: not sent,
 * the slot given back, nothing done to the socket (its close is what it
 * would have been).
 *
 * Sent, and where close() itself would have sent FIN (a verdict that throws
 * nothing away), FIN is sent here, through fd (which still refers to the
 * socket), as without closewatch: the peer does not wait for the drain
 * thread, which may run much later, and the closer pays the FIN's loopback
 * processing as close() would have. Where close() would have sent RST, the
 * thread sends FIN: the closer pays for no FIN close() would not have sent. */
static int hand_over(int s, int fd, const struct cw_event *ev)
{
	int shut = !closewatch_verdict_is_risky(ev->rec.verdict);
	memcpy(&cw_drain_events[s], ev, sizeof *ev);
	cw_drain_events[s].action = CW_ACTION_DRAINED;
	cw_drain_slots[s].closer_shuts = shut;
	cw_drain_slots[s].cpu = sched_getcpu(); /* no system call: rseq or the vDSO */
	atomic_fetch_add(&cw_drain_sh->pending, 1);
	atomic_store_explicit(&cw_drain_slots[s].state, CW_SLOT_SENT, memory_order_release);
	int fds[2] = {fd, 2};
	int n = atomic_load(&cw_drain_stderr_wanted) && fd != 2 ? 2 : 1;
	/* Remote: counted in senders, then a look at closing (T's process
	 * counts the other way round: invariant 7). */
	int far = atomic_load(&remote);
	if (far)
		atomic_fetch_add(&cw_drain_sh->senders, 1);
	int closing = far && atomic_load(&cw_drain_sh->closing);
	int sent = !closing && (send_msg(CW_MSG_DRAIN, s, fds, n) == 0 ||
				(n == 2 && errno == EBADF && send_msg(CW_MSG_DRAIN, s, fds, 1) == 0));
	if (closing)
		errno = ESHUTDOWN;
	if (far)
		atomic_fetch_sub(&cw_drain_sh->senders, 1);
	if (sent) {
		if (shut)
			REAL(shutdown)(fd, SHUT_WR);
		return 0;
	}
	atomic_fetch_sub(&cw_drain_sh->pending, 1);
	cw_drain_release(s);
	return -1;
}

int cw_drain_prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t)
{
	leave_program_epolls(fd);
	/* A second try only in a remote process whose ancestor's thread was
	 * closing or gone: then through a thread of our own. */
	for (int tries = 0; tries < 2; tries++) {
		if (enter() < 0)
			break;
		int far = atomic_load(&remote), s = claim(ev, t);
		if (s < 0) {
			leave();
			break;
		}
		struct stat st;
		if (ev->rec.proto == CLOSEWATCH_PROTO_UNIX && fstat(fd, &st) == 0)
			cw_drain_slots[s].ino = (unsigned long)st.st_ino; /* rare: unix drains are rst_unread */
		int rc = hand_over(s, fd, ev);
		leave();
		if (rc == 0) {
			if (!cw_cfg.drain_sync)
				t->slot = -1; /* nothing left for cw_drain_go */
			return CW_ACTION_DRAINED;
		}
		t->slot = -1;
		/* Not a full channel (EAGAIN: skipped, as in T's own process). */
		int e = errno;
		if (!far || !(e == ESHUTDOWN || p_not_ours(e) || thread_gone(e)))
			break;
		detach();
	}
	return CW_ACTION_DRAIN_SKIPPED;
}

int cw_drain_prepare_adopt(int fd, const struct cw_event *ev, struct cw_drain_ticket *t)
{
	t->fd = t->slot = -1;
	if (enter() < 0)
		return CW_ACTION_DRAIN_SKIPPED;
	int s = claim(ev, t);
	leave(); /* the supervisor's table and channel never move */
	if (s < 0)
		return CW_ACTION_DRAIN_SKIPPED;
	t->fd = fd;
	return CW_ACTION_DRAINED;
}

int cw_drain_over(int s, int64_t id)
{
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	return atomic_load(&sl->state) != CW_SLOT_SENT || atomic_load(&sl->id) != id;
}

void cw_drain_go(struct cw_drain_ticket *t, const struct cw_event *ev)
{
	int s = t->slot, fd = t->fd;
	t->slot = t->fd = -1;
	if (s < 0 || s >= cw_drain_nslots)
		return;
	if (fd < 0) {
		/* Sync: the drain may take seconds; forks of other threads do
		 * not wait for it (forkgate.h; the socket is judged already). */
		int paused = cw_forkgate_close_pause();
		while (!cw_drain_over(s, t->id))
			wait_word(&cw_drain_slots[s].state, CW_SLOT_SENT, 1000000000LL);
		cw_forkgate_close_resume(paused);
		return;
	}
	/* The supervisor's duplicate: the program's call went ahead meanwhile.
	 * The channel full or gone: the close was what it would have been. */
	if (hand_over(s, fd, ev) < 0) {
		struct cw_event skipped = *ev;
		skipped.action = CW_ACTION_DRAIN_SKIPPED;
		cw_log_event(&skipped);
	}
	close(fd); /* the message holds the socket now */
}

/* ---- exec, _exit, exit ------------------------------------------------------------ */

/* Our thread ends with this process (exit, exec): remote processes send no
 * more (they detach), and those that looked at closing before it was set
 * have sent by the time this returns (invariant 7): what they sent is in
 * pending, and in the thread's queue before any message of ours after. */
static void stop_remote_senders(void)
{
	if (!shared_table || !cw_drain_sh)
		return;
	atomic_store(&cw_drain_sh->closing, 1); /* then look at senders: they look the other way */
	int64_t give_up = cw_drain_now_ns() + SENDERS_WAIT_NS;
	while (atomic_load(&cw_drain_sh->senders) > 0 && cw_drain_now_ns() < give_up)
		sched_yield();
}

void cw_drain_flush_close_records(void)
{
	/* Remote: our drains are our ancestor's thread's, which goes on. */
	if (!cw_drain_slots || atomic_load(&remote) || in_send)
		return;
	stop_remote_senders();
	if (atomic_load(&cw_drain_sh->pending) == 0)
		return;
	/* The thread handles messages in order: once it has done this FLUSH,
	 * the close record of every drain sent before it is written. */
	int seq = atomic_fetch_add(&flush_seq, 1) + 1;
	int64_t give_up = cw_drain_now_ns() + FLUSH_WAIT_NS;
	int f, sent = send_msg(CW_MSG_FLUSH, seq, NULL, 0) == 0;
	while (sent && (f = atomic_load(&cw_drain_flushed)) - seq < 0 && cw_drain_now_ns() < give_up)
		wait_word(&cw_drain_flushed, f, 10000000);
	if (sent && atomic_load(&cw_drain_flushed) - seq >= 0)
		return;
	/* No answer (a thread stuck, the channel full or gone): the close
	 * records not written are counted as lost (the thread may still write
	 * them, once). */
	unsigned long lost = 0;
	for (int i = 0, hw = atomic_load(&cw_drain_sh->hw); i < hw; i++)
		lost += atomic_load(&cw_drain_slots[i].state) == CW_SLOT_SENT &&
			!atomic_load(&cw_drain_slots[i].close_written);
	cw_log_count_lost(lost, ETIMEDOUT);
}

void cw_drain_at_exit(void)
{
	if (!cw_drain_slots || atomic_load(&remote))
		return;
	stop_remote_senders();
	if (atomic_load(&cw_drain_sh->pending) == 0)
		return;
	/* Every pending drain ends by now + idle timeout at the latest (the
	 * thread ends those still going as timeouts), and is logged. */
	int64_t deadline = cw_drain_now_ns() + cw_cfg.drain_idle_ms * 1000000LL;
	atomic_store(&cw_drain_exit_deadline, deadline);
	(void)send_msg(CW_MSG_WAKE, 0, NULL, 0);
	struct timespec ms = {0, 1000000};
	while (atomic_load(&cw_drain_sh->pending) > 0 && cw_drain_now_ns() < deadline + EXIT_GRACE_NS)
		nanosleep(&ms, NULL);
	cw_drain_flush_close_records(); /* of drains the thread did not end in time */
}

/* ---- fork ------------------------------------------------------------------- */

/* No child sees a channel half made or P half moved. */
static void fork_prepare(void)
{
	if (!in_start) { /* else a fork from a signal handler inside our section */
		pthread_mutex_lock(&start_lock);
		fork_locked = 1;
	}
}

static void fork_parent(void)
{
	if (fork_locked) {
		fork_locked = 0;
		pthread_mutex_unlock(&start_lock);
	}
}

/* The child inherits no drain: the sockets are in the parent's thread's
 * table. With the channel up (and may_share), it keeps its copy of P and
 * the shared table: it is remote, its drains go to that thread, and its
 * first drained close is as quick as any (invariant 7). Else its copy of P
 * goes, and so does the table (the supervisor's, private, is reset): its
 * first drain makes a table, a channel and a thread of its own. */
static void fork_child(void)
{
	int keep = cw_drain_slots && may_share() && atomic_load(&chan_p) >= 0 && !atomic_load(&broken) &&
		   !atomic_load(&cw_drain_sh->closing);
	close_program_fd(atomic_exchange(&start_q, -1)); /* T's end: T has its own, or the parent's table does */
	if (keep) {
		atomic_store(&remote, 1);
	} else {
		close_program_fd(atomic_exchange(&chan_p, -1));
		atomic_store(&remote, 0);
		atomic_store(&cw_drain_stderr_wanted, 0);
		if (shared_table) {
			unmap_table();
		} else if (cw_drain_slots) {
			for (int i = 0, hw = atomic_load(&cw_drain_sh->hw); i < hw; i++) {
				atomic_store(&cw_drain_slots[i].owner, 0);
				atomic_store(&cw_drain_slots[i].state, CW_SLOT_FREE);
			}
			atomic_store(&cw_drain_sh->active, 0);
			atomic_store(&cw_drain_sh->pending, 0);
		}
	}
	atomic_store(&in_region, 0);
	my_region = 0;
	atomic_store(&sending, 0);
	atomic_store(&cw_drain_exit_deadline, 0);
	in_send = 0;
	if (fork_locked) {
		fork_locked = 0;
		pthread_mutex_unlock(&start_lock);
	} else {
		pthread_mutex_init(&start_lock, NULL);
		in_start = 0;
	}
}

/* A process that holds a socket we cover and is about to fork starts its
 * thread now (once): its children, fork-per-connection or prefork, then
 * hand their drains to it, and none of them pays for a thread of its own
 * (a first pthread_create in a fresh child costs tens of microseconds). A
 * process with no socket (a shell running commands) starts nothing. */
void cw_drain_before_fork(void)
{
	if (!may_share() || in_start || atomic_load(&remote))
		return;
	if (atomic_load(&chan_p) >= 0) {
		/* A thread started here, in a process that may never drain
		 * itself: its copy of Q goes now (invariant 1), not at a drain. */
		if (atomic_load(&start_q) >= 0)
			drop_program_q(0);
		return;
	}
	if (!atomic_load(&broken) && cw_fd_next_socket(0) >= 0)
		(void)start_channel();
}
