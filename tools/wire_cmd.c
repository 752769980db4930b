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

/* Totals that saturate instead of wrapping. */
static void inc(unsigned long *v)
{
	if (*v != (unsigned long)-1)
		(*v)++;
}

/* The closes, small (struct cw_close), and their text, each record's strings
 * one after the other in one pool: ts, call, local, peer, state, verdict, action. */
enum { S_TS, S_CALL, S_LOCAL, S_PEER, S_STATE, S_VERDICT, S_ACTION, S_COUNT };

struct loaded {
	struct cw_close *cl;
	size_t n, cap;
	char *pool;
	size_t plen, pcap;
	unsigned long skipped;
};

static void pool_add(struct loaded *l, const char *s)
{
	size_t len = strlen(s) + 1;
	cw_grow((void **)&l->pool, &l->pcap, l->plen + len, 1);
	memcpy(l->pool + l->plen, s, len);
	l->plen += len;
}

static void keep(const struct cw_rec *rec, void *arg)
{
	struct loaded *l = arg;
	struct cw_close c;
	if (!cw_wire_close_from_rec(rec, &c)) {
		if (strcmp(rec->call, "drain") && strcmp(rec->call, "shutdown"))
			inc(&l->skipped);
		return;
	}
	c.text = l->plen;
	const char *strs[S_COUNT] = {rec->ts, rec->call, rec->local, rec->peer, rec->state,
				     rec->verdict, rec->action};
	for (int k = 0; k < S_COUNT; k++)
		pool_add(l, strs[k]);
	cw_grow((void **)&l->cl, &l->cap, l->n, sizeof(*l->cl));
	l->cl[l->n++] = c;
}

/* String k of close c. */
static const char *str(const struct loaded *l, const struct cw_close *c, int k)
{
	const char *s = l->pool + c->text;
	for (int i = 0; i < k; i++)
		s += strlen(s) + 1;
	return s;
}

static void row_label(const struct loaded *l, const struct cw_close *c, char *buf, size_t cap)
{
	const char *v = str(l, c, S_VERDICT);
	if (c->reason == CW_NC_UNIX)
		snprintf(buf, cap, "%s (unix)", v);
	else if (c->listener && strcmp(v, "rst_backlog"))
		snprintf(buf, cap, "%s (listener)", v);
	else if (c->drained)
		snprintf(buf, cap, "%s (drained%s)", v, c->shut_before ? ", after shutdown" : "");
	else if (c->shut_before)
		snprintf(buf, cap, "%s (after shutdown)", v);
	else
		snprintf(buf, cap, "%s", v);
}

static void describe(FILE *f, const struct loaded *l, const struct cw_close *c,
		     const struct cw_wire_result *r)
{
	fprintf(f, "  %s pid %ld %s fd %ld %s -> %s state %s recvq %llu sendq %llu backlog %llu: "
		"verdict %s, expected %s, saw ", str(l, c, S_TS), c->pid, str(l, c, S_CALL), c->fd,
		str(l, c, S_LOCAL), str(l, c, S_PEER),
		str(l, c, S_STATE)[0] ? str(l, c, S_STATE) : "?", (unsigned long long)c->recvq,
		(unsigned long long)c->sendq, (unsigned long long)c->backlog, str(l, c, S_VERDICT),
		cw_expect_name(c->expect));
	if (c->listener)
		fprintf(f, "%u RST%s", r->rsts, r->rsts == 1 ? "" : "s");
	else
		fputs(r->observed == CW_OBS_NONE ? "nothing" : cw_observed_names[r->observed], f);
	if (r->t_obs)
		fprintf(f, " (%+.6fs)", r->t_obs - c->t);
	fputc('\n', f);
}

struct totals {
	unsigned long checked, wrong, late, notchk, reason[CW_NC_COUNT];
};

static struct totals totals_of(const struct cw_wire_result *res, size_t n)
{
	struct totals t;
	memset(&t, 0, sizeof(t));
	for (size_t i = 0; i < n; i++) {
		if (res[i].reason == CW_CHECKED) {
			inc(&t.checked);
			if (!res[i].match)
				inc(&t.wrong);
		} else {
			inc(&t.notchk);
			inc(&t.reason[res[i].reason]);
		}
		if (res[i].late_rst)
			inc(&t.late);
	}
	return t;
}

struct capture {
	const char *path;
	struct cw_capinfo info;
	size_t tcp;
	const char *why;          /* libpcap's message when truncated */
};

static void print_json(const struct loaded *l, const struct cw_wire_result *res,
		       const struct capture *cap, unsigned long malformed)
{
	struct totals tot = totals_of(res, l->n);
	printf("{\"total\":%zu,\"checked\":%lu,\"matched\":%lu,\"mismatches\":%lu,\"late_rst\":%lu,"
	       "\"not_checked\":%lu,\"not_checked_by_reason\":{",
	       l->n, tot.checked, tot.checked - tot.wrong, tot.wrong, tot.late, tot.notchk);
	for (int k = 1; k < CW_NC_COUNT; k++)
		printf("%s\"%s\":%lu", k > 1 ? "," : "", cw_unchecked_keys[k], tot.reason[k]);
	printf("},\"not_captured\":%lu,\"skipped\":%lu,\"malformed\":%lu,"
	       "\"capture\":{\"frames\":%zu,\"tcp_packets\":%zu,\"truncated\":%s,\"snap_cut\":%lu},"
	       "\"closes\":[",
	       tot.reason[CW_NC_NOT_IN_CAPTURE], l->skipped, malformed, cap->info.frames, cap->tcp,
	       cap->info.truncated ? "true" : "false", cap->info.snapcut);
	for (size_t i = 0; i < l->n; i++) {
		const struct cw_close *c = &l->cl[i];
		const struct cw_wire_result *r = &res[i];
		printf("%s{\"ts\":", i ? "," : "");
		cw_json_str(stdout, str(l, c, S_TS));
		printf(",\"pid\":%ld,\"call\":", c->pid);
		cw_json_str(stdout, str(l, c, S_CALL));
		printf(",\"fd\":%ld,\"local\":", c->fd);
		cw_json_str(stdout, str(l, c, S_LOCAL));
		fputs(",\"peer\":", stdout);
		cw_json_str(stdout, str(l, c, S_PEER));
		fputs(",\"state\":", stdout);
		cw_json_str(stdout, str(l, c, S_STATE));
		fputs(",\"verdict\":", stdout);
		cw_json_str(stdout, str(l, c, S_VERDICT));
		fputs(",\"action\":", stdout);
		cw_json_str(stdout, str(l, c, S_ACTION));
		if (r->t_obs)
			printf(",\"dt\":%.6f", r->t_obs - c->t);
		printf(",\"listener\":%s,\"after_shutdown\":%s,\"expected\":\"%s\",\"observed\":\"%s\","
		       "\"rsts\":%u,\"late_rst\":%s,\"checked\":%s,\"not_checked\":",
		       c->listener ? "true" : "false", c->shut_before ? "true" : "false",
		       cw_expect_name(c->expect), cw_observed_names[r->observed], r->rsts,
		       r->late_rst ? "true" : "false", r->reason == CW_CHECKED ? "true" : "false");
		if (r->reason == CW_CHECKED)
			printf("null,\"match\":%s}", r->match ? "true" : "false");
		else
			printf("\"%s\",\"match\":null}", cw_unchecked_keys[r->reason]);
	}
	printf("]}\n");
}

/* Rows of the confusion table: few (verdict × listener/drained/after shutdown/unix). */
#define MAXROWS 64

static void print_text(const struct loaded *l, const struct cw_wire_result *res,
		       const struct capture *cap, unsigned long malformed)
{
	char labels[MAXROWS][64];
	unsigned long cnt[MAXROWS][CW_OBS_COUNT + 1];
	int expect[MAXROWS];
	size_t nl = 0;
	memset(cnt, 0, sizeof(cnt));
	/* rows: distinct labels in verdict order, then in order of appearance */
	for (int pass = 0; cw_wire_verdicts[pass]; pass++) {
		for (size_t i = 0; i < l->n; i++) {
			const struct cw_close *c = &l->cl[i];
			if (c->verdict != pass)
				continue;
			char lab[64];
			row_label(l, c, lab, sizeof(lab));
			size_t j;
			for (j = 0; j < nl && strcmp(labels[j], lab); j++)
				;
			if (j == nl) {
				if (nl == MAXROWS) /* cannot happen with the known verdicts */
					continue;
				snprintf(labels[nl], sizeof(labels[nl]), "%s", lab);
				expect[nl++] = c->expect;
			}
			inc(&cnt[j][res[i].observed]);
			if (res[i].late_rst)
				inc(&cnt[j][CW_OBS_COUNT]);
		}
	}
	struct totals tot = totals_of(res, l->n);
	printf("%zu close%s: %lu checked, %lu as predicted, %lu wrong, %lu late RST%s; %lu not checked",
	       l->n, l->n == 1 ? "" : "s", tot.checked, tot.checked - tot.wrong, tot.wrong, tot.late,
	       tot.late == 1 ? "" : "s", tot.notchk);
	const char *sep = " (";
	for (int k = 1; k < CW_NC_COUNT; k++)
		if (tot.reason[k]) {
			printf("%s%lu %s", sep, tot.reason[k], cw_unchecked_names[k]);
			sep = ", ";
		}
	printf("%s; %lu skipped (shared, unknown verdict); %lu malformed log line%s\n",
	       *sep == ',' ? ")" : "", l->skipped, malformed, malformed == 1 ? "" : "s");
	printf("capture %s: %zu TCP packet%s in %zu frame%s", cap->path, cap->tcp,
	       cap->tcp == 1 ? "" : "s", cap->info.frames, cap->info.frames == 1 ? "" : "s");
	if (cap->info.snapcut)
		printf("; %lu frame%s cut by the snap length before the TCP header", cap->info.snapcut,
		       cap->info.snapcut == 1 ? "" : "s");
	putchar('\n');
	if (cap->info.truncated)
		printf("capture truncated: the file ends in the middle of a packet (%s); closes after "
		       "its last packet are not checked\n", cap->why);
	if (!tot.checked)
		printf("nothing could be checked: no close has its connection and its time in the "
		       "capture\n");
	putchar('\n');
	struct cw_table t;
	cw_table_init(&t, "llrrrrrr", "predicted", "expects", "FIN", "RST", "RST*", "none",
		      "not checked", "late RST");
	for (size_t j = 0; j < nl; j++) {
		char c[CW_OBS_COUNT + 1][24];
		for (int k = 0; k <= CW_OBS_COUNT; k++)
			snprintf(c[k], sizeof(c[k]), "%lu", cnt[j][k]);
		cw_table_row(&t, labels[j], cw_expect_name(expect[j]), c[CW_OBS_FIN], c[CW_OBS_RST],
			     c[CW_OBS_RST_COUNT], c[CW_OBS_NONE], c[CW_OBS_NOT_CHECKED], c[CW_OBS_COUNT]);
	}
	cw_table_print(&t, stdout, 0);
	printf("(observed: first FIN or RST sent by the closing side after the close, a FIN sent by "
	       "a shutdown before it not counted; RST* = RSTs, but not one per queued connection; "
	       "late RST = RST after the FIN: the peer kept sending after the close)\n");
	if (tot.wrong) {
		printf("\nmismatches:\n");
		for (size_t i = 0; i < l->n; i++)
			if (res[i].reason == CW_CHECKED && !res[i].match)
				describe(stdout, l, &l->cl[i], &res[i]);
	}
	if (tot.late) {
		printf("\nlate RSTs (peer data arrived after the close):\n");
		for (size_t i = 0; i < l->n; i++) {
			const struct cw_close *c = &l->cl[i];
			if (!res[i].late_rst)
				continue;
			printf("  %s pid %ld %s fd %ld %s -> %s verdict %s: ", str(l, c, S_TS), c->pid,
			       str(l, c, S_CALL), c->fd, str(l, c, S_LOCAL), str(l, c, S_PEER),
			       str(l, c, S_VERDICT));
			if (res[i].t_obs)
				printf("FIN %+.6fs, ", res[i].t_obs - c->t);
			else
				printf("FIN before (shutdown), ");
			printf("RST %+.6fs\n", res[i].t_late - c->t);
		}
	}
}

static void usage(FILE *f)
{
	fputs("usage: closewatch wire [--json] [--skew MS] LOG... PCAP\n"
	      "For each TCP close in the logs (text or JSON), find its connection in the capture\n"
	      "by 4-tuple and time, and compare the verdict's prediction with the first FIN or RST\n"
	      "the closing side sent after it (after a shutdown(SHUT_WR), whose FIN is not the\n"
	      "close's: the RST, if any). Prints a confusion table (predicted x observed), the\n"
	      "mismatches and the late RSTs (RST after our FIN: the peer kept sending).\n"
	      "A close is checked (as predicted or wrong) or not checked, with the reason: not in\n"
	      "the capture, unnamed peer, unix socket, capture started after, capture ended\n"
	      "before, capture truncated (file cut mid-packet, frames cut by the snap length).\n"
	      "  --json     one JSON object instead of the table\n"
	      "  --skew MS  how far a packet may precede the record's timestamp (default 50)\n"
	      "Exit status: 0 every checked close as predicted and at least one checked,\n"
	      "1 at least one prediction wrong, 2 usage or file error, 3 nothing could be checked.\n",
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
	struct loaded l;
	memset(&l, 0, sizeof(l));
	struct cw_logstats st;
	memset(&st, 0, sizeof(st));
	for (int k = i; k < argc - 1; k++) {
		if (cw_log_read_file(argv[k], 0, keep, &l, &st) != 0) {
			cw_err("cannot read log %s: %s", argv[k], strerror(errno));
			free(l.cl);
			free(l.pool);
			return 2;
		}
	}
	struct cw_pkt *pkts;
	struct capture cap = {.path = pcap};
	char err[600] = "";
	if (cw_pcap_read(pcap, &pkts, &cap.tcp, &cap.info, err, sizeof(err)) != 0) {
		cw_err("%s", err);
		free(l.cl);
		free(l.pool);
		return 2;
	}
	cap.why = err;
	struct cw_wire_result *res = cw_xcalloc(l.n + 1, sizeof(*res));
	cw_wire_match(l.cl, l.n, pkts, cap.tcp, &cap.info, skew, res);
	free(pkts);
	if (json)
		print_json(&l, res, &cap, st.malformed);
	else
		print_text(&l, res, &cap, st.malformed);
	if (cap.info.truncated)
		cw_err("warning: capture %s is truncated (%s); closes after its last packet are not "
		       "checked", pcap, err);
	struct totals tot = totals_of(res, l.n);
	free(res);
	free(l.cl);
	free(l.pool);
	fflush(stdout);
	if (tot.wrong)
		return 1;
	if (!tot.checked) {
		cw_err("nothing could be checked (%lu close%s, none with its connection and time in "
		       "the capture)", (unsigned long)l.n, l.n == 1 ? "" : "s");
		return 3;
	}
	return 0;
}
