/* Parsing CLOSEWATCH_* variables. Pure: no syscalls, no allocation, so that it
 * can be unit-tested and fuzzed. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct cw_config cw_cfg;

/* Append s to buf[*len] within cap; keeps a NUL. */
static void put(char *buf, size_t cap, size_t *len, const char *s)
{
	while (*s && *len + 1 < cap)
		buf[(*len)++] = *s++;
	buf[*len] = 0;
}

static void put_long(char *buf, size_t cap, size_t *len, long v)
{
	char tmp[24];
	int i = sizeof tmp - 1;
	tmp[i] = 0;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
	do
		tmp[--i] = (char)('0' + u % 10);
	while ((u /= 10) && i > 1);
	if (v < 0)
		tmp[--i] = '-';
	put(buf, cap, len, tmp + i);
}

/* "closewatch: CLOSEWATCH_X=<value> is not valid (<expect>); using <used>" */
static void bad(cw_warn_fn warn, void *arg, const char *name, const char *value,
		const char *expect, const char *used)
{
	char line[512];
	size_t n = 0;
	put(line, sizeof line - 1, &n, "closewatch: ");
	put(line, sizeof line - 1, &n, name);
	put(line, sizeof line - 1, &n, "=");
	/* The value is the user's; keep the line one line and short. */
	for (const char *p = value; *p && n < 200; p++)
		line[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	line[n] = 0;
	put(line, sizeof line - 1, &n, " is not valid (");
	put(line, sizeof line - 1, &n, expect);
	put(line, sizeof line - 1, &n, "); using ");
	put(line, sizeof line - 1, &n, used);
	line[n++] = '\n';
	line[n] = 0;
	if (warn)
		warn(line, n, arg);
}

static int choose(const char *value, const char *const *names, int count)
{
	for (int i = 0; i < count; i++)
		if (strcmp(value, names[i]) == 0)
			return i;
	return -1;
}

static void parse_choice(int *out, const char *name, const char *const *names, int count,
			 const char *expect, cw_lookup_fn lookup, void *la, cw_warn_fn warn, void *wa)
{
	const char *v = lookup(name, la);
	if (!v)
		return;
	int i = choose(v, names, count);
	if (i < 0)
		bad(warn, wa, name, v, expect, names[*out]);
	else
		*out = i;
}

/* Integer in [lo, hi]; anything else (junk, overflow, out of range) warns. */
static int parse_long(long *out, const char *name, long lo, long hi, cw_lookup_fn lookup,
		      void *la, cw_warn_fn warn, void *wa)
{
	const char *v = lookup(name, la);
	if (!v)
		return 0;
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	int junk = errno || end == v || *end;
	if (junk || x < lo || x > hi) {
		/* A number out of range is clamped; junk keeps the default. */
		if (!junk)
			*out = x < lo ? lo : hi;
		char expect[80], used[24];
		size_t n = 0, m = 0;
		put(expect, sizeof expect, &n, "an integer from ");
		put_long(expect, sizeof expect, &n, lo);
		put(expect, sizeof expect, &n, " to ");
		put_long(expect, sizeof expect, &n, hi);
		put_long(used, sizeof used, &m, *out);
		bad(warn, wa, name, v, expect, used);
		return 0;
	}
	*out = x;
	return 1;
}

void cw_config_parse(struct cw_config *c, cw_lookup_fn lookup, void *la, cw_warn_fn warn, void *wa)
{
	static const char *const modes[] = {"observe", "warn", "drain"};
	static const char *const formats[] = {"text", "json"};
	static const char *const events[] = {"risky", "all"};
	static const char *const bools[] = {"0", "1"};

	memset(c, 0, sizeof *c);
	c->mode = CW_MODE_OBSERVE;
	c->log_kind = CW_LOG_STDERR;
	c->drain_timeout_ms = 30000;
	c->drain_idle_ms = 5000;
	c->drain_max = 1024;

	parse_choice(&c->mode, "CLOSEWATCH_MODE", modes, 3, "observe|warn|drain", lookup, la, warn, wa);
	parse_choice(&c->json, "CLOSEWATCH_FORMAT", formats, 2, "text|json", lookup, la, warn, wa);
	parse_choice(&c->events_all, "CLOSEWATCH_EVENTS", events, 2, "risky|all", lookup, la, warn, wa);
	parse_choice(&c->drain_sync, "CLOSEWATCH_DRAIN_SYNC", bools, 2, "0|1", lookup, la, warn, wa);

	const char *log = lookup("CLOSEWATCH_LOG", la);
	if (log) {
		if (strcmp(log, "stderr") == 0)
			c->log_kind = CW_LOG_STDERR;
		else if (strcmp(log, "syslog") == 0)
			c->log_kind = CW_LOG_SYSLOG;
		else if (log[0] && strlen(log) < CW_PATH_MAX - 32) {
			c->log_kind = CW_LOG_FILE;
			strcpy(c->log_path, log);
		} else
			bad(warn, wa, "CLOSEWATCH_LOG", log, "stderr|syslog|a file path", "stderr");
	}

	long bt = c->mode == CW_MODE_WARN ? 8 : 0;
	parse_long(&bt, "CLOSEWATCH_BACKTRACE", 0, CW_BT_LIMIT, lookup, la, warn, wa);
	c->backtrace = (int)bt;

	parse_long(&c->drain_timeout_ms, "CLOSEWATCH_DRAIN_TIMEOUT_MS", 1, 86400000L, lookup, la, warn, wa);
	parse_long(&c->drain_idle_ms, "CLOSEWATCH_DRAIN_IDLE_MS", 1, 86400000L, lookup, la, warn, wa);
	long max = c->drain_max;
	parse_long(&max, "CLOSEWATCH_DRAIN_MAX", 0, 65536, lookup, la, warn, wa);
	c->drain_max = (int)max;
}
