/* The seccomp filter. See filter.h.
 *
 * libseccomp builds the filter (the syscall numbers for this architecture,
 * the argument test on clone), but it is installed with the raw seccomp(2)
 * call on the BPF that libseccomp exports: libseccomp 2.5 (Debian 12) cannot
 * ask for SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (SCMP_FLTATR_CTL_WAITKILL
 * came in 2.6), and without it a signal to a thread waiting in a trapped call
 * (Go preempts its threads with SIGURG) aborts the notification even after
 * the supervisor has received it. With the flag, once received, only a fatal
 * signal can interrupt the wait. */
#include "filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

int cw_trap_kernel_ok(char *why, size_t cap)
{
	char buf[256] = "";
	int f = open("/proc/sys/kernel/seccomp/actions_avail", O_RDONLY | O_CLOEXEC);
	ssize_t n = f >= 0 ? read(f, buf, sizeof buf - 1) : -1;
	if (f >= 0)
		close(f);
	if (n < 0) {
		snprintf(why, cap, "this kernel has no seccomp filters "
			 "(/proc/sys/kernel/seccomp/actions_avail cannot be read)");
		return 0;
	}
	buf[n] = 0;
	if (!strstr(buf, "user_notif")) {
		snprintf(why, cap, "this kernel has no seccomp user notification "
			 "(actions_avail: %s); Linux 5.5 or later is needed", strtok(buf, "\n"));
		return 0;
	}
	return 1;
}

int cw_trap_filter_build(struct cw_trap_filter *f, char *why, size_t cap)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx) {
		snprintf(why, cap, "libseccomp: cannot create a filter");
		return -1;
	}
	/* Programs of another ABI (i386, x32) run unwatched rather than killed. */
	seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ALLOW);
	static const int traps[] = {
		SCMP_SYS(close), SCMP_SYS(shutdown), SCMP_SYS(close_range), SCMP_SYS(dup2),
		SCMP_SYS(dup3), SCMP_SYS(exit_group), SCMP_SYS(execve), SCMP_SYS(execveat),
		SCMP_SYS(fork), SCMP_SYS(vfork), SCMP_SYS(clone3),
		/* drain mode keeps the epoll fds of a process it has read: a new one */
		SCMP_SYS(epoll_create), SCMP_SYS(epoll_create1),
	};
	int rc = 0;
	for (size_t i = 0; i < sizeof traps / sizeof traps[0] && !rc; i++)
		if (traps[i] >= 0) /* negative: not a syscall on this architecture */
			rc = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, traps[i], 0);
	/* clone: only new processes (a new thread shares the fd table). */
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
	/* What makes a second fd for a file, or may bring one (SCM_RIGHTS
	 * needs a unix socket): the supervisor then looks for other holders of
	 * a closing socket in that process's fds (procfds.c, dup-free). Rare in
	 * servers; fcntl and socket only with these arguments. */
	static const int dups[] = {SCMP_SYS(dup), SCMP_SYS(pidfd_getfd), SCMP_SYS(io_uring_setup)};
	for (size_t i = 0; i < sizeof dups / sizeof dups[0] && !rc; i++)
		if (dups[i] >= 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, dups[i], 0);
	static const struct {
		int nr;
		unsigned arg;
		scmp_datum_t value;
	} dups_if[] = {
		{SCMP_SYS(fcntl), 1, F_DUPFD}, {SCMP_SYS(fcntl), 1, F_DUPFD_CLOEXEC},
		{SCMP_SYS(socket), 0, AF_UNIX}, {SCMP_SYS(socketpair), 0, AF_UNIX},
	};
	for (size_t i = 0; i < sizeof dups_if / sizeof dups_if[0] && !rc; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, dups_if[i].nr, 1,
				      SCMP_CMP(dups_if[i].arg, SCMP_CMP_EQ, dups_if[i].value));
	int mem = rc ? -1 : memfd_create("closewatch-bpf", MFD_CLOEXEC);
	if (!rc && mem >= 0)
		rc = seccomp_export_bpf(ctx, mem);
	seccomp_release(ctx);
	struct stat st;
	if (rc || mem < 0 || fstat(mem, &st) < 0 || st.st_size <= 0 ||
	    st.st_size % (off_t)sizeof(struct sock_filter) ||
	    st.st_size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
		snprintf(why, cap, "libseccomp: cannot build the filter (%s)",
			 strerror(rc ? -rc : errno));
		if (mem >= 0)
			close(mem);
		return -1;
	}
	f->insns = malloc((size_t)st.st_size);
	f->len = (unsigned short)(st.st_size / (off_t)sizeof(struct sock_filter));
	if (!f->insns || pread(mem, f->insns, (size_t)st.st_size, 0) != st.st_size) {
		snprintf(why, cap, "cannot read the exported filter");
		free(f->insns);
		f->insns = NULL;
		close(mem);
		return -1;
	}
	close(mem);
	return 0;
}

static long install(struct sock_fprog *prog)
{
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			  SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, prog);
	if (fd < 0 && errno == EINVAL) /* before Linux 5.19: no killable wait */
		fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			     SECCOMP_FILTER_FLAG_NEW_LISTENER, prog);
	return fd;
}

int cw_trap_filter_install(const struct cw_trap_filter *f)
{
	struct sock_fprog prog = {.len = f->len, .filter = f->insns};
	/* With CAP_SYS_ADMIN (root) the kernel takes the filter as it is, and a
	 * setuid program the child executes keeps its privileges, as without
	 * us. Anyone else needs PR_SET_NO_NEW_PRIVS first (the kernel says
	 * EACCES); then setuid and file capabilities are ignored at exec. */
	long fd = install(&prog);
	if (fd < 0 && errno == EACCES) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			return -errno;
		fd = install(&prog);
	}
	return fd < 0 ? -errno : (int)fd;
}

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

void cw_trap_listener_sync_wakeup(int listener)
{
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}
