/* The status channel to `closewatch run`: when run starts a program it sets
 * CLOSEWATCH_RUN_STATUS to a file of its own; a watched process that has
 * something to tell (records it could not write, ...) appends one line there,
 * "KIND key=value key=value...", which run's summary reads (tools/runstatus.c).
 * Internal: not part of the documented interface. */
#ifndef CW_RUNSTATUS_H
#define CW_RUNSTATUS_H

#include <stddef.h>
#include <sys/types.h>

/* At init: the value of CLOSEWATCH_RUN_STATUS (NULL: none). Ignored in a
 * setuid/setgid program and when not an absolute path. */
void cw_runstatus_init(const char *path);

/* Append " key=value" to out (length n, capacity cap); control characters
 * (which could end the line) become '?'. A value may hold spaces (a path, an
 * error text): the reader knows each kind's fields and their order, and the
 * last field runs to the end of the line. Returns the new length. */
size_t cw_runstatus_field(char *out, size_t cap, size_t n, const char *key, const char *value);

/* Append one line (a newline is added) with one write(): the file is opened at
 * that moment, never kept open, never created. Async-signal-safe. Does nothing
 * without CLOSEWATCH_RUN_STATUS. */
void cw_runstatus_put(const char *line, size_t len);

/* "notwatched pid=PID exe=EXE why=WHY": process pid runs EXE, which closewatch
 * cannot watch the way it is watching it (the shim's exec hooks, the trap's
 * look at an exec). Async-signal-safe. */
void cw_runstatus_not_watched(pid_t pid, const char *exe, const char *why);

#endif
