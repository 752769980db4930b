/* closewatch — command-line companion of libclosewatch.so.
 *   closewatch run [options] -- CMD ARGS…   run a program under the shim
 *   closewatch report [--json] [--top N] LOG…         totals over logs
 *   closewatch wire [--json] [--skew MS] LOG… PCAP     predictions versus the packets
 *   closewatch --version */
#include "cmds.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* From the Makefile's VERSION (also written into closewatch.pc). */
#ifndef CW_VERSION
#error "CW_VERSION must be defined (the Makefile passes -DCW_VERSION)"
#endif

static void usage(FILE *f)
{
	fputs("usage: closewatch run [--mode M] [--log PATH] [--json] [--events all|risky]\n"
	      "                      [--backtrace N] [--pcap FILE] [--iface IF] -- CMD ARGS...\n"
	      "       closewatch report [--json] [--top N] LOG...\n"
	      "       closewatch wire [--json] [--skew MS] LOG... PCAP\n"
	      "       closewatch COMMAND --help\n"
	      "       closewatch --version\n"
	      "See what close() does to a socket: run a program with libclosewatch.so preloaded,\n"
	      "review its logs, and check the predicted FIN/RST against a packet capture.\n"
	      "See closewatch(1).\n", f);
}

int main(int argc, char **argv)
{
	cw_progname = "closewatch";
	if (argc < 2)
		return cw_usage_error(NULL, "missing command");
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		puts("closewatch " CW_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return cw_cmd_run(argc - 2, argv + 2);
	if (!strcmp(cmd, "report"))
		return cw_cmd_report(argc - 2, argv + 2);
	if (!strcmp(cmd, "wire"))
		return cw_cmd_wire(argc - 2, argv + 2);
	char msg[160];
	snprintf(msg, sizeof(msg), "unknown command '%.100s'", cmd);
	return cw_usage_error(NULL, msg);
}
