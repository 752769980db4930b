/* The way in chosen for a program: LD_PRELOAD where glibc's dynamic linker
 * starts it and it makes its system calls through libc, seccomp user
 * notification (trap) for everything else. The ELF reading is the shim's
 * (core/elfkind.c), so that `run` and the shim's exec hooks agree. */
#include "via.h"

#include "../core/elfkind.h"

#include <stdlib.h>
#include <string.h>

enum cw_via cw_via_auto(const char *cmd, char *why, size_t cap)
{
	char path[4096];
	if (why && cap)
		why[0] = 0;
	/* Not found: preload, and exec reports the error as it would without us. */
	if (cw_elf_resolve(cmd, getenv("PATH"), path, sizeof(path)) != 0)
		return CW_VIA_PRELOAD;
	char reason[256];
	enum cw_elf_kind k = cw_elf_kind(path, reason, sizeof(reason));
	if (k == CW_ELF_PRELOADABLE || k == CW_ELF_UNKNOWN)
		return CW_VIA_PRELOAD;
	if (why && cap) {
		strncpy(why, reason, cap - 1);
		why[cap - 1] = 0;
	}
	return CW_VIA_TRAP;
}
