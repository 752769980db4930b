/* The second way in: closewatch as a seccomp user-notification supervisor.
 *
 * The program runs under a seccomp filter (installed by the child closewatch
 * forks; after PR_SET_NO_NEW_PRIVS unless it is root: no privileges needed)
 * that traps the calls
 * that end a socket's life: close, shutdown, close_range, dup2, dup3, and
 * exit_group and execve/execveat (the sockets that die there), plus the
 * process-creating calls (fork, vfork, clone without CLONE_THREAD, clone3),
 * which only tell the supervisor that the set of processes changed. For each
 * notification the supervisor takes a duplicate of the program's fd
 * (pidfd_getfd), inspects it with the shim's code (core/inspect.c,
 * verdict.c), closes the duplicate, lets the call go ahead
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE) and writes the same record as the shim
 * (core/record.c, logwriter.c). */
#ifndef CW_TRAP_H
#define CW_TRAP_H

#include <signal.h>
#include <sys/types.h>

#include "../core/record.h"

/* Run cmd (execvp) under the trap, with signal mask child_mask in the
 * program; forward SIGINT, SIGTERM, SIGHUP and SIGQUIT (which the caller has
 * blocked) to it, and supervise until every watched process has ended.
 * Configuration comes from the CLOSEWATCH_* variables in the environment.
 * Returns the program's wait status, or -(exit status): -2 when the trap
 * cannot be set up (one message on stderr says why; nothing was run),
 * -126/-127 when cmd could not be executed. */
int cw_trap_run(char **cmd, const sigset_t *child_mask);

/* Optional: names the call site of a trapped call from outside (the thread
 * is stopped in the call while this runs). Fills ev->frames and
 * ev->nframes with at most max frames; a frame that cannot be named is an
 * address. NULL (the default): records carry no bt. */
extern int (*cw_trap_backtrace)(pid_t pid, pid_t tid, struct cw_event *ev, int max);

#endif
