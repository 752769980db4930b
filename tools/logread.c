/* Reading closewatch log files line by line into records, in bounded memory.
 *
 * A record is at most CW_REC_LINE_MAX bytes (the shim's limit) and may sit
 * behind a syslog prefix, or inside a journal entry; lines are read with
 * read(2) into a fixed buffer and a line longer than CW_LOG_LINE_MAX
 * (CW_JSON_LINE_MAX for a line that starts with '{') is consumed up to its newline without
 * being kept, and counted as malformed. So a log that is one endless line
 * (a device, a corrupted file) costs the same memory as a good one. */
#include "logread.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK 65536

struct line_state {
	const char *path;
	unsigned long lineno;
	struct cw_rec *r;
	cw_rec_fn fn;
	void *arg;
	struct cw_logstats *st;
};

static void bad_line(struct line_state *ls)
{
	struct cw_logstats *st = ls->st;
	if (!st->malformed)
		snprintf(st->first_bad, sizeof(st->first_bad), "%.500s:%lu", ls->path, ls->lineno);
	st->malformed++;
}

/* One complete line (without its newline); too_long: it was not kept. */
static void one_line(struct line_state *ls, const char *line, size_t len, int too_long)
{
	ls->lineno++;
	if (too_long) {
		ls->st->lines++;
		bad_line(ls);
		return;
	}
	int rc = cw_log_parse_line(line, len, ls->r);
	if (rc == CW_LINE_BLANK)
		return;
	ls->st->lines++;
	if (rc == CW_LINE_RECORD) {
		ls->st->records++;
		ls->fn(ls->r, ls->arg);
	} else if (rc == CW_LINE_OTHER) {
		ls->st->other++;
	} else {
		bad_line(ls);
	}
}

int cw_log_read_file(const char *path, off_t start, cw_rec_fn fn, void *arg, struct cw_logstats *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (start > 0 && lseek(fd, start, SEEK_SET) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	struct line_state ls = {path, 0, cw_xmalloc(sizeof(struct cw_rec)), fn, arg, st};
	char *buf = cw_xmalloc(READ_CHUNK);
	char *line = cw_xmalloc(CW_JSON_LINE_MAX);
	size_t len = 0;   /* bytes of the current line kept in `line` */
	int too_long = 0; /* the current line passed CW_LOG_LINE_MAX: skipping to its newline */
	int err = 0;
	st->files++;
	for (;;) {
		ssize_t n = read(fd, buf, READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			break;
		}
		if (n == 0)
			break;
		const char *p = buf, *end = buf + n;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t take = (size_t)((nl ? nl : end) - p);
			/* a journal entry ('{' first) may be longer than a syslog line */
			size_t max = (len ? line[0] : *p) == '{' ? CW_JSON_LINE_MAX : CW_LOG_LINE_MAX;
			if (!too_long && take > max - len)
				too_long = 1;
			if (!too_long) {
				memcpy(line + len, p, take);
				len += take;
			}
			if (!nl)
				break;
			one_line(&ls, line, len, too_long);
			len = 0;
			too_long = 0;
			p = nl + 1;
		}
	}
	if (!err && (len || too_long))
		one_line(&ls, line, len, too_long); /* a last line without newline */
	free(line);
	free(buf);
	free(ls.r);
	close(fd);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}
