/* The supervisor's binding of core/real.h: the shim's core (inspect.c,
 * logwriter.c, fdtable.c) calls libc through REAL(), which in the preloaded
 * library looks the functions up behind its own hooks with dlsym(RTLD_NEXT).
 * The closewatch CLI has no hooks: REAL(name) is simply libc's name. This
 * file replaces shim/real.c at link time (a seam, not a copy: nothing of
 * real.c is duplicated, only the table is filled differently). */
#include "../core/real.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

struct cw_real_table cw_real = {
#define CW_REAL_DIRECT(name, ret, args) .name = name,
	CW_REAL_FUNCS(CW_REAL_DIRECT)
#undef CW_REAL_DIRECT
};

void cw_real_bind(void)
{
}
