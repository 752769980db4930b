/* Parsing one closewatch log line (text or JSON format) into a record.
 * Pure: a buffer in, a struct out, so it can be fuzzed. */
#ifndef CW_LOGPARSE_H
#define CW_LOGPARSE_H

#include <stddef.h>
#include <stdint.h>

#define CW_REC_ADDR 512
#define CW_REC_BT 4096
#define CW_REC_EXE 2200 /* the shim's 1024-byte cap, bytes >= 0x80 as UTF-8 */

struct cw_rec {
	double t;                 /* ts as seconds since the epoch */
	char ts[48];
	long pid, tid;
	char comm[64];
	char host[256];           /* "" when the record (and its framing) did not say */
	char exe[CW_REC_EXE];
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
enum { CW_LINE_BLANK = 0, CW_LINE_RECORD = 1, CW_LINE_MALFORMED = -1, CW_LINE_OTHER = -2 };

/* Parse one line (without its newline; len bytes, need not be NUL-terminated).
 * Accepts what log pipelines deliver:
 *  - a record as the shim writes it: a JSON object ("{"ts":…}") or the text
 *    format ("closewatch: ts=… key=value …", after any prefix);
 *  - a syslog file line, rsyslog's traditional ("Dec  2 02:20:18 host tag[pid]: MSG")
 *    or RFC 3339 ("2026-12-02T02:20:18.123456+00:00 host tag[pid]: MSG") format,
 *    with a text or JSON record as MSG; the header's host fills a record without one;
 *  - a `journalctl -o json` line: the record in MESSAGE (a string, or an array
 *    of bytes), _HOSTNAME for a record without host.
 * A record must carry the fields every record has (ts pid call, and verdict
 * lost action local peer proto fd for closes, result for drains): a closewatch
 * line without them, cut or corrupt (or with a NUL byte) is CW_LINE_MALFORMED.
 * A line of another program (no closewatch record in it) is CW_LINE_OTHER. */
int cw_log_parse_line(const char *line, size_t len, struct cw_rec *out);

/* "2026-11-27T05:31:02.123456Z" (or with ±hh:mm) → seconds since the epoch. 0 on success. */
int cw_parse_rfc3339(const char *s, double *out);

/* 1 for the risky verdicts (data thrown away). */
int cw_verdict_risky(const char *verdict);

#endif
