/* The real libc functions behind our hooks, bound with dlsym(RTLD_NEXT).
 *
 * Hooks may run before our constructor (another library's constructor closes
 * a socket), so every use goes through cw_real_bind(), which is cheap after
 * the first call. */
#ifndef CW_REAL_H
#define CW_REAL_H

#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

/* name, return type, parameters */
#define CW_REAL_FUNCS(X)                                                        \
	X(close, int, (int))                                                    \
	X(shutdown, int, (int, int))                                            \
	X(close_range, int, (unsigned int, unsigned int, int))                  \
	X(closefrom, void, (int))                                               \
	X(dup, int, (int))                                                      \
	X(dup2, int, (int, int))                                                \
	X(dup3, int, (int, int, int))                                           \
	X(fcntl, int, (int, int, ...))                                          \
	X(fcntl64, int, (int, int, ...))                                        \
	X(fclose, int, (FILE *))                                                \
	X(socket, int, (int, int, int))                                         \
	X(socketpair, int, (int, int, int, int[2]))                             \
	X(accept, int, (int, struct sockaddr *, socklen_t *))                   \
	X(accept4, int, (int, struct sockaddr *, socklen_t *, int))             \
	X(recvmsg, ssize_t, (int, struct msghdr *, int))                        \
	X(recvmmsg, int, (int, struct mmsghdr *, unsigned int, int, struct timespec *)) \
	X(fork, pid_t, (void))                                                  \
	X(epoll_create, int, (int))                                             \
	X(epoll_create1, int, (int))                                            \
	X(setsockopt, int, (int, int, int, const void *, socklen_t))            \
	X(syscall, long, (long, ...))                                           \
	X(posix_spawn, int, (pid_t *, const char *, const posix_spawn_file_actions_t *, \
			     const posix_spawnattr_t *, char *const[], char *const[])) \
	X(posix_spawnp, int, (pid_t *, const char *, const posix_spawn_file_actions_t *, \
			      const posix_spawnattr_t *, char *const[], char *const[])) \
	X(execve, int, (const char *, char *const[], char *const[]))            \
	X(execv, int, (const char *, char *const[]))                            \
	X(execvp, int, (const char *, char *const[]))                           \
	X(execvpe, int, (const char *, char *const[], char *const[]))         \
	X(_exit, void, (int))                                                   \
	X(_Exit, void, (int))                                                   \
	X(prctl, int, (int, ...))                                               \
	X(pthread_setname_np, int, (pthread_t, const char *))

/* A call on an fd of the drain thread's own table (core/drain_int.h), hidden
 * from ThreadSanitizer: it keeps one fd table per process, by number, and
 * would take the thread's fd N and the program's fd N for one fd used by two
 * threads without synchronisation (a data race that is none). */
#if defined(__SANITIZE_THREAD__)
#define CW_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CW_TSAN 1
#endif
#endif
#ifdef CW_TSAN
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#define CW_OWN_FD(call)                                                         \
	__extension__({                                                         \
		__tsan_ignore_thread_begin();                                   \
		__typeof__(call) own_r_ = (call);                               \
		__tsan_ignore_thread_end();                                     \
		own_r_;                                                         \
	})
#else
#define CW_OWN_FD(call) (call)
#endif

struct cw_real_table {
#define CW_REAL_FIELD(name, ret, args) ret(*name) args;
	CW_REAL_FUNCS(CW_REAL_FIELD)
#undef CW_REAL_FIELD
};

extern struct cw_real_table cw_real;

/* Bind every real function once; safe to call from any hook, any thread. */
void cw_real_bind(void);

/* The real function, bound on first use. */
#define REAL(name) (cw_real_bind(), cw_real.name)

#endif
