/* Fuzz harness: the CLOSEWATCH_* parser (core/config.c, cw_config_parse).
 *
 * Input: assignments "NAME=VALUE" separated by NUL bytes, NAME being the part
 * after "CLOSEWATCH_" (MODE, LOG, FORMAT, …). A later assignment to the same
 * name wins, as in an environment; chunks without '=' or with an unknown name
 * are ignored. Checks: every field ends up in its documented range, a file
 * path is kept verbatim, and each warning is one short, printable line that
 * names a variable that was set, at most one per variable. One rule for every
 * numeric variable: an empty value is unset (no warning); a warning means the
 * default; no warning means the number given (nothing clamped). */
#include "fuzz.h"
#include "config.h"

#include <string.h>

static const char *const names[] = {
	"MODE", "LOG", "FORMAT", "EVENTS", "BACKTRACE", "DRAIN_TIMEOUT_MS",
	"DRAIN_IDLE_MS", "DRAIN_SYNC", "DRAIN_MAX",
};
#define NNAMES (sizeof names / sizeof names[0])

struct env {
	const char *val[NNAMES];
	unsigned asked[NNAMES];
	unsigned warnings[NNAMES];
	unsigned nwarn;
};

/* A numeric variable: the value given (digits, leading zeros aside), or its
 * default with one warning, or its default silently when empty/unset. */
static void check_number(const struct env *e, int i, long got, long def)
{
	const char *v = e->val[i];
	if (!v || !*v) {
		FUZZ_CHECK(!e->warnings[i] && got == def);
		return;
	}
	if (e->warnings[i]) {
		FUZZ_CHECK(got == def);
		return;
	}
	while (*v == '0' && v[1])
		v++;
	char text[24];
	int n = snprintf(text, sizeof text, "%ld", got);
	FUZZ_CHECK(n > 0 && !strcmp(text, v));
}

static int name_index(const char *full)
{
	if (strncmp(full, "CLOSEWATCH_", 11) != 0)
		return -1;
	for (size_t i = 0; i < NNAMES; i++)
		if (!strcmp(full + 11, names[i]))
			return (int)i;
	return -1;
}

static const char *lookup(const char *name, void *arg)
{
	struct env *e = arg;
	int i = name_index(name);
	FUZZ_CHECK(i >= 0); /* the parser asks only for documented variables */
	e->asked[i]++;
	return e->val[i];
}

static void on_warn(const char *line, size_t len, void *arg)
{
	struct env *e = arg;
	e->nwarn++;
	FUZZ_CHECK(len > 0 && len < 512);
	FUZZ_CHECK(strlen(line) == len); /* NUL-terminated, no NUL inside */
	FUZZ_CHECK(line[len - 1] == '\n');
	for (size_t i = 0; i + 1 < len; i++)
		FUZZ_CHECK(line[i] >= 0x20 && line[i] < 0x7f); /* one printable line */
	FUZZ_CHECK(!strncmp(line, "closewatch: CLOSEWATCH_", 23));
	/* Which variable: the longest documented name followed by '='. */
	int which = -1;
	size_t best = 0;
	for (size_t i = 0; i < NNAMES; i++) {
		size_t n = strlen(names[i]);
		if (!strncmp(line + 23, names[i], n) && line[23 + n] == '=' && n > best) {
			which = (int)i;
			best = n;
		}
	}
	FUZZ_CHECK(which >= 0);
	FUZZ_CHECK(e->val[which] != NULL);
	e->warnings[which]++;
	FUZZ_CHECK(e->warnings[which] == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	struct env e;
	memset(&e, 0, sizeof e);
	for (char *p = buf; p < buf + size; p += strlen(p) + 1) {
		char *eq = strchr(p, '=');
		if (!eq)
			continue;
		*eq = 0;
		for (size_t i = 0; i < NNAMES; i++)
			if (!strcmp(p, names[i]))
				e.val[i] = eq + 1;
		*eq = '='; /* keep strlen(p) walking over the whole chunk */
	}

	struct cw_config c;
	memset(&c, 0xa5, sizeof c); /* the parser must set every field */
	cw_config_parse(&c, lookup, &e, on_warn, &e);

	for (size_t i = 0; i < NNAMES; i++)
		FUZZ_CHECK(e.asked[i] == 1); /* each variable read exactly once */
	FUZZ_CHECK(c.mode >= CW_MODE_OBSERVE && c.mode <= CW_MODE_DRAIN);
	FUZZ_CHECK(c.log_kind >= CW_LOG_STDERR && c.log_kind <= CW_LOG_FILE);
	FUZZ_CHECK(c.json == 0 || c.json == 1);
	FUZZ_CHECK(c.events_all == 0 || c.events_all == 1);
	FUZZ_CHECK(c.drain_sync == 0 || c.drain_sync == 1);
	FUZZ_CHECK(c.backtrace >= 0 && c.backtrace <= CW_BT_LIMIT);
	FUZZ_CHECK(c.drain_timeout_ms >= 1 && c.drain_timeout_ms <= 86400000L);
	FUZZ_CHECK(c.drain_idle_ms >= 1 && c.drain_idle_ms <= 86400000L);
	FUZZ_CHECK(c.drain_max >= 1 && c.drain_max <= 65536);
	FUZZ_CHECK(memchr(c.log_path, 0, sizeof c.log_path) != NULL);
	if (c.log_kind == CW_LOG_FILE) {
		FUZZ_CHECK(e.val[1] && !strcmp(c.log_path, e.val[1]));
		FUZZ_CHECK(strlen(c.log_path) < CW_PATH_MAX - 32); /* room for %p expansion */
	} else {
		FUZZ_CHECK(c.log_path[0] == 0);
	}
	/* Unset variables keep their defaults. */
	if (!e.val[0])
		FUZZ_CHECK(c.mode == CW_MODE_OBSERVE);
	if (!e.val[1])
		FUZZ_CHECK(c.log_kind == CW_LOG_STDERR);
	if (!e.val[4])
		FUZZ_CHECK(c.backtrace == (c.mode == CW_MODE_WARN ? 8 : 0));
	if (!e.val[5])
		FUZZ_CHECK(c.drain_timeout_ms == 30000);
	if (!e.val[6])
		FUZZ_CHECK(c.drain_idle_ms == 5000);
	if (!e.val[8])
		FUZZ_CHECK(c.drain_max == 1024);
	/* Valid values never warn. */
	static const char *const valid_mode[] = {"observe", "warn", "drain"};
	for (int i = 0; i < 3; i++)
		if (e.val[0] && !strcmp(e.val[0], valid_mode[i]))
			FUZZ_CHECK(!e.warnings[0] && c.mode == i);
	check_number(&e, 4, c.backtrace, c.mode == CW_MODE_WARN ? 8 : 0);
	check_number(&e, 5, c.drain_timeout_ms, 30000);
	check_number(&e, 6, c.drain_idle_ms, 5000);
	check_number(&e, 7, c.drain_sync, 0);
	check_number(&e, 8, c.drain_max, 1024);
	FUZZ_CHECK(e.nwarn <= NNAMES);
	free(buf);
	return 0;
}
