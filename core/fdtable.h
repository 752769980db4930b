/* Which fds are sockets we cover, so that close() of anything else costs
 * nothing: one byte per fd, read and written with relaxed atomics.
 *
 * The table is a zero-filled static array: no allocation, usable before our
 * constructor runs, and the kernel only backs the pages that are touched. An
 * entry can go stale when a socket is closed behind our back (raw syscall,
 * glibc-internal close); the close path therefore confirms with the kernel
 * before it trusts an entry that says "socket". */
#ifndef CW_FDTABLE_H
#define CW_FDTABLE_H

#include <stdint.h>

#define CW_FDTAB_SIZE (1u << 20) /* fds at or past this take the slow path */

/* Kinds (low 3 bits). 0 = not a socket we cover. */
#define CW_KIND_NONE 0
#define CW_KIND_TCP 1
#define CW_KIND_UNIX_STREAM 2
#define CW_KIND_UNIX_SEQPACKET 3
#define CW_KIND_MASK 0x07

/* Flags. */
#define CW_FD_DUPED 0x08   /* another fd of ours may refer to the same socket */
#define CW_FD_FORKED 0x10  /* a related process (fork) may hold the socket too */
#define CW_FD_LINGER 0x40  /* SO_LINGER may be on (the program set it, or the socket
			    * came from elsewhere): the close path must ask the kernel */
#define CW_FD_PRIVATE 0x20 /* the shim's own fd (log, drain): hidden from the program */

/* Entry for fd; 0 for fds outside the table. */
uint8_t cw_fd_get(int fd);
void cw_fd_set(int fd, uint8_t entry);
void cw_fd_clear(int fd);
void cw_fd_or(int fd, uint8_t flags);
int cw_fd_in_table(int fd);

/* One past the highest fd ever marked; bounds every scan of the table. */
int cw_fd_limit(void);

/* Set flags on every tracked socket (not on private fds). Used at fork. */
void cw_fd_mark_all_sockets(uint8_t flags);
/* The first fd >= lo the table names as a socket of the program's (not
 * ours), or -1. */
int cw_fd_next_socket(int lo);

/* Ask the kernel what fd is: a CW_KIND_*, or CW_KIND_NONE (not a socket, not
 * covered, or not open). One getsockopt call for a fd that is no socket,
 * two for TCP, at most three. */
uint8_t cw_fd_classify(int fd);

/* Kind from socket()'s arguments, without asking the kernel. */
uint8_t cw_fd_kind_from_args(int domain, int type, int protocol);

/* A directory entry as getdents64 returns it: /proc directories are read
 * with the raw call because opendir() would allocate. */
struct cw_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Calls fn(dir, name, fd, arg) for each numbered entry of dir, an open
 * /proc/PID/fd directory, in the kernel's order, until fn returns non-zero,
 * which is then returned; 0 at the end, -1 if reading dir failed before it.
 * Raw getdents64 into a stack buffer: no allocation, async-signal-safe. */
int cw_fd_dir_each(int dir, int (*fn)(int dir, const char *name, int fd, void *arg), void *arg);

/* At start-up: mark the sockets this process inherited (listed in
 * /proc/self/fd) as possibly shared with the parent. */
void cw_fd_scan_inherited(void);

/* A close-on-exec duplicate of fd at a high number, marked private (the
 * program sees it as not open). Returns it, or -1. */
int cw_fd_dup_private(int fd);

/* Move a shim-owned fd to a high private number: cw_fd_dup_private, then
 * the old number is closed. Returns the new fd, or -1 (fd left open). */
int cw_fd_hide(int fd);

/* The supervisor (no program shares its table): private fds at the lowest
 * free numbers from now on, and cw_fd_hide leaves an fd where it is. */
void cw_fd_private_low(void);

/* First private fd in [lo, hi], or -1. */
int cw_fd_next_private(int lo, int hi);

#endif
