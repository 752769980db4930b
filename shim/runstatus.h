/* The status channel to `closewatch run` (internal): run sets
 * CLOSEWATCH_RUN_STATUS to a file of its own; a watched process appends one
 * line there, "KIND key=value ...", which run's summary reads. */
#ifndef CW_RUNSTATUS_H
#define CW_RUNSTATUS_H

#include <stddef.h>

/* At init: the value of CLOSEWATCH_RUN_STATUS (NULL: none). Ignored in a
 * setuid/setgid program and when not an absolute path. */
void cw_runstatus_init(const char *path);

/* Append " key=value" to out (length n, capacity cap); control characters
 * become '?'. Returns the new length. */
size_t cw_runstatus_field(char *out, size_t cap, size_t n, const char *key, const char *value);

/* Append one line (a newline is added) with one write(); the file is opened
 * at that moment, never created. Async-signal-safe. */
void cw_runstatus_put(const char *line, size_t len);

#endif
