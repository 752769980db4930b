/* open+close of a regular file in a tight loop: the close() fast path for
 * fds that are not sockets.
 *
 *   openclose [-n ITERS_PER_CHUNK] [-k CHUNKS] [-f FILE]
 *
 * Times CHUNKS chunks of ITERS_PER_CHUNK open(O_RDONLY)+close() pairs (after
 * one warm-up chunk) and prints the median and the fastest chunk in ns per
 * iteration. Without -f a file is created in $TMPDIR (or /tmp) and removed. */
#include "bench.h"

#include <fcntl.h>

#define USAGE "[-n ITERS_PER_CHUNK] [-k CHUNKS] [-f FILE]"

int main(int argc, char **argv)
{
	long iters = 20000, chunks = 10;
	const char *file = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "n:k:f:")) != -1) {
		switch (opt) {
		case 'n': iters = (long)opt_num(optarg, USAGE); break;
		case 'k': chunks = (long)opt_num(optarg, USAGE); break;
		case 'f': file = optarg; break;
		default: fprintf(stderr, "usage: %s %s\n", argv[0], USAGE); return 2;
		}
	}
	char tmpl[4096];
	if (!file) {
		const char *dir = getenv("TMPDIR");
		snprintf(tmpl, sizeof tmpl, "%s/cw-openclose-XXXXXX", dir && *dir ? dir : "/tmp");
		int fd = mkstemp(tmpl);
		if (fd < 0)
			die("mkstemp %s", tmpl);
		if (write(fd, "x", 1) != 1)
			die("write %s", tmpl);
		close(fd);
	}
	const char *path = file ? file : tmpl;

	uint64_t *ns = calloc((size_t)chunks, sizeof *ns);
	if (!ns)
		die("calloc");
	for (long c = -1; c < chunks; c++) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			int fd = open(path, O_RDONLY);
			if (fd < 0)
				die("open %s", path);
			if (close(fd) < 0)
				die("close");
		}
		uint64_t dt = now_ns() - t0;
		if (c >= 0)
			ns[c] = dt;
	}
	if (!file)
		unlink(tmpl);
	sort_u64(ns, (size_t)chunks);
	double med = (double)quantile(ns, (size_t)chunks, 0.5) / (double)iters;
	double best = (double)ns[0] / (double)iters;
	printf("{\"bench\":\"openclose\",\"iters\":%ld,\"chunks\":%ld,"
	       "\"ns_per_iter\":%.2f,\"ns_per_iter_best\":%.2f}\n",
	       iters, chunks, med, best);
	free(ns);
	return 0;
}
