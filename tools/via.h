/* `closewatch run --via auto`: which way in watches a program. */
#ifndef CW_VIA_H
#define CW_VIA_H

#include <stddef.h>

enum cw_via { CW_VIA_PRELOAD, CW_VIA_TRAP };

/* How to watch CMD (resolved through PATH like execvp). TRAP with a short reason in why
 * ("statically linked", "Go program", "musl loader /lib/ld-musl-x86_64.so.1", "setuid") or
 * PRELOAD with why = "". */
enum cw_via cw_via_auto(const char *cmd, char *why, size_t cap);

#endif
