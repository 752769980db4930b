/* Configuration from CLOSEWATCH_* variables, parsed once. Never getenv in the
 * hot path: hooks read the parsed struct.
 *
 * One table (cw_settings) says what each variable accepts and what it
 * defaults to; the library (cw_config_parse) and the CLI (`closewatch run`
 * checks its options and the environment it passes on) both use it, so a
 * value means the same thing everywhere. The rule, for every variable:
 *   - unset or empty: the default, silently;
 *   - anything else that is not a valid value (junk, a sign, out of range,
 *     too many digits, an unknown word): the default, and one warning line
 *     naming the variable and the value used instead. Nothing is clamped. */
#ifndef CW_CONFIG_H
#define CW_CONFIG_H

#include <stddef.h>

enum cw_mode { CW_MODE_OBSERVE, CW_MODE_WARN, CW_MODE_DRAIN };
enum cw_log_kind { CW_LOG_STDERR, CW_LOG_SYSLOG, CW_LOG_FILE };

#define CW_PATH_MAX 1024
#define CW_BT_LIMIT 16 /* most frames a record carries */
#define CW_BT_WARN_DEFAULT 8 /* CLOSEWATCH_BACKTRACE's default in warn mode */

struct cw_config {
	int mode;            /* enum cw_mode */
	int log_kind;        /* enum cw_log_kind */
	char log_path[CW_PATH_MAX]; /* for CW_LOG_FILE, before %p expansion */
	int json;            /* CLOSEWATCH_FORMAT=json */
	int events_all;      /* CLOSEWATCH_EVENTS=all */
	int backtrace;       /* frames, 0 = off */
	long drain_timeout_ms;
	long drain_idle_ms;
	int drain_sync;
	int drain_max;
};

/* ---- the table of settings -------------------------------------------------- */

enum cw_setting_kind {
	CW_KIND_CHOICE, /* one of the words in `choices`; the value is its index */
	CW_KIND_INT,    /* decimal digits only, lo <= n <= hi */
	CW_KIND_LOG,    /* stderr, syslog, or a file path shorter than CW_PATH_MAX - 32 */
};

/* Indexes into cw_settings, in the order the variables are read. */
enum cw_setting_id {
	CW_SET_MODE, CW_SET_LOG, CW_SET_FORMAT, CW_SET_EVENTS, CW_SET_BACKTRACE,
	CW_SET_DRAIN_TIMEOUT_MS, CW_SET_DRAIN_IDLE_MS, CW_SET_DRAIN_SYNC, CW_SET_DRAIN_MAX,
	CW_NSETTINGS
};

struct cw_setting {
	const char *name;      /* "CLOSEWATCH_..." */
	int kind;              /* enum cw_setting_kind */
	const char *choices;   /* CHOICE: "observe|warn|drain" (the first is index 0) */
	long lo, hi;           /* INT: the valid range */
	long def;              /* the default: a CHOICE's index, an INT's value */
};

extern const struct cw_setting cw_settings[CW_NSETTINGS];

/* The setting called name, or NULL. */
const struct cw_setting *cw_setting_find(const char *name);

/* Check one value: 1 valid (*num = an INT's value or a CHOICE's index; 0 for
 * LOG), 0 unset (NULL or empty), -1 not valid. */
int cw_setting_check(const struct cw_setting *s, const char *value, long *num);

/* What a setting accepts, for messages: "observe|warn|drain",
 * "an integer from 0 to 16". Returns buf. */
const char *cw_setting_expect(const struct cw_setting *s, char *buf, size_t cap);

/* ---- parsing the whole configuration ---------------------------------------- */

/* Where parse warnings go: one complete line each. */
typedef void (*cw_warn_fn)(const char *line, size_t len, void *arg);
/* Where the values come from (getenv, or a test's table). */
typedef const char *(*cw_lookup_fn)(const char *name, void *arg);

/* Pure: fill *c from lookup, warn once per bad variable naming it and the
 * value used instead. No allocation. */
void cw_config_parse(struct cw_config *c, cw_lookup_fn lookup, void *lookup_arg,
		     cw_warn_fn warn, void *warn_arg);

/* The process's configuration (parsed from the environment by cw_init). */
extern struct cw_config cw_cfg;

#endif
