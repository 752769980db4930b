/* Included first (-include) when a test program is built with musl-gcc:
 * musl 1.2.3 has no close_range() or closefrom() wrapper. System calls made
 * directly, as a musl program would. */
#ifndef CW_MUSL_COMPAT_H
#define CW_MUSL_COMPAT_H
#include <sys/syscall.h>
#include <unistd.h>
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
static inline int cw_musl_close_range(unsigned int lo, unsigned int hi, int flags)
{
	return (int)syscall(SYS_close_range, lo, hi, flags);
}
static inline void cw_musl_closefrom(int lo)
{
	syscall(SYS_close_range, (unsigned int)lo, ~0U, 0);
}
/* glibc's strerrorname_np() for the errno values the test programs print. */
#include <errno.h>
static inline const char *cw_musl_errname(int e)
{
	switch (e) {
#define N(x) case x: return #x;
	N(EPERM) N(ENOENT) N(EINTR) N(EIO) N(EBADF) N(EAGAIN) N(ENOMEM) N(EACCES) N(EFAULT)
	N(EBUSY) N(EEXIST) N(EINVAL) N(EMFILE) N(ENOSPC) N(EPIPE) N(ENOSYS) N(ENOTSOCK)
	N(EOPNOTSUPP) N(EADDRINUSE) N(ECONNABORTED) N(ECONNRESET) N(ENOBUFS) N(EISCONN)
	N(ENOTCONN) N(ETIMEDOUT) N(ECONNREFUSED) N(EINPROGRESS) N(EALREADY) N(ECHILD)
#undef N
	}
	return "E?";
}
#define strerrorname_np cw_musl_errname
#define close_range cw_musl_close_range
#define closefrom cw_musl_closefrom
#endif
