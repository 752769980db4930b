/* Forks against closes: see forkgate.h. */
#include "forkgate.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define WAIT_NS (200 * 1000000LL) /* the longest either side waits */
#define YIELDS 64                 /* then 20 us naps */

static atomic_int closing, forking;
static atomic_uint generation; /* +1 as each fork begins and as it ends */
static atomic_int making;       /* threads between making socket fds and noting them */
static __thread int my_making __attribute__((tls_model("initial-exec")));
static int child_missed;        /* in a child: `making` of other threads at the fork */
/* This thread's own counts (a signal handler on the same thread). */
static __thread int my_closing __attribute__((tls_model("initial-exec")));
static __thread int my_forking __attribute__((tls_model("initial-exec")));

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One turn of a bounded wait; 0 once past its deadline (set on turn 0). */
static int wait_turn(int turn, int64_t *deadline)
{
	if (turn == 0)
		*deadline = now_ns() + WAIT_NS;
	else if (now_ns() > *deadline)
		return 0;
	if (turn < YIELDS) {
		sched_yield();
	} else {
		struct timespec t = {0, 20000};
		nanosleep(&t, NULL);
	}
	return 1;
}

void cw_forkgate_close_begin(void)
{
	int saved = errno;
	int64_t deadline = 0;
	for (int turn = 0;; turn++) {
		/* Wait out a fork without showing up in `closing`: a fork waits
		 * only for the closes really in flight. */
		if (atomic_load(&forking) <= my_forking) {
			/* Our own count first in, last out: a signal handler on this
			 * thread that forks in between never waits for us. */
			my_closing++;
			atomic_fetch_add(&closing, 1);
			/* seq_cst: either this thread sees the fork, or the fork sees us. */
			if (atomic_load(&forking) <= my_forking)
				break;
			atomic_fetch_sub(&closing, 1);
			my_closing--;
		}
		if (!wait_turn(turn, &deadline)) {
			my_closing++;
			atomic_fetch_add(&closing, 1);
			break;
		}
	}
	errno = saved;
}

void cw_forkgate_close_end(void)
{
	atomic_fetch_sub(&closing, 1);
	my_closing--;
}

int cw_forkgate_close_pause(void)
{
	if (my_closing <= 0)
		return 0;
	cw_forkgate_close_end();
	return 1;
}

void cw_forkgate_close_resume(int paused)
{
	if (paused)
		cw_forkgate_close_begin();
}

void cw_forkgate_fork_begin(void)
{
	int saved = errno;
	/* fork and posix_spawn are no cancellation points; the naps are. */
	int cancel_state;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
	my_forking++; /* first in, last out (see cw_forkgate_close_begin) */
	atomic_fetch_add(&forking, 1);
	atomic_fetch_add(&generation, 1);
	int64_t deadline = 0;
	for (int turn = 0; atomic_load(&closing) > my_closing && wait_turn(turn, &deadline); turn++)
		;
	pthread_setcancelstate(cancel_state, NULL);
	errno = saved;
}

void cw_forkgate_fork_end(void)
{
	atomic_fetch_add(&generation, 1);
	atomic_fetch_sub(&forking, 1);
	my_forking--;
}

unsigned cw_forkgate_gen(void)
{
	return atomic_load(&generation);
}

int cw_forkgate_raced(unsigned gen)
{
	return atomic_load(&forking) > my_forking || atomic_load(&generation) != gen;
}

void cw_forkgate_make_begin(void)
{
	my_making++;
	atomic_fetch_add(&making, 1);
}

void cw_forkgate_make_end(void)
{
	atomic_fetch_sub(&making, 1);
	my_making--;
}

int cw_forkgate_child_missed_fds(void)
{
	return child_missed;
}

void cw_forkgate_after_fork_child(void)
{
	child_missed |= atomic_load(&making) > my_making;
	atomic_store(&making, my_making);
	atomic_store(&closing, my_closing);
	atomic_store(&forking, my_forking);
}
