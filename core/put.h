/* Appending text to a fixed buffer: what the shim uses instead of snprintf
 * (which may allocate and is not async-signal-safe). Each returns the new
 * length; the buffer stays NUL-terminated and is never overrun. */
#ifndef CW_PUT_H
#define CW_PUT_H

#include <stddef.h>

static inline size_t cw_put(char *out, size_t cap, size_t n, const char *s)
{
	while (*s && n + 1 < cap)
		out[n++] = *s++;
	out[n] = 0;
	return n;
}

static inline size_t cw_put_uint(char *out, size_t cap, size_t n, unsigned long v)
{
	char tmp[24];
	int i = sizeof tmp;
	tmp[--i] = 0;
	do
		tmp[--i] = (char)('0' + v % 10);
	while ((v /= 10) && i > 0);
	return cw_put(out, cap, n, tmp + i);
}

/* 0x-prefixed, lowercase. */
static inline size_t cw_put_hex(char *out, size_t cap, size_t n, unsigned long v)
{
	char tmp[20];
	int i = sizeof tmp;
	tmp[--i] = 0;
	do
		tmp[--i] = "0123456789abcdef"[v & 15];
	while ((v >>= 4) && i > 0);
	n = cw_put(out, cap, n, "0x");
	return cw_put(out, cap, n, tmp + i);
}

#endif
