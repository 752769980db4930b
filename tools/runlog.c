/* The log of one `closewatch run`: choosing it, and summarising what the run added. */
#include "runlog.h"
#include "logread.h"
#include "report.h"
#include "util.h"

#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void add_path(struct cw_runlog *l, const char *path, off_t size)
{
	l->paths = cw_xrealloc(l->paths, (l->n + 1) * sizeof(*l->paths));
	l->sizes = cw_xrealloc(l->sizes, (l->n + 1) * sizeof(*l->sizes));
	l->paths[l->n] = cw_xstrdup(path);
	l->sizes[l->n] = size;
	l->n++;
}

/* path matches spec where each %p stands for one or more digits. */
static int pid_match(const char *spec, const char *path)
{
	while (*spec) {
		if (spec[0] == '%' && spec[1] == 'p') {
			if (*path < '0' || *path > '9')
				return 0;
			while (*path >= '0' && *path <= '9')
				path++;
			spec += 2;
		} else if (*spec++ != *path++) {
			return 0;
		}
	}
	return !*path;
}

/* Every existing file matching a %p pattern (gl must be globfree'd). */
static void pid_glob(const char *spec, glob_t *gl)
{
	size_t cap = strlen(spec) * 6 + 1;
	char *pat = cw_xmalloc(cap), *o = pat;
	for (const char *s = spec; *s; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			memcpy(o, "[0-9]*", 6);
			o += 6;
			s++;
		} else {
			if (strchr("*?[\\", *s))
				*o++ = '\\';
			*o++ = *s;
		}
	}
	*o = 0;
	memset(gl, 0, sizeof(*gl));
	glob(pat, 0, NULL, gl);
	free(pat);
}

static off_t size_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : 0;
}

int cw_runlog_begin(struct cw_runlog *l, const char *spec)
{
	memset(l, 0, sizeof(*l));
	if (!spec) {
		const char *dir = getenv("TMPDIR");
		if (!dir || !*dir)
			dir = "/tmp";
		snprintf(l->spec, sizeof(l->spec), "%s/closewatch-XXXXXX.log", dir);
		int fd = mkstemps(l->spec, 4);
		if (fd < 0) {
			cw_err("cannot create a temporary log in %s: %s (use --log PATH)", dir,
			       strerror(errno));
			return -1;
		}
		close(fd);
		l->temp = 1;
		l->readable = 1;
		add_path(l, l->spec, 0);
		return 0;
	}
	if (strlen(spec) >= sizeof(l->spec)) {
		cw_err("log path too long");
		return -1;
	}
	strcpy(l->spec, spec);
	if (!strcmp(spec, "stderr") || !strcmp(spec, "syslog"))
		return 0;
	l->readable = 1;
	if (strstr(spec, "%p")) {
		glob_t gl;
		pid_glob(spec, &gl);
		for (size_t i = 0; i < gl.gl_pathc; i++)
			if (pid_match(spec, gl.gl_pathv[i]))
				add_path(l, gl.gl_pathv[i], size_of(gl.gl_pathv[i]));
		globfree(&gl);
	} else {
		add_path(l, spec, size_of(spec));
	}
	return 0;
}

static off_t start_of(const struct cw_runlog *l, const char *path)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->paths[i], path))
			return size_of(path) >= l->sizes[i] ? l->sizes[i] : 0;
	return 0;
}

static void read_one(const struct cw_runlog *l, const char *path, struct cw_report *r,
		     struct cw_logstats *st)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		return; /* nothing was logged */
	if (!S_ISREG(sb.st_mode)) {
		/* A FIFO or a device (/dev/full): reading it would take another
		 * reader's records, block, or never end. */
		cw_err("log %s is not a regular file: not summarised", path);
		return;
	}
	if (cw_log_read_file(path, start_of(l, path), cw_report_add_cb, r, st) != 0)
		cw_err("cannot read log %s: %s", path, strerror(errno));
}

void cw_runlog_summarize(struct cw_runlog *l, FILE *f)
{
	if (!l->readable) {
		fprintf(f, "closewatch: records went to %s; no summary (use --log FILE for one)\n",
			l->spec);
		return;
	}
	struct cw_report r;
	struct cw_logstats st;
	cw_report_init(&r);
	memset(&st, 0, sizeof(st));
	if (strstr(l->spec, "%p") && !l->temp) {
		glob_t gl;
		pid_glob(l->spec, &gl);
		for (size_t i = 0; i < gl.gl_pathc; i++)
			if (pid_match(l->spec, gl.gl_pathv[i]))
				read_one(l, gl.gl_pathv[i], &r, &st);
		globfree(&gl);
	} else {
		read_one(l, l->spec, &r, &st);
	}
	cw_report_print_summary(f, &r, &st);
	if (l->temp)
		fprintf(f, "closewatch: records not kept (use --log PATH to keep them)\n");
	else
		fprintf(f, "closewatch: log: %s\n", l->spec);
	cw_report_free(&r);
}

void cw_runlog_end(struct cw_runlog *l)
{
	if (l->temp)
		unlink(l->spec);
	for (size_t i = 0; i < l->n; i++)
		free(l->paths[i]);
	free(l->paths);
	free(l->sizes);
	memset(l, 0, sizeof(*l));
}
