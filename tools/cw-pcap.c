/* cw-pcap — the project's small libpcap helper.
 *
 *   cw-pcap capture --iface IF --filter BPF --out FILE
 *       capture until SIGINT/SIGTERM; prints "ready" once capturing
 *   cw-pcap dump FILE
 *       one JSON object per TCP packet:
 *       {"ts":1.5,"src":"127.0.0.1","dst":"127.0.0.1","sport":1,"dport":2,
 *        "flags":"SA","seq":0,"ack":0,"len":0}
 */
#include "capture.h"
#include "pkt.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(FILE *f)
{
	fputs("usage: cw-pcap capture [--iface IF] [--filter BPF] --out FILE\n"
	      "       cw-pcap dump FILE\n"
	      "capture: record packets (default interface any, filter tcp) into a pcap file;\n"
	      "  prints 'ready' once capturing, stops cleanly on SIGINT or SIGTERM.\n"
	      "dump: print each TCP packet of a pcap file as one JSON object per line\n"
	      "  (ts, src, dst, sport, dport, flags from SFRPAU, seq, ack, len).\n", f);
}

static int bad_usage(const char *msg)
{
	fprintf(stderr, "cw-pcap: %s (try cw-pcap --help)\n", msg);
	return 2;
}

static int cmd_capture(int argc, char **argv)
{
	const char *iface = "any", *filter = "tcp", *out = NULL;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc)
			return bad_usage(!strncmp(a, "--", 2) ? "option needs a value" : "unexpected argument");
		if (!strcmp(a, "--iface"))
			iface = argv[++i];
		else if (!strcmp(a, "--filter"))
			filter = argv[++i];
		else if (!strcmp(a, "--out"))
			out = argv[++i];
		else
			return bad_usage("unknown option for capture");
	}
	if (!out)
		return bad_usage("capture needs --out FILE");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	char err[512];
	int perm;
	struct cw_capture *c = cw_capture_open(iface, filter, out, err, sizeof(err), &perm);
	if (!c) {
		cw_err("%s", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	int rc = cw_capture_loop(c, &stop_flag);
	unsigned long n = 0, dropped = 0;
	if (cw_capture_close(c, &n, &dropped) != 0)
		rc = -1;
	if (dropped)
		fprintf(stderr, "cw-pcap: %lu packets dropped by the kernel\n", dropped);
	return rc == 0 ? 0 : 1;
}

static int cmd_dump(int argc, char **argv)
{
	if (argc == 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc != 1)
		return bad_usage("dump needs exactly one FILE");
	struct cw_pkt *pk;
	size_t n;
	char err[512];
	if (cw_pcap_load(argv[0], &pk, &n, err, sizeof(err)) != 0) {
		cw_err("%s", err);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		char src[64], dst[64], fl[8];
		cw_ip_str(&pk[i].src, src, sizeof(src));
		cw_ip_str(&pk[i].dst, dst, sizeof(dst));
		cw_pkt_flags_str(pk[i].flags, fl);
		printf("{\"ts\":%.6f,\"src\":\"%s\",\"dst\":\"%s\",\"sport\":%u,\"dport\":%u,"
		       "\"flags\":\"%s\",\"seq\":%u,\"ack\":%u,\"len\":%u}\n",
		       pk[i].ts, src, dst, pk[i].sport, pk[i].dport, fl, pk[i].seq, pk[i].ack,
		       pk[i].len);
	}
	free(pk);
	if (fflush(stdout) != 0)
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	cw_progname = "cw-pcap";
	if (argc < 2)
		return bad_usage("missing command");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "capture"))
		return cmd_capture(argc - 2, argv + 2);
	if (!strcmp(argv[1], "dump"))
		return cmd_dump(argc - 2, argv + 2);
	return bad_usage("unknown command");
}
