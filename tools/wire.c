/* Matching logged closes with captured packets. */
#include "wire.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

const char *const cw_observed_names[CW_OBS_COUNT] = {"FIN", "RST", "RST*", "none", "not_checked"};

const char *const cw_unchecked_names[CW_NC_COUNT] = {
	"checked", "not in the capture", "unnamed peer", "unix socket",
	"capture started after", "capture ended before", "capture truncated",
};
const char *const cw_unchecked_keys[CW_NC_COUNT] = {
	"checked", "not_in_capture", "unnamed_peer", "unix_socket",
	"capture_started_after", "capture_ended_before", "capture_truncated",
};

const char *const cw_wire_verdicts[] = {"clean", "fin_pending", "rst_unread", "rst_linger0",
					"rst_backlog", "linger_wait", "shared", "no_conn", NULL};

const char *cw_expect_name(int expect)
{
	switch (expect) {
	case CW_EXPECT_FIN: return "FIN";
	case CW_EXPECT_RST: return "RST";
	case CW_EXPECT_NONE_OR_FIN: return "nothing or FIN";
	case CW_EXPECT_RSTS: return "one RST per queued connection";
	case CW_EXPECT_NONE: return "nothing";
	case CW_EXPECT_NO_RST: return "no RST (FIN sent before)";
	}
	return "-";
}

static const char *const close_calls[] = {"close", "dup2", "dup3", "fclose", "close_range",
					  "closefrom", "exit", NULL};

/* States in which our FIN is already queued or sent: a shutdown(SHUT_WR) (or
 * SHUT_RDWR) came before the close, logged or not. Its FIN may leave
 * microseconds before the close and is not the close's outcome. */
static const char *const shut_states[] = {"FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK",
					  NULL};

static int in_list(const char *const *list, const char *s)
{
	for (int i = 0; list[i]; i++)
		if (!strcmp(s, list[i]))
			return i;
	return -1;
}

int cw_wire_close_from_rec(const struct cw_rec *rec, struct cw_close *c)
{
	memset(c, 0, sizeof(*c));
	c->t = rec->t;
	c->pid = rec->pid;
	c->fd = rec->fd;
	c->recvq = rec->recvq;
	c->sendq = rec->sendq;
	c->backlog = rec->backlog;
	int tcp = !strcmp(rec->proto, "tcp");
	if (!tcp && strcmp(rec->proto, "unix"))
		return 0;
	if (in_list(close_calls, rec->call) < 0)
		return 0;
	const char *v = rec->verdict;
	int vi = in_list(cw_wire_verdicts, v);
	if (vi < 0 || !strcmp(v, "shared"))
		return 0;
	c->verdict = (uint8_t)vi;
	c->listener = !strcmp(rec->state, "LISTEN") || !strcmp(v, "rst_backlog");
	c->drained = !strcmp(rec->action, "drained");
	c->shut_before = !c->listener && in_list(shut_states, rec->state) >= 0;
	if (c->listener)
		c->expect = !strcmp(v, "rst_backlog") ? CW_EXPECT_RSTS : CW_EXPECT_NONE;
	else if (c->drained) /* the drain reads what is unread, shuts down the write side
			      * (FIN, unless an earlier shutdown sent it) and waits for EOF */
		c->expect = c->shut_before ? CW_EXPECT_NO_RST : CW_EXPECT_FIN;
	else if (!strcmp(v, "rst_unread") || !strcmp(v, "rst_linger0"))
		c->expect = CW_EXPECT_RST;
	else if (c->shut_before)
		c->expect = CW_EXPECT_NO_RST;
	else if (!strcmp(v, "no_conn"))
		c->expect = CW_EXPECT_NONE_OR_FIN;
	else
		c->expect = CW_EXPECT_FIN; /* clean, fin_pending, linger_wait */
	if (!tcp) {
		c->reason = CW_NC_UNIX;
		return 1;
	}
	if (cw_endpoint_parse(rec->local, &c->lip, &c->lport) == 0) {
		if (c->listener)
			c->have_tuple = 1;
		else if (cw_endpoint_parse(rec->peer, &c->pip, &c->pport) == 0 && c->pport != 0)
			c->have_tuple = 1;
	}
	if (!c->have_tuple)
		c->reason = CW_NC_UNNAMED;
	return 1;
}

/* ---------------------------------------------------------- flow index */

struct index {
	const struct cw_pkt *pkts;
	size_t *ix;    /* packet indices sorted by (src, sport, dst, dport, ts) */
	size_t n;
};

static const struct cw_pkt *sort_pkts;

static int tuple_cmp(const struct cw_pkt *a, const struct cw_ip *src, uint16_t sport,
		     const struct cw_ip *dst, uint16_t dport)
{
	int c = memcmp(a->src.a, src->a, 16);
	if (c)
		return c;
	if (a->sport != sport)
		return a->sport < sport ? -1 : 1;
	c = memcmp(a->dst.a, dst->a, 16);
	if (c)
		return c;
	if (a->dport != dport)
		return a->dport < dport ? -1 : 1;
	return 0;
}

static int ix_cmp(const void *x, const void *y)
{
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	const struct cw_pkt *a = &sort_pkts[i], *b = &sort_pkts[j];
	int c = tuple_cmp(a, &b->src, b->sport, &b->dst, b->dport);
	if (c)
		return c;
	if (a->ts != b->ts)
		return a->ts < b->ts ? -1 : 1;
	return i < j ? -1 : i > j;
}

static void index_build(struct index *x, const struct cw_pkt *pkts, size_t n)
{
	x->pkts = pkts;
	x->n = n;
	x->ix = cw_xcalloc(n + 1, sizeof(*x->ix));
	for (size_t i = 0; i < n; i++)
		x->ix[i] = i;
	sort_pkts = pkts;
	qsort(x->ix, n, sizeof(*x->ix), ix_cmp);
	sort_pkts = NULL;
}

/* [*lo, *hi) of x->ix for one direction of a connection. */
static void index_range(const struct index *x, const struct cw_ip *src, uint16_t sport,
			const struct cw_ip *dst, uint16_t dport, size_t *lo, size_t *hi)
{
	size_t a = 0, b = x->n;
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if (tuple_cmp(&x->pkts[x->ix[m]], src, sport, dst, dport) < 0)
			a = m + 1;
		else
			b = m;
	}
	*lo = a;
	b = x->n;
	while (a < b) {
		size_t m = a + (b - a) / 2;
		if (tuple_cmp(&x->pkts[x->ix[m]], src, sport, dst, dport) <= 0)
			a = m + 1;
		else
			b = m;
	}
	*hi = a;
}

/* ---------------------------------------------------------- one close */

/* Payload from the peer in [from, to] (incoming packets ix[ilo..ihi)). */
static int peer_data(const struct index *x, size_t ilo, size_t ihi, double from, double to)
{
	for (size_t k = ilo; k < ihi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->len > 0 && p->ts >= from && p->ts <= to)
			return 1;
	}
	return 0;
}

static void match_conn(const struct index *x, const struct cw_close *c, double skew,
		       struct cw_wire_result *r)
{
	double t0 = c->t - skew, tend = 1e300;
	size_t olo, ohi, ilo, ihi;
	index_range(x, &c->lip, c->lport, &c->pip, c->pport, &olo, &ohi);
	index_range(x, &c->pip, c->pport, &c->lip, c->lport, &ilo, &ihi);
	if (olo == ohi && ilo == ihi) {
		r->observed = CW_OBS_NOT_CHECKED;
		r->reason = CW_NC_NOT_IN_CAPTURE;
		return;
	}
	/* A new connection on the same 4-tuple (a SYN after the close) ends the window. */
	for (size_t k = olo; k < ohi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->ts > c->t && (p->flags & CW_TCP_SYN) && p->ts < tend)
			tend = p->ts;
	}
	for (size_t k = ilo; k < ihi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->ts > c->t && (p->flags & CW_TCP_SYN) && !(p->flags & CW_TCP_ACK) &&
		    p->ts < tend)
			tend = p->ts;
	}
	r->observed = CW_OBS_NONE;
	double t_fin = 0, t_rst = 0;
	for (size_t k = olo; k < ohi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->ts < t0 || p->ts >= tend)
			continue;
		if (p->flags & CW_TCP_RST) {
			t_rst = p->ts;
			break;
		}
		/* After a shutdown, FINs (the shutdown's, retransmitted) are not the close's. */
		if ((p->flags & CW_TCP_FIN) && !c->shut_before && !t_fin)
			t_fin = p->ts;
	}
	if (t_fin) {
		r->observed = CW_OBS_FIN;
		r->t_obs = t_fin;
	} else if (t_rst) {
		r->observed = CW_OBS_RST;
		r->t_obs = t_rst;
	}
	if (t_fin && t_rst) { /* RST after the close's FIN: the peer kept sending */
		r->late_rst = 1;
		r->t_late = t_rst;
	} else if (t_rst && c->shut_before && c->expect != CW_EXPECT_RST &&
		   peer_data(x, ilo, ihi, c->t, t_rst)) {
		/* The shutdown's FIN went out before; the close sent nothing; the
		 * peer's data after it drew the RST from the orphaned socket. */
		r->observed = CW_OBS_NONE;
		r->t_obs = 0;
		r->late_rst = 1;
		r->t_late = t_rst;
	}
}

/* Another logged close owns this connection (an accepted socket, not queued). */
static int owned_by_other(const struct cw_close *closes, size_t nc, const struct cw_pkt *p)
{
	for (size_t i = 0; i < nc; i++) {
		const struct cw_close *o = &closes[i];
		if (o->listener || !o->have_tuple)
			continue;
		if (o->lport == p->sport && o->pport == p->dport && !memcmp(o->lip.a, p->src.a, 16) &&
		    !memcmp(o->pip.a, p->dst.a, 16))
			return 1;
	}
	return 0;
}

static void match_listener(const struct cw_pkt *pkts, size_t np, const struct cw_close *closes,
			   size_t nc, const struct cw_close *c, double skew, struct cw_wire_result *r)
{
	double t0 = c->t - skew, t1 = c->t + skew + 0.05;
	int any = cw_ip_is_any(&c->lip);
	const struct cw_pkt **seen = cw_xcalloc(np + 1, sizeof(*seen));
	size_t ns = 0;
	int seen_port = 0; /* any packet to or from the listening address */
	for (size_t i = 0; i < np; i++) {
		const struct cw_pkt *p = &pkts[i];
		if (p->dport == c->lport && (any || !memcmp(p->dst.a, c->lip.a, 16)))
			seen_port = 1;
		if (!(p->flags & CW_TCP_RST) || p->ts < t0 || p->ts > t1 || p->sport != c->lport)
			continue;
		if (!any && memcmp(p->src.a, c->lip.a, 16))
			continue;
		if (owned_by_other(closes, nc, p))
			continue;
		int dup = 0;
		for (size_t k = 0; k < ns && !dup; k++)
			dup = seen[k]->dport == p->dport && !memcmp(seen[k]->dst.a, p->dst.a, 16) &&
			      !memcmp(seen[k]->src.a, p->src.a, 16);
		if (dup)
			continue;
		seen[ns++] = p;
		if (!r->t_obs)
			r->t_obs = p->ts;
	}
	free(seen);
	if (!seen_port) { /* no connection to it in the capture: "no RST" would prove nothing */
		r->observed = CW_OBS_NOT_CHECKED;
		r->reason = CW_NC_NOT_IN_CAPTURE;
		return;
	}
	r->rsts = (unsigned)ns;
	uint64_t want = c->expect == CW_EXPECT_RSTS ? c->backlog : 0;
	if (ns == 0)
		r->observed = CW_OBS_NONE;
	else
		r->observed = ns == want ? CW_OBS_RST : CW_OBS_RST_COUNT;
	r->match = ns == want;
}

/* What the capture's extent says about a close, before looking at its packets. */
static int coverage(const struct cw_capinfo *cap, double t, double skew)
{
	if (!cap->frames)
		return cap->truncated ? CW_NC_TRUNCATED : CW_NC_NOT_IN_CAPTURE;
	if (t + skew < cap->first)
		return CW_NC_BEFORE;
	return CW_CHECKED;
}

/* The capture ended before the close (no frame after its time): what it did
 * not show cannot count as "nothing". */
static int ended_before(const struct cw_capinfo *cap, double t)
{
	if (cap->frames && cap->last >= t)
		return CW_CHECKED;
	return cap->truncated ? CW_NC_TRUNCATED : CW_NC_ENDED;
}

static int judge(int expect, const struct cw_wire_result *r)
{
	switch (expect) {
	case CW_EXPECT_FIN:
		return r->observed == CW_OBS_FIN;
	case CW_EXPECT_RST:
		return r->observed == CW_OBS_RST;
	case CW_EXPECT_NONE_OR_FIN:
		return r->observed == CW_OBS_FIN || r->observed == CW_OBS_NONE;
	case CW_EXPECT_NO_RST:
		return r->observed == CW_OBS_NONE;
	}
	return 0;
}

void cw_wire_match(const struct cw_close *closes, size_t nc, const struct cw_pkt *pkts, size_t np,
		   const struct cw_capinfo *cap, double skew, struct cw_wire_result *out)
{
	struct index x;
	index_build(&x, pkts, np);
	for (size_t i = 0; i < nc; i++) {
		const struct cw_close *c = &closes[i];
		struct cw_wire_result *r = &out[i];
		memset(r, 0, sizeof(*r));
		r->observed = CW_OBS_NOT_CHECKED;
		r->reason = c->reason;
		if (r->reason == CW_CHECKED && !c->have_tuple)
			r->reason = CW_NC_UNNAMED;
		if (r->reason == CW_CHECKED)
			r->reason = (uint8_t)coverage(cap, c->t, skew);
		if (r->reason != CW_CHECKED)
			continue;
		if (c->listener)
			match_listener(pkts, np, closes, nc, c, skew, r);
		else
			match_conn(&x, c, skew, r);
		if (r->reason == CW_NC_NOT_IN_CAPTURE) {
			/* Its packets may be among those the snap length or the cut hid. */
			int lost = ended_before(cap, c->t);
			if (lost != CW_CHECKED || cap->snapcut)
				r->reason = cap->snapcut ? CW_NC_TRUNCATED : (uint8_t)lost;
			continue;
		}
		if (r->observed == CW_OBS_NONE && !r->late_rst) {
			/* "Nothing" is shown only by a capture that ran past the close
			 * and did not lose frames to the snap length. */
			r->reason = (uint8_t)ended_before(cap, c->t);
			if (r->reason == CW_CHECKED && cap->snapcut)
				r->reason = CW_NC_TRUNCATED;
			if (r->reason != CW_CHECKED) {
				r->observed = CW_OBS_NOT_CHECKED;
				r->match = 0;
				continue;
			}
		}
		if (!c->listener)
			r->match = (uint8_t)judge(c->expect, r);
	}
	free(x.ix);
}
