/* closewatch — see what close() does to a socket before the kernel does it.
 *
 * Public interface of libclosewatch.so. A program that links against the
 * library (or finds it preloaded) may inspect a socket itself with
 * closewatch_inspect(); everything else happens through LD_PRELOAD. */
#ifndef CLOSEWATCH_H
#define CLOSEWATCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the kernel will do when this socket is closed now (the verdict table of
 * the README and libclosewatch(7)). */
enum closewatch_verdict {
	CLOSEWATCH_CLEAN = 0,     /* nothing unread, nothing queued: FIN */
	CLOSEWATCH_FIN_PENDING,   /* nothing unread, send queue not empty: data, then FIN */
	CLOSEWATCH_RST_UNREAD,    /* unread bytes: RST at once, send queue dropped */
	CLOSEWATCH_RST_LINGER0,   /* SO_LINGER {1,0}: RST, send queue dropped */
	CLOSEWATCH_RST_BACKLOG,   /* listener with queued connections: one RST each */
	CLOSEWATCH_LINGER_WAIT,   /* SO_LINGER {1,N>0}: close blocks up to N s */
	CLOSEWATCH_SHARED,        /* another fd or process still holds it: nothing sent */
	CLOSEWATCH_NO_CONN,       /* not connected, or this direction already closed */
	CLOSEWATCH_VERDICT_COUNT
};

enum closewatch_proto {
	CLOSEWATCH_PROTO_TCP = 1,
	CLOSEWATCH_PROTO_UNIX = 2,
};

/* Socket states for AF_UNIX (TCP uses the kernel's TCP_* numbers). */
enum closewatch_unix_state {
	CLOSEWATCH_UNIX_UNCONNECTED = 100,
	CLOSEWATCH_UNIX_CONNECTED,
	CLOSEWATCH_UNIX_LISTEN,
};

#define CLOSEWATCH_ADDR_MAX 128

struct closewatch_record {
	int fd;           /* as the program saw it */
	int proto;        /* enum closewatch_proto */
	int family;       /* AF_INET, AF_INET6 or AF_UNIX */
	int sotype;       /* SOCK_STREAM or SOCK_SEQPACKET */
	int state;        /* TCP_ESTABLISHED… for TCP, enum closewatch_unix_state for unix */
	int listening;    /* 1 for a listener */
	int linger;       /* -1: SO_LINGER off; else its seconds (0 = abortive) */
	int shared;       /* 1: another fd or a live child refers to the same socket */
	uint64_t recvq;   /* unread bytes (SIOCINQ) */
	uint64_t sendq;   /* send queue (SIOCOUTQ); for unix: memory charged, not payload */
	uint64_t unsent;  /* not yet sent (SIOCOUTQNSD), TCP only */
	uint32_t backlog; /* listeners: connections waiting in the accept queue */
	uint64_t lost;    /* bytes the verdict throws away (upper bound) */
	int verdict;      /* enum closewatch_verdict, as if close() were called now */
	char local[CLOSEWATCH_ADDR_MAX]; /* ip:port, [ip6]:port, unix path, @abstract, unnamed */
	char peer[CLOSEWATCH_ADDR_MAX];
};

/* Fill *out for a TCP or AF_UNIX stream/seqpacket socket and predict what
 * close(fd) would do now. Returns 0, or -1 with errno set (ENOTSOCK, or
 * EPROTONOSUPPORT for sockets closewatch does not cover). Does not close. */
int closewatch_inspect(int fd, struct closewatch_record *out);

/* "clean", "fin_pending", … — the names used in logs. */
const char *closewatch_verdict_name(int verdict);

/* "ESTABLISHED", "CLOSE_WAIT", "LISTEN", "CONNECTED", … */
const char *closewatch_state_name(int proto, int state);

/* 1 for verdicts that throw data away (rst_unread, rst_linger0, rst_backlog). */
int closewatch_verdict_is_risky(int verdict);

#ifdef __cplusplus
}
#endif
#endif
