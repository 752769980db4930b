/* What kind of program an executable file is, read from its ELF headers:
 * can libclosewatch.so (LD_PRELOAD) see its closes, and if not, why.
 *
 * Shared by the shim (exec hooks: a program exec'd later that the shim
 * cannot enter is reported) and the CLI (`closewatch run --via auto`).
 * Async-signal-safe: open/pread/fstat/close only, no malloc, no stdio,
 * bounded reads into stack buffers. */
#ifndef CW_ELFKIND_H
#define CW_ELFKIND_H

/* The reason given for a program of another ABI (a 32-bit i386 one on
 * x86-64): neither way in watches it (the shim is not loaded into it, the
 * trap's filter lets its system calls pass unexamined). */
#define CW_ELF_FOREIGN_WHY "not a program for this machine (ELF class or architecture)"

#include <stddef.h>

enum cw_elf_kind {
	CW_ELF_PRELOADABLE,   /* started by glibc's dynamic linker, not Go */
	CW_ELF_STATIC,        /* no PT_INTERP: LD_PRELOAD is never read */
	CW_ELF_OTHER_LOADER,  /* PT_INTERP is not glibc's (musl's /lib/ld-musl-*.so.1) */
	CW_ELF_GO,            /* Go build-id note: system calls made without libc */
	CW_ELF_SETUID,        /* setuid/setgid to another user: the loader drops LD_PRELOAD */
	CW_ELF_FOREIGN,       /* ELF of another class or machine than this build: why is
	                       * CW_ELF_FOREIGN_WHY */
	CW_ELF_UNKNOWN,       /* cannot be opened or read, or not ELF: exec decides */
};

/* Classifies the file at PATH (no PATH search). A script (#!) is followed to
 * its interpreter once. why (cap bytes, may be NULL) gets a short reason for
 * every kind but PRELOADABLE and UNKNOWN ("statically linked", "Go program",
 * "musl loader /lib/ld-musl-x86_64.so.1", "setuid"), else "". */
enum cw_elf_kind cw_elf_kind(const char *path, char *why, size_t cap);

/* Resolves FILE like execvp (a name without '/' is searched in $PATH, first
 * executable regular file wins) into out. Returns 0, or -1 if not found (out
 * then holds FILE). Async-signal-safe; does not read the environment when
 * FILE contains a '/'. path_env may be NULL (then "/usr/local/bin:/usr/bin:/bin"). */
int cw_elf_resolve(const char *file, const char *path_env, char *out, size_t cap);

#endif
