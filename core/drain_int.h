/* Drain engine internals, shared by drain.c (the program's side: slots,
 * the channel, fork, exit), drain_loop.c (the drain thread) and the trap.
 *
 * Invariants (the whole engine in one screen):
 *  1. The program's fd table holds one engine fd: P, the program end of a
 *     SOCK_SEQPACKET socketpair, close-on-exec, marked CW_FD_PRIVATE (the
 *     hooks show it to the program as not open); and the other end Q from
 *     the thread's start until the first drain or fork after the thread has
 *     its own copy (cw_drain_q_taken): close() never waits for the thread.
 *     Nothing else of the engine ever lives there: no duplicate of a
 *     drained socket, no epoll fd.
 *  2. The drain thread T has a table of its own (close_range with
 *     CLOSE_RANGE_UNSHARE: all but its end Q closed; its log target comes
 *     over Q, the first message). It owns Q, its epoll fd and every drained
 *     socket: the program cannot close, dup2 over or bequeath any of them.
 *     (The supervisor's T keeps its process's table: no program shares it.)
 *  3. A closing thread claims a slot (CAS FREE -> CLAIMED), fills it and the
 *     event, publishes it (store SENT, release), then sends {slot} and the
 *     socket over P, before the program's close(). The message in flight is
 *     a reference to the socket. Send failed: the slot goes back to FREE (T
 *     never heard of it) and the close is drain_skipped.
 *  4. A slot is written by one thread at a time: the closer until the send,
 *     T from the message's receipt (load acquire) until it frees the slot.
 *     Only T writes a sent drain's records: each is written once, whole.
 *     A sync close() only waits until its slot is freed (or reused).
 *  5. T handles messages in order: when it acknowledges a FLUSH, every
 *     close record of a drain sent before it is written (exec, _exit).
 *  6. Senders count themselves (`sending`) around their use of P's number;
 *     a move of P (the program dup2s onto it) publishes the new number,
 *     then waits until no sender holds the old one (never for itself).
 *  7. A fork's child of the shim keeps its copy of P if the channel is up
 *     (and records do not go to a %p file, nor close() wait for drains):
 *     it is "remote", sending to its ancestor's T through the same slot
 *     table, which is MAP_SHARED for that reason (struct cw_drain_shared).
 *     Else it closes its copy and drops the table: its first drain maps one
 *     of its own and starts its own T. A remote process never touches a
 *     slot it did not claim, never sets `closing`, and waits for nothing at
 *     exit or exec: its drains are T's, which outlives it. T's process sets
 *     `closing` at exit or exec, then waits until no remote sender is
 *     between its look at `closing` and the end of its send (`senders`):
 *     every drain sent is then in T's queue (counted in `pending`, which
 *     its exit waits for), and every later one finds `closing` set. A
 *     remote sender that finds `closing` set, or T gone (its send fails),
 *     detaches: once no thread of its process is between a claim and the
 *     end of its send (`in_region`), it closes P, drops the table and
 *     starts its own. The one lock (start_lock: making a channel, moving
 *     P, detaching) is held across fork, so no child sees a channel half
 *     made.
 *  No correctness rests on a timed wait: the waits bounded by time (exit,
 *  FLUSH, remote senders) are policy or a safety net against a stuck
 *  thread or a stopped sender (the records not written are then counted
 *  as lost, never written twice); T polling Q (pace) only delays. */
#ifndef CW_DRAIN_INT_H
#define CW_DRAIN_INT_H

#include "record.h"

#include <stdatomic.h>
#include <stdint.h>

enum { CW_SLOT_FREE, CW_SLOT_CLAIMED, CW_SLOT_SENT };

struct cw_drain_slot {
	atomic_int state;     /* CW_SLOT_* */
	atomic_uint owner;    /* the drain thread that received it (its generation); 0 none */
	atomic_int close_written; /* T has written its close record */
	int fd;               /* T's: the socket in T's table; -1 none */
	int armed;            /* T's: fd is in T's epoll set and can still report */
	/* The closer (or the supervisor) shuts the write side itself once the
	 * message is sent (hand_over: where close() would have sent FIN);
	 * else T does. */
	int closer_shuts;
	int cpu;              /* the closer's CPU at the hand-over, -1 unknown (pace, drain_loop.c) */
	int tcp, seqpacket;
	int linger;           /* the program's SO_LINGER seconds, -1 off */
	/* Not an event by itself (EVENTS=risky, a verdict that throws nothing
	 * away): its two records are written only if the drain does not end
	 * delivered with nothing discarded (cw_drain_quiet). */
	int quiet;
	int result;           /* enum cw_drain_result once over, -1 before */
	atomic_llong id;      /* names the drain (cw_drain_over): its start_ns */
	int64_t start_ns;     /* CLOCK_MONOTONIC: claimed */
	int64_t last_ns;      /* last byte from the peer (or start) */
	uint64_t discarded;
	unsigned long ino;    /* a unix socket's inode (cw_drain_cut_local_peers); 0 */
	unsigned long peer_ino; /* its peer's, looked up at exit by cw_drain_cut_local_peers */
	atomic_int cut;       /* its peer is the exiting program's own: ends at once */
};

/* Over the channel: a drain (n: the slot; SCM_RIGHTS: the socket, and for a
 * stderr log target the program's fd 2), a flush (n: its sequence number,
 * acknowledged in cw_drain_flushed), a wake-up (exit), and first of all
 * the log target (SCM_RIGHTS: the program's log fd, logwriter.h). */
enum { CW_MSG_DRAIN, CW_MSG_FLUSH, CW_MSG_WAKE, CW_MSG_LOG };
struct cw_drain_msg {
	int type, n;
};

/* What every process sending to one drain thread shares with it: the head
 * of the slot table's mapping (MAP_SHARED in the shim, so that a forked
 * child can send to its parent's thread; invariant 7). */
struct cw_drain_shared {
	atomic_int hw;        /* one past the highest slot ever claimed */
	atomic_int active;    /* slots claimed (bounded by the table's size) */
	atomic_int pending;   /* sent, not over */
	atomic_int closing;   /* T's process exits or execs: remote processes send no more */
	atomic_int senders;   /* remote senders between their look at closing and their send's end */
};

/* The engine's state (drain.c). The table (head, slots, events) is mapped at
 * init, and again by a forked child that does not use its parent's thread. */
extern struct cw_drain_shared *cw_drain_sh;
extern struct cw_drain_slot *cw_drain_slots;
extern struct cw_event *cw_drain_events;
extern int cw_drain_nslots;
extern atomic_llong cw_drain_exit_deadline; /* CLOCK_MONOTONIC ns; 0: not exiting */
extern atomic_int cw_drain_flushed;     /* the last FLUSH T has done */
/* q_taken: set by the shim's thread once it has its own table (or could
 * not take one: broken); the program's copy of Q may go then.
 * stderr_wanted: records go to stderr (set when the thread is started), so
 * each drain carries the program's fd 2 (logwriter.h, cw_log_own_*). */
extern atomic_int cw_drain_q_taken, cw_drain_broken, cw_drain_stderr_wanted;

/* This process sends to an ancestor's drain thread (invariant 7). */
int cw_drain_is_remote(void);
/* Give slot s back (its records written or never due). */
void cw_drain_release(int s);
/* futex wake of every waiter on a word. */
void cw_drain_wake_word(atomic_int *word);

/* drain_loop.c */
int64_t cw_drain_now_ns(void);
/* The thread body (started by drain.c under start_lock, signals blocked). */
struct cw_drain_start {
	int q;            /* its end of the channel */
	unsigned gen;     /* its generation (slot owner) */
	int own_table;    /* unshare the fd table (the shim) */
	int log_mode;     /* its records (cw_log_own_begin) */
};
void *cw_drain_thread(void *arg);

#endif
