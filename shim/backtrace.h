/* The call site of a close, as "symbol+0xoff (object)" frames (libunwind). */
#ifndef CW_BACKTRACE_H
#define CW_BACKTRACE_H

#include "record.h"

/* Fill ev->frames with up to max frames of the caller's stack, leaving out
 * the shim's own frames. Sets ev->nframes. */
void cw_backtrace(struct cw_event *ev, int max);

/* At init: remember the program's path for frames in the main executable. */
void cw_backtrace_init(void);

/* Non-zero while this thread is inside libunwind for cw_backtrace. libunwind
 * opens a pipe of its own (pipe2, to validate memory) at its first walk and
 * keeps it: the pipe2 hook moves it to private fds, so that the program
 * never sees it, and a close-all loop never hands its numbers to the program
 * while libunwind still reads and writes them. */
extern __thread int cw_in_unwind __attribute__((tls_model("initial-exec")));

#endif
