/* Warnings for people, next to the records for machines. */
#include "warn.h"
#include "logwriter.h"
#include "put.h"

#include <string.h>

struct line {
	char buf[CW_LINE_MAX];
	size_t len;
};

/* Room is kept for the final newline. */
static void add(struct line *l, const char *s)
{
	l->len = cw_put(l->buf, sizeof l->buf - 1, l->len, s);
}

static void add_u64(struct line *l, uint64_t v)
{
	l->len = cw_put_uint(l->buf, sizeof l->buf - 1, l->len, v);
}

static const char *consequence(int verdict)
{
	switch (verdict) {
	case CLOSEWATCH_RST_UNREAD: return "will send RST (unread data)";
	case CLOSEWATCH_RST_LINGER0: return "will send RST (SO_LINGER {1,0})";
	case CLOSEWATCH_RST_BACKLOG: return "will reset every queued connection";
	default: return "is risky";
	}
}

void cw_warn(const struct cw_event *ev)
{
	const struct closewatch_record *r = &ev->rec;
	struct line l = {.len = 0};
	add(&l, "closewatch: warning: ");
	add(&l, cw_call_name(ev->call));
	add(&l, "(");
	add_u64(&l, (uint64_t)(r->fd < 0 ? 0 : r->fd));
	add(&l, ") of ");
	add(&l, r->proto == CLOSEWATCH_PROTO_UNIX ? "unix " : "tcp ");
	add(&l, r->local);
	add(&l, " <-> ");
	add(&l, r->peer);
	add(&l, " ");
	add(&l, consequence(r->verdict));
	if (r->verdict == CLOSEWATCH_RST_BACKLOG) {
		add(&l, ": ");
		add_u64(&l, r->backlog);
		add(&l, " connection(s) not yet accepted");
	} else {
		add(&l, ": ");
		add_u64(&l, r->recvq);
		add(&l, " unread byte(s) and ");
		add_u64(&l, r->sendq);
		add(&l, " queued byte(s) thrown away");
	}
	/* One line, innermost frame first, so that grep finds it whole. */
	for (int i = 0; i < ev->nframes; i++) {
		add(&l, i ? " <- " : "; closed at ");
		add(&l, ev->frames[i]);
	}
	l.buf[l.len++] = '\n';
	cw_log_line(l.buf, l.len);
}
