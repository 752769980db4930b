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
/* A `journalctl -o json` entry carries the record in MESSAGE, escaped once
 * more (a JSON record's quotes and \u00XX), or as an array of byte values
 * ("255," for each), among the journal's own fields: lines that start with
 * '{' may be this long. */
#define CW_JSON_LINE_MAX (CW_REC_LINE_MAX * 5)

struct cw_logstats {
	unsigned long files, lines, records, malformed;
	unsigned long other;      /* lines of other programs (syslog, journal), skipped */
	char first_bad[600];     /* "FILE:LINE" of the first malformed line */
};

typedef void (*cw_rec_fn)(const struct cw_rec *r, void *arg);

/* Call fn for every record of path, starting at byte offset start.
 * Malformed lines (over-long ones too) are counted in st, never fatal; memory
 * stays bounded whatever the file holds. Returns 0, or -1 (errno
 * set) when the file cannot be opened or read. */
int cw_log_read_file(const char *path, off_t start, cw_rec_fn fn, void *arg, struct cw_logstats *st);

#endif
