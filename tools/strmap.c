/* A string → index hash map (open addressing, FNV-1a). */
#include "strmap.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

size_t cw_strmap_get(const struct cw_strmap *m, const char *key)
{
	if (!m->cap)
		return (size_t)-1;
	for (size_t i = hash(key) & (m->cap - 1), k = 0; k < m->cap; k++, i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return (size_t)-1;
		if (!strcmp(m->keys[i], key))
			return m->vals[i];
	}
	return (size_t)-1;
}

static void insert(struct cw_strmap *m, char *key, size_t val)
{
	size_t i = hash(key) & (m->cap - 1);
	while (m->keys[i]) {
		if (!strcmp(m->keys[i], key)) {
			free(key);
			m->vals[i] = val;
			return;
		}
		i = (i + 1) & (m->cap - 1);
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
}

void cw_strmap_put(struct cw_strmap *m, const char *key, size_t val)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct cw_strmap old = *m;
		m->cap = old.cap ? old.cap * 2 : 64;
		m->keys = cw_xcalloc(m->cap, sizeof(*m->keys));
		m->vals = cw_xcalloc(m->cap, sizeof(*m->vals));
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.keys[i])
				insert(m, old.keys[i], old.vals[i]);
		free(old.keys);
		free(old.vals);
	}
	insert(m, cw_xstrdup(key), val);
}

void cw_strmap_free(struct cw_strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}
