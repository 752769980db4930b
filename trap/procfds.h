/* What the supervisor reads from /proc about the watched processes: their
 * fds, which of them are sockets, who else holds a socket, who the watched
 * processes are. */
#ifndef CW_TRAP_PROCFDS_H
#define CW_TRAP_PROCFDS_H

#include <stddef.h>
#include <sys/types.h>

/* The fd numbers process pid has open in [lo, hi], ascending, into a growable
 * array (*fds, *cap). Only numbers; callers confirm with pidfd_getfd. Returns
 * how many, or -1 when the process is gone. */
long cw_proc_fds(pid_t pid, unsigned lo, unsigned hi, int **fds, size_t *cap);

/* The socket inode fd of pid refers to ("socket:[N]"), or 0. */
unsigned long cw_proc_fd_socket(pid_t pid, int fd);

/* 1 when fd of pid is marked close-on-exec (fdinfo flags). */
int cw_proc_fd_cloexec(pid_t pid, int fd);

/* Thread group of task tid (its process id), or -1 when it is gone. */
pid_t cw_proc_tgid(pid_t tid);

/* comm of task tid (at most 16 bytes, NUL-terminated; "" if gone). */
void cw_proc_comm(pid_t tid, char comm[17]);

/* Watched processes: every descendant of the supervisor (it is a child
 * subreaper, so orphans come back to it). The set is read from /proc again
 * only after cw_watch_dirty() (a watched process forked). */
void cw_watch_dirty(void);
void cw_watch_root(pid_t pid);

/* 1 when a watched process other than the closing fds still refers to socket
 * inode ino: any fd of another watched process, or an fd of pid that is not
 * in closing[0..n) or is in it at a higher number than fd (the kernel closes
 * a range in ascending order, so the last one carries the verdict). */
int cw_watch_socket_held(unsigned long ino, pid_t pid, int fd, const int *closing, size_t n);

/* The epoll fds of pid as cw_watch_socket_held(…, pid, …) knows them (it
 * reads them from /proc at times, see procfds.c): their count, *fds pointing
 * to them until the next call; -1 when not known (the caller looks itself). */
long cw_watch_epolls(pid_t pid, const int **fds);

/* The epoll fds known are to be read again: an epoll_create (any process), or
 * one of pid's is no longer an epoll instance. */
void cw_watch_epolls_stale(void);
void cw_watch_epoll_gone(pid_t pid);

/* Process pid (<= 0: not known) is making a second reference to a file, or a
 * unix socket or an io_uring (dup, fcntl F_DUPFD*, pidfd_getfd, socket and
 * socketpair AF_UNIX, io_uring_setup): its sockets are looked for in its fds
 * from now on (see procfds.c, dup-free). */
void cw_watch_dups(pid_t pid);

#endif
