/* Parsing CLOSEWATCH_* variables, one table for the library and the CLI (see
 * config.h for the rule). Pure: no syscalls, no allocation, so that it can be
 * unit-tested, fuzzed and linked into the CLI. */
#include "config.h"

#include <string.h>

struct cw_config cw_cfg;

/* The ranges: a backtrace carries at most CW_BT_LIMIT frames; a drain may
 * take up to a day; at least one drain slot (0 would drain nothing, which is
 * what observe mode is for), at most 65536 (the slot table is mapped once). */
const struct cw_setting cw_settings[CW_NSETTINGS] = {
	[CW_SET_MODE] = {"CLOSEWATCH_MODE", CW_KIND_CHOICE, "observe|warn|drain", 0, 0, CW_MODE_OBSERVE},
	[CW_SET_LOG] = {"CLOSEWATCH_LOG", CW_KIND_LOG, "stderr|syslog|a file path of at most 991 bytes", 0, 0, CW_LOG_STDERR},
	[CW_SET_FORMAT] = {"CLOSEWATCH_FORMAT", CW_KIND_CHOICE, "text|json", 0, 0, 0},
	[CW_SET_EVENTS] = {"CLOSEWATCH_EVENTS", CW_KIND_CHOICE, "risky|all", 0, 0, 0},
	/* 0, or CW_BT_WARN_DEFAULT in warn mode (cw_config_parse) */
	[CW_SET_BACKTRACE] = {"CLOSEWATCH_BACKTRACE", CW_KIND_INT, NULL, 0, CW_BT_LIMIT, 0},
	[CW_SET_DRAIN_TIMEOUT_MS] = {"CLOSEWATCH_DRAIN_TIMEOUT_MS", CW_KIND_INT, NULL, 1, 86400000L, 30000},
	[CW_SET_DRAIN_IDLE_MS] = {"CLOSEWATCH_DRAIN_IDLE_MS", CW_KIND_INT, NULL, 1, 86400000L, 5000},
	[CW_SET_DRAIN_SYNC] = {"CLOSEWATCH_DRAIN_SYNC", CW_KIND_CHOICE, "0|1", 0, 0, 0},
	[CW_SET_DRAIN_MAX] = {"CLOSEWATCH_DRAIN_MAX", CW_KIND_INT, NULL, 1, 65536, 1024},
};

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

const struct cw_setting *cw_setting_find(const char *name)
{
	for (int i = 0; i < CW_NSETTINGS; i++)
		if (strcmp(cw_settings[i].name, name) == 0)
			return &cw_settings[i];
	return NULL;
}

/* The index of value among the '|'-separated words, or -1. */
static int choose(const char *choices, const char *value)
{
	size_t len = strlen(value);
	int i = 0;
	for (const char *p = choices;; i++) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);
		if (n == len && strncmp(p, value, n) == 0)
			return i;
		if (!bar)
			return -1;
		p = bar + 1;
	}
}

/* Digits only (no sign, no spaces), no overflow, within [lo, hi]. */
static int parse_int(const char *v, long lo, long hi, long *out)
{
	long x = 0;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		x = x * 10 + (*p - '0');
		if (x > hi) /* also stops before any overflow: hi < LONG_MAX / 10 */
			return -1;
	}
	if (x < lo)
		return -1;
	*out = x;
	return 1;
}

int cw_setting_check(const struct cw_setting *s, const char *value, long *num)
{
	long dummy;
	if (!num)
		num = &dummy;
	if (!value || !value[0])
		return 0;
	switch (s->kind) {
	case CW_KIND_CHOICE: {
		int i = choose(s->choices, value);
		if (i < 0)
			return -1;
		*num = i;
		return 1;
	}
	case CW_KIND_INT:
		return parse_int(value, s->lo, s->hi, num);
	default: /* CW_KIND_LOG: room left for the %p expansion */
		*num = 0;
		return strlen(value) < CW_PATH_MAX - 32 ? 1 : -1; /* 991 bytes, as the table says */
	}
}

const char *cw_setting_expect(const struct cw_setting *s, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = 0;
	if (s->kind != CW_KIND_INT) {
		put(buf, cap, &n, s->choices);
		return buf;
	}
	put(buf, cap, &n, "an integer from ");
	put_long(buf, cap, &n, s->lo);
	put(buf, cap, &n, " to ");
	put_long(buf, cap, &n, s->hi);
	return buf;
}

/* The value of setting id from lookup, or def (with a warning if the value
 * was not valid). For a CHOICE or LOG, the index; for an INT, the number. */
static long get(int id, long def, const char **text, cw_lookup_fn lookup, void *la,
		cw_warn_fn warn, void *wa)
{
	const struct cw_setting *s = &cw_settings[id];
	const char *v = lookup(s->name, la);
	long x;
	int r = cw_setting_check(s, v, &x);
	if (text)
		*text = r > 0 ? v : NULL;
	if (r > 0)
		return x;
	if (r < 0) {
		char expect[80], used[24];
		size_t m = 0;
		used[0] = 0;
		if (s->kind == CW_KIND_INT)
			put_long(used, sizeof used, &m, def);
		else /* the default's word */
			for (const char *p = s->choices; *p && *p != '|' && m + 1 < sizeof used; p++)
				used[m++] = *p, used[m] = 0;
		bad(warn, wa, s->name, v, cw_setting_expect(s, expect, sizeof expect), used);
	}
	return def;
}

void cw_config_parse(struct cw_config *c, cw_lookup_fn lookup, void *la, cw_warn_fn warn, void *wa)
{
	memset(c, 0, sizeof *c);
#define GET(id) get(id, cw_settings[id].def, NULL, lookup, la, warn, wa)
	c->mode = (int)GET(CW_SET_MODE);

	const char *log;
	get(CW_SET_LOG, CW_LOG_STDERR, &log, lookup, la, warn, wa);
	if (!log || strcmp(log, "stderr") == 0)
		c->log_kind = CW_LOG_STDERR;
	else if (strcmp(log, "syslog") == 0)
		c->log_kind = CW_LOG_SYSLOG;
	else {
		c->log_kind = CW_LOG_FILE;
		strcpy(c->log_path, log); /* length checked by cw_setting_check */
	}

	c->json = (int)GET(CW_SET_FORMAT);
	c->events_all = (int)GET(CW_SET_EVENTS);
	long bt_def = c->mode == CW_MODE_WARN ? CW_BT_WARN_DEFAULT : cw_settings[CW_SET_BACKTRACE].def;
	c->backtrace = (int)get(CW_SET_BACKTRACE, bt_def, NULL, lookup, la, warn, wa);
	c->drain_timeout_ms = GET(CW_SET_DRAIN_TIMEOUT_MS);
	c->drain_idle_ms = GET(CW_SET_DRAIN_IDLE_MS);
	c->drain_sync = (int)GET(CW_SET_DRAIN_SYNC);
	c->drain_max = (int)GET(CW_SET_DRAIN_MAX);
#undef GET
}
