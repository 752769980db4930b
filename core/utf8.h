/* UTF-8 well-formedness, for the writers of JSON (records, report --json):
 * their output is valid UTF-8 whatever bytes a path or name holds. */
#ifndef CW_UTF8_H
#define CW_UTF8_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at NUL-terminated s (RFC 3629:
 * shortest form, no surrogate, nothing past U+10FFFF), else 0 (an ASCII
 * byte too: the callers look at bytes >= 0x80). Safe on the close path (no
 * call, no allocation). */
size_t cw_utf8_len(const unsigned char *s);

#endif
