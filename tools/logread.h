/* Reading closewatch log files line by line into records. */
#ifndef CW_LOGREAD_H
#define CW_LOGREAD_H

#include "logparse.h"

#include <sys/types.h>

/* The longest record line the shim writes, and the longest line kept: a
 * record may sit behind a syslog prefix (timestamp, host, tag). Longer lines
 * are skipped to their newline and counted as malformed. */
#define CW_REC_LINE_MAX 4096
#define CW_LOG_LINE_MAX (CW_REC_LINE_MAX + 512)

struct cw_logstats {
	unsigned long files, lines, records, malformed;
	char first_bad[600];     /* "FILE:LINE" of the first malformed line */
};

typedef void (*cw_rec_fn)(const struct cw_rec *r, void *arg);

/* Call fn for every record of path, starting at byte offset start.
 * Malformed lines (over-long ones too) are counted in st, never fatal; memory
 * stays bounded whatever the file holds. Returns 0, or -1 (errno
 * set) when the file cannot be opened or read. */
int cw_log_read_file(const char *path, off_t start, cw_rec_fn fn, void *arg, struct cw_logstats *st);

#endif
