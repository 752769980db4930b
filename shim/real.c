/* Binding the real functions. See real.h. */
#include "real.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

struct cw_real_table cw_real;

static atomic_int bound; /* 0 never, 1 binding, 2 done */

static void die(const char *what, const char *name)
{
	/* No stdio: we may be inside a close() the program makes from anywhere. */
	const char *p = "closewatch: ";
	(void)!write(2, p, strlen(p));
	(void)!write(2, what, strlen(what));
	(void)!write(2, name, strlen(name));
	(void)!write(2, "\n", 1);
	/* libc's _exit, not our hook: that would bind the table again, and wait
	 * for ever for this very binding to end. */
	void (*real_exit)(int) = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
	if (real_exit)
		real_exit(127);
	abort();
}

/* Optional functions (closefrom needs glibc 2.34, close_range 2.34, fcntl64
 * 2.28) may be missing: then the program cannot call them through us either,
 * so a NULL is never reached. Our own hooks must never come back. */
static void *load(const char *name, void *self, int mandatory)
{
	void *sym = dlsym(RTLD_NEXT, name);
	if (!sym && mandatory)
		die("cannot find the real ", name);
	if (sym && sym == self)
		die("dlsym(RTLD_NEXT) returned our own hook for ", name);
	return sym;
}

/* Our own exported hooks, to compare against (declared in the hook file). */
#define CW_REAL_SELF(name, ret, args) extern ret name args;
CW_REAL_FUNCS(CW_REAL_SELF)
#undef CW_REAL_SELF

void cw_real_bind(void)
{
	if (__builtin_expect(atomic_load_explicit(&bound, memory_order_acquire) == 2, 1))
		return;
	int expected = 0;
	if (!atomic_compare_exchange_strong(&bound, &expected, 1)) {
		/* Another thread is binding (only possible before our constructor
		 * ran): wait for it, it takes microseconds. */
		while (atomic_load_explicit(&bound, memory_order_acquire) != 2)
			sched_yield();
		return;
	}
	struct cw_real_table t;
	memset(&t, 0, sizeof t);
#define CW_REAL_LOAD(name, ret, args)                                          \
	t.name = (ret(*) args)load(#name, (void *)name,                        \
				    strcmp(#name, "closefrom") && strcmp(#name, "close_range") && \
				    strcmp(#name, "fcntl64") && strcmp(#name, "recvmmsg"));
	CW_REAL_FUNCS(CW_REAL_LOAD)
#undef CW_REAL_LOAD
	cw_real = t;
	atomic_store_explicit(&bound, 2, memory_order_release);
}
