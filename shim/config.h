/* Configuration from CLOSEWATCH_* variables, parsed once. Never getenv in the
 * hot path: hooks read the parsed struct. */
#ifndef CW_CONFIG_H
#define CW_CONFIG_H

#include <stddef.h>

enum cw_mode { CW_MODE_OBSERVE, CW_MODE_WARN, CW_MODE_DRAIN };
enum cw_log_kind { CW_LOG_STDERR, CW_LOG_SYSLOG, CW_LOG_FILE };

#define CW_PATH_MAX 1024
#define CW_BT_LIMIT 16 /* most frames a record carries */

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
