/* See foreign.h. */
#include "foreign.h"
#include "../core/elfkind.h"
#include "../core/put.h"
#include "../core/runstatus.h"

#include <fcntl.h>
#include <limits.h>
#include <seccomp.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* A NUL-terminated string from the program's memory, read a page at a time
 * (a string that ends just before an unmapped page must not fail). */
static int read_string(pid_t pid, __u64 addr, char *out, size_t cap)
{
	size_t n = 0;
	long page = sysconf(_SC_PAGESIZE);
	while (n + 1 < cap) {
		size_t want = (size_t)page - (size_t)((addr + n) % (__u64)page);
		if (want > cap - 1 - n)
			want = cap - 1 - n;
		struct iovec local = {out + n, want};
		struct iovec remote = {(void *)(uintptr_t)(addr + n), want};
		ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
		if (got <= 0)
			return -1;
		void *nul = memchr(out + n, 0, (size_t)got);
		n += (size_t)got;
		if (nul)
			return 0;
	}
	return -1; /* longer than a path can be: the exec fails with ENAMETOOLONG */
}

void cw_trap_check_exec(pid_t pid, int nr, const __u64 args[6])
{
	int at = nr == SCMP_SYS(execveat);
	char file[PATH_MAX], path[PATH_MAX + 64];
	if (read_string(pid, args[at ? 1 : 0], file, sizeof file) != 0)
		return;
	int dirfd = at ? (int)args[0] : AT_FDCWD;
	/* The program's view: its working directory, or the directory fd it passed,
	 * through /proc (the supervisor runs elsewhere). */
	size_t n = 0;
	if (file[0] != '/') {
		n = cw_put(path, sizeof path, 0, "/proc/");
		n = cw_put_uint(path, sizeof path, n, (unsigned long)pid);
		if (dirfd == AT_FDCWD) {
			n = cw_put(path, sizeof path, n, "/cwd");
		} else {
			n = cw_put(path, sizeof path, n, "/fd/");
			n = cw_put_uint(path, sizeof path, n, (unsigned long)(unsigned)dirfd);
		}
		if (file[0]) /* execveat(fd, "", AT_EMPTY_PATH): the file is dirfd */
			n = cw_put(path, sizeof path, n, "/");
	}
	cw_put(path, sizeof path, n, file);
	char why[200];
	if (cw_elf_kind(path, why, sizeof why) != CW_ELF_FOREIGN)
		return;
	cw_runstatus_not_watched(pid, file[0] ? file : path, why);
}
