/* Totals over closewatch log records: by verdict, action, call, call site
 * (backtrace), peer, and drain result. Used by `report` and by `run`'s summary. */
#ifndef CW_REPORT_H
#define CW_REPORT_H

#include "logparse.h"
#include "logread.h"
#include "strmap.h"

#include <stdint.h>
#include <stdio.h>

/* The verdict names (README, "Records"), in report order. */
extern const char *const cw_verdicts[];
#define CW_NVERDICT 8
/* Drain results (README, "Records"), in report order. */
extern const char *const cw_drain_results[];
#define CW_NRESULT 3

/* Byte totals saturate at UINT64_MAX instead of wrapping (a log may say anything). */
static inline uint64_t cw_sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* What a risky close that was not drained threw away, split the way peers see
 * it (TCP rst_unread and rst_linger0): answer bytes never sent (unsent: exact,
 * the peer never gets them), bytes in flight at the reset (sendq - unsent:
 * already sent, they reach the peer unless dropped on the way) and request
 * bytes never read (recvq). For AF_UNIX the send queue is memory charged to
 * the socket, not bytes: only its recvq counts (in not_read). */
struct cw_split {
	uint64_t never_sent, in_flight, not_read;
};

struct cw_item {
	char *key;
	unsigned long count, risky;
	uint64_t lost, discarded, waited_ms, waited_max;
	struct cw_split split;
	unsigned long drains;                /* drain records (hosts, programs) */
	unsigned long vc[CW_NVERDICT + 1];   /* per verdict; last: other */
};

struct cw_group {
	struct cw_item *items;
	size_t n, cap;
	struct cw_strmap map;
};

struct cw_report {
	struct cw_group verdicts, actions, calls, sites, peers, drains;
	struct cw_group hosts, programs; /* by the records' host and exe */
	struct cw_strmap pids;
	/* closes: every record but drains and shutdowns (close, close_range, exit, …) */
	unsigned long closes, shutdowns, risky, drain_records, no_bt;
	unsigned long unix_risky; /* risky AF_UNIX closes, not drained, with a send queue (memory, not bytes) */
	uint64_t lost;  /* sum of `lost` (an upper bound) of risky closes that were not drained */
	struct cw_split split; /* the same closes, split as peers see it */
	uint64_t saved; /* what drained closes would have lost */
	unsigned long outside; /* records left out by report --since/--until */
	double first_t, last_t;
	char first_ts[48], last_ts[48];
};

void cw_report_init(struct cw_report *r);
void cw_report_add(struct cw_report *r, const struct cw_rec *rec);
/* Matches cw_rec_fn: arg is the struct cw_report. */
void cw_report_add_cb(const struct cw_rec *rec, void *arg);
void cw_report_free(struct cw_report *r);

/* The key of a record without host or exe (written before they existed). */
#define CW_NOT_RECORDED "(not recorded)"

/* Items of g sorted for "top" lists (most risky, then most closes, then key). */
struct cw_item **cw_group_sorted(const struct cw_group *g);
/* The item for key, or NULL. */
const struct cw_item *cw_group_find(const struct cw_group *g, const char *key);

/* Output. st: what the reader counted (files, malformed lines). */
void cw_report_print_text(FILE *f, const struct cw_report *r, const struct cw_logstats *st, int top);
void cw_report_print_json(FILE *f, const struct cw_report *r, const struct cw_logstats *st, int top);
/* The short summary `run` prints to stderr, each line prefixed "closewatch: ". */
void cw_report_print_summary(FILE *f, const struct cw_report *r, const struct cw_logstats *st);

#endif
