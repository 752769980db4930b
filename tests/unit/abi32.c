/* A program of another ABI, for tests/test_trap.py: built 32-bit (i386),
 * static, it makes its system calls through the 32-bit entry, which the
 * trap's filter lets pass unexamined. It opens a TCP socket and closes it,
 * a close the trap would log if it could see it. */
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	return s >= 0 && close(s) == 0 ? 0 : 1;
}
