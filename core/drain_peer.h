/* Is the other end of a drained connection held by this very process? */
#ifndef CW_DRAIN_PEER_H
#define CW_DRAIN_PEER_H

#include "closewatch.h"

/* 1 when an fd of this process (one the fd table knows as a socket) is the
 * peer of the drained socket that rec describes: for TCP, the socket whose
 * local and peer addresses are rec's peer and local; for unix, the socket
 * whose inode sock_diag names as the peer of inode ino (the drained socket's;
 * 0: unknown). At exit such a drain cannot end by waiting: its peer goes with
 * the process. Reads every socket fd's addresses or inode: for exit only. */
int cw_drain_peer_here(const struct closewatch_record *rec, unsigned long ino);

#endif
