/* Reading closewatch log files line by line into records. */
#include "logread.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cw_log_read_file(const char *path, off_t start, cw_rec_fn fn, void *arg, struct cw_logstats *st)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (start > 0 && fseeko(f, start, SEEK_SET) != 0) {
		int e = errno;
		fclose(f);
		errno = e;
		return -1;
	}
	struct cw_rec *r = cw_xmalloc(sizeof(*r));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	st->files++;
	errno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		size_t len = (size_t)n;
		if (len && line[len - 1] == '\n')
			len--;
		int rc = cw_log_parse_line(line, len, r);
		if (rc == CW_LINE_BLANK)
			continue;
		st->lines++;
		if (rc == CW_LINE_RECORD) {
			st->records++;
			fn(r, arg);
		} else {
			if (!st->malformed)
				snprintf(st->first_bad, sizeof(st->first_bad), "%.500s:%lu", path, lineno);
			st->malformed++;
		}
	}
	int err = ferror(f) ? (errno ? errno : EIO) : 0;
	free(line);
	free(r);
	fclose(f);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}
