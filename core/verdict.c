/* Verdicts and names. Pure functions; also linked into the CLI. */
#include "verdict.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

#define EXPORT __attribute__((visibility("default")))

static const char *const verdict_names[CLOSEWATCH_VERDICT_COUNT] = {
	[CLOSEWATCH_CLEAN] = "clean",
	[CLOSEWATCH_FIN_PENDING] = "fin_pending",
	[CLOSEWATCH_RST_UNREAD] = "rst_unread",
	[CLOSEWATCH_RST_LINGER0] = "rst_linger0",
	[CLOSEWATCH_RST_BACKLOG] = "rst_backlog",
	[CLOSEWATCH_LINGER_WAIT] = "linger_wait",
	[CLOSEWATCH_SHARED] = "shared",
	[CLOSEWATCH_NO_CONN] = "no_conn",
};

EXPORT const char *closewatch_verdict_name(int verdict)
{
	if (verdict < 0 || verdict >= CLOSEWATCH_VERDICT_COUNT)
		return "unknown";
	return verdict_names[verdict];
}

EXPORT int closewatch_verdict_is_risky(int verdict)
{
	return verdict == CLOSEWATCH_RST_UNREAD || verdict == CLOSEWATCH_RST_LINGER0 ||
	       verdict == CLOSEWATCH_RST_BACKLOG;
}

EXPORT const char *closewatch_state_name(int proto, int state)
{
	static const char *const tcp[] = {
		"UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
		"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
		"NEW_SYN_RECV", "BOUND_INACTIVE",
	};
	if (proto == CLOSEWATCH_PROTO_UNIX) {
		switch (state) {
		case CLOSEWATCH_UNIX_CONNECTED: return "CONNECTED";
		case CLOSEWATCH_UNIX_LISTEN: return "LISTEN";
		case CLOSEWATCH_UNIX_UNCONNECTED: return "UNCONNECTED";
		default: return "UNKNOWN";
		}
	}
	if (state < 0 || state >= (int)(sizeof tcp / sizeof tcp[0]))
		return "UNKNOWN";
	return tcp[state];
}

/* States in which close() sends a FIN (tcp_close_state's table). */
static int tcp_close_sends_fin(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT || state == TCP_SYN_RECV;
}

/* tcp_disconnect() resets the peer from these states (tcp_need_reset). */
static int tcp_disconnect_resets(int state, uint64_t sendq)
{
	return state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT || state == TCP_FIN_WAIT1 ||
	       state == TCP_FIN_WAIT2 || state == TCP_SYN_RECV ||
	       (sendq && (state == TCP_CLOSING || state == TCP_LAST_ACK));
}

static void set(struct closewatch_record *r, int verdict, uint64_t lost)
{
	r->verdict = verdict;
	r->lost = lost;
}

static void tcp_close(struct closewatch_record *r)
{
	if (r->listening) {
		set(r, r->backlog ? CLOSEWATCH_RST_BACKLOG : CLOSEWATCH_NO_CONN, 0);
		return;
	}
	/* Already reset or never connected: the queues are simply freed. */
	if (r->state == TCP_CLOSE || r->state == TCP_SYN_SENT) {
		set(r, CLOSEWATCH_NO_CONN, 0);
		return;
	}
	/* Unread data is checked first, in any state: RST, send queue purged. */
	if (r->recvq) {
		set(r, CLOSEWATCH_RST_UNREAD, r->recvq + r->sendq);
		return;
	}
	if (r->linger == 0) {
		if (tcp_disconnect_resets(r->state, r->sendq))
			set(r, CLOSEWATCH_RST_LINGER0, r->sendq);
		else
			set(r, CLOSEWATCH_NO_CONN, 0);
		return;
	}
	if (!tcp_close_sends_fin(r->state)) {
		/* FIN already queued or sent (shutdown earlier), or TIME_WAIT. */
		set(r, CLOSEWATCH_NO_CONN, 0);
		return;
	}
	if (r->linger > 0)
		set(r, CLOSEWATCH_LINGER_WAIT, 0);
	else
		set(r, r->sendq ? CLOSEWATCH_FIN_PENDING : CLOSEWATCH_CLEAN, 0);
}

/* AF_UNIX (unix_release_sock): unread skbs make the peer's next read fail
 * with ECONNRESET once it has read what we sent; what we sent stays
 * readable, so only our unread bytes are lost. SO_LINGER does nothing. */
static void unix_close(struct closewatch_record *r)
{
	if (r->listening) {
		set(r, r->backlog ? CLOSEWATCH_RST_BACKLOG : CLOSEWATCH_NO_CONN, 0);
		return;
	}
	if (r->state != CLOSEWATCH_UNIX_CONNECTED) {
		set(r, CLOSEWATCH_NO_CONN, 0);
		return;
	}
	if (r->recvq) {
		set(r, CLOSEWATCH_RST_UNREAD, r->recvq);
		return;
	}
	set(r, r->sendq ? CLOSEWATCH_FIN_PENDING : CLOSEWATCH_CLEAN, 0);
}

void cw_verdict_close(struct closewatch_record *r)
{
	if (r->shared) {
		set(r, CLOSEWATCH_SHARED, 0);
		return;
	}
	if (r->proto == CLOSEWATCH_PROTO_TCP)
		tcp_close(r);
	else
		unix_close(r);
}

void cw_verdict_shutdown(struct closewatch_record *r, int how)
{
	int rd = how == SHUT_RD || how == SHUT_RDWR;
	int wr = how == SHUT_WR || how == SHUT_RDWR;
	/* A listener shut for reading is disconnected: its queue is reset
	 * (inet_shutdown → tcp_disconnect → inet_csk_listen_stop). Shutdown acts
	 * whatever the refcount, so "shared" does not apply. */
	if (r->listening) {
		set(r, rd && r->backlog && r->proto == CLOSEWATCH_PROTO_TCP ? CLOSEWATCH_RST_BACKLOG
									       : CLOSEWATCH_NO_CONN, 0);
		return;
	}
	int open_for_write = r->proto == CLOSEWATCH_PROTO_TCP ? tcp_close_sends_fin(r->state)
							      : r->state == CLOSEWATCH_UNIX_CONNECTED;
	if (!wr || !open_for_write) {
		set(r, CLOSEWATCH_NO_CONN, 0);
		return;
	}
	set(r, r->sendq ? CLOSEWATCH_FIN_PENDING : CLOSEWATCH_CLEAN, 0);
}
