/* Children started with posix_spawn or vfork+exec inherit two connected sockets.
 *
 * usage: spawner posix_spawn|vfork PORT
 * Parent: connects S and U to 127.0.0.1:PORT (first lines "S <pid>", "U <pid>"), starts
 * a child (this program: "spawner child S U") that inherits both, closes S at once (the
 * child still holds it: the kernel sends nothing) and prints "closed S"; waits for the
 * child and prints "child exited N"; waits for a line on stdin, closes U (now the
 * last holder) and prints "closed U"; then connects T, sends "after <pid>", reads to EOF, closes, exits 0.
 * Child: writes "child <pid>" on S, closes U (the parent still holds it: nothing
 * sent), reads S to EOF, closes S (the last holder now), exits 0.
 * stdout is line-buffered: the test follows the parent's steps on it. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int dial(int port, const char *hello)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%s %d\n", hello, (int)getpid());
	if (write(s, buf, n) != n)
		die("write");
	return s;
}

static void read_to_eof(int s)
{
	char buf[4096];
	ssize_t r;
	while ((r = read(s, buf, sizeof buf)) > 0)
		;
	if (r < 0)
		die("read");
}

static int child(int s, int u)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "child %d\n", (int)getpid());
	if (write(s, buf, n) != n)
		die("child write");
	if (close(u) < 0)
		die("child close U");
	read_to_eof(s);
	if (close(s) < 0)
		die("child close S");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "child"))
		return child(atoi(argv[2]), atoi(argv[3]));
	if (argc != 3)
		return 2;
	int port = atoi(argv[2]);
	int s = dial(port, "S"), u = dial(port, "U");
	char sa[16], ua[16];
	snprintf(sa, sizeof sa, "%d", s);
	snprintf(ua, sizeof ua, "%d", u);
	char *cargv[] = {argv[0], "child", sa, ua, NULL};
	pid_t pid;
	if (!strcmp(argv[1], "posix_spawn")) {
		int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, cargv, environ);
		if (rc) {
			fprintf(stderr, "posix_spawn: %s\n", strerror(rc));
			return 1;
		}
	} else if (!strcmp(argv[1], "vfork")) {
		pid = vfork();
		if (pid == 0) {
			execve("/proc/self/exe", cargv, environ);
			_exit(127);
		}
		if (pid < 0)
			die("vfork");
	} else {
		return 2;
	}
	if (close(s) < 0)
		die("close S");
	printf("closed S\n");
	int st;
	if (waitpid(pid, &st, 0) != pid)
		die("waitpid");
	printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	char line[16];
	if (!fgets(line, sizeof line, stdin))
		die("stdin");
	if (close(u) < 0)
		die("close U");
	printf("closed U\n");
	int t = dial(port, "after");
	read_to_eof(t);
	if (close(t) < 0)
		die("close T");
	printf("done\n");
	return 0;
}
