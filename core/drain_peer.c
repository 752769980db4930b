/* cw_drain_cut_local_peers (drain.h): at exit, the pending drains whose peer
 * this very process holds. A program that holds both ends of a connection (a
 * test harness, an in-process client of its own server) and exits with a
 * drain pending would otherwise wait the drain's idle timeout at exit for an
 * EOF that only its own exit can send.
 *
 * One pass over the sockets the fd table knows (two system calls for a TCP
 * socket, its addresses; one for a unix socket, its inode), each compared in
 * memory with every pending drain: a TCP drain's peer has the drain's
 * addresses swapped, a unix drain's peer has the inode sock_diag names (asked
 * once per unix drain). */
#include "drain.h"
#include "drain_int.h"
#include "fdtable.h"
#include "inspect.h"

#include <string.h>
#include <sys/stat.h>

static int pending(int s)
{
	return atomic_load_explicit(&cw_drain_slots[s].state, memory_order_acquire) == CW_SLOT_SENT;
}

void cw_drain_cut_local_peers(void)
{
	/* A remote process's drains are its ancestor's thread's, which does
	 * not end with it: nothing waits for them here (and the slots are not
	 * ours to write). */
	if (!cw_drain_slots || cw_drain_is_remote() || atomic_load(&cw_drain_sh->pending) == 0)
		return;
	int hw = atomic_load(&cw_drain_sh->hw), unix_drains = 0;
	for (int s = 0; s < hw; s++) {
		struct cw_drain_slot *sl = &cw_drain_slots[s];
		sl->peer_ino = pending(s) && sl->ino ? cw_inspect_unix_peer(sl->ino) : 0;
		unix_drains += sl->peer_ino != 0;
	}
	int limit = cw_fd_limit();
	for (int fd = 0; fd < limit; fd++) {
		uint8_t e = cw_fd_get(fd);
		uint8_t kind = e & CW_KIND_MASK;
		if (!kind || (e & CW_FD_PRIVATE) || (kind != CW_KIND_TCP && !unix_drains))
			continue;
		struct closewatch_record r;
		struct stat st;
		memset(&r, 0, sizeof r);
		if (kind == CW_KIND_TCP)
			cw_inspect_addrs(fd, &r);
		else if (fstat(fd, &st) != 0)
			continue;
		for (int s = 0; s < hw; s++) {
			const struct closewatch_record *d = &cw_drain_events[s].rec;
			int peer = kind == CW_KIND_TCP
					   ? d->proto == CLOSEWATCH_PROTO_TCP && !strcmp(r.local, d->peer) &&
						     !strcmp(r.peer, d->local)
					   : cw_drain_slots[s].peer_ino == (unsigned long)st.st_ino;
			/* The thread sees it at the wake-up of cw_drain_at_exit. */
			if (peer && pending(s))
				atomic_store(&cw_drain_slots[s].cut, 1);
		}
	}
}
