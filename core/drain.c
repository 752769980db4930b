/* Drain engine: policy, the slot table, the life of our private fds, fork
 * and exit. See drain.h for the design, drain_int.h for the locks, and
 * drain_loop.c for the reading itself. */
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
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK (256 * 1024)
#define EXIT_GRACE_NS (500 * 1000000LL) /* for the thread to write the last records */
#define MAX_PROGRAM_EPOLLS 64

/* A sanitizer build (make check): see wait_thread_up. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CW_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CW_SANITIZED 1
#endif
#endif

struct cw_drain_slot *cw_drain_slots;
struct cw_event *cw_drain_events;
int cw_drain_nslots;
atomic_int cw_drain_hw;
atomic_int cw_drain_active;
atomic_int cw_drain_async_pending;
atomic_int cw_drain_ep = -1, cw_drain_wake = -1;
atomic_llong cw_drain_exit_deadline;
atomic_int cw_drain_in_wait;
atomic_uint cw_drain_wait_epoch;
atomic_int cw_drain_thread_up;

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int thread_running;
/* This thread holds `lock` (in_lock), or took it for a fork (fork_locked),
 * or holds a slot's busy flag (busy_held). */
static __thread int in_lock __attribute__((tls_model("initial-exec")));
static __thread int fork_locked __attribute__((tls_model("initial-exec")));
static __thread int busy_held __attribute__((tls_model("initial-exec")));
static __thread int in_prepare __attribute__((tls_model("initial-exec")));
static int fork_locked_slots; /* busy flags fork_prepare took: [0, this) */

/* The closing threads' side takes no lock. Instead: `preparing` counts
 * threads inside cw_drain_prepare (claiming a slot and duplicating), and
 * `gate_shut` asks them to wait while a fork or a relocation (dup2 onto one
 * of our numbers), both under the engine lock, needs no duplicate half made;
 * `waking` counts writers of the eventfd, which a relocation of the eventfd
 * waits out before closing the old number. Counters, not locks: closing
 * threads never wait for each other. */
static atomic_int preparing, gate_shut, waking;

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

/* ---- locks ----------------------------------------------------------------- */

int cw_drain_lock(void)
{
	if (in_lock || fork_locked)
		return -1; /* a signal handler inside our own locked section */
	pthread_mutex_lock(&lock);
	in_lock = 1;
	return 0;
}

void cw_drain_unlock(void)
{
	in_lock = 0;
	pthread_mutex_unlock(&lock);
}

void cw_drain_spin_lock(atomic_int *flag)
{
	while (atomic_exchange_explicit(flag, 1, memory_order_acquire))
		sched_yield();
	busy_held++;
}

void cw_drain_spin_unlock(atomic_int *flag)
{
	busy_held--;
	atomic_store_explicit(flag, 0, memory_order_release);
}

/* Under the engine lock: no cw_drain_prepare in flight from now on, until
 * open_gate(). Bounded: a thread stopped inside prepare (a debugger) only
 * costs time. */
static void shut_gate(void)
{
	atomic_store(&gate_shut, 1);
	for (int i = 0; i < 1000000 && atomic_load(&preparing); i++)
		sched_yield();
}

static void open_gate(void)
{
	atomic_store(&gate_shut, 0);
}

void cw_drain_wake_up(void)
{
	atomic_fetch_add(&waking, 1);
	uint64_t one = 1;
	(void)!write(atomic_load(&cw_drain_wake), &one, sizeof one);
	atomic_fetch_sub(&waking, 1);
}

/* ---- our fds ----------------------------------------------------------------- */

/* Forget before closing: once closed, the number may be the program's. */
static void close_private(int fd)
{
	if (fd < 0)
		return;
	cw_fd_clear(fd);
	REAL(close)(fd);
}

/* ---- the drain thread's fds and the thread itself ------------------------- */

/* fd moved to a private high number, or -1 (and fd closed). */
static int hide(int fd)
{
	if (fd < 0)
		return -1;
	int h = cw_fd_hide(fd);
	if (h < 0)
		REAL(close)(fd);
	return h;
}

/* Sanitizer builds only: return once the new thread runs our code. Its
 * start-up allocates in a sanitizer's runtime (ASan's thread setup does, in
 * the new thread), and that allocator is not fork-safe (ASan's in GCC 12 is
 * not): a child the program forks meanwhile inherits its lock held and hangs
 * in its first malloc. Once per process, at the first drain; bounded, so a
 * thread that is slow to run only costs time. glibc's pthread_create and the
 * thread's start-up are fork-safe, so a production build does not wait: a
 * process's first drained close (every close of a fork-per-connection
 * server's child) costs the thread's creation, not its scheduling. */
#ifdef CW_SANITIZED
#define THREAD_UP_WAIT_NS (1000 * 1000000LL)
static void wait_thread_up(void)
{
	int64_t give_up = cw_drain_now_ns() + THREAD_UP_WAIT_NS;
	struct timespec tick = {0, 20000};
	while (!atomic_load_explicit(&cw_drain_thread_up, memory_order_acquire) &&
	       cw_drain_now_ns() < give_up)
		nanosleep(&tick, NULL);
}
#else
static void wait_thread_up(void)
{
}
#endif

static int engine_start_locked(void)
{
	if (atomic_load(&thread_running))
		return 0;
	int ep = hide(REAL(epoll_create1)(EPOLL_CLOEXEC));
	int wake = hide(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	/* Edge-triggered: every write is an event, and the counter is never
	 * read (2^64 wake-ups away from full), so the thread takes no lock for
	 * a wake-up that a dup2 onto the eventfd's number could race with. */
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = CW_DRAIN_WAKE_TAG};
	if (ep < 0 || wake < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) < 0)
		goto fail;
	atomic_store(&cw_drain_ep, ep);
	atomic_store(&cw_drain_wake, wake);

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	/* Our thread must never run the program's signal handlers. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	int rc = pthread_create(&t, &attr, cw_drain_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0) {
		atomic_store(&thread_running, 1);
		wait_thread_up();
		return 0;
	}
	atomic_store(&cw_drain_ep, -1);
	atomic_store(&cw_drain_wake, -1);
fail:
	close_private(ep);
	close_private(wake);
	return -1;
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

/* What close(fd) would have done, had our duplicate not kept the socket
 * alive: take fd out of the program's epoll sets. */
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

/* ---- slots ------------------------------------------------------------------ */

void cw_drain_init(void)
{
	if (cw_cfg.mode != CW_MODE_DRAIN || cw_cfg.drain_max <= 0 || cw_drain_slots)
		return;
	size_t n = (size_t)cw_cfg.drain_max;
	/* Zero pages are free slots; only the pages of slots used get backed. */
	void *s = mmap(NULL, n * sizeof *cw_drain_slots, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	void *e = mmap(NULL, n * sizeof *cw_drain_events, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s == MAP_FAILED || e == MAP_FAILED) {
		if (s != MAP_FAILED)
			munmap(s, n * sizeof *cw_drain_slots);
		if (e != MAP_FAILED)
			munmap(e, n * sizeof *cw_drain_events);
		return; /* every drain will be skipped */
	}
	cw_drain_slots = s;
	cw_drain_events = e;
	cw_drain_nslots = (int)n;
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static int claim_slot(void)
{
	for (int i = 0; i < cw_drain_nslots; i++) {
		int expected = CW_SLOT_FREE;
		if (atomic_compare_exchange_strong(&cw_drain_slots[i].state, &expected, CW_SLOT_CLAIMED)) {
			int hw = atomic_load(&cw_drain_hw);
			while (hw <= i && !atomic_compare_exchange_weak(&cw_drain_hw, &hw, i + 1))
				;
			return i;
		}
	}
	return -1;
}

/* The first drain starts the engine (epoll, eventfd, thread). */
static int engine_ready(void)
{
	if (cw_cfg.drain_sync || atomic_load(&thread_running))
		return 1;
	if (cw_drain_lock() < 0)
		return 0;
	int ok = engine_start_locked() == 0;
	cw_drain_unlock();
	return ok;
}

static void release_slot(int s)
{
	atomic_store_explicit(&cw_drain_slots[s].state, CW_SLOT_FREE, memory_order_release);
	atomic_fetch_sub(&cw_drain_active, 1);
}

static int prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t, int adopt);

int cw_drain_prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t)
{
	return prepare(fd, ev, t, 0);
}

int cw_drain_prepare_adopt(int fd, const struct cw_event *ev, struct cw_drain_ticket *t)
{
	return prepare(fd, ev, t, 1);
}

static int prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t, int adopt)
{
	t->fd = t->slot = -1;
	if (!cw_drain_slots)
		return CW_ACTION_DRAIN_SKIPPED;
	if (atomic_fetch_add(&cw_drain_active, 1) >= cw_drain_nslots) {
		atomic_fetch_sub(&cw_drain_active, 1);
		return CW_ACTION_DRAIN_SKIPPED;
	}
	/* A signal handler that interrupted a fork or a relocation on this
	 * thread would wait for itself at the gate. */
	if (in_lock || fork_locked || in_prepare || !engine_ready()) {
		atomic_fetch_sub(&cw_drain_active, 1);
		return CW_ACTION_DRAIN_SKIPPED;
	}
	in_prepare = 1;
	for (;;) {
		atomic_fetch_add(&preparing, 1);
		if (!atomic_load(&gate_shut))
			break;
		atomic_fetch_sub(&preparing, 1);
		while (atomic_load(&gate_shut))
			sched_yield();
	}
	int s = claim_slot(), d = -1;
	if (s >= 0 && adopt) {
		cw_fd_set(fd, CW_FD_PRIVATE);
		d = fd;
	} else if (s >= 0 && (d = cw_fd_dup_private(fd)) < 0) {
		atomic_store(&cw_drain_slots[s].state, CW_SLOT_FREE);
		s = -1;
	}
	if (s >= 0) {
		struct cw_drain_slot *sl = &cw_drain_slots[s];
		atomic_store(&sl->registered, 0);
		atomic_store(&sl->started, 0);
		/* Nothing to write until cw_drain_go has copied the event. */
		atomic_store(&sl->close_logged, CLOSE_RECORD_WRITTEN);
		sl->tcp = ev->rec.proto == CLOSEWATCH_PROTO_TCP;
		sl->seqpacket = ev->rec.sotype == SOCK_SEQPACKET;
		sl->linger = ev->rec.linger;
		sl->quiet = cw_drain_quiet(ev);
		sl->result = -1;
		sl->start_ns = sl->last_ns = cw_drain_now_ns();
		sl->discarded = 0;
		atomic_store(&sl->fd, d);
	}
	atomic_fetch_sub(&preparing, 1);
	in_prepare = 0;
	if (s < 0) {
		atomic_fetch_sub(&cw_drain_active, 1);
		return CW_ACTION_DRAIN_SKIPPED;
	}
	leave_program_epolls(fd);
	t->fd = d;
	t->slot = s;
	return CW_ACTION_DRAINED;
}

void cw_drain_go(struct cw_drain_ticket *t, const struct cw_event *ev)
{
	int s = t->slot;
	if (s < 0 || s >= cw_drain_nslots)
		return;
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	memcpy(&cw_drain_events[s], ev, sizeof *ev);
	if (cw_cfg.drain_sync) {
		/* close() wrote the close record, as usual; a quiet one is
		 * written at the end, if the drain's outcome makes it due. */
		if (sl->quiet)
			atomic_store(&sl->close_logged, CLOSE_RECORD_DUE);
		/* The drain may take seconds: forks of other threads do not
		 * wait for it (forkgate.h; the socket is judged already). */
		int paused = cw_forkgate_close_pause();
		cw_drain_run_sync(s);
		cw_forkgate_close_resume(paused);
		return;
	}
	atomic_store(&sl->close_logged, CLOSE_RECORD_DUE); /* after the copy */
	/* close() only hands over, without a lock: the drain thread sends FIN,
	 * registers the socket and writes the close record (drain_loop.c). */
	atomic_fetch_add(&cw_drain_async_pending, 1);
	atomic_store_explicit(&sl->state, CW_SLOT_ASYNC, memory_order_release);
	cw_drain_wake_up();
	t->slot = -1;
}

void cw_drain_log_close(int s)
{
	atomic_int *state = &cw_drain_slots[s].close_logged;
	int expected = CLOSE_RECORD_DUE;
	if (atomic_compare_exchange_strong(state, &expected, CLOSE_RECORD_WRITING)) {
		cw_log_event(&cw_drain_events[s]);
		atomic_store(state, CLOSE_RECORD_WRITTEN);
		return;
	}
	/* Another thread writes it (the drain thread, or a flush at _exit or
	 * exec): on return it is out, and the event free to change. Bounded,
	 * in case that thread never finishes (a signal handler's _exit). */
	struct timespec tick = {0, 50000};
	for (int i = 0; i < 2000 && atomic_load(state) != CLOSE_RECORD_WRITTEN; i++)
		nanosleep(&tick, NULL);
}

void cw_drain_flush_close_records(void)
{
	if (!cw_drain_slots || atomic_load(&cw_drain_async_pending) == 0 || cw_drain_lock() < 0)
		return;
	/* A record is DUE only once cw_drain_go has copied its event, and
	 * finish() waits while we write one: each is written whole, once. */
	int hw = atomic_load(&cw_drain_hw);
	for (int i = 0; i < hw; i++)
		if (atomic_load(&cw_drain_slots[i].state) == CW_SLOT_ASYNC)
			cw_drain_log_close(i);
	cw_drain_unlock();
}

/* Called by the slot's owner (the drain thread, or the closing thread in
 * sync mode) once sl->result is set. */
void cw_drain_finish(int s)
{
	struct cw_drain_slot *sl = &cw_drain_slots[s];
	int is_async = atomic_load(&sl->state) == CW_SLOT_ASYNC;
	int silent = sl->quiet && sl->result == CW_DRAIN_DELIVERED && sl->discarded == 0;
	if (silent) {
		/* Its close record is not written either, unless a flush (exec,
		 * _exit) has written it already: then the drain record follows. */
		int due = CLOSE_RECORD_DUE;
		if (!atomic_compare_exchange_strong(&sl->close_logged, &due, CLOSE_RECORD_WRITTEN)) {
			cw_drain_log_close(s); /* waits for a flush writing it */
			silent = 0;
		}
	} else if (is_async || sl->quiet) {
		cw_drain_log_close(s); /* the close record always comes first */
	}
	/* Our fd goes under the slot's busy flag, not the engine lock: a
	 * closing thread (cw_drain_prepare) must never wait for this thread.
	 * A relocation (dup2 onto our number) and fork_prepare take busy too,
	 * so neither sees the fd half closed. The number is forgotten only
	 * after it is closed (fork_child closes what the slot still names). */
	cw_drain_spin_lock(&sl->busy);
	int fd = atomic_load(&sl->fd);
	if (fd >= 0) {
		/* Our close takes the socket out of our epoll set only if ours
		 * is the last reference: the program's close() may not have run
		 * yet (this thread can preempt it right after the hand-over),
		 * and meanwhile its EOF would be reported again and again. */
		if (atomic_exchange(&sl->registered, 0)) {
			struct epoll_event unused;
			epoll_ctl(atomic_load(&cw_drain_ep), EPOLL_CTL_DEL, fd, &unused);
		}
		/* SO_LINGER {1,N}: our close must not block the drain thread
		 * (the queue still drains after close, as an orphan). */
		if (is_async && sl->linger > 0) {
			struct linger off = {0, 0};
			REAL(setsockopt)(fd, SOL_SOCKET, SO_LINGER, &off, sizeof off);
		}
		close_private(fd);
		atomic_store(&sl->fd, -1);
	}
	cw_drain_spin_unlock(&sl->busy);

	struct cw_event *ev = &cw_drain_events[s];
	int64_t waited = cw_drain_now_ns() - sl->start_ns;
	ev->call = CW_CALL_DRAIN;
	ev->drain_result = sl->result < 0 ? CW_DRAIN_TIMEOUT : sl->result;
	ev->discarded = sl->discarded;
	ev->waited_ms = waited > 0 ? (uint64_t)(waited / 1000000) : 0;
	clock_gettime(CLOCK_REALTIME, &ev->ts);
	if (!silent)
		cw_log_event(ev);
	if (is_async)
		atomic_fetch_sub(&cw_drain_async_pending, 1);
	release_slot(s);
}

/* ---- dup2 onto one of our numbers --------------------------------------------- */

/* Move our fd off `fd`; returns the new number or -1. Under the lock.
 * Above it first (out of the way of an upward dup2 loop), else anywhere. */
static int move_private(int fd)
{
	int m = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, fd + 1);
	if (m < 0)
		m = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
	if (m >= 0)
		cw_fd_set(m, CW_FD_PRIVATE);
	return m;
}

static void wait_thread_left_epoll(void);
static void relocate_slot_fd(int fd, int ep);

void cw_drain_relocate_if(int fd)
{
	if (!cw_drain_slots || fd < 0 || in_prepare || cw_drain_lock() < 0)
		return;
	shut_gate(); /* no duplicate half made while we look */
	int ep = atomic_load(&cw_drain_ep), wake = atomic_load(&cw_drain_wake);
	if (fd == wake) {
		int m = move_private(fd);
		if (m >= 0) {
			atomic_store(&cw_drain_wake, m);
			/* A writer that loaded the old number is counted. */
			for (int i = 0; i < 1000000 && atomic_load(&waking); i++)
				sched_yield();
			close_private(fd);
		}
	} else if (fd == ep) {
		int m = move_private(fd);
		if (m >= 0) {
			atomic_store(&cw_drain_ep, m);
			wait_thread_left_epoll();
			close_private(fd);
		}
	} else {
		relocate_slot_fd(fd, ep);
	}
	open_gate();
	cw_drain_unlock();
}

/* The drain thread may be inside epoll_wait on the old epoll number: wake it
 * and wait until it has returned (it loads the new number next time). */
static void wait_thread_left_epoll(void)
{
	unsigned epoch = atomic_load(&cw_drain_wait_epoch);
	if (!atomic_load(&cw_drain_in_wait))
		return;
	cw_drain_wake_up();
	struct timespec tick = {0, 100000};
	for (int i = 0; i < 10000 && atomic_load(&cw_drain_wait_epoch) == epoch; i++)
		nanosleep(&tick, NULL);
}

static void relocate_slot_fd(int fd, int ep)
{
	int hw = atomic_load(&cw_drain_hw);
	for (int i = 0; i < hw; i++) {
		struct cw_drain_slot *sl = &cw_drain_slots[i];
		if (atomic_load(&sl->state) == CW_SLOT_FREE || atomic_load(&sl->fd) != fd)
			continue;
		cw_drain_spin_lock(&sl->busy);
		if (atomic_load(&sl->fd) != fd) { /* closed by finish meanwhile */
			cw_drain_spin_unlock(&sl->busy);
			break;
		}
		int m = move_private(fd);
		if (atomic_load(&sl->registered)) {
			struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e);
			atomic_store(&sl->registered, m >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, m, &e) == 0);
		}
		/* Without a new number (the program holds every fd up to the
		 * limit), this drain ends now: its owner sees fd -1. */
		atomic_store(&sl->fd, m);
		close_private(fd);
		cw_drain_spin_unlock(&sl->busy);
		if (m < 0 && atomic_load(&sl->state) == CW_SLOT_ASYNC)
			cw_drain_wake_up();
		break;
	}
}

/* ---- fork ------------------------------------------------------------------- */

/* The engine lock and every slot's busy flag: the child sees no fd of ours
 * half moved or half closed. */
static void fork_prepare(void)
{
	if (in_lock || busy_held || in_prepare)
		return; /* fork from a signal handler inside our section */
	pthread_mutex_lock(&lock);
	fork_locked = 1;
	shut_gate(); /* no duplicate half made: the child would keep it */
	fork_locked_slots = atomic_load(&cw_drain_hw);
	for (int i = 0; i < fork_locked_slots; i++)
		cw_drain_spin_lock(&cw_drain_slots[i].busy);
}

static void fork_parent(void)
{
	if (fork_locked) {
		for (int i = 0; i < fork_locked_slots; i++)
			cw_drain_spin_unlock(&cw_drain_slots[i].busy);
		open_gate();
		fork_locked = 0;
		pthread_mutex_unlock(&lock);
	}
}

/* The child inherits no drain: it closes the duplicates (the parent keeps
 * draining with its own), and has no thread until its own first drain. */
static void fork_child(void)
{
	int hw = atomic_load(&cw_drain_hw);
	for (int i = 0; i < hw; i++) {
		struct cw_drain_slot *sl = &cw_drain_slots[i];
		atomic_store(&sl->busy, 0); /* taken by fork_prepare */
		if (atomic_load(&sl->state) == CW_SLOT_FREE)
			continue;
		close_private(atomic_exchange(&sl->fd, -1));
		atomic_store(&sl->state, CW_SLOT_FREE);
	}
	busy_held = 0;
	in_prepare = 0;
	atomic_store(&preparing, 0);
	atomic_store(&waking, 0);
	open_gate();
	atomic_store(&cw_drain_active, 0);
	atomic_store(&cw_drain_async_pending, 0);
	close_private(atomic_exchange(&cw_drain_ep, -1));
	close_private(atomic_exchange(&cw_drain_wake, -1));
	atomic_store(&thread_running, 0);
	atomic_store(&cw_drain_thread_up, 0);
	atomic_store(&cw_drain_in_wait, 0);
	atomic_store(&cw_drain_exit_deadline, 0);
	if (fork_locked) {
		fork_locked = 0;
		pthread_mutex_unlock(&lock);
	} else {
		pthread_mutex_init(&lock, NULL);
		in_lock = 0;
	}
}

/* ---- exit ------------------------------------------------------------------- */

void cw_drain_at_exit(void)
{
	if (!cw_drain_slots || !atomic_load(&thread_running) || atomic_load(&cw_drain_async_pending) == 0)
		return;
	/* Every pending drain ends by now + idle timeout at the latest (the
	 * thread ends those still going as timeouts), and is logged. */
	int64_t deadline = cw_drain_now_ns() + cw_cfg.drain_idle_ms * 1000000LL;
	atomic_store(&cw_drain_exit_deadline, deadline);
	if (cw_drain_lock() == 0) {
		cw_drain_wake_up();
		cw_drain_unlock();
	}
	struct timespec ms = {0, 1000000};
	while (atomic_load(&cw_drain_async_pending) > 0 && cw_drain_now_ns() < deadline + EXIT_GRACE_NS)
		nanosleep(&ms, NULL);
	cw_drain_flush_close_records(); /* of drains the thread did not end in time */
}
