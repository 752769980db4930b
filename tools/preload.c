/* Finding libclosewatch.so and composing LD_PRELOAD. */
#include "preload.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIBNAME "libclosewatch.so"

int cw_find_library(char *out, size_t cap, char *err, size_t errlen)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		snprintf(err, errlen, "cannot find %s: /proc/self/exe: %s", LIBNAME, strerror(errno));
		return -1;
	}
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	/* next to the binary (build dir), ../lib (installed), and the configured
	 * LIBDIR when the build passes one (-DCW_LIBDIR='"/usr/lib/…"') */
	char tried[3][PATH_MAX + 32];
	int nt = 0;
	snprintf(tried[nt++], sizeof(tried[0]), "%s/%s", exe, LIBNAME);
	snprintf(tried[nt++], sizeof(tried[0]), "%s/../lib/%s", exe, LIBNAME);
#ifdef CW_LIBDIR
	snprintf(tried[nt++], sizeof(tried[0]), "%s/%s", CW_LIBDIR, LIBNAME);
#endif
	for (int i = 0; i < nt; i++) {
		char real[PATH_MAX];
		if (access(tried[i], R_OK) == 0 && realpath(tried[i], real)) {
			if (strlen(real) >= cap) {
				snprintf(err, errlen, "%s: path too long", real);
				return -1;
			}
			if (strpbrk(real, ": \t")) {
				snprintf(err, errlen, "%s: LD_PRELOAD cannot hold a path with ':' or spaces",
					 real);
				return -1;
			}
			strcpy(out, real);
			return 0;
		}
	}
	snprintf(err, errlen, "cannot find %s: looked for %s, %s%s%s (build it with 'make', or "
		 "install with 'make install')", LIBNAME, tried[0], tried[1], nt > 2 ? ", " : "",
		 nt > 2 ? tried[2] : "");
	return -1;
}

static int is_sanitizer(const char *entry, size_t len)
{
	static const char *const names[] = {"libasan", "libtsan", "libubsan", "liblsan",
					    "libhwasan", "libclang_rt.", NULL};
	const char *base = entry;
	for (size_t i = 0; i < len; i++)
		if (entry[i] == '/')
			base = entry + i + 1;
	size_t blen = len - (size_t)(base - entry);
	for (int i = 0; names[i]; i++)
		if (blen >= strlen(names[i]) && !strncmp(base, names[i], strlen(names[i])))
			return 1;
	return 0;
}

static int same_lib(const char *entry, size_t len, const char *lib)
{
	if (strlen(lib) == len && !strncmp(entry, lib, len))
		return 1;
	char path[PATH_MAX], real[PATH_MAX];
	if (len >= sizeof(path))
		return 0;
	memcpy(path, entry, len);
	path[len] = 0;
	return realpath(path, real) && !strcmp(real, lib);
}

char *cw_preload_compose(const char *lib, const char *existing)
{
	if (!existing)
		existing = "";
	size_t cap = strlen(lib) + strlen(existing) + 2;
	char *out = cw_xcalloc(cap, 1);
	size_t n = 0;
	for (int pass = 0; pass < 3; pass++) {
		if (pass == 1) {
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ":" : "", lib);
			continue;
		}
		const char *p = existing;
		while (*p) {
			size_t len = strcspn(p, ": \t");
			if (len) {
				int san = is_sanitizer(p, len);
				if ((pass == 0) == san && !same_lib(p, len, lib))
					n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? ":" : "",
							      (int)len, p);
			}
			p += len;
			if (*p)
				p++;
		}
	}
	return out;
}
