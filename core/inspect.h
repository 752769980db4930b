/* Reading a socket's pending bytes and state from the kernel, before close. */
#ifndef CW_INSPECT_H
#define CW_INSPECT_H

#include "closewatch.h"
#include <stdint.h>

/* What to read. CW_INSPECT_VERDICT alone is enough to tell whether a close
 * is risky (for a TCP close that is not, the state is not even read); a
 * record needs everything: CW_INSPECT_ALL. */
#define CW_INSPECT_VERDICT 1
#define CW_INSPECT_QUEUES 2
#define CW_INSPECT_ADDRS 4
#define CW_INSPECT_ALL 7
/* Or'ed in: the fd table knows SO_LINGER is off (nobody set it on this
 * socket, see CW_FD_LINGER), so the kernel is not asked. */
#define CW_INSPECT_LINGER_OFF 8

/* Fill rec for a socket of kind (CW_KIND_*) as far as parts ask. Returns 0,
 * or -1 when fd is not (any more) a socket of that kind: a stale entry. */
int cw_inspect(int fd, uint8_t kind, struct closewatch_record *rec, int parts);

/* Complete a record that cw_inspect() filled with CW_INSPECT_VERDICT only:
 * queues and addresses, without asking again what the verdict already read. */
void cw_inspect_rest(int fd, struct closewatch_record *rec);

/* What a close must read before it knows whether a record (or a drain) is
 * due: everything under EVENTS=all; the queues and the TCP state in drain
 * mode (cw_drain_wanted drains fin_pending, and clean in ESTABLISHED);
 * else the verdict alone. The addresses, two system calls, only ever go
 * into a record: they are read once one is due (cw_inspect_complete). */
int cw_inspect_parts(int events_all, int drain_mode);

/* A record is due: read what parts (from cw_inspect_parts) left out. The
 * caller then judges again (cw_verdict_close): the queues may change it. */
void cw_inspect_complete(int fd, struct closewatch_record *rec, int parts);

/* The local and peer addresses alone (two system calls). */
void cw_inspect_addrs(int fd, struct closewatch_record *rec);

/* The inode of the peer of the unix socket with inode ino (sock_diag), 0 if
 * none or unknown. */
unsigned long cw_inspect_unix_peer(unsigned long ino);

/* 1 when another fd of this process, or a related process, refers to the
 * same socket. entry is the fd table entry (its flags say where to look). */
int cw_inspect_shared(int fd, uint8_t entry);

/* Processes that may hold our sockets: children we forked, or the parent. */
void cw_relatives_add(int pid);
void cw_relatives_reset_to_parent(void);
void cw_relatives_remove(int pid);

#endif
