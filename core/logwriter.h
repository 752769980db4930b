/* Where records go: stderr, syslog (/dev/log), or a file. Each record is
 * written with one write() so that lines from many threads and processes
 * never interleave. */
#ifndef CW_LOGWRITER_H
#define CW_LOGWRITER_H

#include "record.h"

/* Open the configured target (from cw_cfg). Called once at init, and in a
 * forked child when the path has %p. */
void cw_log_open(void);

/* For the trap's supervisor, which writes the records of many processes: when
 * CLOSEWATCH_LOG has %p, each record goes to the file of the process it is about
 * (%p = the record's pid) instead of the writer's own. Called after cw_log_open();
 * returns 1 when records go so. */
int cw_log_file_per_watched_process(void);

/* Write one record (formatted per cw_cfg.json). */
void cw_log_event(const struct cw_event *ev);

/* Write a preformatted human line (a warning): to syslog when records go
 * there, else to stderr (never into a JSON log file). */
void cw_log_line(const char *line, size_t len);

/* The program is about to dup2/dup3 onto our fd: move it out of the way. */
void cw_log_relocate_if(int fd);

/* After fork: a %p path names the child's own file. */
void cw_log_after_fork_child(void);

/* A line to the program's stderr that never blocks it for long nor raises SIGPIPE in it,
 * whatever stderr is (a pipe whose reader is gone, a full pipe, a socket). */
void cw_log_stderr(const char *line, size_t len);

/* A thread with a table of its own (the shim's drain thread) writes its
 * records to its own copy of the target, never to the program's fds nor
 * the global log fd:
 *   cw_log_own_target (the program's side, when it starts the thread): how
 *     the thread is to write, and for CW_LOG_OWN_FD the fd (the file or
 *     syslog socket) to send it, which it takes with cw_log_own_fd;
 *     CW_LOG_OWN_LAZY: a %p file not opened yet, the thread opens its own
 *     at its first record; CW_LOG_OWN_STDERR: each drain brings the
 *     program's fd 2, and cw_log_own_stderr(fd) names the copy to write to
 *     (-1: none, the record is lost); NOWHERE: records are lost;
 *   cw_log_own_begin (the thread, first thing): that mode;
 *   cw_log_own_end: the thread ends, its copy is closed. */
enum { CW_LOG_OWN_FD = 1, CW_LOG_OWN_LAZY, CW_LOG_OWN_STDERR, CW_LOG_OWN_NOWHERE };
int cw_log_own_target(int *fd);
void cw_log_own_begin(int mode);
void cw_log_own_fd(int fd);
void cw_log_own_stderr(int fd);
void cw_log_own_end(void);

/* n records were lost for reason err (counted as the writer's own losses). */
void cw_log_count_lost(unsigned long n, int err);

/* Records that could not be written since the last call: one "lost" line to
 * `closewatch run` (runstatus.h). At exit, exec and _exit. */
void cw_log_report_lost(void);

#endif
