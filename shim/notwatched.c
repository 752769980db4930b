/* See notwatched.h. */
#include "notwatched.h"
#include "elfkind.h"
#include "put.h"
#include "runstatus.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_CAP 1024

/* Whether run listens; read from the environment at each use (an exec is
 * rare, and a program may change its environment). */
static int channel(void)
{
	const char *s = getenv("CLOSEWATCH_RUN_STATUS");
	return s && *s;
}

/* The process's start time (/proc/self/stat field 22, clock ticks since
 * boot), or 0: an exec keeps it, a new process with a reused pid has
 * another. run's summary tells one process running several programs from
 * several processes that way. */
static unsigned long start_time(void)
{
	char buf[1024];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoul(p + 1, NULL, 10) : 0;
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
	len = cw_put(line, sizeof(line), len, " start=");
	len = cw_put_uint(line, sizeof(line), len, start_time());
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
	char path[512], why[200];
	int found = search ? cw_elf_resolve(file, getenv("PATH"), path, sizeof(path)) == 0
			   : (cw_put(path, sizeof(path), 0, file), 1);
	if (found) {
		enum cw_elf_kind k = cw_elf_kind(path, why, sizeof(why));
		if (k != CW_ELF_PRELOADABLE && k != CW_ELF_UNKNOWN)
			cw_runstatus_not_watched(pid, path, why);
	}
	pthread_setcancelstate(cancel_state, NULL);
	errno = saved;
}
