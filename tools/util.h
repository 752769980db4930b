/* Small helpers shared by the closewatch tools: allocation that cannot fail,
 * growable buffers, messages, and JSON string output. */
#ifndef CW_UTIL_H
#define CW_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* Program name used in messages ("closewatch", "cw-pcap"). */
extern const char *cw_progname;

void *cw_xmalloc(size_t n);
void *cw_xcalloc(size_t n, size_t size);
void *cw_xrealloc(void *p, size_t n);
char *cw_xstrdup(const char *s);

/* Grow *arr (element size elsize) so that index `need` fits; *cap is updated. */
void cw_grow(void **arr, size_t *cap, size_t need, size_t elsize);

/* "PROG: message\n" on stderr. */
void cw_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write s as a JSON string literal (with quotes) to f. */
void cw_json_str(FILE *f, const char *s);

/* Parse a non-negative decimal integer that fits in max; 0 on success. */
int cw_parse_uint(const char *s, unsigned long max, unsigned long *out);

#endif
