/* The closewatch subcommands. Each takes the arguments after its name and
 * returns the process exit status. */
#ifndef CW_CMDS_H
#define CW_CMDS_H

int cw_cmd_run(int argc, char **argv);
int cw_cmd_report(int argc, char **argv);
int cw_cmd_wire(int argc, char **argv);

/* One line "closewatch CMD: MSG (try 'closewatch CMD --help')" on stderr; returns 2. */
int cw_usage_error(const char *cmd, const char *msg);
/* The same for an unknown option, naming it: "unknown option '--bogus'". */
int cw_unknown_option(const char *cmd, const char *opt);

#endif
