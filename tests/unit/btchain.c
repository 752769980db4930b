/* btchain — a known call chain blocked in a system call, for backtraces taken
 * from outside (tests/test_remote_bt.py): main → bt_f1 → bt_f2 → read(0).
 * Prints "ready" then blocks reading stdin; exits when it is closed. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int bt_f2(int fd)
{
	char c;
	ssize_t n = read(fd, &c, 1);
	__asm__ volatile("" ::: "memory"); /* no tail call: the frame stays */
	return (int)n + 1;
}

__attribute__((noinline)) int bt_f1(int fd)
{
	int r = bt_f2(fd);
	__asm__ volatile("" ::: "memory");
	return r * 2;
}

int main(void)
{
	puts("ready");
	fflush(stdout);
	int r = bt_f1(0);
	return r == 2 ? 0 : 1; /* EOF: read returned 0 */
}
