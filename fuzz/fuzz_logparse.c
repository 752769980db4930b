/* Fuzz harness: the log parser behind `closewatch report` (tools/logparse.c,
 * cw_log_parse_line) and the report built from its records (tools/report.c,
 * report_print.c: text, JSON and summary output).
 *
 * Input: a log file; lines end at '\n'. Each line is handed to the parser in
 * an exact-size heap buffer without a NUL (as cw_log_read_file may), so a
 * read past its end is a heap overflow. Checks: the result is one of the
 * three codes, parsing is deterministic, every string of a record is
 * NUL-terminated inside its field, a record carries a known call and its
 * required fields; the report over all records prints without crashing. */
#include "fuzz.h"
#include "logparse.h"
#include "logread.h"
#include "report.h"

#include <string.h>

#define TERMINATED(f) FUZZ_CHECK(memchr((f), 0, sizeof(f)) != NULL)

static FILE *devnull(void)
{
	static FILE *f;
	if (!f)
		f = fopen("/dev/null", "w");
	if (!f)
		abort();
	return f;
}

static void check_record(const struct cw_rec *r)
{
	TERMINATED(r->ts);
	TERMINATED(r->comm);
	TERMINATED(r->host);
	TERMINATED(r->exe);
	TERMINATED(r->call);
	TERMINATED(r->how);
	TERMINATED(r->proto);
	TERMINATED(r->local);
	TERMINATED(r->peer);
	TERMINATED(r->state);
	TERMINATED(r->verdict);
	TERMINATED(r->action);
	TERMINATED(r->bt);
	TERMINATED(r->result);
	static const char *const calls[] = {"close", "shutdown", "close_range", "closefrom",
					     "dup2", "dup3", "fclose", "exit", "drain"};
	int known = 0;
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
		known |= !strcmp(r->call, calls[i]);
	FUZZ_CHECK(known);
	FUZZ_CHECK(r->ts[0]);
	/* Frames: nbt of them, joined by '\n'. */
	int nl = 0;
	for (const char *p = r->bt; *p; p++)
		nl += *p == '\n';
	if (r->nbt == 0)
		FUZZ_CHECK(r->bt[0] == 0);
	else
		FUZZ_CHECK(nl == r->nbt - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cw_report rep;
	struct cw_logstats st;
	struct cw_rec *a = malloc(sizeof *a), *b = malloc(sizeof *b);
	if (!a || !b)
		abort();
	cw_report_init(&rep);
	memset(&st, 0, sizeof st);
	st.files = 1;
	size_t start = 0;
	unsigned long lineno = 0;
	while (start < size) {
		const uint8_t *nlp = memchr(data + start, '\n', size - start);
		size_t len = nlp ? (size_t)(nlp - (data + start)) : size - start;
		char *line = malloc(len ? len : 1);
		if (!line)
			abort();
		memcpy(line, data + start, len);
		lineno++;
		int rc = cw_log_parse_line(line, len, a);
		FUZZ_CHECK(rc == CW_LINE_BLANK || rc == CW_LINE_RECORD || rc == CW_LINE_MALFORMED ||
			   rc == CW_LINE_OTHER);
		int rc2 = cw_log_parse_line(line, len, b);
		FUZZ_CHECK(rc == rc2);
		if (rc == CW_LINE_RECORD) {
			FUZZ_CHECK(memcmp(a, b, sizeof *a) == 0);
			check_record(a);
			st.lines++;
			st.records++;
			cw_report_add(&rep, a);
		} else if (rc == CW_LINE_MALFORMED) {
			if (!st.malformed)
				snprintf(st.first_bad, sizeof st.first_bad, "fuzz:%lu", lineno);
			st.malformed++;
			st.lines++;
		} else if (rc == CW_LINE_OTHER) {
			st.other++;
			st.lines++;
		}
		free(line);
		start += len + 1;
	}
	FILE *f = devnull();
	cw_report_print_text(f, &rep, &st, 10);
	cw_report_print_json(f, &rep, &st, 10);
	cw_report_print_summary(f, &rep, &st);
	fflush(f);
	cw_report_free(&rep);
	free(a);
	free(b);
	return 0;
}
