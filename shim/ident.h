/* Who closed: the pid, tid and comm that every record carries. */
#ifndef CW_IDENT_H
#define CW_IDENT_H

#include "record.h" /* CW_EXE_MAX */

#include <sys/types.h>

/* pid, tid and comm (NUL-terminated, 16 bytes at most) of the calling
 * thread. Async-signal-safe; no syscall once the thread's values are known. */
void cw_ident_get(pid_t *pid, pid_t *tid, char comm[17]);

/* At init: the pid read now, never first by a vfork child that would leave
 * its own in the memory it shares with the parent. */
void cw_ident_init(void);

/* In a forked child: a new pid, and a new tid for the thread that forked. */
void cw_ident_after_fork_child(void);
/* Before a fork: this thread's name and tid read now, if not yet, so that
 * the child (which inherits them) reads neither at its first record. */
void cw_ident_before_fork(void);

/* A thread was renamed (PR_SET_NAME, pthread_setname_np): every thread
 * reads its comm again. */
void cw_ident_names_changed(void);

/* Where the records come from: the host name (uname, read once) and the
 * program's path (readlink /proc/self/exe, read once; an exec'd image runs
 * the constructor again and reads its own). Read at the first call, which is
 * the constructor or an earlier hook (another library's constructor), so
 * both are right before our constructor too. NUL-terminated, never NULL;
 * async-signal-safe, no syscall after the first call. A thread (or a signal
 * handler) that comes while another one is reading them gets "" for both. */
void cw_ident_where(const char **host, const char **exe);

#endif
