/* Parsing one closewatch log line, text or JSON, into struct cw_rec. */
#include "logparse.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Which fields a line carried. */
enum {
	H_TS = 1 << 0, H_PID = 1 << 1, H_CALL = 1 << 2, H_FD = 1 << 3, H_PROTO = 1 << 4,
	H_LOCAL = 1 << 5, H_PEER = 1 << 6, H_VERDICT = 1 << 7, H_LOST = 1 << 8,
	H_ACTION = 1 << 9, H_RESULT = 1 << 10,
};

/* A journal entry's MESSAGE holds one record line: the shim's 4096 bytes,
 * with room to spare; a longer one is not ours. */
#define MSG_MAX 8192

struct parser {
	const char *p, *end;
	struct cw_rec *r;
	unsigned have;
	int bad;
	char *msg;       /* non-NULL: keep a journal entry's MESSAGE here (MSG_MAX bytes) */
	long msg_len;    /* -1: no MESSAGE */
	char jhost[256]; /* its _HOSTNAME */
};

static int known(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return 1;
	return 0;
}

static const char *const calls[] = {"close", "shutdown", "close_range", "closefrom", "dup2",
				     "dup3", "fclose", "exit", "drain", NULL};
static const char *const actions[] = {"none", "warned", "drained", "drain_skipped", NULL};
static const char *const risky[] = {"rst_unread", "rst_linger0", "rst_backlog", NULL};

int cw_verdict_risky(const char *verdict)
{
	return known(verdict, risky);
}

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int cw_parse_rfc3339(const char *s, double *out)
{
	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return -1;
	int Y = digits(s, 4), M = digits(s + 5, 2), D = digits(s + 8, 2);
	int h = digits(s + 11, 2), m = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (Y < 0 || M < 0 || D < 0 || h < 0 || m < 0 || sec < 0)
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
		return -1;
	const char *p = s + 19;
	double frac = 0, scale = 0.1;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	long off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		if (strlen(p) != 6 || p[3] != ':')
			return -1;
		int oh = digits(p + 1, 2), om = digits(p + 4, 2);
		if (oh < 0 || om < 0 || oh > 23 || om > 59)
			return -1;
		off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	*out = (double)(t - off) + frac;
	return 0;
}

static int copy_str(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return -1;
	memcpy(dst, s, n);
	dst[n] = 0;
	return 0;
}

/* s into dst, cut to fit. */
static void copy_cut(char *dst, size_t cap, const char *s)
{
	size_t n = strnlen(s, cap - 1);
	memcpy(dst, s, n);
	dst[n] = 0;
}

static int parse_i64(const char *s, int allow_neg, long long *out)
{
	const char *p = s;
	int neg = 0;
	if (*p == '-' && allow_neg) {
		neg = 1;
		p++;
	}
	if (*p < '0' || *p > '9')
		return -1;
	unsigned long long v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (~0ULL >> 2) / 10)
			return -1;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (*p)
		return -1;
	*out = neg ? -(long long)v : (long long)v;
	return 0;
}

static void add_frame(struct parser *ps, const char *s, size_t n)
{
	struct cw_rec *r = ps->r;
	size_t used = strlen(r->bt);
	size_t need = n + (used ? 1 : 0);
	if (used + need >= sizeof(r->bt)) {
		ps->bad = 1;
		return;
	}
	if (used)
		r->bt[used++] = '\n';
	/* Frames are joined by '\n': one inside a frame (an escaped newline in an
	 * object's path) would split it in two. */
	for (size_t i = 0; i < n; i++)
		r->bt[used + i] = s[i] == '\n' ? '?' : s[i];
	r->bt[used + n] = 0;
	r->nbt++;
}

/* Store one field. val is NUL-terminated; is_num: it came as a JSON number. */
static void set_field(struct parser *ps, const char *key, const char *val, size_t n, int is_num)
{
	struct cw_rec *r = ps->r;
	struct { const char *k; char *dst; size_t cap; unsigned bit; } strs[] = {
		{"ts", r->ts, sizeof(r->ts), H_TS}, {"comm", r->comm, sizeof(r->comm), 0},
		{"host", r->host, sizeof(r->host), 0}, {"exe", r->exe, sizeof(r->exe), 0},
		{"call", r->call, sizeof(r->call), H_CALL}, {"how", r->how, sizeof(r->how), 0},
		{"proto", r->proto, sizeof(r->proto), H_PROTO},
		{"local", r->local, sizeof(r->local), H_LOCAL},
		{"peer", r->peer, sizeof(r->peer), H_PEER}, {"state", r->state, sizeof(r->state), 0},
		{"verdict", r->verdict, sizeof(r->verdict), H_VERDICT},
		{"action", r->action, sizeof(r->action), H_ACTION},
		{"result", r->result, sizeof(r->result), H_RESULT},
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strcmp(key, strs[i].k))
			continue;
		if (is_num || copy_str(strs[i].dst, strs[i].cap, val, n) != 0)
			ps->bad = 1;
		ps->have |= strs[i].bit;
		return;
	}
	if (!strcmp(key, "linger") && !is_num && !strcmp(val, "off")) {
		r->linger = -1;
		return;
	}
	struct { const char *k; void *dst; int is_long; unsigned bit; } nums[] = {
		{"pid", &r->pid, 1, H_PID}, {"tid", &r->tid, 1, 0}, {"fd", &r->fd, 1, H_FD},
		{"linger", &r->linger, 1, 0}, {"recvq", &r->recvq, 0, 0},
		{"sendq", &r->sendq, 0, 0}, {"unsent", &r->unsent, 0, 0},
		{"backlog", &r->backlog, 0, 0}, {"lost", &r->lost, 0, H_LOST},
		{"discarded", &r->discarded, 0, 0}, {"waited_ms", &r->waited_ms, 0, 0},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (strcmp(key, nums[i].k))
			continue;
		long long v;
		if (parse_i64(val, nums[i].is_long, &v) != 0) {
			ps->bad = 1;
			return;
		}
		if (nums[i].is_long)
			*(long *)nums[i].dst = (long)v;
		else
			*(uint64_t *)nums[i].dst = (uint64_t)v;
		ps->have |= nums[i].bit;
		return;
	}
	/* unknown keys are ignored: the format may grow */
}

/* ------------------------------------------------------------------ JSON */

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r'))
		ps->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) { o[0] = (char)cp; return 1; }
	if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A JSON string at ps->p (on the quote) into out (cap bytes). Returns its length or -1. */
static long json_string(struct parser *ps, char *out, size_t cap)
{
	if (ps->p >= ps->end || *ps->p != '"')
		return -1;
	ps->p++;
	size_t n = 0;
	while (ps->p < ps->end) {
		unsigned char c = (unsigned char)*ps->p++;
		if (c == '"') {
			out[n] = 0;
			return (long)n;
		}
		if (c < 0x20)
			return -1;
		if (n + 5 >= cap)
			return -1;
		if (c != '\\') {
			out[n++] = (char)c;
			continue;
		}
		if (ps->p >= ps->end)
			return -1;
		char e = *ps->p++;
		switch (e) {
		case '"': case '\\': case '/': out[n++] = e; break;
		case 'b': out[n++] = '\b'; break;
		case 'f': out[n++] = '\f'; break;
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'u': {
			if (ps->end - ps->p < 4)
				return -1;
			unsigned cp = 0;
			for (int i = 0; i < 4; i++) {
				int h = hexval(ps->p[i]);
				if (h < 0)
					return -1;
				cp = cp << 4 | (unsigned)h;
			}
			ps->p += 4;
			if (cp == 0)
				return -1; /* would cut the C string */
			n += put_utf8(out + n, cp);
			break;
		}
		default:
			return -1;
		}
	}
	return -1;
}

/* A JSON number token into out. */
static long json_number(struct parser *ps, char *out, size_t cap)
{
	const char *s = ps->p;
	while (ps->p < ps->end && strchr("+-0123456789.eE", *ps->p))
		ps->p++;
	size_t n = (size_t)(ps->p - s);
	if (n == 0 || n >= cap)
		return -1;
	memcpy(out, s, n);
	out[n] = 0;
	return (long)n;
}

static int json_skip_value(struct parser *ps, int depth);

static int json_skip_container(struct parser *ps, int depth, char close)
{
	char tmp[CW_REC_BT];
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			if (json_string(ps, tmp, sizeof(tmp)) < 0)
				return -1;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p++ != ':')
				return -1;
		}
		if (json_skip_value(ps, depth + 1) != 0)
			return -1;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return -1;
		char c = *ps->p++;
		if (c == close)
			return 0;
		if (c != ',')
			return -1;
		skip_ws(ps);
	}
}

static int json_skip_value(struct parser *ps, int depth)
{
	char tmp[CW_REC_BT];
	skip_ws(ps);
	if (ps->p >= ps->end || depth > 8)
		return -1;
	switch (*ps->p) {
	case '"': return json_string(ps, tmp, sizeof(tmp)) < 0 ? -1 : 0;
	case '{': return json_skip_container(ps, depth, '}');
	case '[': return json_skip_container(ps, depth, ']');
	}
	static const char *const words[] = {"true", "false", "null"};
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(words[i]);
		if ((size_t)(ps->end - ps->p) >= n && !memcmp(ps->p, words[i], n)) {
			ps->p += n;
			return 0;
		}
	}
	return json_number(ps, tmp, sizeof(tmp)) < 0 ? -1 : 0;
}

static int json_bt(struct parser *ps)
{
	char tmp[CW_REC_BT];
	ps->p++; /* [ */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (int i = 0; i < 256; i++) {
		skip_ws(ps);
		long n = json_string(ps, tmp, sizeof(tmp));
		if (n < 0)
			return -1;
		add_frame(ps, tmp, (size_t)n);
		skip_ws(ps);
		if (ps->p >= ps->end)
			return -1;
		char c = *ps->p++;
		if (c == ']')
			return 0;
		if (c != ',')
			return -1;
	}
	return -1;
}

/* A journal entry's MESSAGE: a string, or (journalctl's way to show bytes
 * that are not UTF-8) an array of byte values. */
static int json_message(struct parser *ps)
{
	if (*ps->p == '"') {
		ps->msg_len = json_string(ps, ps->msg, MSG_MAX);
		return ps->msg_len < 0 ? -1 : 0;
	}
	if (*ps->p != '[')
		return json_skip_value(ps, 1); /* null, or a field with several values */
	ps->p++;
	size_t n = 0;
	for (;;) {
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ']' && n == 0) {
			ps->p++;
			break;
		}
		char num[8];
		long long v;
		if (json_number(ps, num, sizeof(num)) < 0 || parse_i64(num, 0, &v) != 0 || v > 255 ||
		    n + 1 >= MSG_MAX)
			return -1;
		ps->msg[n++] = (char)v;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return -1;
		char c = *ps->p++;
		if (c == ']')
			break;
		if (c != ',')
			return -1;
	}
	ps->msg[n] = 0;
	ps->msg_len = (long)n;
	return 0;
}

static int parse_json(struct parser *ps)
{
	char key[64], val[CW_REC_BT];
	ps->p++; /* { */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		goto done;
	}
	for (int fields = 0; fields < 256; fields++) {
		skip_ws(ps);
		if (json_string(ps, key, sizeof(key)) < 0)
			return -1;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p++ != ':')
			return -1;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return -1;
		if (ps->msg && !strcmp(key, "MESSAGE")) {
			if (json_message(ps) != 0)
				return -1;
		} else if (ps->msg && !strcmp(key, "_HOSTNAME") && *ps->p == '"') {
			long n = json_string(ps, val, sizeof(val));
			if (n < 0)
				return -1;
			copy_cut(ps->jhost, sizeof(ps->jhost), val);
		} else if (*ps->p == '"') {
			long n = json_string(ps, val, sizeof(val));
			if (n < 0)
				return -1;
			set_field(ps, key, val, (size_t)n, 0);
		} else if (*ps->p == '[' && !strcmp(key, "bt")) {
			if (json_bt(ps) != 0)
				return -1;
		} else if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
			long n = json_number(ps, val, sizeof(val));
			if (n < 0)
				return -1;
			set_field(ps, key, val, (size_t)n, 1);
		} else if (json_skip_value(ps, 1) != 0) {
			return -1;
		}
		skip_ws(ps);
		if (ps->p >= ps->end)
			return -1;
		char c = *ps->p++;
		if (c == '}')
			goto done;
		if (c != ',')
			return -1;
	}
	return -1;
done:
	skip_ws(ps);
	return ps->p == ps->end ? 0 : -1;
}

/* ------------------------------------------------------------------ text */

/* A value: bare up to a space, or "quoted" with backslash escapes. split:
 * an unescaped '|' (the writer's frame separator) becomes a NUL, which no
 * escape can produce, so that bt is split before it is unescaped. */
static long text_value(struct parser *ps, char *out, size_t cap, int split)
{
	size_t n = 0;
	if (ps->p < ps->end && *ps->p == '"') {
		ps->p++;
		while (ps->p < ps->end) {
			char c = *ps->p++;
			if (c == '"') {
				if (ps->p < ps->end && *ps->p != ' ' && *ps->p != '\t' && *ps->p != '\r')
					return -1;
				out[n] = 0;
				return (long)n;
			}
			if (n + 2 >= cap)
				return -1;
			if (c != '\\') {
				out[n++] = split && c == '|' ? 0 : c;
				continue;
			}
			if (ps->p >= ps->end)
				return -1;
			char e = *ps->p++;
			switch (e) {
			case 'n': out[n++] = '\n'; break;
			case 't': out[n++] = '\t'; break;
			case 'r': out[n++] = '\r'; break;
			case 'x': {
				if (ps->end - ps->p < 2 || hexval(ps->p[0]) < 0 || hexval(ps->p[1]) < 0)
					return -1;
				int v = hexval(ps->p[0]) * 16 + hexval(ps->p[1]);
				ps->p += 2;
				if (v == 0)
					return -1;
				out[n++] = (char)v;
				break;
			}
			default: out[n++] = e; break;
			}
		}
		return -1; /* unterminated quote: a truncated line */
	}
	while (ps->p < ps->end && *ps->p != ' ' && *ps->p != '\t' && *ps->p != '\r') {
		if (*ps->p == '"' || n + 1 >= cap)
			return -1;
		out[n++] = split && *ps->p == '|' ? 0 : *ps->p;
		ps->p++;
	}
	out[n] = 0;
	return (long)n;
}

static int parse_text(struct parser *ps)
{
	char key[64], val[CW_REC_BT];
	for (int fields = 0; fields < 256; fields++) {
		skip_ws(ps);
		if (ps->p >= ps->end)
			return 0;
		size_t k = 0;
		while (ps->p < ps->end && ((*ps->p >= 'a' && *ps->p <= 'z') || *ps->p == '_' ||
					   (*ps->p >= '0' && *ps->p <= '9'))) {
			if (k + 1 >= sizeof(key))
				return -1;
			key[k++] = *ps->p++;
		}
		key[k] = 0;
		if (k == 0 || ps->p >= ps->end || *ps->p++ != '=')
			return -1;
		int bt = !strcmp(key, "bt");
		long n = text_value(ps, val, sizeof(val), bt);
		if (n < 0)
			return -1;
		if (bt) {
			const char *s = val, *e = val + n;
			while (s < e) {
				const char *bar = memchr(s, 0, (size_t)(e - s));
				const char *stop = bar ? bar : e;
				add_frame(ps, s, (size_t)(stop - s));
				s = bar ? bar + 1 : e;
			}
		} else {
			set_field(ps, key, val, (size_t)n, 0);
		}
	}
	return -1;
}

/* ------------------------------------------------------------------ line */

static const char *find_text_start(const char *s, const char *end)
{
	static const char tag[] = "closewatch: ts=";
	size_t tl = sizeof(tag) - 1;
	for (const char *p = s; p + tl <= end; p++)
		if (*p == 'c' && !memcmp(p, tag, tl))
			return p + tl - 3; /* at "ts=" */
	return NULL;
}

/* A line that carries (part of) a closewatch record: the text tag, or a JSON
 * record's opening, as written or as escaped once more inside a journal
 * entry. A line with none of them that is no record is another program's. */
static int looks_ours(const char *s, const char *end)
{
	static const char *const marks[] = {"closewatch: ts=", "{\"ts\":", "{\\\"ts\\\":"};
	for (int i = 0; i < 3; i++)
		if (memmem(s, (size_t)(end - s), marks[i], strlen(marks[i])))
			return 1;
	return 0;
}

/* rsyslog's file formats: "Mmm dd hh:mm:ss HOST TAG: MSG" (traditional) and
 * "2026-12-02T02:20:18.123456+00:00 HOST TAG: MSG" (RFC 3339). On a match,
 * *msg points at MSG and host holds HOST. */
static int syslog_header(const char *s, const char *end, const char **msg, char *host, size_t cap)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *p;
	size_t n = (size_t)(end - s);
	if (n > 16 && s[3] == ' ' && s[6] == ' ' && s[9] == ':' && s[12] == ':' && s[15] == ' ' &&
	    (s[4] == ' ' || (s[4] >= '0' && s[4] <= '9')) && s[5] >= '0' && s[5] <= '9' &&
	    digits(s + 7, 2) >= 0 && digits(s + 10, 2) >= 0 && digits(s + 13, 2) >= 0) {
		int month = 0;
		for (int i = 0; i < 12 && !month; i++)
			if (!memcmp(s, months + 3 * i, 3))
				month = i + 1;
		if (!month)
			return 0;
		p = s + 16;
	} else {
		const char *sp = memchr(s, ' ', n);
		char ts[48];
		double t;
		if (!sp || (size_t)(sp - s) >= sizeof(ts))
			return 0;
		memcpy(ts, s, (size_t)(sp - s));
		ts[sp - s] = 0;
		if (cw_parse_rfc3339(ts, &t) != 0)
			return 0;
		p = sp + 1;
	}
	const char *h = p;
	while (p < end && *p != ' ')
		p++;
	if (p == h || p >= end || (size_t)(p - h) >= cap)
		return 0;
	memcpy(host, h, (size_t)(p - h));
	host[p - h] = 0;
	const char *tag = ++p;
	while (p < end && *p != ' ')
		p++;
	if (p == tag || p[-1] != ':')
		return 0;
	while (p < end && *p == ' ')
		p++;
	*msg = p;
	return 1;
}

/* A record's fields are checked here; framing (syslog header, journal entry)
 * is taken off first, at depth 0 only. */
static int parse_at(const char *line, size_t len, struct cw_rec *out, int depth)
{
	struct parser ps = {.p = line, .end = line + len, .r = out, .msg_len = -1};
	memset(out, 0, sizeof(*out));
	out->linger = -1;
	while (ps.end > ps.p && (ps.end[-1] == '\r' || ps.end[-1] == ' ' || ps.end[-1] == '\t'))
		ps.end--;
	skip_ws(&ps);
	if (ps.p == ps.end)
		return depth ? CW_LINE_OTHER : CW_LINE_BLANK; /* an empty message */
	if (memchr(ps.p, 0, (size_t)(ps.end - ps.p)))
		return CW_LINE_MALFORMED;
	const char *start = ps.p;
	int rc;
	if (*ps.p == '{') {
		char msg[MSG_MAX];
		if (!depth)
			ps.msg = msg;
		rc = parse_json(&ps);
		if (rc != 0)
			return looks_ours(start, ps.end) ? CW_LINE_MALFORMED : CW_LINE_OTHER;
		if (ps.msg_len >= 0 && !(ps.have & (H_TS | H_CALL))) { /* a journal entry */
			char jhost[sizeof(ps.jhost)];
			memcpy(jhost, ps.jhost, sizeof(jhost));
			rc = parse_at(msg, (size_t)ps.msg_len, out, depth + 1);
			if (rc == CW_LINE_RECORD && !out->host[0])
				copy_cut(out->host, sizeof(out->host), jhost);
			return rc;
		}
		if (!(ps.have & (H_TS | H_CALL)) && strncmp(start, "{\"ts\":", 6))
			return CW_LINE_OTHER; /* some other program's JSON */
	} else {
		const char *msg;
		char host[256];
		if (!depth && syslog_header(ps.p, ps.end, &msg, host, sizeof(host))) {
			rc = parse_at(msg, (size_t)(ps.end - msg), out, depth + 1);
			if (rc == CW_LINE_RECORD && !out->host[0])
				copy_cut(out->host, sizeof(out->host), host);
			return rc;
		}
		const char *t = find_text_start(ps.p, ps.end);
		if (!t)
			return CW_LINE_OTHER;
		ps.p = t;
		rc = parse_text(&ps);
	}
	if (rc != 0 || ps.bad)
		return CW_LINE_MALFORMED;
	unsigned need = H_TS | H_PID | H_CALL;
	if ((ps.have & need) != need || !known(out->call, calls))
		return CW_LINE_MALFORMED;
	if (!strcmp(out->call, "drain"))
		need |= H_RESULT;
	else
		need |= H_FD | H_PROTO | H_LOCAL | H_PEER | H_VERDICT | H_LOST | H_ACTION;
	if ((ps.have & need) != need)
		return CW_LINE_MALFORMED;
	if ((ps.have & H_ACTION) && !known(out->action, actions))
		return CW_LINE_MALFORMED;
	if (cw_parse_rfc3339(out->ts, &out->t) != 0)
		return CW_LINE_MALFORMED;
	return CW_LINE_RECORD;
}

int cw_log_parse_line(const char *line, size_t len, struct cw_rec *out)
{
	return parse_at(line, len, out, 0);
}
