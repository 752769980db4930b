/* Drain engine: reading and discarding, timeouts, the background thread and
 * the synchronous loop. See drain.h and drain_int.h. */
#include "config.h"
#include "drain_int.h"
#include "real.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define THREAD_CHUNK (64 * 1024) /* reads of the drain thread */
#define SYNC_CHUNK 4096          /* reads inside close(), on the program's stack */
#define READS_PER_TURN 16        /* then the other sockets get their turn */
#define UNPOLLED_EVERY_NS (50 * 1000000LL) /* a socket epoll refused is looked at this often */
#define SYNC_POLL_MAX_MS 250     /* a sync drain re-reads its fd this often (dup2 may move it) */
#define EPOLL_BATCH 64

int64_t cw_drain_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* When this drain gives up: idle timeout, total timeout, or exit. */
static int64_t deadline_of(const struct cw_drain_slot *sl)
{
	int64_t idle = sl->last_ns + cw_cfg.drain_idle_ms * 1000000LL;
	int64_t total = sl->start_ns + cw_cfg.drain_timeout_ms * 1000000LL;
	int64_t d = idle < total ? idle : total;
	int64_t x = atomic_load(&cw_drain_exit_deadline);
	return x && x < d ? x : d;
}

/* Milliseconds from now to t, rounded up (never wake before a deadline). */
static int ms_until(int64_t t, int64_t now)
{
	int64_t ns = t - now;
	if (ns <= 0)
		return 0;
	int64_t ms = (ns + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* recv() returned 0 on a seqpacket socket: EOF, or an empty record? */
static int peer_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

/* The connection failed while we drained: reset by the peer, or (timed out
 * retransmitting, unreachable, …) a timeout of a kind. */
static int result_of_errno(int e)
{
	return e == ECONNRESET || e == EPIPE || e == ECONNABORTED ? CW_DRAIN_PEER_RESET : CW_DRAIN_TIMEOUT;
}

/* Read and discard what is there, a bounded number of reads. Returns 1 when
 * the drain is over (sl->result set). Only the slot's owner calls this. */
static int read_some(struct cw_drain_slot *sl, char *buf, size_t cap)
{
	int over = 0;
	cw_drain_spin_lock(&sl->busy);
	int fd = atomic_load(&sl->fd);
	for (int k = 0; fd >= 0 && k < READS_PER_TURN; k++) {
		/* TCP discards without copying with MSG_TRUNC (never more than
		 * cap: the count is what the peer sent). */
		ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT | (sl->tcp ? MSG_TRUNC : 0));
		if (n > 0) {
			sl->discarded += (uint64_t)n;
			sl->last_ns = cw_drain_now_ns();
			continue;
		}
		if (n == 0) {
			if (sl->seqpacket && !peer_closed(fd))
				continue;
			sl->result = CW_DRAIN_DELIVERED;
			over = 1;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			sl->result = result_of_errno(errno);
			over = 1;
		}
		break;
	}
	cw_drain_spin_unlock(&sl->busy);
	return over;
}

/* ---- the background thread ---------------------------------------------------- */

static char thread_buf[THREAD_CHUNK]; /* the drain thread's only: contents never used */

/* A drain handed over by close(): queued data and FIN go out, and the
 * socket joins our epoll set (if epoll refuses it, scan() reads it). */
static void start(int s, struct cw_drain_slot *sl)
{
	cw_drain_spin_lock(&sl->busy);
	int fd = atomic_load(&sl->fd);
	if (fd >= 0) {
		REAL(shutdown)(fd, SHUT_WR);
		struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)s};
		atomic_store(&sl->registered,
			     epoll_ctl(atomic_load(&cw_drain_ep), EPOLL_CTL_ADD, fd, &e) == 0);
	}
	atomic_store(&sl->started, 1);
	cw_drain_spin_unlock(&sl->busy);
}

/* End the drains past their deadline; look at sockets that epoll refused.
 * Returns the next deadline (INT64_MAX: none). Deadlines only move later
 * when data arrives, so until a new drain starts (a wake-up) the next scan
 * is due no earlier than this. */
static int64_t scan(int64_t now)
{
	int64_t next = INT64_MAX;
	int hw = atomic_load(&cw_drain_hw);
	for (int i = 0; i < hw; i++) {
		struct cw_drain_slot *sl = &cw_drain_slots[i];
		if (atomic_load_explicit(&sl->state, memory_order_acquire) != CW_SLOT_ASYNC)
			continue;
		if (!atomic_load(&sl->started)) {
			start(i, sl); /* FIN first, then the record */
			if (!sl->quiet) /* else its outcome decides (cw_drain_finish) */
				cw_drain_log_close(i);
		}
		int polled = atomic_load(&sl->registered);
		if (atomic_load(&sl->fd) < 0) { /* lost to a dup2 (drain.c) */
			sl->result = CW_DRAIN_TIMEOUT;
			cw_drain_finish(i);
			continue;
		}
		if (!polled && read_some(sl, thread_buf, sizeof thread_buf)) {
			cw_drain_finish(i);
			continue;
		}
		int64_t d = deadline_of(sl);
		if (now >= d) {
			sl->result = CW_DRAIN_TIMEOUT;
			cw_drain_finish(i);
			continue;
		}
		if (!polled && d > now + UNPOLLED_EVERY_NS)
			d = now + UNPOLLED_EVERY_NS;
		if (d < next)
			next = d;
	}
	return next;
}

void *cw_drain_thread(void *arg)
{
	(void)arg;
	atomic_store_explicit(&cw_drain_thread_up, 1, memory_order_release);
	prctl(PR_SET_NAME, "closewatch-drn", 0, 0, 0);
	/* SCHED_BATCH: a fair share of the CPU as before (same nice value), but
	 * waking up never preempts the running thread (the scheduler leaves
	 * that to the tick). Without it, the close() that hands a drain over
	 * was often preempted by this thread on the same CPU, and the FIN's
	 * loopback processing landed inside the program's close(). Failure
	 * (a seccomp filter) only costs that. */
	struct sched_param batch = {0};
	sched_setscheduler(0, SCHED_BATCH, &batch);
	struct epoll_event evs[EPOLL_BATCH];
	int64_t next_scan = 0;
	for (;;) {
		int64_t now = cw_drain_now_ns();
		if (now >= next_scan)
			next_scan = scan(now);
		int timeout = next_scan == INT64_MAX ? -1 : ms_until(next_scan, now);
		atomic_store(&cw_drain_in_wait, 1);
		int n = epoll_wait(atomic_load(&cw_drain_ep), evs, EPOLL_BATCH, timeout);
		atomic_store(&cw_drain_in_wait, 0);
		atomic_fetch_add(&cw_drain_wait_epoch, 1);
		if (n < 0) {
			if (errno != EINTR) {
				/* Our epoll fd was being moved (dup2): try again. */
				struct timespec ms = {0, 1000000};
				nanosleep(&ms, NULL);
			}
			continue;
		}
		for (int i = 0; i < n; i++) {
			uint32_t s = evs[i].data.u32;
			if (s == CW_DRAIN_WAKE_TAG) { /* edge-triggered: nothing to read */
				next_scan = 0;
				continue;
			}
			if (s >= (uint32_t)cw_drain_nslots)
				continue;
			struct cw_drain_slot *sl = &cw_drain_slots[s];
			/* An event of a drain that ended in this batch is ignored,
			 * or harmless for the drain that took its slot since. */
			if (atomic_load_explicit(&sl->state, memory_order_acquire) != CW_SLOT_ASYNC)
				continue;
			if (read_some(sl, thread_buf, sizeof thread_buf))
				cw_drain_finish((int)s);
		}
	}
	return NULL;
}

/* ---- the synchronous loop (CLOSEWATCH_DRAIN_SYNC=1) ------------------------------ */

void cw_drain_run_sync(int s)
{
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	char buf[SYNC_CHUNK];
	int oldstate;
	/* poll() is a cancellation point: a cancelled thread would leave our
	 * slot and fd behind. close() itself still is one, after us. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &oldstate);
	int locked = cw_drain_lock() == 0;
	REAL(shutdown)(atomic_load(&sl->fd), SHUT_WR);
	atomic_store_explicit(&sl->state, CW_SLOT_SYNC, memory_order_release);
	if (locked)
		cw_drain_unlock();
	while (!read_some(sl, buf, sizeof buf)) {
		int64_t now = cw_drain_now_ns(), d = deadline_of(sl);
		if (now >= d || atomic_load(&sl->fd) < 0) {
			sl->result = CW_DRAIN_TIMEOUT;
			break;
		}
		int ms = ms_until(d, now);
		struct pollfd p = {.fd = atomic_load(&sl->fd), .events = POLLIN | POLLRDHUP};
		poll(&p, 1, ms < SYNC_POLL_MAX_MS ? ms : SYNC_POLL_MAX_MS);
	}
	cw_drain_finish(s);
	pthread_setcancelstate(oldstate, NULL);
}
