/* The supervisor's side of the drain engine. The engine (core/drain.c,
 * drain_loop.c: slots, the drain thread, the reading loop, timeouts, results
 * and records) runs in closewatch itself, unchanged but that its thread
 * keeps this process's fd table (cw_drain_init_supervisor): the supervisor
 * claims a slot for its pidfd_getfd duplicate of the program's socket
 * (cw_drain_prepare_adopt), lets the program's close go ahead (no longer
 * the last reference: nothing is sent), then cw_drain_go sends the
 * duplicate to the engine's thread, as the shim's closes do. This file holds only what
 * the supervisor needs around that and the shim never does: give a slot
 * back when the program's call did not happen, and wait for the pending
 * drains before `run` writes its summary (CLOSEWATCH_DRAIN_SYNC answers a
 * call once cw_drain_over says its drains ended). */
#include "drains.h"
#include "../core/config.h"
#include "../core/drain_int.h"

#include <time.h>
#include <unistd.h>

#define EXIT_WAIT_GRACE_NS (1000 * 1000000LL) /* past the total timeout */

void cw_trap_drain_abandon(struct cw_drain_ticket *t)
{
	int s = t->slot;
	if (s < 0 || s >= cw_drain_nslots)
		return;
	/* Still CLAIMED: only this thread knows of the slot. */
	if (t->fd >= 0)
		close(t->fd);
	cw_drain_release(s);
	t->slot = -1;
	t->fd = -1;
}

void cw_trap_drain_wait_all(void)
{
	if (!cw_drain_slots || atomic_load(&cw_drain_sh->pending) == 0)
		return;
	/* Each drain ends by its own timeouts (the engine's thread ends it):
	 * wait for that, bounded by the total timeout, then let the engine's
	 * exit path end what is left and write every record. */
	int64_t give_up = cw_drain_now_ns() + cw_cfg.drain_timeout_ms * 1000000LL + EXIT_WAIT_GRACE_NS;
	struct timespec ms = {0, 1000000};
	while (atomic_load(&cw_drain_sh->pending) > 0 && cw_drain_now_ns() < give_up)
		nanosleep(&ms, NULL);
	cw_drain_at_exit();
}
