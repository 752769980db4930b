/* One log record: what happened to one socket, formatted as a text or JSON
 * line in a caller's buffer (pure; no syscalls). */
#ifndef CW_RECORD_H
#define CW_RECORD_H

#include "closewatch.h"
#include "config.h"
#include "utf8.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define CW_LINE_MAX 4096 /* a record is one line of at most this many bytes */
#define CW_EXE_MAX 1024  /* the exe field: longer paths are cut (the record stays one line) */
#define CW_FRAME_TEXT 128

enum cw_call {
	CW_CALL_CLOSE, CW_CALL_SHUTDOWN, CW_CALL_CLOSE_RANGE, CW_CALL_CLOSEFROM,
	CW_CALL_DUP2, CW_CALL_DUP3, CW_CALL_FCLOSE, CW_CALL_EXIT, CW_CALL_DRAIN,
};
enum cw_action { CW_ACTION_NONE, CW_ACTION_WARNED, CW_ACTION_DRAINED, CW_ACTION_DRAIN_SKIPPED };
enum cw_drain_result { CW_DRAIN_DELIVERED, CW_DRAIN_TIMEOUT, CW_DRAIN_PEER_RESET };

struct cw_event {
	struct closewatch_record rec;
	int call;            /* enum cw_call */
	int how;             /* SHUT_*, for shutdown; -1 otherwise */
	int action;          /* enum cw_action */
	struct timespec ts;  /* CLOCK_REALTIME */
	pid_t pid, tid;
	char comm[17];
	const char *host, *exe; /* where it comes from (NULL: "") */
	int nframes;
	char frames[CW_BT_LIMIT][CW_FRAME_TEXT]; /* "symbol+0xoff (object)" */
	/* call == CW_CALL_DRAIN only: */
	int drain_result;    /* enum cw_drain_result */
	uint64_t discarded;
	uint64_t waited_ms;
};

const char *cw_call_name(int call);
const char *cw_action_name(int action);
const char *cw_drain_result_name(int result);

/* Format ev as one line ending in '\n' into buf (cap >= 64); returns its
 * length (<= cap - 1, and <= CW_LINE_MAX). Frames that do not fit are left
 * out; the line always stays valid. */
size_t cw_record_format(char *buf, size_t cap, const struct cw_event *ev, int json);

/* RFC 3339 UTC with microseconds ("2026-11-27T05:31:02.123456Z") into out
 * (>= 28 bytes). No gmtime_r: glibc takes a lock there, and we may be in a
 * signal handler. */
size_t cw_format_time(char *out, const struct timespec *ts);

#endif
