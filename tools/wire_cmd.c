/* `closewatch wire LOG… PCAP`: predicted fate of each logged TCP close versus
 * the packets that followed it. */
#include "cmds.h"
#include "logread.h"
#include "pkt.h"
#include "report.h"
#include "table.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct loaded {
	struct cw_rec *recs;
	size_t n, cap;
	unsigned long skipped;
};

static void keep(const struct cw_rec *rec, void *arg)
{
	struct loaded *l = arg;
	struct cw_close c;
	if (!cw_wire_close_from_rec(rec, &c)) {
		if (strcmp(rec->call, "drain") && strcmp(rec->call, "shutdown"))
			l->skipped++;
		return;
	}
	cw_grow((void **)&l->recs, &l->cap, l->n, sizeof(*l->recs));
	l->recs[l->n++] = *rec;
}

static const char *row_label(const struct cw_close *c, char *buf, size_t cap)
{
	const char *v = c->rec->verdict;
	if (c->listener && strcmp(v, "rst_backlog"))
		snprintf(buf, cap, "%s (listener)", v);
	else if (!strcmp(c->rec->action, "drained"))
		snprintf(buf, cap, "%s (drained)", v);
	else
		snprintf(buf, cap, "%s", v);
	return buf;
}

static void describe(FILE *f, const struct cw_close *c, const struct cw_wire_result *r)
{
	const struct cw_rec *rec = c->rec;
	fprintf(f, "  %s pid %ld %s fd %ld %s -> %s state %s recvq %llu sendq %llu backlog %llu: "
		"verdict %s, expected %s, saw ", rec->ts, rec->pid, rec->call, rec->fd, rec->local,
		rec->peer, rec->state[0] ? rec->state : "?", (unsigned long long)rec->recvq,
		(unsigned long long)rec->sendq, (unsigned long long)rec->backlog, rec->verdict,
		cw_expect_name(c->expect));
	if (c->listener)
		fprintf(f, "%u RST%s", r->rsts, r->rsts == 1 ? "" : "s");
	else
		fputs(r->observed == CW_OBS_NONE ? "nothing" : cw_observed_names[r->observed], f);
	if (r->t_obs)
		fprintf(f, " (%+.6fs)", r->t_obs - rec->t);
	fputc('\n', f);
}

/* Wrong predictions, late RSTs, closes the capture did not see. */
struct totals {
	unsigned long wrong, late, nocap;
};

static struct totals totals_of(const struct cw_wire_result *res, size_t n)
{
	struct totals t = {0, 0, 0};
	for (size_t i = 0; i < n; i++) {
		t.wrong += !res[i].match;
		t.late += (unsigned long)res[i].late_rst;
		t.nocap += res[i].observed == CW_OBS_NOT_CAPTURED;
	}
	return t;
}

static void print_json(const struct cw_close *cl, const struct cw_wire_result *res, size_t n,
		       unsigned long skipped, unsigned long malformed)
{
	struct totals tot = totals_of(res, n);
	printf("{\"checked\":%zu,\"matched\":%zu,\"mismatches\":%lu,\"late_rst\":%lu,"
	       "\"not_captured\":%lu,\"skipped\":%lu,\"malformed\":%lu,\"closes\":[",
	       n, n - tot.wrong, tot.wrong, tot.late, tot.nocap, skipped, malformed);
	for (size_t i = 0; i < n; i++) {
		const struct cw_rec *rec = cl[i].rec;
		printf("%s{\"ts\":", i ? "," : "");
		cw_json_str(stdout, rec->ts);
		printf(",\"pid\":%ld,\"call\":", rec->pid);
		cw_json_str(stdout, rec->call);
		printf(",\"fd\":%ld,\"local\":", rec->fd);
		cw_json_str(stdout, rec->local);
		fputs(",\"peer\":", stdout);
		cw_json_str(stdout, rec->peer);
		fputs(",\"verdict\":", stdout);
		cw_json_str(stdout, rec->verdict);
		fputs(",\"action\":", stdout);
		cw_json_str(stdout, rec->action);
		if (res[i].t_obs)
			printf(",\"dt\":%.6f", res[i].t_obs - rec->t);
		printf(",\"listener\":%s,\"expected\":\"%s\",\"observed\":\"%s\",\"rsts\":%u,"
		       "\"late_rst\":%s,\"match\":%s}",
		       cl[i].listener ? "true" : "false", cw_expect_name(cl[i].expect),
		       cw_observed_names[res[i].observed], res[i].rsts, res[i].late_rst ? "true" : "false",
		       res[i].match ? "true" : "false");
	}
	printf("]}\n");
}

static void print_text(const struct cw_close *cl, const struct cw_wire_result *res, size_t n,
		       unsigned long skipped, unsigned long malformed)
{
	/* rows: distinct labels in verdict order, then in order of appearance */
	char (*labels)[64] = cw_xcalloc(n + 1, sizeof(*labels));
	unsigned long (*cnt)[CW_OBS_COUNT + 1] = cw_xcalloc(n + 1, sizeof(*cnt));
	int *expect = cw_xcalloc(n + 1, sizeof(*expect));
	size_t nl = 0;
	for (int pass = 0; pass <= CW_NVERDICT; pass++) {
		for (size_t i = 0; i < n; i++) {
			const char *v = cl[i].rec->verdict;
			int vi = CW_NVERDICT;
			for (int k = 0; k < CW_NVERDICT; k++)
				if (!strcmp(v, cw_verdicts[k]))
					vi = k;
			if (vi != pass)
				continue;
			char lab[64];
			row_label(&cl[i], lab, sizeof(lab));
			size_t j;
			for (j = 0; j < nl && strcmp(labels[j], lab); j++)
				;
			if (j == nl) {
				snprintf(labels[nl], sizeof(labels[nl]), "%s", lab);
				expect[nl++] = cl[i].expect;
			}
			cnt[j][res[i].observed]++;
			cnt[j][CW_OBS_COUNT] += (unsigned long)res[i].late_rst;
		}
	}
	struct totals tot = totals_of(res, n);
	printf("%zu TCP close%s checked: %zu as predicted, %lu wrong, %lu late RST%s, %lu not in the "
	       "capture; %lu skipped (shared, not TCP, unknown verdict); %lu malformed log line%s\n\n",
	       n, n == 1 ? "" : "s", n - tot.wrong, tot.wrong, tot.late, tot.late == 1 ? "" : "s",
	       tot.nocap, skipped, malformed, malformed == 1 ? "" : "s");
	struct cw_table t;
	cw_table_init(&t, "llrrrrrr", "predicted", "expects", "FIN", "RST", "RST*", "none",
		      "not captured", "late RST");
	for (size_t j = 0; j < nl; j++) {
		char c[CW_OBS_COUNT + 1][24];
		for (int k = 0; k <= CW_OBS_COUNT; k++)
			snprintf(c[k], sizeof(c[k]), "%lu", cnt[j][k]);
		cw_table_row(&t, labels[j], cw_expect_name(expect[j]), c[CW_OBS_FIN], c[CW_OBS_RST],
			     c[CW_OBS_RST_COUNT], c[CW_OBS_NONE], c[CW_OBS_NOT_CAPTURED], c[CW_OBS_COUNT]);
	}
	cw_table_print(&t, stdout, 0);
	printf("(observed: first FIN or RST sent by the closing side after the close; RST* = RSTs, "
	       "but not one per queued connection; late RST = RST after the FIN: the peer kept "
	       "sending)\n");
	if (tot.wrong) {
		printf("\nmismatches:\n");
		for (size_t i = 0; i < n; i++)
			if (!res[i].match)
				describe(stdout, &cl[i], &res[i]);
	}
	if (tot.late) {
		printf("\nlate RSTs (peer data arrived after the close):\n");
		for (size_t i = 0; i < n; i++)
			if (res[i].late_rst)
				printf("  %s pid %ld %s fd %ld %s -> %s verdict %s: FIN %+.6fs, RST %+.6fs\n",
				       cl[i].rec->ts, cl[i].rec->pid, cl[i].rec->call, cl[i].rec->fd,
				       cl[i].rec->local, cl[i].rec->peer, cl[i].rec->verdict,
				       res[i].t_obs - cl[i].rec->t, res[i].t_late - cl[i].rec->t);
	}
	free(labels);
	free(cnt);
	free(expect);
}

static void usage(FILE *f)
{
	fputs("usage: closewatch wire [--json] [--skew MS] LOG... PCAP\n"
	      "For each TCP close in the logs (text or JSON), find its connection in the capture\n"
	      "by 4-tuple and time, and compare the verdict's prediction with the first FIN or RST\n"
	      "the closing side sent after it. Prints a confusion table (predicted x observed),\n"
	      "the mismatches and the late RSTs (RST after FIN: the peer kept sending).\n"
	      "  --json     one JSON object instead of the table\n"
	      "  --skew MS  how far a packet may precede the record's timestamp (default 50)\n"
	      "Exit status: 0 all predictions held, 1 at least one was wrong, 2 usage or file error.\n",
	      f);
}

int cw_cmd_wire(int argc, char **argv)
{
	int json = 0;
	double skew = 0.05;
	int i = 0;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--skew")) {
			unsigned long ms;
			if (i + 1 >= argc || cw_parse_uint(argv[i + 1], 60000, &ms) != 0)
				return cw_usage_error("wire", "--skew needs milliseconds (0-60000)");
			skew = (double)ms / 1000.0;
			i++;
		} else {
			return cw_unknown_option("wire", argv[i]);
		}
	}
	if (argc - i < 2)
		return cw_usage_error("wire", "needs LOG and PCAP");
	const char *pcap = argv[argc - 1];
	struct loaded l = {0};
	struct cw_logstats st;
	memset(&st, 0, sizeof(st));
	for (int k = i; k < argc - 1; k++) {
		if (cw_log_read_file(argv[k], 0, keep, &l, &st) != 0) {
			cw_err("cannot read log %s: %s", argv[k], strerror(errno));
			free(l.recs);
			return 2;
		}
	}
	struct cw_pkt *pkts;
	size_t np;
	char err[600];
	if (cw_pcap_load(pcap, &pkts, &np, err, sizeof(err)) != 0) {
		cw_err("%s", err);
		free(l.recs);
		return 2;
	}
	struct cw_close *cl = cw_xcalloc(l.n + 1, sizeof(*cl));
	for (size_t k = 0; k < l.n; k++)
		cw_wire_close_from_rec(&l.recs[k], &cl[k]);
	struct cw_wire_result *res = cw_xcalloc(l.n + 1, sizeof(*res));
	cw_wire_match(cl, l.n, pkts, np, skew, res);
	if (json)
		print_json(cl, res, l.n, l.skipped, st.malformed);
	else
		print_text(cl, res, l.n, l.skipped, st.malformed);
	int wrong = 0;
	for (size_t k = 0; k < l.n; k++)
		wrong |= !res[k].match;
	free(res);
	free(cl);
	free(pkts);
	free(l.recs);
	fflush(stdout);
	return wrong ? 1 : 0;
}
