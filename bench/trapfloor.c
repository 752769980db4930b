/* The floor under `closewatch run --via trap`: what any seccomp user
 * notification supervisor costs on this kernel and machine, before it does
 * any work of its own.
 *
 *   trapfloor CMD [ARG...]
 *
 * Runs CMD under closewatch's own filter (trap/filter.c: the same calls are
 * trapped), with the same listener set-up (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
 * where the kernel has it), and answers every notification at once with
 * SECCOMP_USER_NOTIF_FLAG_CONTINUE: no pidfd_getfd, no inspection, no record.
 * Each trapped call then costs only the kernel's round trip (the trapping
 * thread sleeps, we wake, receive, answer, it wakes). bench/run.py runs the
 * trap benchmarks under it too: the distance between its row and closewatch's
 * is closewatch's own work; the distance between it and no trap at all is
 * what no supervisor can save. A benchmark tool, not a way to watch anything:
 * it forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to CMD, CMD dies with it
 * (PR_SET_PDEATHSIG: a program left under a dead supervisor would only see
 * ENOSYS), and it exits with CMD's status once every process under the
 * filter has ended. */
#include "../trap/filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>


static volatile pid_t child_pid;

static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: trapfloor CMD [ARG...]\n");
		return 2;
	}
	char why[256];
	struct cw_trap_filter f;
	if (!cw_trap_kernel_ok(why, sizeof why) || cw_trap_filter_build(&f, why, sizeof why) != 0) {
		fprintf(stderr, "trapfloor: %s\n", why);
		return 2;
	}
	int tell[2], go[2];
	if (pipe2(tell, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) {
		perror("trapfloor: pipe");
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("trapfloor: fork");
		return 2;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = cw_trap_filter_install(&f);
		char c;
		if (write(tell[1], &fd, sizeof fd) != sizeof fd || fd < 0 || read(go[0], &c, 1) != 1)
			_exit(2);
		execvp(argv[1], argv + 1);
		perror("trapfloor: exec");
		_exit(127);
	}
	free(f.insns);
	child_pid = pid;
	struct sigaction fwd = {.sa_handler = forward}; /* no SA_RESTART: RECV returns */
	sigemptyset(&fwd.sa_mask);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		sigaction(sigs[i], &fwd, NULL);
	close(tell[1]);
	close(go[0]);
	int fd = -1, listener = -1;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (read(tell[0], &fd, sizeof fd) == sizeof fd && fd >= 0 && pidfd >= 0)
		listener = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (listener < 0) {
		fprintf(stderr, "trapfloor: the filter could not be installed\n");
		kill(pid, SIGKILL);
		return 2;
	}
	cw_trap_listener_sync_wakeup(listener);
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;
	if (seccomp_notify_alloc(&req, &resp) != 0 || write(go[1], "g", 1) != 1)
		return 2;
	/* The same loop as closewatch's: on Linux 6.11+ a blocking RECV, which
	 * returns ENOENT once nobody is left under the filter; before, poll
	 * first (a blocked RECV would never notice). */
	struct utsname u;
	int major = 0, minor = 0;
	int blocking = uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
		       (major > 6 || (major == 6 && minor >= 11));
	for (;;) {
		struct pollfd p = {.fd = listener, .events = POLLIN};
		if (!blocking) {
			if (poll(&p, 1, -1) < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (!(p.revents & POLLIN))
				break; /* POLLHUP: nobody is left under the filter */
		}
		memset(req, 0, sizeof *req);
		if (seccomp_notify_receive(listener, req) != 0) {
			/* ENOENT: the program has ended, or the trapping thread
			 * was killed between the wake-up and the receive. */
			p.events = 0;
			if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
				break;
			continue;
		}
		memset(resp, 0, sizeof *resp);
		resp->id = req->id;
		resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		(void)seccomp_notify_respond(listener, resp);
	}
	seccomp_notify_free(req, resp);
	close(listener);
	int status = 0;
	if (waitpid(pid, &status, 0) != pid)
		return 2;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
