/* Is the other end of a drained connection held by this very process? See
 * drain_peer.h. A program that holds both ends of a connection (a test
 * harness, an in-process client of its own server) and exits with a drain
 * pending would otherwise wait the drain's idle timeout at exit for an EOF
 * that only its own exit can send. */
#include "drain_peer.h"
#include "fdtable.h"
#include "inspect.h"

#include <string.h>
#include <sys/stat.h>

static int is_tcp_peer(int fd, const struct closewatch_record *rec)
{
	struct closewatch_record r;
	memset(&r, 0, sizeof r);
	cw_inspect_addrs(fd, &r);
	return !strcmp(r.local, rec->peer) && !strcmp(r.peer, rec->local);
}

int cw_drain_peer_here(const struct closewatch_record *rec, unsigned long ino)
{
	int tcp = rec->proto == CLOSEWATCH_PROTO_TCP;
	unsigned long peer = 0;
	if (!tcp && (rec->proto != CLOSEWATCH_PROTO_UNIX || !ino || !(peer = cw_inspect_unix_peer(ino))))
		return 0;
	if (tcp && (!strcmp(rec->peer, "unnamed") || !rec->peer[0]))
		return 0;
	int limit = cw_fd_limit();
	for (int fd = 0; fd < limit; fd++) {
		uint8_t e = cw_fd_get(fd);
		uint8_t kind = e & CW_KIND_MASK;
		if (!kind || (e & CW_FD_PRIVATE) || (kind == CW_KIND_TCP) != tcp)
			continue;
		struct stat st;
		if (tcp ? is_tcp_peer(fd, rec) : fstat(fd, &st) == 0 && (unsigned long)st.st_ino == peer)
			return 1;
	}
	return 0;
}
