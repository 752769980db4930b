/* Reading a pcap file into an array of TCP packets. */
#include "pkt.h"
#include "util.h"

#include <pcap/pcap.h>
#include <stdio.h>
#include <string.h>

int cw_pcap_read(const char *path, struct cw_pkt **pkts, size_t *n, struct cw_capinfo *info,
		 char *err, size_t errlen)
{
	char ebuf[PCAP_ERRBUF_SIZE] = "";
	pcap_t *p = pcap_open_offline(path, ebuf);
	*pkts = NULL;
	*n = 0;
	memset(info, 0, sizeof(*info));
	if (!p) {
		snprintf(err, errlen, "cannot read capture %s: %s", path, ebuf);
		return -1;
	}
	int dlt = pcap_datalink(p);
	if (!cw_pkt_dlt_supported(dlt)) {
		snprintf(err, errlen, "capture %s: unsupported link type %s (%d)", path,
			 pcap_datalink_val_to_name(dlt) ? pcap_datalink_val_to_name(dlt) : "?", dlt);
		pcap_close(p);
		return -1;
	}
	size_t cap = 0;
	struct pcap_pkthdr *h;
	const u_char *data;
	int rc;
	while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
		double ts = (double)h->ts.tv_sec + (double)h->ts.tv_usec / 1e6;
		if (!info->frames++)
			info->first = ts;
		info->last = ts;
		struct cw_pkt pk;
		if (!cw_pkt_parse(dlt, data, h->caplen, &pk)) {
			if (h->caplen < h->len) /* perhaps TCP, cut before its header */
				info->snapcut++;
			continue;
		}
		pk.ts = ts;
		cw_grow((void **)pkts, &cap, *n, sizeof(**pkts));
		(*pkts)[(*n)++] = pk;
	}
	if (rc == PCAP_ERROR) {
		/* A capture cut short (killed writer, copied while written) keeps what was read. */
		info->truncated = 1;
		snprintf(err, errlen, "%s", pcap_geterr(p));
	}
	pcap_close(p);
	return 0;
}

int cw_pcap_load(const char *path, struct cw_pkt **pkts, size_t *n, char *err, size_t errlen)
{
	struct cw_capinfo info;
	char why[PCAP_ERRBUF_SIZE + 64] = "";
	if (cw_pcap_read(path, pkts, n, &info, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	if (info.truncated)
		fprintf(stderr, "%s: warning: %s: %s (using the %zu packets before it)\n",
			cw_progname, path, why, *n);
	return 0;
}
