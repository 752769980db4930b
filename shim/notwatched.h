/* Telling `closewatch run` which processes the shim watches and which
 * programs exec'd later it cannot enter (static, another loader such as
 * musl's, Go, setuid): one line each on run's status channel
 * (CLOSEWATCH_RUN_STATUS, core/runstatus.c), read by tools/watched.c:
 *   watched pid=N start=T via=preload exe=PATH
 *   notwatched pid=N exe=PATH why=REASON
 * (T: the process's start time, which an exec keeps.) Nothing at all without the channel (a plain LD_PRELOAD): no file is read. */
#ifndef CW_NOTWATCHED_H
#define CW_NOTWATCHED_H

#include <sys/types.h>

/* At init: "watched" for this process. */
void cw_watched_announce(void);

/* Before an exec of FILE (search: look it up in $PATH like execvp) by process
 * pid, or after posix_spawn started it as pid: "notwatched" when LD_PRELOAD
 * cannot reach it. Async-signal-safe (vfork children); errno is kept. */
void cw_notwatched_check(const char *file, int search, pid_t pid);

#endif
