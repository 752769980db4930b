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
	CW_EXPECT_SKIP = 0,   /* shared, unknown verdicts: nothing to check */
	CW_EXPECT_FIN,        /* clean, fin_pending, linger_wait, or a drained close */
	CW_EXPECT_RST,        /* rst_unread, rst_linger0 (after a shutdown: a RST after its FIN) */
	CW_EXPECT_NONE_OR_FIN,/* no_conn */
	CW_EXPECT_RSTS,       /* rst_backlog: one RST per queued connection */
	CW_EXPECT_NONE,       /* a listener with nothing queued: no RST */
	CW_EXPECT_NO_RST,     /* write side shut before the close (its FIN is the shutdown's):
			       * nothing new, in particular no RST */
};

/* What the capture shows. */
enum cw_observed {
	CW_OBS_FIN = 0,       /* first of FIN/RST from the closing side was a FIN */
	CW_OBS_RST,           /* … was a RST (listener: one per queued connection) */
	CW_OBS_RST_COUNT,     /* listener: RSTs, but not as many as queued connections */
	CW_OBS_NONE,          /* the flow is in the capture, the closing side sent neither */
	CW_OBS_NOT_CHECKED,   /* the capture cannot tell; see enum cw_unchecked */
	CW_OBS_COUNT
};

/* Why a close could not be checked (CW_CHECKED: it was). */
enum cw_unchecked {
	CW_CHECKED = 0,
	CW_NC_NOT_IN_CAPTURE, /* no packet of this connection, though the capture covers its time */
	CW_NC_UNNAMED,        /* no peer address in the record (never connected, or reset) */
	CW_NC_UNIX,           /* AF_UNIX: nothing on the wire */
	CW_NC_BEFORE,         /* the close precedes the capture's first packet */
	CW_NC_ENDED,          /* the capture ended before the close's outcome */
	CW_NC_TRUNCATED,      /* the file is cut mid-packet, or frames were cut by the snap
			       * length, where this close's packets would be */
	CW_NC_COUNT
};

extern const char *const cw_observed_names[CW_OBS_COUNT];
extern const char *const cw_unchecked_names[CW_NC_COUNT]; /* "not in the capture" … */
extern const char *const cw_unchecked_keys[CW_NC_COUNT];  /* "not_in_capture" … (JSON) */

/* One close, only what matching and the report need (a few dozen bytes; the
 * record's text is kept by the caller). */
struct cw_close {
	double t;                 /* the record's time */
	struct cw_ip lip, pip;
	uint64_t recvq, sendq, backlog;
	long pid, fd;
	size_t text;              /* caller's use (wire_cmd: offset of the record's strings) */
	uint16_t lport, pport;
	uint8_t expect;           /* enum cw_expect */
	uint8_t verdict;          /* index in cw_wire_verdicts */
	uint8_t listener;
	uint8_t have_tuple;       /* local and peer parsed as ip:port with a peer port */
	uint8_t shut_before;      /* the write side was shut before (state FIN_WAIT1, …) */
	uint8_t drained;          /* action=drained */
	uint8_t reason;           /* enum cw_unchecked known from the record alone */
};

struct cw_wire_result {
	uint8_t observed;         /* enum cw_observed */
	uint8_t reason;           /* enum cw_unchecked; CW_CHECKED if checked */
	uint8_t match;            /* checked: 1 as predicted, 0 wrong; not checked: 0 */
	uint8_t late_rst;         /* a RST from the closing side after its FIN, peer data first */
	unsigned rsts;            /* listener: RSTs seen (distinct connections) */
	double t_obs;             /* time of the observed FIN/RST (0 if none) */
	double t_late;            /* time of the late RST */
};

/* The verdict names, in report order; the last entry is NULL. */
extern const char *const cw_wire_verdicts[];

/* Fill c from a log record. Returns 1 for a close (TCP or unix; c->reason says
 * if the record alone makes it uncheckable), 0 if it is skipped (not a close
 * call, a shared verdict, an unknown verdict, another protocol). */
int cw_wire_close_from_rec(const struct cw_rec *rec, struct cw_close *c);

/* Match every close against the packets (any order; pkts is not modified).
 * skew: seconds a packet may precede the record's ts and still count as
 * following the close (clock and logging skew). out has nc entries. */
void cw_wire_match(const struct cw_close *closes, size_t nc, const struct cw_pkt *pkts, size_t np,
		   const struct cw_capinfo *cap, double skew, struct cw_wire_result *out);

/* "FIN", "RST", "nothing or FIN", … */
const char *cw_expect_name(int expect);

#endif
