/* Forks against closes: a child created while another thread is between
 * judging a socket's close (is it shared with a child?) and the real close
 * would inherit a socket the judgement said nobody else holds. The parent's
 * record then carries a verdict (rst_unread) for a close that sent nothing,
 * and the child's last close (at its exit) carries it again.
 *
 * So a close of a covered socket, from the look at it to the real call, and
 * a fork, from before the kernel creates the child until the child's pid is
 * among the relatives and the sockets are marked, exclude each other.
 * Counters, not locks (as in drain.c): closing threads never wait for each
 * other, only for a fork in flight, and a fork waits for the closes in
 * flight. Both waits are bounded (a close that blocks in the kernel,
 * SO_LINGER {1,N}, only loses that exactness; a synchronous drain pauses
 * its close's share). Async-signal-safe: a
 * handler that interrupts its own thread's fork or close never waits for it. */
#ifndef CW_FORKGATE_H
#define CW_FORKGATE_H

void cw_forkgate_close_begin(void);
void cw_forkgate_close_end(void);
/* Around a long wait inside a close (a synchronous drain): forks need not
 * wait for it. pause returns whether this thread was inside a close. */
int cw_forkgate_close_pause(void);
void cw_forkgate_close_resume(int paused);
void cw_forkgate_fork_begin(void);
void cw_forkgate_fork_end(void);
/* A socket fd made (socket, accept, dup...) while a fork was in flight may
 * be in the child although the fork's marking (cw_fd_mark_all_sockets) ran
 * before its entry was written: take cw_forkgate_gen() before the call, and
 * if cw_forkgate_raced() says a fork overlapped, mark the entry CW_FD_FORKED. */
unsigned cw_forkgate_gen(void);
int cw_forkgate_raced(unsigned gen);
/* Around a call that makes socket fds, until its entries are written: a
 * child forked meanwhile may hold fds its copy of the table does not know. */
void cw_forkgate_make_begin(void);
void cw_forkgate_make_end(void);
/* In a child (or its children): was a socket being made in another thread
 * when it was forked? Then the fd table may miss a socket it holds. */
int cw_forkgate_child_missed_fds(void);
/* In a child (fork): no close or fork of the parent's threads is in flight here. */
void cw_forkgate_after_fork_child(void);

#endif
