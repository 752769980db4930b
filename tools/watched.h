/* The part of `closewatch run`'s summary that says what was watched and how,
 * from the "watched" and "notwatched" lines of the status channel
 * (shim/notwatched.c, and the trap for the processes it watches). */
#ifndef CW_WATCHED_H
#define CW_WATCHED_H

#include <stdio.h>

/* status: the status file (NULL or "": none). cmd/cmd_why: the command run
 * itself found it cannot watch the way it was started (why non-NULL), listed
 * first as not watched. Prints, e.g.
 *   closewatch: watched via preload: 2 processes: server[120], sh[121]
 *   closewatch: ./helper: not watched (statically linked: use --via trap)
 * or "closewatch: no process was watched" when nothing was. */
/* trap: CMD ran under the trap; if no process said "watched ... via=trap",
 * "closewatch: watched via trap: CMD and every process it started" (or, when
 * the trap said CMD itself is of another ABI, which it cannot watch,
 * "every process CMD started"). A program of another ABI is listed without
 * the advice to use --via trap, which would not see it either. */
void cw_watched_summarize(FILE *f, const char *status, const char *cmd, const char *cmd_why,
			  int trap);

#endif
