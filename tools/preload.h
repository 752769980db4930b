/* Finding libclosewatch.so and composing LD_PRELOAD for `closewatch run`. */
#ifndef CW_PRELOAD_H
#define CW_PRELOAD_H

#include <stddef.h>

/* Absolute path of libclosewatch.so: next to this executable (the build
 * directory) or in ../lib relative to it (an installed layout). Returns 0, or
 * -1 with a message naming the places looked at in err. */
int cw_find_library(char *out, size_t cap, char *err, size_t errlen);

/* The new LD_PRELOAD: lib in front of the existing entries (existing may be
 * NULL), except that sanitizer runtimes (libasan…) stay first, as they must;
 * lib is not added twice. Returns a malloc'd string. */
char *cw_preload_compose(const char *lib, const char *existing);

#endif
