/* Totals over closewatch log records. */
#include "report.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

const char *const cw_verdicts[] = {"clean", "fin_pending", "rst_unread", "rst_linger0",
				   "rst_backlog", "linger_wait", "shared", "no_conn", NULL};
const char *const cw_drain_results[] = {"delivered", "timeout", "peer_reset", NULL};

static int verdict_index(const char *v)
{
	for (int i = 0; i < CW_NVERDICT; i++)
		if (!strcmp(v, cw_verdicts[i]))
			return i;
	return CW_NVERDICT;
}

static struct cw_item *group_item(struct cw_group *g, const char *key)
{
	size_t i = cw_strmap_get(&g->map, key);
	if (i != (size_t)-1)
		return &g->items[i];
	cw_grow((void **)&g->items, &g->cap, g->n, sizeof(*g->items));
	struct cw_item *it = &g->items[g->n];
	memset(it, 0, sizeof(*it));
	it->key = cw_xstrdup(key);
	cw_strmap_put(&g->map, key, g->n);
	g->n++;
	return it;
}

const struct cw_item *cw_group_find(const struct cw_group *g, const char *key)
{
	size_t i = cw_strmap_get(&g->map, key);
	return i == (size_t)-1 ? NULL : &g->items[i];
}

void cw_report_init(struct cw_report *r)
{
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < CW_NVERDICT; i++)
		group_item(&r->verdicts, cw_verdicts[i]);
	for (int i = 0; i < CW_NRESULT; i++)
		group_item(&r->drains, cw_drain_results[i]);
}

/* "1.2.3.4:80" → "1.2.3.4", "[::1]:80" → "::1"; unix names unchanged. */
static void peer_host(const char *peer, char *out, size_t cap)
{
	size_t n = strlen(peer);
	if (peer[0] == '[') {
		const char *e = strchr(peer, ']');
		if (e && e[1] == ':') {
			n = (size_t)(e - peer - 1);
			peer++;
		}
	} else if (peer[0] != '/' && peer[0] != '@') {
		const char *c = strrchr(peer, ':');
		if (c && !memchr(peer, ':', (size_t)(c - peer)))
			n = (size_t)(c - peer);
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(out, peer, n);
	out[n] = 0;
}

static void split_add(struct cw_split *to, const struct cw_split *s)
{
	to->never_sent = cw_sat_add(to->never_sent, s->never_sent);
	to->in_flight = cw_sat_add(to->in_flight, s->in_flight);
	to->not_read = cw_sat_add(to->not_read, s->not_read);
}

/* The split of one close (zero unless it reset the connection and was not drained). */
static void split_of(const struct cw_rec *rec, int drained, struct cw_split *s)
{
	memset(s, 0, sizeof(*s));
	if (drained || (strcmp(rec->verdict, "rst_unread") && strcmp(rec->verdict, "rst_linger0")))
		return;
	s->not_read = rec->recvq;
	if (strcmp(rec->proto, "tcp"))
		return; /* unix: sendq is memory, not bytes; nothing is "in flight" */
	s->never_sent = rec->unsent < rec->sendq ? rec->unsent : rec->sendq;
	s->in_flight = rec->sendq - s->never_sent;
}

static void count(struct cw_item *it, uint64_t lost, const struct cw_split *s, int risky, int vi)
{
	it->count++;
	it->lost = cw_sat_add(it->lost, lost);
	split_add(&it->split, s);
	if (risky)
		it->risky++;
	it->vc[vi]++;
}

void cw_report_add(struct cw_report *r, const struct cw_rec *rec)
{
	char pid[300]; /* a pid is a process of one host */
	snprintf(pid, sizeof(pid), "%ld@%s", rec->pid, rec->host);
	if (cw_strmap_get(&r->pids, pid) == (size_t)-1)
		cw_strmap_put(&r->pids, pid, 0);
	if (!r->first_ts[0] || rec->t < r->first_t) {
		r->first_t = rec->t;
		snprintf(r->first_ts, sizeof(r->first_ts), "%s", rec->ts);
	}
	if (!r->last_ts[0] || rec->t > r->last_t) {
		r->last_t = rec->t;
		snprintf(r->last_ts, sizeof(r->last_ts), "%s", rec->ts);
	}
	const char *host = rec->host[0] ? rec->host : CW_NOT_RECORDED;
	const char *exe = rec->exe[0] ? rec->exe : CW_NOT_RECORDED;
	if (!strcmp(rec->call, "drain")) {
		group_item(&r->hosts, host)->drains++;
		group_item(&r->programs, exe)->drains++;
		struct cw_item *it = group_item(&r->drains, rec->result);
		r->drain_records++;
		it->count++;
		it->discarded = cw_sat_add(it->discarded, rec->discarded);
		it->waited_ms = cw_sat_add(it->waited_ms, rec->waited_ms);
		if (rec->waited_ms > it->waited_max)
			it->waited_max = rec->waited_ms;
		return;
	}
	int risky = cw_verdict_risky(rec->verdict);
	int vi = verdict_index(rec->verdict);
	/* A drained close's `lost` is what the kernel would have thrown away:
	 * the drain saved it, so it counts as saved, not lost. */
	int drained = !strcmp(rec->action, "drained");
	uint64_t lost = drained ? 0 : rec->lost;
	struct cw_split s;
	split_of(rec, drained, &s);
	if (!strcmp(rec->call, "shutdown"))
		r->shutdowns++;
	else
		r->closes++;
	r->lost = cw_sat_add(r->lost, lost);
	r->saved = cw_sat_add(r->saved, rec->lost - lost);
	split_add(&r->split, &s);
	if (risky)
		r->risky++;
	if (risky && !drained && !strcmp(rec->proto, "unix") && rec->sendq)
		r->unix_risky++;
	count(group_item(&r->verdicts, rec->verdict), lost, &s, risky, vi);
	count(group_item(&r->actions, rec->action), lost, &s, risky, vi);
	count(group_item(&r->calls, rec->call), lost, &s, risky, vi);
	count(group_item(&r->hosts, host), lost, &s, risky, vi);
	count(group_item(&r->programs, exe), lost, &s, risky, vi);
	char peer[CW_REC_ADDR];
	peer_host(rec->peer, peer, sizeof(peer));
	count(group_item(&r->peers, peer), lost, &s, risky, vi);
	if (rec->nbt)
		count(group_item(&r->sites, rec->bt), lost, &s, risky, vi);
	else
		r->no_bt++;
}

void cw_report_add_cb(const struct cw_rec *rec, void *arg)
{
	cw_report_add(arg, rec);
}

static void group_free(struct cw_group *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->items[i].key);
	free(g->items);
	cw_strmap_free(&g->map);
}

void cw_report_free(struct cw_report *r)
{
	group_free(&r->verdicts);
	group_free(&r->actions);
	group_free(&r->calls);
	group_free(&r->sites);
	group_free(&r->peers);
	group_free(&r->drains);
	group_free(&r->hosts);
	group_free(&r->programs);
	cw_strmap_free(&r->pids);
}

static int cmp_top(const void *a, const void *b)
{
	const struct cw_item *x = *(struct cw_item *const *)a, *y = *(struct cw_item *const *)b;
	if (x->risky != y->risky)
		return x->risky > y->risky ? -1 : 1;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if (x->lost != y->lost)
		return x->lost > y->lost ? -1 : 1;
	return strcmp(x->key, y->key);
}

struct cw_item **cw_group_sorted(const struct cw_group *g)
{
	struct cw_item **v = cw_xcalloc(g->n + 1, sizeof(*v));
	for (size_t i = 0; i < g->n; i++)
		v[i] = &g->items[i];
	qsort(v, g->n, sizeof(*v), cmp_top);
	return v;
}
