/* The one-line usage error every closewatch command prints (exit status 2). */
#include "cmds.h"

#include <stdio.h>

int cw_usage_error(const char *cmd, const char *msg)
{
	if (cmd)
		fprintf(stderr, "closewatch %s: %s (try 'closewatch %s --help')\n", cmd, msg, cmd);
	else
		fprintf(stderr, "closewatch: %s (try 'closewatch --help')\n", msg);
	return 2;
}

int cw_unknown_option(const char *cmd, const char *opt)
{
	char msg[160];
	snprintf(msg, sizeof(msg), "unknown option '%.100s'", opt);
	return cw_usage_error(cmd, msg);
}
