/* Lingering close (CLOSEWATCH_MODE=drain): instead of letting the kernel
 * reset a connection, keep a private duplicate of the socket, discard what
 * the peer sends, shutdown(SHUT_WR) so queued data and FIN go out, and close
 * for real once the peer has closed (or timed out). */
#ifndef CW_DRAIN_H
#define CW_DRAIN_H

#include "record.h"

/* Held between cw_drain_prepare() and cw_drain_go(). */
struct cw_drain_ticket {
	int fd;     /* the shim's private duplicate, -1 if none */
	int slot;   /* engine-internal */
};

/* Should this close be drained? (mode drain; verdict rst_unread, fin_pending,
 * or clean while the peer may still send; never linger {1,0}, listeners or
 * shared sockets). Pure. */
int cw_drain_wanted(const struct cw_event *ev);

/* Take over the socket before the program's fd is closed: returns
 * CW_ACTION_DRAINED (t holds a private duplicate) or CW_ACTION_DRAIN_SKIPPED
 * (over CLOSEWATCH_DRAIN_MAX or no resources: close normally). */
int cw_drain_prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t);

/* After the close record is written: start the drain (async: hand it to the
 * drain thread; sync: run it to the end now). Logs the call:"drain" record
 * when the drain ends. */
void cw_drain_go(struct cw_drain_ticket *t, const struct cw_event *ev);

/* The program is about to dup2/dup3 onto fd: if it is one of ours, move it. */
void cw_drain_relocate_if(int fd);

void cw_drain_init(void);
/* At exit: a bounded wait for pending drains, each logged either way. */
void cw_drain_at_exit(void);

#endif
