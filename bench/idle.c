/* Resident memory of an idle process: what a program that has only started
 * (and made and closed one socket, so that the shim's hooks have run) costs.
 *
 *   idle [-s SOCKETS]
 *
 * Prints VmRSS and VmHWM from /proc/self/status, in KiB. */
#include "bench.h"

#define USAGE "[-s SOCKETS]"

static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		die("/proc/self/status");
	char line[256];
	size_t len = strlen(field);
	long v = -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, field, len) == 0 && line[len] == ':')
			v = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	long sockets = 1;
	int opt;
	while ((opt = getopt(argc, argv, "s:")) != -1) {
		switch (opt) {
		case 's': sockets = (long)opt_num(optarg, USAGE); break;
		default: fprintf(stderr, "usage: %s %s\n", argv[0], USAGE); return 2;
		}
	}
	for (long i = 0; i < sockets; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0)
			die("socket");
		close(s);
	}
	printf("{\"bench\":\"idle\",\"rss_kib\":%ld,\"hwm_kib\":%ld}\n", status_kib("VmRSS"),
	       status_kib("VmHWM"));
	return 0;
}
