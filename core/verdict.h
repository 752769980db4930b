/* Predicting the kernel's fate of a socket from numbers (pure). The rules
 * follow __tcp_close() and inet_shutdown() in the kernel (README, "Records",
 * lists them); tests/test_verdicts.py checks each one on the wire. */
#ifndef CW_VERDICT_H
#define CW_VERDICT_H

#include "closewatch.h"

/* Set rec->verdict and rec->lost for close() of this socket now. */
void cw_verdict_close(struct closewatch_record *rec);

/* The same for shutdown(fd, how); how is SHUT_RD/SHUT_WR/SHUT_RDWR. */
void cw_verdict_shutdown(struct closewatch_record *rec, int how);

#endif
