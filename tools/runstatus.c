/* The status channel of `closewatch run`: see runstatus.h. */
#include "runstatus.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cw_runstatus_begin(struct cw_runstatus *s)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(s->path, sizeof(s->path), "%s/closewatch-XXXXXX.status", dir);
	int fd = mkstemps(s->path, 7);
	if (fd < 0 || setenv("CLOSEWATCH_RUN_STATUS", s->path, 1) != 0) {
		cw_err("cannot create a status file in %s: %s (the summary will not name the "
		       "processes watched)", dir, strerror(errno));
		if (fd >= 0)
			unlink(s->path);
		s->path[0] = 0;
	}
	if (fd >= 0)
		close(fd);
}

void cw_runstatus_summarize(const struct cw_runstatus *s, FILE *f)
{
	(void)s;
	(void)f; /* the lines this file knows of are read by tools/watched.c */
}

void cw_runstatus_end(struct cw_runstatus *s)
{
	if (s->path[0])
		unlink(s->path);
	s->path[0] = 0;
}
