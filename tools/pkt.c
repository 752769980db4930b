/* Parsing one captured frame down to its TCP header. Pure: buffer in, struct
 * out, so it can be fuzzed. */
#include "pkt.h"

#include <arpa/inet.h>
#include <pcap/dlt.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#ifndef DLT_LINUX_SLL2
#define DLT_LINUX_SLL2 276
#endif
#ifndef DLT_IPV4
#define DLT_IPV4 228
#endif
#ifndef DLT_IPV6
#define DLT_IPV6 229
#endif

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86dd
#define ETH_VLAN 0x8100
#define ETH_QINQ 0x88a8
#define ETH_QINQ_OLD 0x9100

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int cw_pkt_dlt_supported(int dlt)
{
	switch (dlt) {
	case DLT_EN10MB: case DLT_NULL: case DLT_LOOP: case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2: case DLT_RAW: case DLT_IPV4: case DLT_IPV6:
#if defined(DLT_RAW) && DLT_RAW != 12
	case 12:
#endif
	case 101: /* LINKTYPE_RAW, if a file reader passes it through */
		return 1;
	}
	return 0;
}

static void v4_to_ip(const uint8_t *p, struct cw_ip *ip)
{
	memset(ip->a, 0, 10);
	ip->a[10] = ip->a[11] = 0xff;
	memcpy(ip->a + 12, p, 4);
}

static int parse_tcp(const uint8_t *p, size_t cap, size_t seglen, struct cw_pkt *out)
{
	if (cap < 20)
		return 0;
	size_t hl = (size_t)(p[12] >> 4) * 4;
	if (hl < 20)
		return 0;
	out->sport = be16(p);
	out->dport = be16(p + 2);
	out->seq = be32(p + 4);
	out->ack = be32(p + 8);
	out->flags = p[13] & 0x3f;
	out->len = seglen > hl ? (uint32_t)(seglen - hl) : 0;
	return 1;
}

static int parse_ipv4(const uint8_t *p, size_t cap, struct cw_pkt *out)
{
	if (cap < 20 || (p[0] >> 4) != 4)
		return 0;
	size_t ihl = (size_t)(p[0] & 0x0f) * 4;
	size_t tot = be16(p + 2);
	if (ihl < 20 || cap < ihl || tot < ihl)
		return 0;
	if ((be16(p + 6) & 0x1fff) != 0) /* a later fragment: no TCP header */
		return 0;
	if (p[9] != 6)
		return 0;
	out->family = AF_INET;
	v4_to_ip(p + 12, &out->src);
	v4_to_ip(p + 16, &out->dst);
	return parse_tcp(p + ihl, cap - ihl, tot - ihl, out);
}

static int parse_ipv6(const uint8_t *p, size_t cap, struct cw_pkt *out)
{
	if (cap < 40 || (p[0] >> 4) != 6)
		return 0;
	size_t plen = be16(p + 4);
	uint8_t nh = p[6];
	size_t off = 40;
	size_t end = 40 + plen;
	memcpy(out->src.a, p + 8, 16);
	memcpy(out->dst.a, p + 24, 16);
	out->family = AF_INET6;
	for (int i = 0; i < 8; i++) { /* extension headers, bounded */
		if (nh == 6)
			return off <= cap && off <= end ? parse_tcp(p + off, cap - off, end - off, out) : 0;
		if (nh == 0 || nh == 43 || nh == 60) {
			if (off + 8 > cap)
				return 0;
			nh = p[off];
			off += ((size_t)p[off + 1] + 1) * 8;
		} else if (nh == 44) { /* fragment */
			if (off + 8 > cap)
				return 0;
			if ((be16(p + off + 2) & 0xfff8) != 0)
				return 0;
			nh = p[off];
			off += 8;
		} else {
			return 0;
		}
	}
	return 0;
}

static int parse_ip_by_type(uint16_t type, const uint8_t *p, size_t cap, struct cw_pkt *out)
{
	if (type == ETH_IPV4)
		return parse_ipv4(p, cap, out);
	if (type == ETH_IPV6)
		return parse_ipv6(p, cap, out);
	return 0;
}

static int parse_raw(const uint8_t *p, size_t cap, struct cw_pkt *out)
{
	if (cap < 1)
		return 0;
	if ((p[0] >> 4) == 4)
		return parse_ipv4(p, cap, out);
	if ((p[0] >> 4) == 6)
		return parse_ipv6(p, cap, out);
	return 0;
}

static int parse_ether(const uint8_t *p, size_t cap, struct cw_pkt *out)
{
	if (cap < 14)
		return 0;
	uint16_t type = be16(p + 12);
	size_t off = 14;
	for (int i = 0; i < 2 && (type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD); i++) {
		if (cap < off + 4)
			return 0;
		type = be16(p + off + 2);
		off += 4;
	}
	return parse_ip_by_type(type, p + off, cap - off, out);
}

static int parse_null(int dlt, const uint8_t *p, size_t cap, struct cw_pkt *out)
{
	if (cap < 4)
		return 0;
	uint32_t fam;
	if (dlt == DLT_LOOP) {
		fam = be32(p);
	} else {
		memcpy(&fam, p, 4); /* host byte order of the capturing machine */
		if (fam > 0xffff) /* written on a machine of the other endianness */
			fam = __builtin_bswap32(fam);
	}
	/* BSD AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30. */
	if (fam == 2)
		return parse_ipv4(p + 4, cap - 4, out);
	if (fam == 10 || fam == 24 || fam == 28 || fam == 30)
		return parse_ipv6(p + 4, cap - 4, out);
	return 0;
}

int cw_pkt_parse(int dlt, const uint8_t *buf, size_t caplen, struct cw_pkt *out)
{
	memset(out, 0, sizeof(*out));
	switch (dlt) {
	case DLT_EN10MB:
		return parse_ether(buf, caplen, out);
	case DLT_NULL:
	case DLT_LOOP:
		return parse_null(dlt, buf, caplen, out);
	case DLT_LINUX_SLL: /* 16-byte cooked header, protocol at 14 */
		return caplen >= 16 ? parse_ip_by_type(be16(buf + 14), buf + 16, caplen - 16, out) : 0;
	case DLT_LINUX_SLL2: /* 20-byte cooked header, protocol at 0 */
		return caplen >= 20 ? parse_ip_by_type(be16(buf), buf + 20, caplen - 20, out) : 0;
	case DLT_IPV4:
		return parse_ipv4(buf, caplen, out);
	case DLT_IPV6:
		return parse_ipv6(buf, caplen, out);
	default:
		if (cw_pkt_dlt_supported(dlt)) /* DLT_RAW under any of its numbers */
			return parse_raw(buf, caplen, out);
		return 0;
	}
}

void cw_pkt_flags_str(uint8_t flags, char *buf)
{
	static const struct { uint8_t bit; char c; } order[] = {
		{CW_TCP_SYN, 'S'}, {CW_TCP_FIN, 'F'}, {CW_TCP_RST, 'R'},
		{CW_TCP_PSH, 'P'}, {CW_TCP_ACK, 'A'}, {CW_TCP_URG, 'U'},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (flags & order[i].bit)
			buf[n++] = order[i].c;
	buf[n] = 0;
}

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void cw_ip_str(const struct cw_ip *ip, char *buf, size_t len)
{
	if (memcmp(ip->a, v4mapped, 12) == 0)
		inet_ntop(AF_INET, ip->a + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, ip->a, buf, (socklen_t)len);
}

int cw_ip_parse(const char *s, struct cw_ip *ip)
{
	uint8_t b[16];
	if (inet_pton(AF_INET, s, b) == 1) {
		v4_to_ip(b, ip);
		return 0;
	}
	char tmp[64];
	size_t n = strcspn(s, "%"); /* drop a zone id */
	if (n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	if (inet_pton(AF_INET6, tmp, ip->a) == 1)
		return 0;
	return -1;
}

int cw_ip_is_any(const struct cw_ip *ip)
{
	static const uint8_t zero[16];
	if (memcmp(ip->a, zero, 16) == 0)
		return 1;
	return memcmp(ip->a, v4mapped, 12) == 0 && memcmp(ip->a + 12, zero, 4) == 0;
}

int cw_endpoint_parse(const char *s, struct cw_ip *ip, uint16_t *port)
{
	char host[64];
	const char *colon;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -1;
		size_t n = (size_t)(close - s - 1);
		if (n >= sizeof(host))
			return -1;
		memcpy(host, s + 1, n);
		host[n] = 0;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return -1;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
		if (strchr(host, ':')) /* bare IPv6 without brackets: ambiguous */
			return -1;
	}
	const char *p = colon + 1;
	if (!*p)
		return -1;
	unsigned long v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			return -1;
	}
	if (cw_ip_parse(host, ip) != 0)
		return -1;
	*port = (uint16_t)v;
	return 0;
}
