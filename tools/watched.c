/* See watched.h. Lines (one per process and program, appended with one
 * write each):
 *   watched pid=N [start=T] via=V exe=PATH
 *   notwatched pid=N exe=PATH why=REASON
 * T, the process's start time, is kept by an exec: two "watched" lines with
 * the same pid and T are one process that exec'd; another T is a new process
 * that reuses the pid.
 * PATH may hold spaces: exe runs to the end of a "watched" line, and to the
 * last " why=" of a "notwatched" one (a reason never holds " why="). */
#include "watched.h"
#include "../core/elfkind.h"
#include "runstatus.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LINES 100000   /* bounded reading, whatever is in the file */
#define MAX_ENTRIES 256    /* distinct entries kept; more are counted */
#define MAX_NAMED 8        /* processes named per way in; more are counted */
#define MAX_EXECS 4        /* programs named per process after its first; more are counted */

struct entry {
	char *via, *exe, *why; /* why: NULL for a watched process */
	long pid;
	unsigned long start;   /* watched: start time, 0 when unknown */
	unsigned long count;   /* notwatched: processes with this exe and reason */
	char *execd[MAX_EXECS]; /* watched: the programs it exec'd next, in order */
	unsigned long nexecd;
};

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

static int parse(char *line, struct entry *e)
{
	memset(e, 0, sizeof(*e));
	int watched = !strncmp(line, "watched ", 8);
	if (!watched && strncmp(line, "notwatched ", 11))
		return -1;
	char *p = strstr(line, " pid=");
	char *x = strstr(line, " exe=");
	if (!p || !x || x < p)
		return -1;
	e->pid = strtol(p + 5, NULL, 10);
	char *t = strstr(line, " start=");
	if (t && t < x)
		e->start = strtoul(t + 7, NULL, 10);
	if (watched) {
		char *v = strstr(line, " via=");
		if (!v || v > x)
			return -1;
		*x = 0;
		char *sp = strchr(v + 5, ' ');
		if (sp)
			*sp = 0;
		e->via = v + 5;
		e->exe = x + 5;
		return 0;
	}
	char *w = NULL;
	for (char *q = x; (q = strstr(q, " why=")); q++)
		w = q;
	if (!w)
		return -1;
	*w = 0;
	e->exe = x + 5;
	e->why = w + 5;
	return 0;
}

static int foreign(const char *why)
{
	return why && !strcmp(why, CW_ELF_FOREIGN_WHY);
}

static void print_not_watched(FILE *f, const char *exe, const char *why, unsigned long count)
{
	if (foreign(why)) /* the trap would not see its calls either (trap/foreign.h) */
		fprintf(f, "closewatch: %s: not watched (%s: closewatch sees only this machine's "
			"native system calls)", exe, why);
	else
		fprintf(f, "closewatch: %s: not watched (%s: use --via trap)", exe, why);
	if (count > 1)
		fprintf(f, " (%lu processes)", count);
	fputc('\n', f);
}

/* " (exec'd a, b)": the programs a watched process went on to run. */
static void print_execd(FILE *f, const struct entry *e)
{
	if (!e->nexecd)
		return;
	fputs(" (exec'd", f);
	for (unsigned long k = 0; k < e->nexecd && k < MAX_EXECS; k++)
		fprintf(f, "%s %s", k ? "," : "", base(e->execd[k]));
	if (e->nexecd > MAX_EXECS)
		fprintf(f, " and %lu more", e->nexecd - MAX_EXECS);
	fputc(')', f);
}

struct entries {
	struct entry *es; /* MAX_ENTRIES of them */
	size_t n;
	unsigned long dropped; /* entries past MAX_ENTRIES */
};

static void add_entry_line(char *line, void *arg)
{
	struct entries *t = arg;
	struct entry e;
	if (parse(line, &e) != 0)
		return;
	size_t i = 0;
	if (e.why) { /* one entry per program and reason */
		while (i < t->n && !(t->es[i].why && !strcmp(t->es[i].exe, e.exe) &&
				     !strcmp(t->es[i].why, e.why)))
			i++;
		if (i < t->n) {
			t->es[i].count++;
			return;
		}
	} else if (e.start) { /* a process that exec'd: one entry, its programs in order */
		while (i < t->n && !(!t->es[i].why && t->es[i].pid == e.pid &&
				     t->es[i].start == e.start && !strcmp(t->es[i].via, e.via)))
			i++;
		if (i < t->n) {
			struct entry *d = &t->es[i];
			if (d->nexecd < MAX_EXECS)
				d->execd[d->nexecd] = cw_xstrdup(e.exe);
			d->nexecd++;
			return;
		}
	}
	if (t->n == MAX_ENTRIES) {
		t->dropped++;
		return;
	}
	struct entry *d = &t->es[t->n++];
	d->via = e.via ? cw_xstrdup(e.via) : NULL;
	d->exe = cw_xstrdup(e.exe);
	d->why = e.why ? cw_xstrdup(e.why) : NULL;
	d->pid = e.pid;
	d->start = e.start;
	d->count = 1;
}

void cw_watched_summarize(FILE *f, const char *status, const char *cmd, const char *cmd_why,
			  int trap)
{
	struct entries t = {.es = cw_xcalloc(MAX_ENTRIES, sizeof(struct entry)), .n = 0, .dropped = 0};
	if (status && *status)
		cw_runstatus_each_line(status, MAX_LINES, add_entry_line, &t);
	struct entry *es = t.es;
	size_t n = t.n;
	unsigned long dropped = t.dropped;
	int any = 0;
	if (trap) {
		int said = 0, cmd_unwatched = 0;
		for (size_t i = 0; i < n && !said; i++)
			said = !es[i].why && es[i].via && !strcmp(es[i].via, "trap");
		/* The trap said at its exec that CMD itself is of another ABI. */
		for (size_t i = 0; i < n; i++)
			cmd_unwatched |= foreign(es[i].why) &&
					 (!strcmp(es[i].exe, cmd) ||
					  (!strchr(cmd, '/') && !strcmp(base(es[i].exe), cmd)));
		if (!said && cmd_unwatched) {
			fprintf(f, "closewatch: watched via trap: every process %s started\n", cmd);
			any = 1;
		} else if (!said) {
			fprintf(f, "closewatch: watched via trap: %s and every process it started\n", cmd);
			any = 1;
		}
	}
	/* Watched processes, grouped by way in, in order of first appearance. */
	for (size_t i = 0; i < n; i++) {
		if (es[i].why || !es[i].via)
			continue;
		size_t total = 0, named = 0;
		for (size_t j = i; j < n; j++)
			if (!es[j].why && es[j].via && !strcmp(es[j].via, es[i].via))
				total++;
		fprintf(f, "closewatch: watched via %s: %zu process%s:", es[i].via, total,
			total == 1 ? "" : "es");
		const char *via = es[i].via;
		for (size_t j = i; j < n; j++) {
			if (es[j].why || !es[j].via || strcmp(es[j].via, via))
				continue;
			if (named++ < MAX_NAMED) {
				fprintf(f, "%s %s[%ld]", named > 1 ? "," : "", base(es[j].exe), es[j].pid);
				print_execd(f, &es[j]);
			}
			if (j != i) {
				free(es[j].via);
				es[j].via = NULL; /* printed */
			}
		}
		if (total > MAX_NAMED)
			fprintf(f, " and %zu more", total - MAX_NAMED);
		fputc('\n', f);
		any = 1;
	}
	if (cmd && cmd_why) {
		print_not_watched(f, cmd, cmd_why, 1);
		any = 1;
	}
	for (size_t i = 0; i < n; i++)
		if (es[i].why) {
			print_not_watched(f, es[i].exe, es[i].why, es[i].count);
			any = 1;
		}
	if (dropped)
		fprintf(f, "closewatch: %lu more processes (not listed)\n", dropped);
	if (!any && status && *status)
		fputs("closewatch: no process was watched\n", f);
	for (size_t i = 0; i < n; i++) {
		free(es[i].via);
		free(es[i].exe);
		free(es[i].why);
		for (unsigned long k = 0; k < es[i].nexecd && k < MAX_EXECS; k++)
			free(es[i].execd[k]);
	}
	free(es);
}
