/* Where records go: stderr, syslog (/dev/log), or a file. Each record is
 * written with one write() so that lines from many threads and processes
 * never interleave. */
#ifndef CW_LOGWRITER_H
#define CW_LOGWRITER_H

#include "record.h"

/* Open the configured target (from cw_cfg). Called once at init, and in a
 * forked child when the path has %p. */
void cw_log_open(void);

/* Write one record (formatted per cw_cfg.json). */
void cw_log_event(const struct cw_event *ev);

/* Write a preformatted human line (a warning): to syslog when records go
 * there, else to stderr (never into a JSON log file). */
void cw_log_line(const char *line, size_t len);

/* The program is about to dup2/dup3 onto our fd: move it out of the way. */
void cw_log_relocate_if(int fd);

/* After fork: a %p path names the child's own file. */
void cw_log_after_fork_child(void);

#endif
