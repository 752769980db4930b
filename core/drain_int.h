/* Drain engine internals, shared by drain.c (slots, fds, fork, exit) and
 * drain_loop.c (reading, timeouts, the thread, the synchronous loop).
 *
 * Ownership of a slot: FREE → CLAIMED (the closing thread, between
 * cw_drain_prepare and cw_drain_go) → ASYNC (the drain thread) or SYNC (the
 * closing thread, inside close()) → FREE after its record is written.
 *
 * Locks:
 *   A closing thread takes none (drain.c: the `preparing` / `gate_shut`
 *     counters let a fork or a relocation wait until no duplicate is half
 *     made, and `waking` lets a relocation of the eventfd wait out its
 *     writers).
 *   cw_drain_lock (a mutex) guards starting the engine, relocating (dup2
 *     onto our number), fork, and flushing close records: rare events. The
 *     drain thread never takes it in its steady state. Never held across a
 *     wait.
 *   slot.busy (a spin flag) keeps a slot's fd stable while it is read,
 *     started or closed (finish), against a relocation.
 *   pthread_atfork takes both (the lock, then every busy flag), so a child
 *     never sees half of any of these. Order: cw_drain_lock, then busy. */
#ifndef CW_DRAIN_INT_H
#define CW_DRAIN_INT_H

#include "record.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define CW_DRAIN_WAKE_TAG UINT32_MAX /* epoll data of the eventfd */

enum { CW_SLOT_FREE, CW_SLOT_CLAIMED, CW_SLOT_ASYNC, CW_SLOT_SYNC };
enum { CLOSE_RECORD_DUE, CLOSE_RECORD_WRITING, CLOSE_RECORD_WRITTEN };

struct cw_drain_slot {
	atomic_int state;     /* CW_SLOT_* */
	atomic_int fd;        /* our private duplicate; -1 once closed */
	atomic_int busy;      /* spin flag: the fd is being read */
	atomic_int registered; /* in the drain thread's epoll set */
	atomic_int started;   /* the drain thread has sent FIN and registered it */
	atomic_int close_logged; /* CLOSE_RECORD_*: whose turn the close record is */
	int tcp, seqpacket;
	int linger;           /* the program's SO_LINGER seconds, -1 off */
	/* Not an event by itself (EVENTS=risky, a verdict that throws nothing
	 * away): its two records are written only if the drain does not end
	 * delivered with nothing discarded (cw_drain_quiet). */
	int quiet;
	int result;           /* enum cw_drain_result once over, -1 before */
	int64_t start_ns;     /* CLOCK_MONOTONIC: prepare */
	int64_t last_ns;      /* last byte from the peer (or start) */
	uint64_t discarded;
};

/* The engine's state (drain.c). slots/events are mapped once at init. */
extern struct cw_drain_slot *cw_drain_slots;
extern struct cw_event *cw_drain_events;
extern int cw_drain_nslots;
extern atomic_int cw_drain_hw;          /* one past the highest slot ever claimed */
extern atomic_int cw_drain_active;      /* claimed slots (bounded by nslots) */
extern atomic_int cw_drain_async_pending;
extern atomic_int cw_drain_ep, cw_drain_wake; /* private fds; -1 none */
extern atomic_llong cw_drain_exit_deadline;   /* CLOCK_MONOTONIC ns; 0: not exiting */
/* The drain thread is in (or entering) epoll_wait on cw_drain_ep; it counts
 * every return. A dup2 that moves the epoll fd waits for one before it closes
 * the old number. */
extern atomic_int cw_drain_in_wait;
extern atomic_uint cw_drain_wait_epoch;
/* Set by the drain thread first thing: its start-up (the C library's, a
 * sanitizer's) is over. See engine_start_locked in drain.c. */
extern atomic_int cw_drain_thread_up;

/* cw_drain_lock with a guard against a signal handler re-entering the
 * shim on the thread that holds it: returns -1 instead of deadlocking. */
int cw_drain_lock(void);
void cw_drain_unlock(void);

void cw_drain_spin_lock(atomic_int *flag);
void cw_drain_spin_unlock(atomic_int *flag);

/* The slot is over (result set): close our fd, write the record, free it. */
void cw_drain_finish(int s);

/* Write slot s's close record unless someone did (the drain thread after
 * start, or a flush at exec/_exit/exit). cw_drain_events[s] is left as
 * cw_drain_go copied it until then. */
void cw_drain_log_close(int s);

/* drain_loop.c */
int64_t cw_drain_now_ns(void);
/* The thread body (started by drain.c under the lock, signals blocked). */
void *cw_drain_thread(void *arg);
/* Wake the drain thread (a new drain, or exit). Any thread, no lock. */
void cw_drain_wake_up(void);
/* Run slot s to its end in the calling thread (CLOSEWATCH_DRAIN_SYNC=1). */
void cw_drain_run_sync(int s);

#endif
