/* The status channel of `closewatch run`: a file whose path run gives to the
 * watched processes in CLOSEWATCH_RUN_STATUS (internal). A process that has
 * something to say appends one line "KIND key=value ..." (core/runstatus.c);
 * run reads them for its summary. */
#ifndef CW_TOOLS_RUNSTATUS_H
#define CW_TOOLS_RUNSTATUS_H

#include <stdio.h>

struct cw_runstatus {
	char path[4096]; /* empty: no channel (the summary says nothing of it) */
};

/* Create the file in $TMPDIR (or /tmp) and set CLOSEWATCH_RUN_STATUS. If that
 * fails, one warning and the run goes on without it. */
void cw_runstatus_begin(struct cw_runstatus *s);
/* Summary lines for what the processes said, e.g.
 * "closewatch: 12 records could not be written to /dev/full (No space left on device)". */
void cw_runstatus_summarize(const struct cw_runstatus *s, FILE *f);
/* Calls fn with each whole line of the status file at path (its newline
 * removed; fn may change it), at most max_lines of them; a line longer than
 * 8 KiB is not ours and is skipped. A file that cannot be opened: no call. */
void cw_runstatus_each_line(const char *path, long max_lines, void (*fn)(char *line, void *arg),
			    void *arg);
/* Remove the file. */
void cw_runstatus_end(struct cw_runstatus *s);

#endif
