/* Formatting records as text or JSON lines. Pure and async-signal-safe. */
#include "record.h"

#include <string.h>
#include <sys/socket.h>

const char *cw_call_name(int call)
{
	static const char *const names[] = {
		"close", "shutdown", "close_range", "closefrom", "dup2", "dup3", "fclose", "exit", "drain",
	};
	return call >= 0 && call <= CW_CALL_DRAIN ? names[call] : "unknown";
}

const char *cw_action_name(int action)
{
	static const char *const names[] = {"none", "warned", "drained", "drain_skipped"};
	return action >= 0 && action <= CW_ACTION_DRAIN_SKIPPED ? names[action] : "none";
}

const char *cw_drain_result_name(int result)
{
	static const char *const names[] = {"delivered", "timeout", "peer_reset"};
	return result >= 0 && result <= CW_DRAIN_PEER_RESET ? names[result] : "unknown";
}

/* ---- a bounded string builder -------------------------------------------- */

struct out {
	char *buf;
	size_t cap; /* usable bytes, one kept for the NUL */
	size_t len;
	int full;
};

static void raw(struct out *o, const char *s, size_t n)
{
	if (o->len + n >= o->cap) {
		o->full = 1;
		n = o->cap - 1 - o->len;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = 0;
}

static void str(struct out *o, const char *s)
{
	raw(o, s, strlen(s));
}

static void u64(struct out *o, uint64_t v)
{
	char tmp[24];
	int i = sizeof tmp;
	do
		tmp[--i] = (char)('0' + v % 10);
	while ((v /= 10) && i > 0);
	raw(o, tmp + i, sizeof tmp - (size_t)i);
}

static void i64(struct out *o, int64_t v)
{
	if (v < 0) {
		str(o, "-");
		u64(o, 0 - (uint64_t)v);
	} else {
		u64(o, (uint64_t)v);
	}
}

static const char hex[] = "0123456789abcdef";

/* Escaping shared by both formats: '"' and '\\' (and, in text bt frames, the
 * frame separator '|') get a backslash. JSON keeps well-formed UTF-8 as it
 * is (a path or comm in any script reads back unchanged) except the C1
 * controls U+0080..U+009F, which some terminals obey: those become \u0080..
 * \u009f, and so does, as \u00XX, every other byte outside printable ASCII
 * (the line is valid JSON and valid UTF-8 whatever the value holds; a byte of
 * broken UTF-8 reads back as the code point of its value). Text
 * writes \xNN for every such byte, which report reads back exactly. Runs that
 * need nothing go out in one copy. */
static void escaped_max(struct out *o, const char *s, int json, char also, size_t limit)
{
	size_t start = o->len;
	while (*s) {
		const char *run = s;
		while (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\' && *s != also)
			s++;
		if (s > run) {
			size_t n = (size_t)(s - run);
			if (o->len - start + n > limit)
				n = limit - (o->len - start); /* a cut value: the line stays valid */
			raw(o, run, n);
			if (o->len - start >= limit)
				return;
		}
		if (!*s)
			break;
		size_t seq = json ? cw_utf8_len((const unsigned char *)s) : 0;
		if (seq && !((unsigned char)s[0] == 0xc2 && (unsigned char)s[1] < 0xa0)) {
			if (o->len - start + seq > limit)
				return; /* never half a character */
			raw(o, s, seq);
			s += seq;
			continue;
		}
		if (seq)
			s++; /* a C1 control: \u0080..\u009f below, the code point itself */
		unsigned char c = (unsigned char)*s++;
		char e[6];
		size_t n;
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			n = 2;
		} else if (json) {
			memcpy(e, "\\u00", 4);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			n = 6;
		} else {
			e[0] = '\\';
			e[1] = 'x';
			e[2] = hex[c >> 4];
			e[3] = hex[c & 15];
			n = 4;
		}
		if (o->len - start + n > limit)
			return;
		raw(o, e, n);
	}
}

static void escaped(struct out *o, const char *s, int json, char also)
{
	escaped_max(o, s, json, also, (size_t)-1);
}

/* Text value: bare when it is a plain token, else "quoted" (escaped to at
 * most limit bytes). */
static void text_value(struct out *o, const char *s, size_t limit)
{
	int plain = *s != 0;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '=')
			plain = 0;
	}
	if (plain) {
		size_t n = strlen(s);
		raw(o, s, n < limit ? n : limit);
		return;
	}
	str(o, "\"");
	escaped_max(o, s, 0, 0, limit);
	str(o, "\"");
}

struct fmt {
	struct out o;
	int json;
	int first;
};

/* ,"k": or  k= in one copy (k is a short literal: its length is known). */
static void key_n(struct fmt *f, const char *k, size_t len)
{
	char tmp[32];
	size_t n = 0;
	if (len > sizeof tmp - 4)
		len = sizeof tmp - 4;
	if (f->json) {
		if (!f->first)
			tmp[n++] = ',';
		tmp[n++] = '"';
	} else {
		tmp[n++] = ' ';
	}
	memcpy(tmp + n, k, len);
	n += len;
	if (f->json) {
		tmp[n++] = '"';
		tmp[n++] = ':';
	} else {
		tmp[n++] = '=';
	}
	raw(&f->o, tmp, n);
	f->first = 0;
}
#define key(f, k) key_n(f, k, sizeof(k) - 1)

/* A value from our own tables (verdict, state, call names, the time stamp):
 * a plain token that never needs escaping or quoting. */
static void token_n(struct fmt *f, const char *k, size_t klen, const char *v)
{
	key_n(f, k, klen);
	size_t len = strlen(v);
	if (!f->json) {
		raw(&f->o, v, len);
		return;
	}
	char tmp[64];
	if (len > sizeof tmp - 2)
		len = sizeof tmp - 2;
	tmp[0] = '"';
	memcpy(tmp + 1, v, len);
	tmp[len + 1] = '"';
	raw(&f->o, tmp, len + 2);
}
#define field_tok(f, k, v) token_n(f, k, sizeof(k) - 1, v)

static void field_str_n(struct fmt *f, const char *k, size_t klen, const char *v, size_t limit)
{
	key_n(f, k, klen);
	if (f->json) {
		str(&f->o, "\"");
		escaped_max(&f->o, v, 1, 0, limit);
		str(&f->o, "\"");
	} else {
		text_value(&f->o, v, limit);
	}
}

static void field_int_n(struct fmt *f, const char *k, size_t klen, int64_t v)
{
	key_n(f, k, klen);
	i64(&f->o, v);
}
#define field_str(f, k, v) field_str_n(f, k, sizeof(k) - 1, v, (size_t)-1)
/* exe: a path of up to CW_EXE_MAX bytes, each up to 6 when escaped; cut at
 * this many bytes so that the fields after it always fit in the line. The
 * budget of 4096: about 500 for the fixed fields and keys, comm 96, host 384,
 * local and peer 768 each at worst (128 bytes, all escaped), exe 1536; frames
 * come last and are dropped when they do not fit. */
#define CW_EXE_OUT 1536
#define field_int(f, k, v) field_int_n(f, k, sizeof(k) - 1, v)

size_t cw_format_time(char *out, const struct timespec *ts)
{
	/* Civil date from days since 1970-01-01 (Howard Hinnant's algorithm). */
	int64_t secs = ts->tv_sec;
	int64_t days = secs / 86400, rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	days += 719468;
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	int64_t doe = days - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;
	if (m <= 2)
		y++;
	long usec = ts->tv_nsec / 1000;
	int64_t parts[] = {y, m, d, rem / 3600, rem / 60 % 60, rem % 60};
	static const int width[] = {4, 2, 2, 2, 2, 2};
	static const char sep[] = "--T::.";
	size_t n = 0;
	for (int i = 0; i < 6; i++) {
		int64_t v = parts[i];
		for (int w = width[i] - 1; w >= 0; w--) {
			out[n + (size_t)w] = (char)('0' + v % 10);
			v /= 10;
		}
		n += (size_t)width[i];
		out[n++] = sep[i];
	}
	for (int w = 5; w >= 0; w--) {
		out[n + (size_t)w] = (char)('0' + usec % 10);
		usec /= 10;
	}
	n += 6;
	out[n++] = 'Z';
	out[n] = 0;
	return n;
}

size_t cw_record_format(char *buf, size_t cap, const struct cw_event *ev, int json)
{
	if (cap > CW_LINE_MAX + 1)
		cap = CW_LINE_MAX + 1;
	/* Reserve room for the closing "]}\n" so that a cut line stays valid. */
	struct fmt f = {.o = {buf, cap - 3, 0, 0}, .json = json, .first = 1};
	const struct closewatch_record *r = &ev->rec;
	char ts[40];
	cw_format_time(ts, &ev->ts);

	str(&f.o, json ? "{" : "closewatch:");
	field_tok(&f, "ts", ts);
	field_int(&f, "pid", ev->pid);
	field_int(&f, "tid", ev->tid);
	field_str(&f, "comm", ev->comm);
	field_str(&f, "host", ev->host ? ev->host : "");
	field_str_n(&f, "exe", 3, ev->exe ? ev->exe : "", CW_EXE_OUT);
	field_tok(&f, "call", cw_call_name(ev->call));
	if (ev->call == CW_CALL_SHUTDOWN)
		field_tok(&f, "how", ev->how == SHUT_RD ? "rd" : ev->how == SHUT_WR ? "wr" : "rdwr");
	field_int(&f, "fd", r->fd);
	field_tok(&f, "proto", r->proto == CLOSEWATCH_PROTO_UNIX ? "unix" : "tcp");
	field_str(&f, "local", r->local[0] ? r->local : "unnamed");
	field_str(&f, "peer", r->peer[0] ? r->peer : "unnamed");
	field_tok(&f, "state", closewatch_state_name(r->proto, r->state));
	field_int(&f, "recvq", (int64_t)r->recvq);
	field_int(&f, "sendq", (int64_t)r->sendq);
	field_int(&f, "unsent", (int64_t)r->unsent);
	field_int(&f, "backlog", r->backlog);
	if (r->linger < 0)
		field_tok(&f, "linger", "off");
	else
		field_int(&f, "linger", r->linger);
	field_tok(&f, "verdict", closewatch_verdict_name(r->verdict));
	field_int(&f, "lost", (int64_t)r->lost);
	field_tok(&f, "action", cw_action_name(ev->action));
	if (ev->call == CW_CALL_DRAIN) {
		field_tok(&f, "result", cw_drain_result_name(ev->drain_result));
		field_int(&f, "discarded", (int64_t)ev->discarded);
		field_int(&f, "waited_ms", (int64_t)ev->waited_ms);
	}
	if (ev->nframes > 0) {
		key(&f, "bt");
		str(&f.o, json ? "[" : "\"");
		for (int i = 0; i < ev->nframes && i < CW_BT_LIMIT; i++) {
			size_t mark = f.o.len;
			if (i)
				str(&f.o, json ? "," : "|");
			if (json) {
				str(&f.o, "\"");
				escaped(&f.o, ev->frames[i], 1, 0);
				str(&f.o, "\"");
			} else {
				escaped(&f.o, ev->frames[i], 0, '|');
			}
			if (f.o.full) { /* this frame did not fit: drop it and stop */
				f.o.len = mark;
				f.o.buf[mark] = 0;
				f.o.full = 0;
				break;
			}
		}
		f.o.cap += 3; /* the reserved room */
		str(&f.o, json ? "]" : "\"");
	} else {
		f.o.cap += 3;
	}
	str(&f.o, json ? "}\n" : "\n");
	return f.o.len;
}
