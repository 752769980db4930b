/* Lingering close (CLOSEWATCH_MODE=drain): instead of letting the kernel
 * reset a connection, keep a reference to the socket, discard what
 * the peer sends, shutdown(SHUT_WR) so queued data and FIN go out, and close
 * for real once the peer has closed (or timed out).
 *
 * What is drained (cw_drain_wanted):
 *   TCP   rst_unread, fin_pending, and clean while ESTABLISHED (the peer may
 *         still send: data arriving after close() is answered with RST);
 *         also no_conn in FIN_WAIT1/FIN_WAIT2: the program shut its write
 *         side itself (node: shutdown, then close) and the peer may still
 *         send, with the same late RST.
 *   unix  rst_unread only: what we sent stays readable after close() and
 *         there is no late reset, so only our unread bytes (which turn the
 *         peer's EOF into ECONNRESET) are worth a drain.
 *   Never SO_LINGER {1,0} (an intended abort), listeners, or shared sockets.
 *
 * The engine (drain.c: slots, the channel, fork, exit; drain_loop.c: the
 * drain thread):
 *   - a fixed slot table of CLOSEWATCH_DRAIN_MAX entries, mapped once at
 *     init; past it, the close is not drained (action drain_skipped);
 *   - cw_drain_prepare() claims a slot, copies the event and sends the socket
 *     over a private socketpair (SCM_RIGHTS) to the drain thread. The message
 *     in flight holds the socket, so the program's close() that follows is
 *     not the last reference: nothing is reset, and no duplicate ever sits in
 *     the program's fd table. The thread has a table of its own
 *     (unshare(CLONE_FILES)): it owns every drained socket, its epoll fd and
 *     its end of the channel, which the program can neither close, dup2 over
 *     nor pass to a child. shutdown(SHUT_WR) sends the FIN: in close(),
 *     right after the send, where close() itself would have sent one (a
 *     verdict that throws nothing away: the peer sees EOF when it would
 *     have), else in the thread (rst_unread: close() would have sent RST,
 *     and pays no FIN's loopback processing it would not have paid). The
 *     thread writes the close record (a quiet drain's only at its end, if
 *     at all: cw_drain_quiet);
 *   - the thread reads and discards (recv MSG_DONTWAIT, MSG_TRUNC for TCP)
 *     until EOF (delivered), ECONNRESET (peer_reset), idle or total timeout
 *     (timeout), then closes the socket and logs one call:"drain" record.
 *     It reads once as it takes a drain (by then the peer of a clean close
 *     has often closed: the drain ends without joining its epoll set), else
 *     waits for a report (EPOLLONESHOT: a drain that ends on one leaves
 *     nothing to remove from the set). While drains come from other CPUs
 *     than its own, it polls the channel every millisecond instead of
 *     sleeping on it, so that a close() wakes nobody (drain_loop.c, pace).
 *     With CLOSEWATCH_DRAIN_SYNC=1 too: close() then waits for that end;
 *   - the socket leaves the program's epoll sets at close(), as it would
 *     without the engine's reference (see cw_drain_note_epoll);
 *   - a forked child of the shim keeps its copy of the channel and sends its
 *     drains to its parent's thread (a process holding a socket starts its
 *     thread before it forks: no child pays for one); it starts a thread of
 *     its own once that thread's process exits or execs (or under
 *     CLOSEWATCH_DRAIN_SYNC=1, a %p log file, TSan). At exit, pending drains
 *     of the process's own thread get a bounded wait (<= the idle timeout)
 *     and each one is logged; a child using its parent's thread waits for
 *     nothing.
 *
 * Limits (for the README):
 *   - epoll sets the shim does not know of (created before our constructor,
 *     inherited, received over SCM_RIGHTS, reached through a dup of the epoll
 *     fd) keep a drained fd registered until the drain ends: the program may
 *     see events for a connection it closed. O_ASYNC/F_SETOWN signals go on
 *     during a drain, for the same reason (the socket is still open).
 *   - exec() cuts pending drains short (the thread and its table end with
 *     the image): no call:"drain" record then (the close records not yet
 *     written are, cw_drain_flush_close_records). _exit() waits as exit
 *     does. A sync drain still running in another thread when the process
 *     exits is not waited for.
 *   - records written by the drain thread go to the log target as it was
 *     when the thread started (a file, syslog), or to the program's stderr
 *     as it was at the latest drained close (logwriter.h, cw_log_own_*).
 *   - the first drain, or the first fork of a process that holds a socket,
 *     starts a thread that stays (blocked in epoll_wait): the process is
 *     multi-threaded from then on (e.g. a later unshare(CLONE_NEWUSER)
 *     fails). Starting it is the one allocation made in a close() path (it
 *     does not wait for the thread to run).
 *   - a child using its parent's thread loses the drains it handed over if
 *     the parent is killed (SIGKILL: the kernel closes them, their records
 *     are not written), and they wait while the parent is stopped.
 *   - a program that dup2()s over every fd number up to RLIMIT_NOFILE leaves
 *     the channel's program end no room: the channel is given up (pending
 *     drains go on to their end), and the next drain starts a new one.
 *   - SO_LINGER {1,N>0} with unread data is drained; the drain thread turns
 *     lingering off before its own close so as not to block, the queue still
 *     drains as an orphan. */
#ifndef CW_DRAIN_H
#define CW_DRAIN_H

#include "record.h"

#include <stdint.h>

/* Held between cw_drain_prepare() and cw_drain_go(). */
struct cw_drain_ticket {
	int fd;     /* the supervisor's duplicate (prepare_adopt) until go; else -1 */
	int slot;   /* engine-internal */
	int64_t id; /* names the drain (cw_drain_over) */
};

/* Should this close be drained? (mode drain is the caller's check; verdict
 * rst_unread, fin_pending, or clean while the peer may still send; never
 * linger {1,0}, listeners or shared sockets). Pure. */
int cw_drain_wanted(const struct cw_event *ev);

/* Hand the socket over before the program's fd is closed (the shim): ev is
 * copied (action drained) and the socket sent to the drain thread. Returns
 * CW_ACTION_DRAINED or CW_ACTION_DRAIN_SKIPPED (over CLOSEWATCH_DRAIN_MAX,
 * no channel, the send failed: close normally). fd is also removed from the
 * program's epoll sets that we know of. */
int cw_drain_prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t);

/* The supervisor's way: claim a slot for fd (its pidfd_getfd duplicate, in
 * its own table) and keep fd in t until cw_drain_go hands it over (the
 * program's call goes ahead in between). On CW_ACTION_DRAINED fd is the
 * engine's (sent at go, or closed by cw_trap_drain_abandon); otherwise it
 * is still the caller's. */
int cw_drain_prepare_adopt(int fd, const struct cw_event *ev, struct cw_drain_ticket *t);

/* After the program's fd is gone. Shim, async: nothing left to do (the
 * thread writes both records). Shim, CLOSEWATCH_DRAIN_SYNC=1: wait until the
 * drain has ended and its records are written. Supervisor: copy ev and send
 * the duplicate to the drain thread. */
void cw_drain_go(struct cw_drain_ticket *t, const struct cw_event *ev);

/* Has the drain named id (a ticket's) in slot ended, its records written? */
int cw_drain_over(int slot, int64_t id);

/* Write the close records that the drain thread has not written yet: before
 * exec and _exit (the thread dies with the process image), and at exit. */
void cw_drain_flush_close_records(void);

/* A drain of ev whose close and drain records are written only if it does
 * not end delivered with nothing discarded (EVENTS=risky, a verdict that is
 * not risky). Pure but for the configuration. */
int cw_drain_quiet(const struct cw_event *ev);

/* The program is about to dup2/dup3 onto fd: if it is the channel's
 * program end, move it. */
void cw_drain_relocate_if(int fd);

/* The program created the epoll instance epfd (epoll_create/epoll_create1
 * hooks). Closing an fd removes it from an epoll set only when the last
 * reference to the socket goes, and the engine's is such a reference: so a
 * drained fd is removed (EPOLL_CTL_DEL) from every epoll set we know of
 * before the program's close, or the program would keep receiving events for
 * a connection it closed, under a number it may already have reused. */
void cw_drain_note_epoll(int epfd);

/* supervisor: the drain thread keeps the process's fd table (no program
 * shares it), so the log writer's per-process files work from it unchanged. */
/* At exit (the shim, before cw_drain_at_exit): the pending drains whose peer
 * this very process holds (both ends of a loopback connection or a
 * socketpair: a test harness, a client of its own server) end at once, as
 * timeouts. Their EOF could only come from the exit itself. */
void cw_drain_cut_local_peers(void);

void cw_drain_init(int supervisor);
/* The shim's fork(), before the real one: a process holding a socket starts
 * its drain thread, which its children will use (drain_int.h, invariant 7). */
void cw_drain_before_fork(void);
/* At exit and _exit: a bounded wait for pending drains, each logged either way. */
void cw_drain_at_exit(void);

#endif
