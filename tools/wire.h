/* Checking logged closes against a packet capture: for each TCP close, the
 * packets the closing side sent after it (first FIN or RST), compared with
 * what the verdict predicts. Pure: arrays in, results out. */
#ifndef CW_WIRE_H
#define CW_WIRE_H

#include "logparse.h"
#include "pkt.h"

#include <stddef.h>
#include <stdint.h>

/* What a verdict predicts on the wire. */
enum cw_expect {
	CW_EXPECT_SKIP = 0,   /* shared, unknown verdicts, not TCP: nothing to check */
	CW_EXPECT_FIN,        /* clean, fin_pending, linger_wait, or a drained close */
	CW_EXPECT_RST,        /* rst_unread, rst_linger0 */
	CW_EXPECT_NONE_OR_FIN,/* no_conn */
	CW_EXPECT_RSTS,       /* rst_backlog: one RST per queued connection */
	CW_EXPECT_NONE,       /* a listener with nothing queued: no RST */
};

/* What the capture shows. */
enum cw_observed {
	CW_OBS_FIN = 0,       /* first of FIN/RST from the closing side was a FIN */
	CW_OBS_RST,           /* … was a RST (listener: one per queued connection) */
	CW_OBS_RST_COUNT,     /* listener: RSTs, but not as many as queued connections */
	CW_OBS_NONE,          /* the flow is in the capture, the closing side sent neither */
	CW_OBS_NOT_CAPTURED,  /* no packet of this connection in the capture */
	CW_OBS_COUNT
};

extern const char *const cw_observed_names[CW_OBS_COUNT];

struct cw_close {
	const struct cw_rec *rec;
	int expect;               /* enum cw_expect */
	int listener;
	struct cw_ip lip, pip;
	uint16_t lport, pport;
	int have_tuple;           /* local and peer parsed as ip:port with a peer port */
};

struct cw_wire_result {
	int observed;             /* enum cw_observed */
	int match;                /* 1: as predicted (or unverifiable), 0: wrong */
	int late_rst;             /* a RST from the closing side after its FIN */
	unsigned rsts;            /* listener: RSTs seen (distinct connections) */
	double t_obs;             /* time of the observed FIN/RST (0 if none) */
	double t_late;            /* time of the late RST */
};

/* Fill c from a log record. Returns 1 if it is a TCP close to check, 0 if it
 * is skipped (not TCP, not a close call, a shared verdict, an unknown verdict). */
int cw_wire_close_from_rec(const struct cw_rec *rec, struct cw_close *c);

/* Match every close against the packets (any order; pkts is not modified).
 * skew: seconds a packet may precede the record's ts and still count as
 * following the close (clock and logging skew). out has nc entries. */
void cw_wire_match(const struct cw_close *closes, size_t nc, const struct cw_pkt *pkts, size_t np,
		   double skew, struct cw_wire_result *out);

/* "FIN", "RST", "nothing or FIN", … */
const char *cw_expect_name(int expect);

#endif
