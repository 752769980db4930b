/* The log of one `closewatch run`: where the shim writes (a temporary file when
 * the user named none), and reading back only what this run added. */
#ifndef CW_RUNLOG_H
#define CW_RUNLOG_H

#include <stdio.h>
#include <sys/types.h>

struct cw_runlog {
	char spec[4096];        /* the CLOSEWATCH_LOG value */
	int temp;               /* 1: our temporary file, removed at the end */
	int readable;           /* 0 for stderr / syslog */
	/* files that existed at the start, with their sizes (for %p patterns: every match) */
	char **paths;
	off_t *sizes;
	size_t n;
};

/* spec: the user's log (NULL: a new temporary file). Returns 0 or -1 (message printed). */
int cw_runlog_begin(struct cw_runlog *l, const char *spec);
/* Print the run summary (records added since begin) to f. */
void cw_runlog_summarize(struct cw_runlog *l, FILE *f);
/* Remove the temporary file, free memory. */
void cw_runlog_end(struct cw_runlog *l);

#endif
