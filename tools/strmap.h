/* A string → index hash map (open addressing) for grouping log records. */
#ifndef CW_STRMAP_H
#define CW_STRMAP_H

#include <stddef.h>

struct cw_strmap {
	char **keys;
	size_t *vals;
	size_t cap, n;
};

/* Index stored for key, or (size_t)-1. */
size_t cw_strmap_get(const struct cw_strmap *m, const char *key);
/* Store key → val (key copied). Replaces an existing value. */
void cw_strmap_put(struct cw_strmap *m, const char *key, size_t val);
void cw_strmap_free(struct cw_strmap *m);

#endif
