/* Drain engine, the drain thread: it takes a table of its own, receives
 * drains over its end of the channel, sends FIN (unless the closer has),
 * reads and discards, times out, and writes the records. See drain.h and
 * drain_int.h. */
#include "config.h"
#include "drain_int.h"
#include "logwriter.h"
#include "real.h"

#include <errno.h>
#include <limits.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define THREAD_CHUNK (64 * 1024) /* reads of the drain thread */
#define READS_PER_TURN 16        /* then the other sockets get their turn */
#define EPOLL_BATCH 64
#define CHANNEL_TAG UINT32_MAX   /* epoll data of Q */
/* While drains come often, Q is looked at every POLL_MS instead (pace()). */
#define POLL_MS 1
#define BUSY_NS (50 * 1000000LL) /* "often": the last message less than this ago */

/* A sanitizer build (make check) keeps fd 2 in the thread's table: the
 * sanitizer writes its reports there. CW_OWN_FD (real.h): each fd call of
 * the thread, on its own table. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEEP_STDERR 2
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEP_STDERR 2
#endif
#endif
#ifndef KEEP_STDERR
#define KEEP_STDERR -1
#endif

/* The thread's own state: nobody else reads it. */
struct drainer {
	int q, ep;
	unsigned gen;
	int own;       /* its drains not yet over */
	int eof;       /* P is gone: end once own is 0 */
	int q_in_set;  /* Q is in our epoll set (a message wakes us), else polled (pace) */
	int elsewhere; /* the last drain came from a thread on another CPU than ours */
	int64_t last_msg_ns;
	int err;       /* its copy of the program's stderr, while it has drains */
	char *buf;
};

int64_t cw_drain_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* When this drain gives up: idle timeout, total timeout, or exit. */
static int64_t deadline_of(const struct cw_drain_slot *sl)
{
	if (atomic_load(&sl->cut))
		return sl->start_ns; /* past: ends now (cw_drain_cut_local_peers) */
	int64_t idle = sl->last_ns + cw_cfg.drain_idle_ms * 1000000LL;
	int64_t total = sl->start_ns + cw_cfg.drain_timeout_ms * 1000000LL;
	int64_t d = idle < total ? idle : total;
	int64_t x = atomic_load(&cw_drain_exit_deadline);
	return x && x < d ? x : d;
}

/* recv() returned 0 on a seqpacket socket: EOF, or an empty record? */
static int peer_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return CW_OWN_FD(poll(&p, 1, 0)) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

/* Read and discard what is there, a bounded number of reads. Returns 1 when
 * the drain is over (sl->result set; a lost socket, fd -1, is a timeout). */
static int read_some(struct cw_drain_slot *sl, char *buf)
{
	for (int k = 0; sl->fd >= 0 && k < READS_PER_TURN; k++) {
		/* TCP discards without copying with MSG_TRUNC (never more than
		 * the buffer: the count is what the peer sent). */
		ssize_t n = CW_OWN_FD(recv(sl->fd, buf, THREAD_CHUNK, MSG_DONTWAIT | (sl->tcp ? MSG_TRUNC : 0)));
		if (n > 0) {
			sl->discarded += (uint64_t)n;
			sl->last_ns = cw_drain_now_ns();
		} else if (n == 0 && (!sl->seqpacket || peer_closed(sl->fd))) {
			sl->result = CW_DRAIN_DELIVERED;
			return 1;
		} else if (n < 0 && errno == EAGAIN) {
			return 0;
		} else if (n < 0 && errno != EINTR) {
			/* Reset by the peer, or (timed out retransmitting,
			 * unreachable, …) a timeout of a kind. */
			int e = errno;
			sl->result = e == ECONNRESET || e == EPIPE || e == ECONNABORTED
					     ? CW_DRAIN_PEER_RESET : CW_DRAIN_TIMEOUT;
			return 1;
		}
	}
	return sl->fd < 0;
}

static int mine(const struct drainer *d, uint32_t s)
{
	return s < (uint32_t)cw_drain_nslots && atomic_load(&cw_drain_slots[s].owner) == d->gen &&
	       atomic_load_explicit(&cw_drain_slots[s].state, memory_order_acquire) == CW_SLOT_SENT;
}

static void write_close_record(int s)
{
	cw_log_event(&cw_drain_events[s]);
	atomic_store(&cw_drain_slots[s].close_written, 1);
}

/* The drain of slot s is over: the socket goes, then its records. */
static void finish(struct drainer *d, int s)
{
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	if (sl->fd >= 0) {
		/* Our close takes the socket out of our epoll set only if ours
		 * is the last reference: the program's close() may not have run
		 * yet. A registration still armed (a timeout, an exit) would then
		 * report for a slot since reused; one that has reported (the
		 * drain ended on that report) is silent (EPOLLONESHOT) and goes
		 * with the socket. */
		struct epoll_event unused;
		if (sl->armed > 0)
			CW_OWN_FD(epoll_ctl(d->ep, EPOLL_CTL_DEL, sl->fd, &unused));
		/* SO_LINGER {1,N}: our close must not block the thread (the
		 * queue still drains after close, as an orphan). */
		struct linger off = {0, 0};
		if (sl->linger > 0)
			CW_OWN_FD(REAL(setsockopt)(sl->fd, SOL_SOCKET, SO_LINGER, &off, sizeof off));
		CW_OWN_FD(REAL(close)(sl->fd));
	}
	/* A quiet drain that lost nothing writes nothing, unless a FLUSH wrote
	 * its close record: then its drain record follows. */
	int written = atomic_load(&sl->close_written);
	if (!sl->quiet || sl->result != CW_DRAIN_DELIVERED || sl->discarded || written) {
		if (!written)
			write_close_record(s);
		struct cw_event *ev = &cw_drain_events[s];
		int64_t waited = cw_drain_now_ns() - sl->start_ns;
		ev->call = CW_CALL_DRAIN;
		ev->drain_result = sl->result < 0 ? CW_DRAIN_TIMEOUT : sl->result;
		ev->discarded = sl->discarded;
		ev->waited_ms = waited > 0 ? (uint64_t)(waited / 1000000) : 0;
		clock_gettime(CLOCK_REALTIME, &ev->ts);
		cw_log_event(ev);
	}
	atomic_fetch_sub(&cw_drain_sh->pending, 1);
	cw_drain_release(s);
	if (--d->own == 0 && d->err >= 0) { /* the program's stderr is not held while idle */
		cw_log_own_stderr(-1);
		CW_OWN_FD(REAL(close)(d->err));
		d->err = -1;
	}
}

/* One report from slot s's socket, then it is silent until armed again
 * (EPOLLONESHOT): a drain that ends on a report leaves nothing that can
 * report again, so finish() need not take it out of the set (see there).
 * Refused (a socket epoll does not take): the drain ends at the next scan,
 * a timeout, its fd given up. */
static void arm(struct drainer *d, int s)
{
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.u32 = (uint32_t)s};
	int op = sl->armed < 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (CW_OWN_FD(epoll_ctl(d->ep, op, sl->fd, &e)) == 0) {
		sl->armed = 1;
	} else {
		CW_OWN_FD(REAL(close)(sl->fd));
		sl->fd = -1;
		sl->armed = 0;
	}
}

/* Read what slot s's socket has; then the drain is over, or it waits for
 * the next report. */
static void read_or_arm(struct drainer *d, int s)
{
	if (read_some(&cw_drain_slots[s], d->buf))
		finish(d, s);
	else
		arm(d, s);
}

/* A drain handed over: FIN (unless the closer has sent it), the close
 * record, one read at once; a drain not over by then joins our epoll set
 * (refused: it ends at the next scan, as a timeout; see arm). */
static void take(struct drainer *d, int s, int fd, int err)
{
	if (err >= 0) {
		if (d->err >= 0)
			CW_OWN_FD(REAL(close)(d->err));
		cw_log_own_stderr(d->err = err);
	}
	if (!(s >= 0 && s < cw_drain_nslots && atomic_load_explicit(&cw_drain_slots[s].state,
								    memory_order_acquire) == CW_SLOT_SENT)) {
		if (fd >= 0)
			CW_OWN_FD(REAL(close)(fd)); /* never sent so */
		return;
	}
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	if (sl->cpu >= 0)
		d->elsewhere = sl->cpu != sched_getcpu();
	if (fd >= 0 && !sl->closer_shuts) /* -1: lost on the way (our table full) */
		CW_OWN_FD(REAL(shutdown)(fd, SHUT_WR));
	sl->fd = fd;
	atomic_store(&sl->owner, d->gen);
	d->own++;
	if (!sl->quiet)
		write_close_record(s); /* FIN first, then the record */
	/* This thread runs after the closer (SCHED_BATCH): by now the peer has
	 * often read the answer and closed. Then the drain is over without
	 * ever joining the epoll set. */
	if (fd >= 0)
		read_or_arm(d, s);
}

/* One message from Q (n bytes, and the fds it carried). */
static void handle(struct drainer *d, const struct cw_drain_msg *m, ssize_t n, int fds[2])
{
	int whole = n == (ssize_t)sizeof *m;
	if (whole && m->type == CW_MSG_DRAIN) {
		take(d, m->n, fds[0], fds[1]);
		return;
	}
	if (whole && m->type == CW_MSG_LOG && fds[1] < 0) {
		cw_log_own_fd(fds[0]);
		return;
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			CW_OWN_FD(REAL(close)(fds[i]));
	if (!whole || m->type != CW_MSG_FLUSH)
		return;
	for (int i = 0, hw = atomic_load(&cw_drain_sh->hw); i < hw; i++)
		if (mine(d, (uint32_t)i) && !atomic_load(&cw_drain_slots[i].close_written))
			write_close_record(i);
	atomic_store(&cw_drain_flushed, m->n);
	cw_drain_wake_word(&cw_drain_flushed);
}

/* Every message waiting on Q, in order: up to RECV_BATCH per recvmmsg, so
 * that a wake-up for one drain costs one call, not a second one to learn
 * that Q is empty. */
#define RECV_BATCH 8
static int receive(struct drainer *d)
{
	int handled = 0;
	for (;;) {
		struct cw_drain_msg m[RECV_BATCH];
		struct iovec v[RECV_BATCH];
		union {
			char buf[CMSG_SPACE(2 * sizeof(int))];
			struct cmsghdr align;
		} u[RECV_BATCH];
		struct mmsghdr h[RECV_BATCH];
		for (int i = 0; i < RECV_BATCH; i++) {
			v[i] = (struct iovec){&m[i], sizeof m[i]};
			h[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &v[i], .msg_iovlen = 1,
							    .msg_control = u[i].buf,
							    .msg_controllen = sizeof u[i].buf}};
		}
		int got = CW_OWN_FD(REAL(recvmmsg)(d->q, h, RECV_BATCH, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL));
		if (got < 0 && errno == EINTR)
			continue;
		for (int i = 0; i < got; i++) {
			if (h[i].msg_len == 0) { /* P is gone (given up, or the process is ending) */
				struct epoll_event unused;
				CW_OWN_FD(epoll_ctl(d->ep, EPOLL_CTL_DEL, d->q, &unused));
				d->eof = 1;
				return handled;
			}
			int fds[2] = {-1, -1};
			struct cmsghdr *c = CMSG_FIRSTHDR(&h[i].msg_hdr);
			size_t k = c && c->cmsg_type == SCM_RIGHTS ? c->cmsg_len - CMSG_LEN(0) : 0;
			if (k)
				memcpy(fds, CMSG_DATA(c), k < sizeof fds ? k : sizeof fds);
			handle(d, &m[i], (ssize_t)h[i].msg_len, fds);
			handled++;
		}
		if (got < RECV_BATCH)
			return handled;
	}
}

/* Waking this thread when it sleeps on another CPU is paid by the sender:
 * about 12 us on the 2-vCPU VMs measured (the wake-up's interrupt to the
 * other CPU), more than the rest of a drained close(), which otherwise
 * takes 2-3 us. So while drains come often from threads on other CPUs, Q
 * is out of our epoll set and we look at it every POLL_MS: a close() that
 * hands a drain over wakes nobody, and the drain starts at most POLL_MS
 * later (the closer has sent FIN already where close() would have, so
 * only rst_unread's FIN waits for us). Drains from our own CPU (a program
 * pinned there, as nginx often is) wake us as before: that costs the
 * sender little, and a woken SCHED_BATCH thread runs when the CPU is free,
 * where a timer's batch of drains would run in the program's way. Quiet
 * for BUSY_NS: Q goes back in the set, and the next message wakes us
 * (level-triggered: one that came meanwhile reports at once). Not with
 * DRAIN_SYNC=1: close() waits for us there. */
static void pace(struct drainer *d, int got, int64_t now)
{
	if (d->eof || cw_cfg.drain_sync)
		return;
	if (got)
		d->last_msg_ns = now;
	int polled = d->elsewhere && now - d->last_msg_ns <= BUSY_NS;
	struct epoll_event e = {.events = EPOLLIN, .data.u32 = CHANNEL_TAG};
	if (polled && d->q_in_set && CW_OWN_FD(epoll_ctl(d->ep, EPOLL_CTL_DEL, d->q, &e)) == 0)
		d->q_in_set = 0;
	else if (!polled && !d->q_in_set && CW_OWN_FD(epoll_ctl(d->ep, EPOLL_CTL_ADD, d->q, &e)) == 0)
		d->q_in_set = 1;
}

/* End the drains past their deadline. Returns the next deadline (INT64_MAX:
 * none). Deadlines only move later when data arrives, so until a message
 * comes the next scan is due no earlier than this. */
static int64_t scan(struct drainer *d, int64_t now)
{
	int64_t next = INT64_MAX;
	for (int i = 0, hw = atomic_load(&cw_drain_sh->hw); i < hw && d->own > 0; i++) {
		if (!mine(d, (uint32_t)i))
			continue;
		int64_t t = deadline_of(&cw_drain_slots[i]);
		if (now >= t || cw_drain_slots[i].fd < 0)
			finish(d, i);
		else if (t < next)
			next = t;
	}
	return next;
}

/* The shim's thread: a table of its own, holding Q only (and its log
 * target, which comes over Q). close_range's unshare copies only the fds
 * below its first (the engine's other fds are high): the copy of the
 * program's table is small and lives microseconds. unshare's way where
 * close_range cannot (Linux before 5.9). */
static int take_own_table(int q)
{
	if (CW_OWN_FD(REAL(close_range)((unsigned)q + 1, ~0U, CLOSE_RANGE_UNSHARE)) < 0) {
		if (unshare(CLONE_FILES) < 0)
			return -1;
		CW_OWN_FD(REAL(close_range)((unsigned)q + 1, ~0U, 0));
	}
	/* Below Q: all, but fd 2 in a sanitizer build. */
	int k = KEEP_STDERR >= 0 && KEEP_STDERR < q ? KEEP_STDERR : q;
	if (k > 0)
		CW_OWN_FD(REAL(close_range)(0, (unsigned)k - 1, 0));
	if (k + 1 < q)
		CW_OWN_FD(REAL(close_range)((unsigned)k + 1, (unsigned)q - 1, 0));
	return 0;
}

void *cw_drain_thread(void *arg)
{
	const struct cw_drain_start *st = arg;
	char buf[THREAD_CHUNK]; /* contents never used */
	struct drainer d = {.q = st->q, .ep = -1, .gen = st->gen, .err = -1, .buf = buf, .q_in_set = 1};
	int own_table = st->own_table;
	prctl(PR_SET_NAME, "closewatch-drn", 0, 0, 0);
	/* SCHED_BATCH: a fair share of the CPU as before (same nice value), but
	 * waking up never preempts the running thread (the scheduler leaves
	 * that to the tick). Without it, the close() that hands a drain over
	 * was often preempted by this thread on the same CPU, and the FIN's
	 * loopback processing landed inside the program's close(). Failure
	 * (a seccomp filter) only costs that. First thing: */
	struct sched_param batch = {0};
	sched_setscheduler(0, SCHED_BATCH, &batch);
	/* Then (its table's copy is work: as SCHED_BATCH, it does not take the
	 * CPU from the close() that started it) a table of its own. Failing
	 * that (a seccomp filter, an old kernel), the shim's thread touches no
	 * fd: its table is still the program's. */
	int unshared = own_table && take_own_table(d.q) == 0;
	if (unshared)
		cw_log_own_begin(st->log_mode);
	int ok = !own_table || unshared;
	struct epoll_event evs[EPOLL_BATCH] = {{.events = EPOLLIN, .data.u32 = CHANNEL_TAG}};
	if (ok)
		ok = (d.ep = CW_OWN_FD(REAL(epoll_create1)(EPOLL_CLOEXEC))) >= 0 &&
		     CW_OWN_FD(epoll_ctl(d.ep, EPOLL_CTL_ADD, d.q, &evs[0])) == 0;
	if (!ok)
		atomic_store(&cw_drain_broken, 1);
	atomic_store(&cw_drain_q_taken, 1); /* after reading st: the starter's again */
	cw_drain_wake_word(&cw_drain_q_taken);
	int64_t next_scan = INT64_MAX;
	while (ok && !(d.eof && d.own == 0)) {
		int64_t now = cw_drain_now_ns();
		if (now >= next_scan)
			next_scan = scan(&d, now);
		/* In milliseconds, rounded up: never wake before a deadline. */
		int64_t ms = next_scan == INT64_MAX ? -1
			     : next_scan <= now	   ? 0
						   : (next_scan - now + 999999) / 1000000;
		int polled = !d.q_in_set && !d.eof;
		if (polled && (ms < 0 || ms > POLL_MS))
			ms = POLL_MS;
		int n = CW_OWN_FD(epoll_wait(d.ep, evs, EPOLL_BATCH, ms < 0 ? -1 : ms > INT_MAX ? INT_MAX : (int)ms));
		int got = 0, channel = polled;
		for (int i = 0; i < n; i++) {
			uint32_t s = evs[i].data.u32;
			if (s == CHANNEL_TAG) {
				channel = 1;
			} else if (mine(&d, s)) {
				cw_drain_slots[s].armed = -1; /* reported: silent until re-armed */
				read_or_arm(&d, (int)s);
			}
		}
		if (channel) {
			got = receive(&d);
			if (got || d.eof)
				next_scan = 0; /* new drains, an exit deadline, or EOF */
		}
		pace(&d, got, cw_drain_now_ns());
	}
	/* The channel is gone and so are our drains (or we never started). */
	if (d.ep >= 0)
		CW_OWN_FD(REAL(close)(d.ep));
	if (d.err >= 0)
		CW_OWN_FD(REAL(close)(d.err));
	if (!own_table || unshared) /* else the program's side closes it */
		CW_OWN_FD(REAL(close)(d.q));
	if (unshared)
		cw_log_own_end();
	return NULL;
}
