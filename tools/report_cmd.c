/* `closewatch report [--json] [--top N] [--since T] [--until T] LOG…` */
#include "cmds.h"
#include "logread.h"
#include "report.h"
#include "util.h"

#include <errno.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: closewatch report [--json] [--top N] [--since T] [--until T] LOG...\n"
	      "Totals over closewatch logs (several files, several processes and hosts, any order;\n"
	      "'-' reads standard input): closes and shutdowns by verdict; what risky closes threw\n"
	      "away: answer bytes never sent (unsent, exact), bytes in flight at the reset\n"
	      "(sendq - unsent), request bytes not read (recvq); hosts (when more than one),\n"
	      "programs (by exe), calls, actions, the top call sites (grouped by backtrace), the top\n"
	      "peers (by address, without port) and drains by result.\n"
	      "Lines may be records (text or JSON), rsyslog file lines (traditional or RFC 3339\n"
	      "format) with a record as message, or `journalctl -o json` entries with the record in\n"
	      "MESSAGE, mixed. Lines of other programs are counted as other; closewatch lines that\n"
	      "are cut or corrupt, or too long (4608 bytes, 20480 for a line starting with '{'),\n"
	      "as malformed.\n"
	      "  --json     one JSON object instead of tables\n"
	      "  --top N    how many call sites and peers to list (default 10)\n"
	      "  --since T  only records at or after T (RFC 3339, e.g. 2026-12-02T00:00:00Z)\n"
	      "  --until T  only records before T (RFC 3339)\n"
	      "Exit status: 0, 1 if a file could not be read (the others are still reported),\n"
	      "2 on bad usage.\n", f);
}

/* The --since/--until window in front of the totals. */
struct window {
	struct cw_report *r;
	double since, until;
	int has_since, has_until;
};

static void add_in_window(const struct cw_rec *rec, void *arg)
{
	struct window *w = arg;
	if ((w->has_since && rec->t < w->since) || (w->has_until && rec->t >= w->until)) {
		w->r->outside++;
		return;
	}
	cw_report_add(w->r, rec);
}

int cw_cmd_report(int argc, char **argv)
{
	struct window w = {0};
	int json = 0, i = 0;
	unsigned long top = 10;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--top")) {
			if (i + 1 >= argc || cw_parse_uint(argv[i + 1], 100000, &top) != 0)
				return cw_usage_error("report", "--top needs a number");
			i++;
		} else if (!strcmp(argv[i], "--since") || !strcmp(argv[i], "--until")) {
			int since = argv[i][2] == 's';
			if (i + 1 >= argc ||
			    cw_parse_rfc3339(argv[i + 1], since ? &w.since : &w.until) != 0)
				return cw_usage_error("report", since ? "--since needs an RFC 3339 time"
								      : "--until needs an RFC 3339 time");
			*(since ? &w.has_since : &w.has_until) = 1;
			i++;
		} else {
			return cw_unknown_option("report", argv[i]);
		}
	}
	if (i >= argc)
		return cw_usage_error("report", "needs at least one LOG file");
	struct cw_report r;
	struct cw_logstats st;
	cw_report_init(&r);
	w.r = &r;
	memset(&st, 0, sizeof(st));
	int rc = 0, nread = 0;
	for (; i < argc; i++) {
		const char *path = !strcmp(argv[i], "-") ? "/dev/stdin" : argv[i];
		if (cw_log_read_file(path, 0, add_in_window, &w, &st) != 0) {
			cw_err("cannot read log %s: %s", argv[i], strerror(errno));
			rc = 1;
		} else {
			nread++;
		}
	}
	if (!nread) {
		cw_report_free(&r);
		return 1;
	}
	if (json)
		cw_report_print_json(stdout, &r, &st, (int)top);
	else
		cw_report_print_text(stdout, &r, &st, (int)top);
	cw_report_free(&r);
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
