/* Matching logged closes with captured packets. */
#include "wire.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

const char *const cw_observed_names[CW_OBS_COUNT] = {"FIN", "RST", "RST*", "none", "not_captured"};

const char *cw_expect_name(int expect)
{
	switch (expect) {
	case CW_EXPECT_FIN: return "FIN";
	case CW_EXPECT_RST: return "RST";
	case CW_EXPECT_NONE_OR_FIN: return "nothing or FIN";
	case CW_EXPECT_RSTS: return "one RST per queued connection";
	case CW_EXPECT_NONE: return "nothing";
	}
	return "-";
}

static const char *const close_calls[] = {"close", "dup2", "dup3", "fclose", "close_range",
					  "closefrom", "exit", NULL};

int cw_wire_close_from_rec(const struct cw_rec *rec, struct cw_close *c)
{
	memset(c, 0, sizeof(*c));
	c->rec = rec;
	if (strcmp(rec->proto, "tcp"))
		return 0;
	int is_close = 0;
	for (int i = 0; close_calls[i]; i++)
		if (!strcmp(rec->call, close_calls[i]))
			is_close = 1;
	if (!is_close)
		return 0;
	const char *v = rec->verdict;
	c->listener = !strcmp(rec->state, "LISTEN") || !strcmp(v, "rst_backlog");
	if (!strcmp(v, "shared"))
		return 0;
	if (c->listener)
		c->expect = !strcmp(v, "rst_backlog") ? CW_EXPECT_RSTS : CW_EXPECT_NONE;
	else if (!strcmp(rec->action, "drained"))
		c->expect = CW_EXPECT_FIN; /* the drain shuts down the write side: FIN */
	else if (!strcmp(v, "clean") || !strcmp(v, "fin_pending") || !strcmp(v, "linger_wait"))
		c->expect = CW_EXPECT_FIN;
	else if (!strcmp(v, "rst_unread") || !strcmp(v, "rst_linger0"))
		c->expect = CW_EXPECT_RST;
	else if (!strcmp(v, "no_conn"))
		c->expect = CW_EXPECT_NONE_OR_FIN;
	else
		return 0;
	if (cw_endpoint_parse(rec->local, &c->lip, &c->lport) == 0) {
		if (c->listener)
			c->have_tuple = 1;
		else if (cw_endpoint_parse(rec->peer, &c->pip, &c->pport) == 0 && c->pport != 0)
			c->have_tuple = 1;
	}
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

static void match_conn(const struct index *x, const struct cw_close *c, double skew,
		       struct cw_wire_result *r)
{
	double t0 = c->rec->t - skew, tend = 1e300;
	size_t olo, ohi, ilo, ihi;
	index_range(x, &c->lip, c->lport, &c->pip, c->pport, &olo, &ohi);
	index_range(x, &c->pip, c->pport, &c->lip, c->lport, &ilo, &ihi);
	if (olo == ohi && ilo == ihi) {
		r->observed = CW_OBS_NOT_CAPTURED;
		return;
	}
	/* A new connection on the same 4-tuple (a SYN after the close) ends the window. */
	for (size_t k = olo; k < ohi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->ts > c->rec->t && (p->flags & CW_TCP_SYN) && p->ts < tend)
			tend = p->ts;
	}
	for (size_t k = ilo; k < ihi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->ts > c->rec->t && (p->flags & CW_TCP_SYN) && !(p->flags & CW_TCP_ACK) &&
		    p->ts < tend)
			tend = p->ts;
	}
	r->observed = CW_OBS_NONE;
	for (size_t k = olo; k < ohi; k++) {
		const struct cw_pkt *p = &x->pkts[x->ix[k]];
		if (p->ts < t0 || p->ts >= tend)
			continue;
		if (r->observed == CW_OBS_NONE) {
			if (p->flags & CW_TCP_RST) {
				r->observed = CW_OBS_RST;
				r->t_obs = p->ts;
			} else if (p->flags & CW_TCP_FIN) {
				r->observed = CW_OBS_FIN;
				r->t_obs = p->ts;
			}
		} else if (r->observed == CW_OBS_FIN && (p->flags & CW_TCP_RST)) {
			r->late_rst = 1;
			r->t_late = p->ts;
			break;
		}
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
	double t0 = c->rec->t - skew, t1 = c->rec->t + skew + 0.05;
	int any = cw_ip_is_any(&c->lip);
	const struct cw_pkt **seen = cw_xcalloc(np + 1, sizeof(*seen));
	size_t ns = 0;
	for (size_t i = 0; i < np; i++) {
		const struct cw_pkt *p = &pkts[i];
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
	r->rsts = (unsigned)ns;
	uint64_t want = c->expect == CW_EXPECT_RSTS ? c->rec->backlog : 0;
	if (ns == 0)
		r->observed = CW_OBS_NONE;
	else
		r->observed = ns == want ? CW_OBS_RST : CW_OBS_RST_COUNT;
	r->match = ns == want;
}

void cw_wire_match(const struct cw_close *closes, size_t nc, const struct cw_pkt *pkts, size_t np,
		   double skew, struct cw_wire_result *out)
{
	struct index x;
	index_build(&x, pkts, np);
	for (size_t i = 0; i < nc; i++) {
		const struct cw_close *c = &closes[i];
		struct cw_wire_result *r = &out[i];
		memset(r, 0, sizeof(*r));
		if (c->listener) {
			if (c->have_tuple)
				match_listener(pkts, np, closes, nc, c, skew, r);
			else
				r->observed = CW_OBS_NOT_CAPTURED, r->match = 1;
			continue;
		}
		if (!c->have_tuple)
			r->observed = CW_OBS_NOT_CAPTURED;
		else
			match_conn(&x, c, skew, r);
		switch (c->expect) {
		case CW_EXPECT_FIN:
			r->match = r->observed == CW_OBS_FIN || r->observed == CW_OBS_NOT_CAPTURED;
			break;
		case CW_EXPECT_RST:
			r->match = r->observed == CW_OBS_RST || r->observed == CW_OBS_NOT_CAPTURED;
			break;
		case CW_EXPECT_NONE_OR_FIN:
			r->match = r->observed != CW_OBS_RST;
			break;
		default:
			r->match = 1;
		}
	}
	free(x.ix);
}
