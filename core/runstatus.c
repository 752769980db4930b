/* The status channel to `closewatch run`. See runstatus.h. */
#include "runstatus.h"
#include "config.h"
#include "put.h"
#include "real.h"

#include <fcntl.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

/* Set once at init, before any other thread of ours runs; read-only afterwards. */
static char status_path[CW_PATH_MAX];

void cw_runstatus_init(const char *path)
{
	/* A setuid program must not append to a file an unprivileged user named. */
	if (!path || path[0] != '/' || strlen(path) >= sizeof status_path || getauxval(AT_SECURE))
		return;
	strcpy(status_path, path);
}

size_t cw_runstatus_field(char *out, size_t cap, size_t n, const char *key, const char *value)
{
	n = cw_put(out, cap, n, " ");
	n = cw_put(out, cap, n, key);
	n = cw_put(out, cap, n, "=");
	for (const char *s = value; *s && n + 1 < cap; s++)
		out[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	out[n] = 0;
	return n;
}

void cw_runstatus_not_watched(pid_t pid, const char *exe, const char *why)
{
	char line[CW_PATH_MAX + 512];
	size_t n = cw_put(line, sizeof line, 0, "notwatched pid=");
	n = cw_put_uint(line, sizeof line, n, (unsigned long)pid);
	n = cw_runstatus_field(line, sizeof line, n, "exe", exe);
	n = cw_runstatus_field(line, sizeof line, n, "why", why);
	cw_runstatus_put(line, n);
}

void cw_runstatus_put(const char *line, size_t len)
{
	if (!status_path[0])
		return;
	char buf[CW_PATH_MAX * 2 + 256];
	if (len > sizeof buf - 1)
		len = sizeof buf - 1;
	memcpy(buf, line, len);
	buf[len++] = '\n';
	/* No O_CREAT: run made the file; if it is gone, nobody is listening.
	 * O_NONBLOCK: whatever the path became, opening it never blocks. */
	int fd = open(status_path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return;
	(void)!write(fd, buf, len);
	REAL(close)(fd);
}
