/* logw_sigpipe — what a program sees of SIGPIPE around a close the shim logs.
 *
 *   logw_sigpipe MODE      MODE: default | block | block-pending
 *
 * default        SIGPIPE keeps its default action (a SIGPIPE raised in the
 *                program kills it: exit status 141 in a shell).
 * block          SIGPIPE blocked.
 * block-pending  SIGPIPE blocked, and one raised by the program before the
 *                close (pending: it is the program's own and must stay).
 * Then it closes a socketpair end with 3 unread bytes (rst_unread: logged by
 * default) and prints "cmp pending N": 1 if SIGPIPE is pending. Run with its
 * stderr a pipe whose reader is gone, the shim's record write meets EPIPE:
 * every line and the exit status must be as without the shim. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "default";
	sigset_t pipe_set, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	if (strcmp(mode, "default"))
		sigprocmask(SIG_BLOCK, &pipe_set, NULL);
	if (!strcmp(mode, "block-pending"))
		raise(SIGPIPE);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || write(sv[0], "abc", 3) != 3) {
		perror("socketpair");
		return 99;
	}
	int r = close(sv[1]);
	printf("cmp close %d\n", r);
	sigemptyset(&pending);
	sigpending(&pending);
	printf("cmp pending %d\n", sigismember(&pending, SIGPIPE));
	if (sigismember(&pending, SIGPIPE)) {
		/* take it, so that the exit status says nothing of it */
		const struct timespec zero = {0, 0};
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	close(sv[0]);
	printf("cmp end\n");
	return 0;
}
