/* Drain mode through the trap: the shim's drain engine run by the supervisor
 * (see drains.c). Called from the supervisor's one thread only. */
#ifndef CW_TRAP_DRAINS_H
#define CW_TRAP_DRAINS_H

#include "../core/drain.h"

#include <stdint.h>

/* The program's call did not happen (its notification was aborted): give
 * back the slot and the duplicate cw_drain_prepare took. */
void cw_trap_drain_abandon(struct cw_drain_ticket *t);

/* After the program: wait for the pending drains (each within its own
 * timeouts), every record written. */
void cw_trap_drain_wait_all(void);

#endif
