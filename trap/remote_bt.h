/* Backtraces of another process's thread, taken from outside while the
 * thread is stopped in a system call (the trap holds it in a seccomp
 * notification): no ptrace, no cooperation from the program.
 *
 * Registers: seccomp gives none but the instruction pointer; the kernel's
 * /proc/PID/task/TID/syscall gives the stack pointer and the pc of a thread
 * blocked in a system call. Memory: process_vm_readv. Unwinding: libunwind's
 * remote API with accessors of our own (DWARF call frame information found
 * through each object's .eh_frame_hdr, read from the program's memory).
 * Names: each object's .symtab (or .dynsym), read from the file mapped at that
 * address (/proc/PID/maps).
 *
 * Only sp and pc are known: a frame whose unwind rule needs another register
 * (rbp in code built with frame pointers, or an object without .eh_frame, like
 * Go binaries) ends the backtrace there. A frame that cannot be named is
 * written as an address (offset in its object); nothing is guessed. */
#ifndef CW_REMOTE_BT_H
#define CW_REMOTE_BT_H

#include <sys/types.h>

#include "../core/record.h"

/* Fills ev->frames / ev->nframes with at most max frames ("symbol+0xoff
 * (object)" or "0xoff (object)"), innermost first: the function that made
 * the system call, then its callers. Returns the number of frames (0 if the
 * thread is not stopped in a system call or cannot be read). */
int cw_remote_backtrace(pid_t pid, pid_t tid, struct cw_event *ev, int max);

#endif
