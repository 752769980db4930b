/* TCP packets as closewatch sees them: parsing one captured frame (pure, works
 * on a buffer) and reading a whole pcap file. */
#ifndef CW_PKT_H
#define CW_PKT_H

#include <stddef.h>
#include <stdint.h>

#define CW_TCP_FIN 0x01
#define CW_TCP_SYN 0x02
#define CW_TCP_RST 0x04
#define CW_TCP_PSH 0x08
#define CW_TCP_ACK 0x10
#define CW_TCP_URG 0x20

/* An address normalised for comparison: IPv4 and v4-mapped IPv6 are both
 * stored as ::ffff:a.b.c.d, so a log line and a packet always compare equal. */
struct cw_ip {
	uint8_t a[16];
};

struct cw_pkt {
	double ts;          /* seconds since the epoch */
	int family;         /* AF_INET or AF_INET6, as on the wire */
	struct cw_ip src, dst;
	uint16_t sport, dport;
	uint8_t flags;      /* CW_TCP_* */
	uint32_t seq, ack;
	uint32_t len;       /* TCP payload bytes (from the IP length, not the snap length) */
};

/* Parse one frame of link type dlt (a DLT_* value from pcap_datalink()).
 * Returns 1 for a TCP segment (filled in *out except ts), 0 for anything else
 * (other protocols, later IP fragments, truncated headers). Never reads past
 * buf[caplen]. */
int cw_pkt_parse(int dlt, const uint8_t *buf, size_t caplen, struct cw_pkt *out);

/* 1 if the link type is one cw_pkt_parse() understands. */
int cw_pkt_dlt_supported(int dlt);

/* "SFRPAU" letters present, in that order, into buf (>= 7 bytes). */
void cw_pkt_flags_str(uint8_t flags, char *buf);

/* Address as text (dotted quad for IPv4 and v4-mapped, RFC 5952 otherwise). */
void cw_ip_str(const struct cw_ip *ip, char *buf, size_t len);

/* Parse "a.b.c.d" or an IPv6 address (no brackets) into *ip. 0 on success. */
int cw_ip_parse(const char *s, struct cw_ip *ip);

/* Parse an endpoint as the log writes it: "ip:port" or "[ip6]:port".
 * Returns 0 on success, -1 for anything else (unix paths, "unnamed"…). */
int cw_endpoint_parse(const char *s, struct cw_ip *ip, uint16_t *port);

/* 1 for 0.0.0.0 / :: (a wildcard bind). */
int cw_ip_is_any(const struct cw_ip *ip);

/* Read every TCP packet of a pcap file. Returns 0 and a malloc'd array in
 * *pkts (count in *n), or -1 with a message in err. */
int cw_pcap_load(const char *path, struct cw_pkt **pkts, size_t *n, char *err, size_t errlen);

/* What the capture file covers. */
struct cw_capinfo {
	size_t frames;            /* frames read (any protocol) */
	double first, last;       /* timestamps of the first and last frame (frames > 0) */
	int truncated;            /* the file ends in the middle of a frame */
	unsigned long snapcut;    /* frames cut by the snap length before their TCP header */
};

/* The same, without the warning, and with what the file covers in *info.
 * A file cut mid-frame is not an error: what was read is returned,
 * info->truncated is set and err holds libpcap's message. */
int cw_pcap_read(const char *path, struct cw_pkt **pkts, size_t *n, struct cw_capinfo *info,
		 char *err, size_t errlen);

#endif
