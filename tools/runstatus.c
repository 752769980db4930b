/* The status channel of `closewatch run`: see runstatus.h. */
#include "runstatus.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192 /* longer lines are not ours: skipped */
#define MAX_GROUPS 64       /* distinct (target, error) pairs shown; more are summed */
#define MAX_LINES 1000000   /* bounded reading, whatever is in the file */

struct lost_group {
	char *target, *error;
	unsigned long long records;
};

void cw_runstatus_begin(struct cw_runstatus *s)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(s->path, sizeof(s->path), "%s/closewatch-XXXXXX.status", dir);
	int fd = mkstemps(s->path, 7);
	if (fd < 0 || setenv("CLOSEWATCH_RUN_STATUS", s->path, 1) != 0) {
		cw_err("cannot create a status file in %s: %s (records that could not be "
		       "written will not be counted in the summary)", dir, strerror(errno));
		if (fd >= 0)
			unlink(s->path);
		s->path[0] = 0;
	}
	if (fd >= 0)
		close(fd);
}

/* "lost pid=N records=N target=T error=E". T and E may hold spaces: T runs to the last
 * " error=" (an error text never holds one), E to the end of the line. In place. */
static int parse_lost(char *line, unsigned long long *records, char **target, char **error)
{
	char *rec = strstr(line, " records=");
	char *t = strstr(line, " target=");
	char *e = NULL;
	for (char *p = line; (p = strstr(p, " error=")); p++)
		e = p;
	if (!rec || !t || !e || e < t + 7)
		return -1;
	char *endp;
	errno = 0;
	*records = strtoull(rec + 9, &endp, 10);
	if (errno || endp == rec + 9 || *endp != ' ')
		return -1;
	*e = 0;
	*target = t + 8;
	*error = e + 7;
	return 0;
}

void cw_runstatus_each_line(const char *path, long max_lines, void (*fn)(char *line, void *arg),
			    void *arg)
{
	FILE *in = fopen(path, "r");
	if (!in)
		return;
	char buf[LINE_MAX_BYTES];
	for (long n = 0; n < max_lines && fgets(buf, sizeof(buf), in); n++) {
		size_t len = strlen(buf);
		if (!len || buf[len - 1] != '\n') {
			/* too long: skip the rest of it */
			int c;
			while ((c = fgetc(in)) != EOF && c != '\n')
				;
			continue;
		}
		buf[len - 1] = 0;
		fn(buf, arg);
	}
	fclose(in);
}

struct lost_totals {
	struct lost_group groups[MAX_GROUPS];
	size_t ng;
	unsigned long long other; /* records of targets past MAX_GROUPS */
};

static void add_lost_line(char *line, void *arg)
{
	struct lost_totals *t = arg;
	unsigned long long records;
	char *target, *error;
	if (strncmp(line, "lost ", 5) || parse_lost(line, &records, &target, &error) != 0)
		return; /* other kinds of lines are for other summaries */
	size_t g = 0;
	while (g < t->ng && (strcmp(t->groups[g].target, target) || strcmp(t->groups[g].error, error)))
		g++;
	if (g == t->ng) {
		if (t->ng == MAX_GROUPS) {
			t->other += records;
			return;
		}
		t->groups[g].target = cw_xstrdup(target);
		t->groups[g].error = cw_xstrdup(error);
		t->groups[g].records = 0;
		t->ng++;
	}
	t->groups[g].records += records;
}

void cw_runstatus_summarize(const struct cw_runstatus *s, FILE *f)
{
	if (!s->path[0])
		return;
	struct lost_totals t = {.ng = 0, .other = 0};
	cw_runstatus_each_line(s->path, MAX_LINES, add_lost_line, &t);
	for (size_t g = 0; g < t.ng; g++) {
		fprintf(f, "closewatch: %llu record%s could not be written to %s (%s)\n",
			t.groups[g].records, t.groups[g].records == 1 ? "" : "s", t.groups[g].target,
			t.groups[g].error);
		free(t.groups[g].target);
		free(t.groups[g].error);
	}
	if (t.other)
		fprintf(f, "closewatch: %llu more records could not be written (other targets)\n",
			t.other);
}

void cw_runstatus_end(struct cw_runstatus *s)
{
	if (s->path[0])
		unlink(s->path);
	s->path[0] = 0;
}
