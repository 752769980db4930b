/* Programs the trap cannot watch. The filter examines this machine's native
 * system calls only: a program of another ABI (a 32-bit i386 program on
 * x86-64) makes its calls through another entry that the filter lets pass
 * unexamined (filter.c), so it runs, but unwatched. Such a program is named to
 * `closewatch run` as "not watched" rather than counted among the watched. */
#ifndef CW_TRAP_FOREIGN_H
#define CW_TRAP_FOREIGN_H

#include <linux/types.h>
#include <sys/types.h>

/* An execve or execveat (nr, args as trapped) of process pid, about to run:
 * if what it executes is a program of another ABI, a "notwatched" line for
 * `closewatch run` (core/runstatus.h). The path is read from the program's
 * memory and resolved against its working directory or dirfd. */
void cw_trap_check_exec(pid_t pid, int nr, const __u64 args[6]);

#endif
