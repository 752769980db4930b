/* Fuzz harness: the record/packet matcher behind `closewatch wire`
 * (tools/wire.c) with the frame parser (tools/pkt.c) and the log parser that
 * feed it.
 *
 * Input: a log (text or JSON lines) up to the first NUL byte; after it, one
 * byte of skew (10 ms units), then frames, each as
 *     u8 link type selector | u16le ms after (first record's ts - 1 s) | u16le caplen | caplen bytes
 * (fuzz/mkseed.py builds seeds from a real log and pcap). Selectors 0-8 are
 * the link types `wire` supports; any other value is passed as the DLT itself.
 * Checks: frames parse into sane packets whose addresses survive
 * cw_ip_str/cw_ip_parse; log endpoints survive the same round trip; every
 * match result is consistent with what was expected and observed, and a close
 * the capture cannot show is never counted as checked. */
#include "fuzz.h"
#include "logparse.h"
#include "pkt.h"
#include "wire.h"

#include <pcap/dlt.h>
#include <string.h>
#include <sys/socket.h>

static const int dlts[] = {DLT_EN10MB, DLT_NULL, DLT_LOOP, DLT_LINUX_SLL, 276 /* SLL2 */,
			   DLT_RAW, 101 /* LINKTYPE_RAW */, 228 /* IPV4 */, 229 /* IPV6 */};
#define NDLTS (sizeof dlts / sizeof dlts[0])

static void ip_roundtrip(const struct cw_ip *ip)
{
	char s[64];
	struct cw_ip back;
	cw_ip_str(ip, s, sizeof s);
	FUZZ_CHECK(cw_ip_parse(s, &back) == 0);
	FUZZ_CHECK(memcmp(back.a, ip->a, 16) == 0);
}

static void endpoint_roundtrip(const char *ep)
{
	struct cw_ip ip, ip2;
	uint16_t port, port2;
	if (cw_endpoint_parse(ep, &ip, &port) != 0)
		return;
	char host[64], again[96];
	cw_ip_str(&ip, host, sizeof host);
	snprintf(again, sizeof again, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	FUZZ_CHECK(cw_endpoint_parse(again, &ip2, &port2) == 0);
	FUZZ_CHECK(port2 == port && memcmp(ip.a, ip2.a, 16) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t loglen = nul ? (size_t)(nul - data) : size;

	/* Records. */
	size_t nrec = 0, cap = 16;
	struct cw_rec *recs = malloc(cap * sizeof *recs);
	if (!recs)
		abort();
	for (size_t start = 0; start < loglen;) {
		const uint8_t *nl = memchr(data + start, '\n', loglen - start);
		size_t len = nl ? (size_t)(nl - (data + start)) : loglen - start;
		if (nrec == cap) {
			struct cw_rec *n = realloc(recs, (cap *= 2) * sizeof *recs);
			if (!n)
				abort();
			recs = n;
		}
		if (cw_log_parse_line((const char *)data + start, len, &recs[nrec]) == CW_LINE_RECORD)
			nrec++;
		start += len + 1;
		if (nrec >= 512)
			break;
	}
	struct cw_close *closes = calloc(nrec + 1, sizeof *closes);
	size_t nc = 0;
	if (!closes)
		abort();
	for (size_t i = 0; i < nrec; i++) {
		endpoint_roundtrip(recs[i].local);
		endpoint_roundtrip(recs[i].peer);
		int rc = cw_wire_close_from_rec(&recs[i], &closes[nc]);
		FUZZ_CHECK(rc == 0 || rc == 1);
		if (!rc)
			continue;
		FUZZ_CHECK(closes[nc].expect != CW_EXPECT_SKIP); /* 1: a close */
		FUZZ_CHECK(closes[nc].reason < CW_NC_COUNT);
		FUZZ_CHECK(cw_expect_name(closes[nc].expect) != NULL);
		nc++;
	}

	/* Packets. */
	double base = nrec ? recs[0].t - 1.0 : 1.7e9;
	size_t np = 0, pcap_ = 16;
	struct cw_pkt *pkts = malloc(pcap_ * sizeof *pkts);
	if (!pkts)
		abort();
	double skew = 0.05;
	const uint8_t *p = nul ? nul + 1 : data + size, *end = data + size;
	if (p < end)
		skew = *p++ / 100.0;
	while (end - p >= 5 && np < 4096) {
		int dlt = p[0] < NDLTS ? dlts[p[0]] : p[0];
		unsigned ms = (unsigned)(p[1] | p[2] << 8);
		size_t caplen = (size_t)(p[3] | p[4] << 8);
		p += 5;
		if (caplen > (size_t)(end - p))
			caplen = (size_t)(end - p);
		/* An exact-size copy: reading past caplen is caught. */
		uint8_t *frame = malloc(caplen ? caplen : 1);
		if (!frame)
			abort();
		memcpy(frame, p, caplen);
		p += caplen;
		if (np == pcap_) {
			struct cw_pkt *n = realloc(pkts, (pcap_ *= 2) * sizeof *pkts);
			if (!n)
				abort();
			pkts = n;
		}
		struct cw_pkt *k = &pkts[np];
		int rc = cw_pkt_parse(dlt, frame, caplen, k);
		free(frame);
		FUZZ_CHECK(rc == 0 || rc == 1);
		if (!rc)
			continue;
		FUZZ_CHECK(cw_pkt_dlt_supported(dlt));
		FUZZ_CHECK(k->family == AF_INET || k->family == AF_INET6);
		FUZZ_CHECK((k->flags & ~0x3f) == 0);
		FUZZ_CHECK(k->len <= 65535);
		ip_roundtrip(&k->src);
		ip_roundtrip(&k->dst);
		char fl[8];
		cw_pkt_flags_str(k->flags, fl);
		FUZZ_CHECK(strlen(fl) <= 6);
		k->ts = base + ms / 1000.0;
		np++;
	}

	/* What the "file" covers: the frames parsed (truncated: the last selector byte odd). */
	struct cw_capinfo ci = {.frames = np, .truncated = size && (data[size - 1] & 1)};
	for (size_t i = 0; i < np; i++) {
		if (!i || pkts[i].ts < ci.first)
			ci.first = pkts[i].ts;
		if (!i || pkts[i].ts > ci.last)
			ci.last = pkts[i].ts;
	}
	struct cw_wire_result *res = calloc(nc + 1, sizeof *res);
	if (!res)
		abort();
	cw_wire_match(closes, nc, pkts, np, &ci, skew, res);
	for (size_t i = 0; i < nc; i++) {
		const struct cw_wire_result *r = &res[i];
		const struct cw_close *c = &closes[i];
		FUZZ_CHECK(r->observed < CW_OBS_COUNT);
		FUZZ_CHECK(cw_observed_names[r->observed] != NULL);
		FUZZ_CHECK(r->reason < CW_NC_COUNT);
		FUZZ_CHECK(r->match == 0 || r->match == 1);
		FUZZ_CHECK(r->rsts <= np);
		/* Not checked: never "as predicted", never observed. */
		if (r->reason != CW_CHECKED)
			FUZZ_CHECK(!r->match && r->observed == CW_OBS_NOT_CHECKED);
		else
			FUZZ_CHECK(r->observed != CW_OBS_NOT_CHECKED);
		if (!c->have_tuple)
			FUZZ_CHECK(r->reason != CW_CHECKED);
		if (!np)
			FUZZ_CHECK(r->reason != CW_CHECKED);
		/* A late RST follows our FIN: the close's, or a shutdown's before it. */
		if (r->late_rst)
			FUZZ_CHECK(r->observed == CW_OBS_FIN ||
				   (c->shut_before && r->observed == CW_OBS_NONE));
		if (c->shut_before && !c->listener)
			FUZZ_CHECK(r->observed != CW_OBS_FIN); /* that FIN was the shutdown's */
		if (c->listener || r->reason != CW_CHECKED)
			continue;
		if (c->expect == CW_EXPECT_FIN && r->observed == CW_OBS_RST)
			FUZZ_CHECK(!r->match);
		if (c->expect == CW_EXPECT_RST && r->observed == CW_OBS_FIN)
			FUZZ_CHECK(!r->match);
		if (c->expect == CW_EXPECT_RST && r->observed == CW_OBS_RST)
			FUZZ_CHECK(r->match);
	}
	free(res);
	free(pkts);
	free(closes);
	free(recs);
	return 0;
}
