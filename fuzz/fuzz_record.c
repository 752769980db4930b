/* Fuzz harness: the record writer of the shim (core/record.c,
 * cw_record_format) against the parser of the CLI (tools/logparse.c): every
 * record the shim can write must come back from the parser with the same
 * values, in both formats.
 *
 * Input: bytes consumed in order to fill one event (numbers within what the
 * kernel can report; strings of any bytes but NUL). Checks: the line is at
 * most CW_LINE_MAX bytes, one line ending in '\n'; the parser returns a record
 * and every field compares equal (JSON keeps well-formed UTF-8 and carries
 * other bytes >= 0x7f as \u00XX, which read back as their UTF-8 encoding:
 * compared that way). */
#include "fuzz.h"
#include "logparse.h"
#include "ident.h"
#include "record.h"

#include <string.h>
#include <sys/socket.h>

struct in {
	const uint8_t *p, *end;
};

static uint64_t take(struct in *in, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v = v << 8 | (in->p < in->end ? *in->p++ : 0);
	return v;
}

/* A string of up to max-1 bytes, no NUL: length byte, then bytes. */
static void take_str(struct in *in, char *out, size_t max)
{
	size_t n = (size_t)take(in, 1) % max;
	size_t k = 0;
	for (size_t i = 0; i < n && in->p < in->end; i++) {
		uint8_t c = *in->p++;
		if (c)
			out[k++] = (char)c;
	}
	out[k] = 0;
}

/* The oracle for JSON's UTF-8 rule, written apart from record.c's: decode
 * the sequence at p and say how long it is when it is well-formed (shortest
 * form, not a surrogate, at most U+10FFFF), else 0; *cp gets the code point. */
static size_t utf8_decode(const unsigned char *p, unsigned *cp)
{
	size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 0;
	if (!n || *p > 0xf7)
		return 0;
	unsigned v = *p & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3f);
	}
	static const unsigned least[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (v < least[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* What the parser should give back for a string the writer wrote: JSON
 * keeps well-formed UTF-8 (a C1 control comes back as itself through its
 * \u0080..\u009f escape) and carries any other byte >= 0x80 as \u00XX, which
 * reads back as that code point's UTF-8. */
static void expected(const char *s, int json, char *out, size_t cap)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && n + 5 < cap; p++) {
		unsigned cp;
		size_t seq = json && *p >= 0x80 ? utf8_decode(p, &cp) : 0;
		if (seq) {
			memcpy(out + n, p, seq);
			n += seq;
			p += seq - 1;
		} else if (json && *p >= 0x80) {
			out[n++] = (char)(0xc0 | *p >> 6);
			out[n++] = (char)(0x80 | (*p & 0x3f));
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = 0;
}

#define SAME_STR(got, want, json)                                                      \
	do {                                                                           \
		char exp_[1024];                                                       \
		expected((want), (json), exp_, sizeof exp_);                           \
		if (strcmp((got), exp_)) {                                             \
			fprintf(stderr, "field %s: wrote \"%s\", read \"%s\"\n", #got, exp_, (got)); \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Bytes the writer needs for s (escaped; text: quoted unless plain). */
static size_t escaped_len(const char *s, int json)
{
	size_t n = 0;
	int plain = !json && *s;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned cp;
		size_t seq = json && *p >= 0x80 ? utf8_decode(p, &cp) : 0;
		if (seq) {
			n += cp <= 0x9f ? 6 : seq;
			p += seq - 1;
			continue;
		}
		if (*p < 0x20 || *p >= 0x7f)
			n += json ? 6 : 4;
		else if (*p == '"' || *p == '\\')
			n += 2;
		else
			n += 1;
		if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '=')
			plain = 0;
	}
	return plain ? strlen(s) : n;
}

/* exe is cut at 1536 written bytes (record.c, CW_EXE_OUT): what is read back
 * is then a prefix of it, and the whole of it when it fitted. */
static void same_exe(const char *got, const char *want, int json)
{
	static char exp_[CW_REC_EXE + 8];
	expected(want, json, exp_, sizeof exp_);
	size_t n = strlen(got);
	int fits = escaped_len(want, json) <= 1536;
	if ((fits && strcmp(got, exp_)) || strncmp(got, exp_, n) || (!fits && n >= strlen(exp_))) {
		fprintf(stderr, "exe: wrote \"%s\", read \"%s\"\n", exp_, got);
		abort();
	}
}

static void check(const struct cw_event *ev, int json)
{
	char line[CW_LINE_MAX + 64];
	memset(line, 0x55, sizeof line);
	size_t n = cw_record_format(line, sizeof line, ev, json);
	FUZZ_CHECK(n > 0 && n <= CW_LINE_MAX);
	FUZZ_CHECK(line[n] == 0 && line[n - 1] == '\n');
	FUZZ_CHECK(memchr(line, '\n', n - 1) == NULL);

	struct cw_rec *r = malloc(sizeof *r);
	if (!r)
		abort();
	/* exact-size copy without the newline and without a NUL */
	char *copy = malloc(n);
	memcpy(copy, line, n - 1);
	int rc = cw_log_parse_line(copy, n - 1, r);
	if (rc != CW_LINE_RECORD) {
		fprintf(stderr, "not parsed back (%d): %s", rc, line);
		abort();
	}
	const struct closewatch_record *c = &ev->rec;
	char ts[40];
	cw_format_time(ts, &ev->ts);
	SAME_STR(r->ts, ts, json);
	FUZZ_CHECK(r->pid == ev->pid && r->tid == ev->tid);
	SAME_STR(r->comm, ev->comm, json);
	SAME_STR(r->host, ev->host, json);
	same_exe(r->exe, ev->exe, json);
	SAME_STR(r->call, cw_call_name(ev->call), json);
	FUZZ_CHECK(r->fd == c->fd);
	SAME_STR(r->proto, c->proto == CLOSEWATCH_PROTO_UNIX ? "unix" : "tcp", json);
	SAME_STR(r->local, c->local[0] ? c->local : "unnamed", json);
	SAME_STR(r->peer, c->peer[0] ? c->peer : "unnamed", json);
	SAME_STR(r->state, closewatch_state_name(c->proto, c->state), json);
	FUZZ_CHECK(r->recvq == c->recvq && r->sendq == c->sendq && r->unsent == c->unsent);
	FUZZ_CHECK(r->backlog == c->backlog && r->lost == c->lost);
	FUZZ_CHECK(r->linger == (c->linger < 0 ? -1 : c->linger));
	SAME_STR(r->verdict, closewatch_verdict_name(c->verdict), json);
	SAME_STR(r->action, cw_action_name(ev->action), json);
	if (ev->call == CW_CALL_SHUTDOWN)
		SAME_STR(r->how, ev->how == SHUT_RD ? "rd" : ev->how == SHUT_WR ? "wr" : "rdwr", json);
	if (ev->call == CW_CALL_DRAIN) {
		SAME_STR(r->result, cw_drain_result_name(ev->drain_result), json);
		FUZZ_CHECK(r->discarded == ev->discarded && r->waited_ms == ev->waited_ms);
	}
	/* Frames: a prefix of them (the rest did not fit in the line), in order.
	 * A frame with a newline cannot be told apart in the parser's
	 * '\n'-joined list; fuzz_logparse checks that list on its own. */
	for (int i = 0; i < ev->nframes; i++)
		if (strchr(ev->frames[i], '\n'))
			goto done;
	FUZZ_CHECK(r->nbt <= ev->nframes);
	const char *f = r->bt;
	for (int i = 0; i < r->nbt; i++) {
		const char *e = strchr(f, '\n');
		size_t len = e ? (size_t)(e - f) : strlen(f);
		char got[CW_FRAME_TEXT * 2 + 8];
		FUZZ_CHECK(len < sizeof got);
		memcpy(got, f, len);
		got[len] = 0;
		SAME_STR(got, ev->frames[i], json);
		f += len + (e ? 1 : 0);
	}
	if (ev->nframes && n < CW_LINE_MAX - CW_FRAME_TEXT * 6 - 16)
		FUZZ_CHECK(r->nbt == ev->nframes); /* frames are dropped only when the line is full */
done:
	free(copy);
	free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, data + size};
	struct cw_event *ev = calloc(1, sizeof *ev);
	if (!ev)
		abort();
	struct closewatch_record *c = &ev->rec;
	ev->call = (int)(take(&in, 1) % (CW_CALL_DRAIN + 1));
	ev->how = (int)(take(&in, 1) % 3);
	ev->action = (int)(take(&in, 1) % (CW_ACTION_DRAIN_SKIPPED + 1));
	ev->drain_result = (int)(take(&in, 1) % (CW_DRAIN_PEER_RESET + 1));
	/* 1970 to 9999: what an RFC 3339 year can say */
	ev->ts.tv_sec = (time_t)(take(&in, 5) % 253402300800ULL);
	ev->ts.tv_nsec = (long)(take(&in, 4) % 1000000000UL);
	ev->pid = (pid_t)(take(&in, 4) & 0x3fffffff);
	ev->tid = (pid_t)(take(&in, 4) & 0x3fffffff);
	take_str(&in, ev->comm, sizeof ev->comm);
	c->fd = (int)(take(&in, 4) & 0x7fffffff);
	c->proto = take(&in, 1) & 1 ? CLOSEWATCH_PROTO_UNIX : CLOSEWATCH_PROTO_TCP;
	c->state = (int)(take(&in, 1) % 104);
	c->linger = (int)take(&in, 2) - 1; /* -1 = off */
	/* ioctl and TCP_INFO report ints / u32 */
	c->recvq = take(&in, 4) & 0x7fffffff;
	c->sendq = take(&in, 4) & 0x7fffffff;
	c->unsent = take(&in, 4) & 0x7fffffff;
	c->backlog = (uint32_t)take(&in, 4);
	c->lost = c->recvq + c->sendq;
	c->verdict = (int)(take(&in, 1) % (CLOSEWATCH_VERDICT_COUNT + 1));
	take_str(&in, c->local, sizeof c->local);
	take_str(&in, c->peer, sizeof c->peer);
	ev->discarded = take(&in, 5);
	ev->waited_ms = take(&in, 4);
	ev->nframes = (int)(take(&in, 1) % (CW_BT_LIMIT + 1));
	for (int i = 0; i < ev->nframes; i++) {
		take_str(&in, ev->frames[i], CW_FRAME_TEXT);
		if (!ev->frames[i][0]) /* the shim's frames are never empty */
			strcpy(ev->frames[i], "?");
	}
	/* last, so that older corpus entries keep their meaning */
	char host[65], exe[CW_EXE_MAX];
	take_str(&in, host, sizeof host);
	/* a path: up to CW_EXE_MAX - 1 bytes, its length in two bytes */
	size_t elen = (size_t)(take(&in, 2) % CW_EXE_MAX), k = 0;
	for (size_t i = 0; i < elen && in.p < in.end; i++)
		if (*in.p++)
			exe[k++] = (char)in.p[-1];
	exe[k] = 0;
	ev->host = host;
	ev->exe = exe;
	check(ev, 1);
	check(ev, 0);
	free(ev);
	return 0;
}
