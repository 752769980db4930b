/* review_vfork — a vfork() child closes a socket before the parent has
 * written any record, then the parent closes one.
 *
 * The child shares the parent's memory but has its own fd table: whatever
 * it opens exists only in the child. With a per-process log file
 * (CLOSEWATCH_LOG=...%p...), opened at a process's first record, the
 * parent's later records must still reach the parent's file.
 *
 * Prints "child PID", "parent PID" and "closed CHILD_FD PARENT_FD". */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	int a[2], b[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) || socketpair(AF_UNIX, SOCK_STREAM, 0, b))
		return 2;
	pid_t pid = vfork();
	if (pid == 0) {
		close(a[0]); /* the child's copy: a record in the child */
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, NULL, 0) != pid)
		return 3;
	close(b[0]); /* the parent's first record */
	printf("child %d\nparent %d\nclosed %d %d\n", (int)pid, (int)getpid(), a[0], b[0]);
	return 0;
}
