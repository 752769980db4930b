/* Small helpers shared by the closewatch tools. */
#include "util.h"
#include "utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *cw_progname = "closewatch";

static void oom(void)
{
	fprintf(stderr, "%s: out of memory\n", cw_progname);
	exit(125);
}

void *cw_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *cw_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *cw_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *cw_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = cw_xmalloc(n);
	memcpy(p, s, n);
	return p;
}

void cw_grow(void **arr, size_t *cap, size_t need, size_t elsize)
{
	if (need < *cap)
		return;
	size_t n = *cap ? *cap : 16;
	while (n <= need)
		n *= 2;
	*arr = cw_xrealloc(*arr, n * elsize);
	*cap = n;
}

void cw_err(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", cw_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cw_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	size_t n;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			/* Valid JSON and valid UTF-8 whatever a value holds (a
			 * record read from a text log may carry any byte), and no
			 * C1 control for a terminal to obey: as records do. */
			if (*p >= 0x80 && (n = cw_utf8_len(p)) > 0) {
				if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
					fprintf(f, "\\u%04x", p[1]); /* C1 control */
				else
					fwrite(p, 1, n, f);
				p += n - 1;
			} else if (*p < 0x20 || *p >= 0x7f) {
				fprintf(f, "\\u%04x", *p);
			} else {
				fputc(*p, f);
			}
		}
	}
	fputc('"', f);
}

int cw_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}
