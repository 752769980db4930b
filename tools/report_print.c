/* Printing report totals: aligned text tables, one JSON object, or the
 * short summary of `closewatch run`. */
#include "report.h"
#include "table.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NUM(buf, v) (snprintf(buf, sizeof(buf), "%" PRIu64, (uint64_t)(v)), buf)

/* Verdicts of an item as "rst_unread 3, clean 1". */
static void verdict_mix(const struct cw_item *it, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = 0;
	for (int i = 0; i <= CW_NVERDICT && n < cap; i++) {
		if (!it->vc[i])
			continue;
		n += (size_t)snprintf(out + n, cap - n, "%s%s %lu", n ? ", " : "",
				      i < CW_NVERDICT ? cw_verdicts[i] : "other", it->vc[i]);
	}
}

/* Backtrace frames ('\n'-separated) shown as "f1 < f2 < f3" (at most 3). */
static void site_label(const char *bt, char *out, size_t cap)
{
	size_t n = 0;
	int frames = 0;
	const char *p = bt;
	out[0] = 0;
	while (*p && n + 1 < cap) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (++frames > 3) {
			snprintf(out + n, cap - n, " < …");
			return;
		}
		n += (size_t)snprintf(out + n, cap - n, "%s%.*s", frames > 1 ? " < " : "", (int)len, p);
		if (n >= cap)
			return;
		p = e ? e + 1 : p + len;
	}
}

static void header(FILE *f, const struct cw_report *r, const struct cw_logstats *st)
{
	fprintf(f, "%lu record%s (%lu close%s, %lu shutdown%s, %lu drain records) from %zu process%s"
		" in %lu file%s", st->records, st->records == 1 ? "" : "s", r->closes,
		r->closes == 1 ? "" : "s", r->shutdowns, r->shutdowns == 1 ? "" : "s", r->drain_records, r->pids.n, r->pids.n == 1 ? "" : "es", st->files,
		st->files == 1 ? "" : "s");
	fprintf(f, "; malformed lines: %lu", st->malformed);
	if (st->malformed)
		fprintf(f, " (first at %s)", st->first_bad);
	fprintf(f, "; other lines: %lu", st->other);
	fputc('\n', f);
	if (r->outside)
		fprintf(f, "%lu record%s outside --since/--until left out\n", r->outside,
			r->outside == 1 ? "" : "s");
	if (r->first_ts[0])
		fprintf(f, "from %s to %s\n", r->first_ts, r->last_ts);
}

/* What the risky closes threw away, split as the peers see it. */
static void loss_lines(FILE *f, const struct cw_report *r)
{
	fprintf(f, "risky closes: %lu; what those not drained threw away:\n", r->risky);
	fprintf(f, "  answer bytes never sent: %" PRIu64 " (exact: the peer never gets them)\n",
		r->split.never_sent);
	fprintf(f, "  bytes in flight at the reset: %" PRIu64
		" (already sent: they reach the peer unless dropped)\n", r->split.in_flight);
	fprintf(f, "  request bytes not read: %" PRIu64 " (what the program chose not to read)\n",
		r->split.not_read);
	if (r->unix_risky)
		fprintf(f, "  (%lu unix socket close%s: a unix send queue is memory charged, not bytes;"
			" not counted above)\n", r->unix_risky, r->unix_risky == 1 ? "" : "s");
	fprintf(f, "  sum of the records' lost (upper bound): %" PRIu64, r->lost);
	if (r->saved)
		fprintf(f, "; saved by drains: %" PRIu64, r->saved);
	fputc('\n', f);
}

/* Hosts or programs: closes, risky, the loss split, drains (most risky first). */
static void where_table(FILE *f, const char *what, const struct cw_group *g)
{
	char a[32], b[32], c[32], d[32], e[32], h[32];
	struct cw_item **v = cw_group_sorted(g);
	struct cw_table t;
	fputc('\n', f);
	cw_table_init(&t, "rrrrrrl", "closes", "risky", "never sent", "in flight", "not read", "drains",
		      what);
	for (size_t i = 0; v[i]; i++)
		cw_table_row(&t, NUM(a, v[i]->count), NUM(b, v[i]->risky), NUM(c, v[i]->split.never_sent),
			     NUM(d, v[i]->split.in_flight), NUM(e, v[i]->split.not_read),
			     NUM(h, v[i]->drains), v[i]->key);
	free(v);
	cw_table_print(&t, f, 0);
}

void cw_report_print_text(FILE *f, const struct cw_report *r, const struct cw_logstats *st, int top)
{
	char a[32], b[32], c[32], d[32];
	char mix[256], label[1024];
	char e[32];
	header(f, r, st);
	loss_lines(f, r);
	fputc('\n', f);

	/* "closes" in the tables: records of closes and shutdowns alike. */
	struct cw_table t;
	cw_table_init(&t, "lrrrrr", "verdict", "closes", "never sent", "in flight", "not read", "");
	for (size_t i = 0; i < r->verdicts.n; i++) {
		const struct cw_item *it = &r->verdicts.items[i];
		cw_table_row(&t, it->key, NUM(a, it->count), NUM(b, it->split.never_sent),
			     NUM(c, it->split.in_flight), NUM(d, it->split.not_read),
			     cw_verdict_risky(it->key) ? "risky" : "");
	}
	cw_table_row(&t, "total", NUM(a, r->closes + r->shutdowns), NUM(b, r->split.never_sent),
		     NUM(c, r->split.in_flight), NUM(d, r->split.not_read), "");
	cw_table_print(&t, f, 0);

	if (r->hosts.n > 1)
		where_table(f, "host", &r->hosts);
	where_table(f, "program", &r->programs);

	struct cw_item **v = cw_group_sorted(&r->calls);
	fputc('\n', f);
	cw_table_init(&t, "lrrrr", "call", "closes", "risky", "never sent", "not read");
	for (size_t i = 0; v[i]; i++)
		cw_table_row(&t, v[i]->key, NUM(a, v[i]->count), NUM(b, v[i]->risky),
			     NUM(c, v[i]->split.never_sent), NUM(e, v[i]->split.not_read));
	free(v);
	cw_table_print(&t, f, 0);

	v = cw_group_sorted(&r->actions);
	fputc('\n', f);
	cw_table_init(&t, "lrrr", "action", "closes", "never sent", "not read");
	for (size_t i = 0; v[i]; i++)
		cw_table_row(&t, v[i]->key, NUM(a, v[i]->count), NUM(b, v[i]->split.never_sent),
			     NUM(c, v[i]->split.not_read));
	free(v);
	cw_table_print(&t, f, 0);

	fprintf(f, "\ntop call sites (by risky closes; %lu close%s without backtrace)\n", r->no_bt,
		r->no_bt == 1 ? "" : "s");
	v = cw_group_sorted(&r->sites);
	cw_table_init(&t, "rrrll", "closes", "risky", "never sent", "verdicts", "site");
	for (size_t i = 0; v[i] && (int)i < top; i++) {
		verdict_mix(v[i], mix, sizeof(mix));
		site_label(v[i]->key, label, sizeof(label));
		cw_table_row(&t, NUM(a, v[i]->count), NUM(b, v[i]->risky), NUM(c, v[i]->split.never_sent),
			     mix, label);
	}
	free(v);
	int none = t.nrows == 1;
	cw_table_print(&t, f, 2);
	if (none)
		fprintf(f, "  (none: record backtraces with CLOSEWATCH_BACKTRACE=N or run --backtrace N)\n");

	fprintf(f, "\ntop peers\n");
	v = cw_group_sorted(&r->peers);
	cw_table_init(&t, "rrrll", "closes", "risky", "never sent", "verdicts", "peer");
	for (size_t i = 0; v[i] && (int)i < top; i++) {
		verdict_mix(v[i], mix, sizeof(mix));
		cw_table_row(&t, NUM(a, v[i]->count), NUM(b, v[i]->risky), NUM(c, v[i]->split.never_sent),
			     mix, v[i]->key);
	}
	free(v);
	cw_table_print(&t, f, 2);

	fputc('\n', f);
	cw_table_init(&t, "lrrrr", "drain result", "drains", "discarded", "waited ms (avg)", "max");
	for (size_t i = 0; i < r->drains.n; i++) {
		const struct cw_item *it = &r->drains.items[i];
		cw_table_row(&t, it->key, NUM(a, it->count), NUM(b, it->discarded),
			     NUM(c, it->count ? it->waited_ms / it->count : 0), NUM(d, it->waited_max));
	}
	cw_table_print(&t, f, 0);
}

/* ,"verdicts":{"rst_unread":N,...} with the verdicts that occurred */
static void json_verdict_counts(FILE *f, const struct cw_item *it)
{
	fputs(",\"verdicts\":{", f);
	int first = 1;
	for (int k = 0; k <= CW_NVERDICT; k++)
		if (it->vc[k]) {
			fprintf(f, "%s\"%s\":%lu", first ? "" : ",", k < CW_NVERDICT ? cw_verdicts[k] : "other",
				it->vc[k]);
			first = 0;
		}
	fputc('}', f);
}

/* ,"never_sent":N,"in_flight":N,"not_read":N */
static void json_split(FILE *f, const struct cw_split *s)
{
	fprintf(f, ",\"never_sent\":%" PRIu64 ",\"in_flight\":%" PRIu64 ",\"not_read\":%" PRIu64,
		s->never_sent, s->in_flight, s->not_read);
}

static void json_items(FILE *f, const char *name, struct cw_item **v, int top, int with_verdicts);

/* ,"hosts":[{"key":…,"count":…,…,"drains":N}] */
static void json_where(FILE *f, const char *name, const struct cw_group *g)
{
	struct cw_item **v = cw_group_sorted(g);
	fprintf(f, ",\"%s\":[", name);
	for (size_t i = 0; v[i]; i++) {
		fprintf(f, "%s{\"key\":", i ? "," : "");
		cw_json_str(f, v[i]->key);
		fprintf(f, ",\"count\":%lu,\"risky\":%lu,\"lost\":%" PRIu64, v[i]->count, v[i]->risky,
			v[i]->lost);
		json_split(f, &v[i]->split);
		fprintf(f, ",\"drains\":%lu}", v[i]->drains);
	}
	fputc(']', f);
	free(v);
}

static void json_items(FILE *f, const char *name, struct cw_item **v, int top, int with_verdicts)
{
	fprintf(f, ",\"%s\":[", name);
	for (size_t i = 0; v[i] && (top < 0 || (int)i < top); i++) {
		fprintf(f, "%s{\"key\":", i ? "," : "");
		cw_json_str(f, v[i]->key);
		fprintf(f, ",\"count\":%lu,\"risky\":%lu,\"lost\":%" PRIu64, v[i]->count, v[i]->risky,
			v[i]->lost);
		json_split(f, &v[i]->split);
		if (with_verdicts)
			json_verdict_counts(f, v[i]);
		fputc('}', f);
	}
	fputc(']', f);
	free(v);
}

static void json_bt(FILE *f, const char *bt)
{
	fputc('[', f);
	for (const char *p = bt; *p;) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char *frame = cw_xmalloc(len + 1);
		memcpy(frame, p, len);
		frame[len] = 0;
		if (p != bt)
			fputc(',', f);
		cw_json_str(f, frame);
		free(frame);
		p = e ? e + 1 : p + len;
	}
	fputc(']', f);
}

void cw_report_print_json(FILE *f, const struct cw_report *r, const struct cw_logstats *st, int top)
{
	fprintf(f, "{\"files\":%lu,\"lines\":%lu,\"records\":%lu,\"malformed\":%lu,\"other\":%lu,"
		"\"outside_window\":%lu,", st->files, st->lines, st->records, st->malformed, st->other,
		r->outside);
	fputs("\"first_malformed\":", f);
	if (st->malformed)
		cw_json_str(f, st->first_bad);
	else
		fputs("null", f);
	fprintf(f, ",\"closes\":%lu,\"shutdowns\":%lu,\"drain_records\":%lu,\"processes\":%zu,"
		"\"risky\":%lu,\"lost\":%" PRIu64 ",\"saved\":%" PRIu64, r->closes, r->shutdowns,
		r->drain_records, r->pids.n, r->risky, r->lost, r->saved);
	json_split(f, &r->split);
	fprintf(f, ",\"unix_risky\":%lu,\"first_ts\":", r->unix_risky);
	if (r->first_ts[0]) {
		cw_json_str(f, r->first_ts);
		fputs(",\"last_ts\":", f);
		cw_json_str(f, r->last_ts);
	} else {
		fputs("null,\"last_ts\":null", f);
	}
	fputs(",\"verdicts\":{", f);
	for (size_t i = 0; i < r->verdicts.n; i++) {
		const struct cw_item *it = &r->verdicts.items[i];
		fprintf(f, "%s", i ? "," : "");
		cw_json_str(f, it->key);
		fprintf(f, ":{\"count\":%lu,\"lost\":%" PRIu64, it->count, it->lost);
		json_split(f, &it->split);
		fputc('}', f);
	}
	fputs("},\"drains\":{", f);
	for (size_t i = 0; i < r->drains.n; i++) {
		const struct cw_item *it = &r->drains.items[i];
		fprintf(f, "%s", i ? "," : "");
		cw_json_str(f, it->key);
		fprintf(f, ":{\"count\":%lu,\"discarded\":%" PRIu64 ",\"waited_ms\":%" PRIu64
			",\"waited_ms_max\":%" PRIu64 "}", it->count, it->discarded, it->waited_ms,
			it->waited_max);
	}
	fputc('}', f);
	json_items(f, "calls", cw_group_sorted(&r->calls), -1, 0);
	json_items(f, "actions", cw_group_sorted(&r->actions), -1, 0);
	json_items(f, "peers", cw_group_sorted(&r->peers), top, 1);
	json_where(f, "hosts", &r->hosts);
	json_where(f, "programs", &r->programs);
	fprintf(f, ",\"no_backtrace\":%lu,\"call_sites\":[", r->no_bt);
	struct cw_item **v = cw_group_sorted(&r->sites);
	for (size_t i = 0; v[i] && (int)i < top; i++) {
		fprintf(f, "%s{\"bt\":", i ? "," : "");
		json_bt(f, v[i]->key);
		fprintf(f, ",\"count\":%lu,\"risky\":%lu,\"lost\":%" PRIu64, v[i]->count, v[i]->risky,
			v[i]->lost);
		json_split(f, &v[i]->split);
		json_verdict_counts(f, v[i]);
		fputc('}', f);
	}
	free(v);
	fputs("]}\n", f);
}

void cw_report_print_summary(FILE *f, const struct cw_report *r, const struct cw_logstats *st)
{
	fprintf(f, "closewatch: %lu socket close%s", r->closes, r->closes == 1 ? "" : "s");
	if (r->shutdowns)
		fprintf(f, " and %lu shutdown%s", r->shutdowns, r->shutdowns == 1 ? "" : "s");
	fprintf(f, " logged by %zu process%s", r->pids.n, r->pids.n == 1 ? "" : "es");
	int first = 1;
	for (size_t i = 0; i < r->verdicts.n; i++) {
		const struct cw_item *it = &r->verdicts.items[i];
		if (!it->count)
			continue;
		fprintf(f, "%s%s %lu", first ? ": " : ", ", it->key, it->count);
		first = 0;
	}
	fputc('\n', f);
	fprintf(f, "closewatch: %lu risky close%s: answer bytes never sent %" PRIu64
		", in flight at the reset %" PRIu64 " (they reach the peer unless dropped)"
		", request bytes not read %" PRIu64, r->risky, r->risky == 1 ? "" : "s",
		r->split.never_sent, r->split.in_flight, r->split.not_read);
	if (r->saved)
		fprintf(f, "; saved by drains: %" PRIu64, r->saved);
	fputc('\n', f);
	if (r->unix_risky)
		fprintf(f, "closewatch: (%lu unix socket close%s: a unix send queue is memory charged,"
			" not bytes; not counted above)\n", r->unix_risky, r->unix_risky == 1 ? "" : "s");
	fprintf(f, "closewatch: drains: %lu", r->drain_records);
	for (size_t i = 0; i < r->drains.n; i++)
		fprintf(f, "%s%s %lu", i ? ", " : " (", r->drains.items[i].key, r->drains.items[i].count);
	fputs(r->drains.n ? ")\n" : "\n", f);
	if (st->malformed)
		fprintf(f, "closewatch: %lu malformed log line%s (first at %s)\n", st->malformed,
			st->malformed == 1 ? "" : "s", st->first_bad);
}
