/* hostile_setuid_inspect — a setuid program under the shim.
 *
 * The test copies it (with libclosewatch.so beside it, found through its
 * $ORIGIN run path) into a directory the dynamic loader trusts, makes it
 * setuid root and runs it as an unprivileged user with CLOSEWATCH_LOG naming
 * a file it must not create. Linked with the library (its name has
 * "inspect"): LD_PRELOAD of a path is ignored for setuid programs.
 *
 * It asks closewatch_inspect() about a reader with 5 unread bytes, closes it
 * (rst_unread: one record) and its writer, and prints
 * "uid RUID euid EUID", "inspect VERDICT", "closed R1 R2", "done". */
#include "closewatch.h"

#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	int sv[2];
	printf("uid %d euid %d\n", (int)getuid(), (int)geteuid());
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || write(sv[0], "12345", 5) != 5) {
		perror("socketpair");
		return 1;
	}
	struct closewatch_record r;
	if (closewatch_inspect(sv[1], &r) == 0)
		printf("inspect %s\n", closewatch_verdict_name(r.verdict));
	else
		printf("inspect failed\n");
	int r1 = close(sv[1]), r2 = close(sv[0]);
	printf("closed %d %d\n", r1, r2);
	printf("done\n");
	return r1 || r2;
}
