/* remote_bt_probe PID [TID [MAX]] — the backtrace trap/remote_bt.c takes of a
 * thread stopped in a system call, one frame a line (tests/test_remote_bt.py). */
#include "../../trap/remote_bt.h"

#include <stdio.h>
#include <stdlib.h>

/* The trap's hook, which remote_bt.c fills in (the supervisor is not linked here). */
int (*cw_trap_backtrace)(pid_t pid, pid_t tid, struct cw_event *ev, int max);

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	pid_t pid = atoi(argv[1]);
	pid_t tid = argc > 2 ? atoi(argv[2]) : pid;
	int max = argc > 3 ? atoi(argv[3]) : CW_BT_LIMIT;
	static struct cw_event ev;
	int n = cw_remote_backtrace(pid, tid, &ev, max);
	for (int i = 0; i < n; i++)
		printf("%s\n", ev.frames[i]);
	return n > 0 ? 0 : 1;
}
