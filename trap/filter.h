/* The seccomp filter: built in the supervisor, installed by the child. */
#ifndef CW_TRAP_FILTER_H
#define CW_TRAP_FILTER_H

#include <linux/filter.h>
#include <stddef.h>

struct cw_trap_filter {
	struct sock_filter *insns;
	unsigned short len;
};

/* Build the BPF program (libseccomp, exported as raw BPF). 0, or -1 with a
 * message in why. */
int cw_trap_filter_build(struct cw_trap_filter *f, char *why, size_t cap);

/* In the child, after fork (async-signal-safe: no allocation): set
 * PR_SET_NO_NEW_PRIVS and install f with a new listener. Returns the
 * listener fd, or -errno. */
int cw_trap_filter_install(const struct cw_trap_filter *f);

/* Linux 6.6+: the listener wakes the supervisor on the trapping thread's
 * CPU and hands the CPU straight back (9-10 us per trapped call measured
 * instead of about 60). Older kernels refuse it: nothing changes. */
void cw_trap_listener_sync_wakeup(int listener);

/* The kernel offers user notification (actions_avail lists user_notif). */
int cw_trap_kernel_ok(char *why, size_t cap);

#endif
