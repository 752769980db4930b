/* The call site of a close, as "symbol+0xoff (object)" frames. */
#ifndef CW_BACKTRACE_H
#define CW_BACKTRACE_H

#include "record.h"

/* Fill ev->frames with up to max frames of the caller's stack, leaving out
 * the shim's own frames. Sets ev->nframes. */
void cw_backtrace(struct cw_event *ev, int max);

/* At init: remember the program's path for frames in the main executable. */
void cw_backtrace_init(void);

#endif
