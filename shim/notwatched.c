/* See notwatched.h. */
#include "notwatched.h"
#include "elfkind.h"
#include "put.h"
#include "runstatus.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define LINE_CAP 1024

/* Whether run listens; read from the environment at each use (an exec is
 * rare, and a program may change its environment). */
static int channel(void)
{
	const char *s = getenv("CLOSEWATCH_RUN_STATUS");
	return s && *s;
}

void cw_watched_announce(void)
{
	if (!channel())
		return;
	char exe[512], line[LINE_CAP];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	size_t len = cw_put(line, sizeof(line), 0, "watched");
	len = cw_put(line, sizeof(line), len, " pid=");
	len = cw_put_uint(line, sizeof(line), len, (unsigned long)getpid());
	len = cw_runstatus_field(line, sizeof(line), len, "via", "preload");
	len = cw_runstatus_field(line, sizeof(line), len, "exe", exe);
	cw_runstatus_put(line, len);
}

void cw_notwatched_check(const char *file, int search, pid_t pid)
{
	if (!file || !channel())
		return;
	int saved = errno;
	/* Called in exec and posix_spawn, which are no cancellation points; the
	 * open() and pread() below are: a pending cancel must not act here. */
	int cancel_state;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	char path[512], why[200], line[LINE_CAP];
	int found = search ? cw_elf_resolve(file, getenv("PATH"), path, sizeof(path)) == 0
			   : (cw_put(path, sizeof(path), 0, file), 1);
	if (found) {
		enum cw_elf_kind k = cw_elf_kind(path, why, sizeof(why));
		if (k != CW_ELF_PRELOADABLE && k != CW_ELF_UNKNOWN) {
			size_t len = cw_put(line, sizeof(line), 0, "notwatched pid=");
			len = cw_put_uint(line, sizeof(line), len, (unsigned long)pid);
			len = cw_runstatus_field(line, sizeof(line), len, "exe", path);
			len = cw_runstatus_field(line, sizeof(line), len, "why", why);
			cw_runstatus_put(line, len);
		}
	}
	pthread_setcancelstate(cancel_state, NULL);
	errno = saved;
}
