/* Parsing one closewatch log line (text or JSON format) into a record.
 * Pure: a buffer in, a struct out, so it can be fuzzed. */
#ifndef CW_LOGPARSE_H
#define CW_LOGPARSE_H

#include <stddef.h>
#include <stdint.h>

#define CW_REC_ADDR 512
#define CW_REC_BT 4096

struct cw_rec {
	double t;                 /* ts as seconds since the epoch */
	char ts[48];
	long pid, tid;
	char comm[64];
	char call[16];            /* close shutdown … drain */
	char how[8];              /* shutdown only */
	long fd;
	char proto[8];
	char local[CW_REC_ADDR], peer[CW_REC_ADDR];
	char state[24];
	uint64_t recvq, sendq, unsent, backlog, lost;
	long linger;              /* -1: off */
	char verdict[24];
	char action[24];
	char bt[CW_REC_BT];       /* frames joined by '\n' */
	int nbt;
	char result[16];          /* drain records */
	uint64_t discarded, waited_ms;
};

/* Result of cw_log_parse_line(). */
enum { CW_LINE_BLANK = 0, CW_LINE_RECORD = 1, CW_LINE_MALFORMED = -1 };

/* Parse one line (without its newline; len bytes, need not be NUL-terminated).
 * Accepts a JSON object ("{...}") or the text format ("closewatch: ts=… key=value …",
 * possibly after a syslog prefix). A record must carry the fields every
 * record has (ts pid call, and verdict lost action local peer proto fd for
 * closes, result for drains); anything else is CW_LINE_MALFORMED. */
int cw_log_parse_line(const char *line, size_t len, struct cw_rec *out);

/* "2026-11-27T05:31:02.123456Z" (or with ±hh:mm) → seconds since the epoch. 0 on success. */
int cw_parse_rfc3339(const char *s, double *out);

/* 1 for the risky verdicts (data thrown away). */
int cw_verdict_risky(const char *verdict);

#endif
