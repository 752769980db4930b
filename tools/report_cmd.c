/* `closewatch report [--json] [--top N] LOG…` */
#include "cmds.h"
#include "logread.h"
#include "report.h"
#include "util.h"

#include <errno.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: closewatch report [--json] [--top N] LOG...\n"
	      "Totals over closewatch logs (text or JSON lines; several files, several processes,\n"
	      "any order; '-' reads standard input): closes and shutdowns by verdict; what risky\n"
	      "closes threw away: answer bytes never sent (unsent, exact), bytes in flight at the\n"
	      "reset (sendq - unsent), request bytes not read (recvq); calls, actions, the top call\n"
	      "sites (grouped by backtrace), the top peers (by address, without port) and drains\n"
	      "by result. Lines that are not valid records, or longer than 4608 bytes, are counted\n"
	      "as malformed.\n"
	      "  --json   one JSON object instead of tables\n"
	      "  --top N  how many call sites and peers to list (default 10)\n"
	      "Exit status: 0, 1 if a file could not be read (the others are still reported),\n"
	      "2 on bad usage.\n", f);
}

int cw_cmd_report(int argc, char **argv)
{
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
		} else {
			return cw_unknown_option("report", argv[i]);
		}
	}
	if (i >= argc)
		return cw_usage_error("report", "needs at least one LOG file");
	struct cw_report r;
	struct cw_logstats st;
	cw_report_init(&r);
	memset(&st, 0, sizeof(st));
	int rc = 0, nread = 0;
	for (; i < argc; i++) {
		const char *path = !strcmp(argv[i], "-") ? "/dev/stdin" : argv[i];
		if (cw_log_read_file(path, 0, cw_report_add_cb, &r, &st) != 0) {
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
