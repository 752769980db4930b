/* Who closed. getpid(), gettid() and prctl(PR_GET_NAME) on every record were
 * about 4 % of the cost of logging every close (bench/churn, EVENTS=all):
 * the values only change at fork (pid, and the forking thread's tid) and
 * when a thread is renamed, and the shim sees both (its fork handlers, and
 * the prctl / pthread_setname_np / syscall hooks in hooks.c). What it cannot
 * see (README, Limits): a write to /proc/self/task/TID/comm, a clone() that
 * bypasses both fork() and syscall(), and a vfork() child that closes
 * sockets itself (undefined behaviour in POSIX) keep the values cached. */
#include "ident.h"
#include "real.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <unistd.h>

static atomic_int known_pid;         /* 0: not read yet */
static atomic_uint names_generation = 1;

/* This thread's values: valid when tid != 0 and generation is current. */
static __thread struct {
	pid_t tid;
	unsigned generation;
	char comm[17];
} me __attribute__((tls_model("initial-exec")));

void cw_ident_get(pid_t *pid, pid_t *tid, char comm[17])
{
	int p = atomic_load_explicit(&known_pid, memory_order_relaxed);
	if (!p) {
		p = (int)getpid();
		atomic_store_explicit(&known_pid, p, memory_order_relaxed);
	}
	unsigned gen = atomic_load_explicit(&names_generation, memory_order_acquire);
	if (!me.tid || me.generation != gen) {
		/* A signal handler that interrupts this refill finds tid 0 or the
		 * old generation and does a whole refill of its own: both write
		 * the same values. tid goes last, as the mark of a complete set. */
		char name[17] = {0};
		REAL(prctl)(PR_GET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
		int real_pid = (int)getpid();
		if (real_pid != p) {
			/* A child sharing our memory and this thread's TLS (vfork):
			 * its own values for this record, nothing cached for the
			 * parent, which would carry them from now on. */
			*pid = real_pid;
			*tid = gettid();
			memcpy(comm, name, sizeof name);
			return;
		}
		memcpy(me.comm, name, sizeof name);
		me.generation = gen;
		atomic_signal_fence(memory_order_seq_cst);
		me.tid = gettid();
	}
	*pid = p;
	*tid = me.tid;
	memcpy(comm, me.comm, sizeof me.comm);
}

void cw_ident_init(void)
{
	atomic_store(&known_pid, (int)getpid());
}

void cw_ident_after_fork_child(void)
{
	/* The child's one thread is the one that forked, now its process's
	 * leader (tid = pid), under the same name: a name this thread had read
	 * stays true, and the child's first record needs no system call for it
	 * (a fork-per-connection child's first record is often its only one). */
	int p = (int)getpid();
	atomic_store(&known_pid, p);
	if (me.tid)
		me.tid = p;
}

void cw_ident_before_fork(void)
{
	pid_t pid, tid;
	char comm[17];
	cw_ident_get(&pid, &tid, comm);
}

void cw_ident_names_changed(void)
{
	atomic_fetch_add_explicit(&names_generation, 1, memory_order_release);
}

/* The host name and the program's path do not change at fork, and exec
 * starts a new image with fresh values. What the shim does not follow: a
 * process that enters a new UTS namespace (unshare, setns) and renames its
 * host keeps the old name in its records (README, Limits). */
static atomic_int where_state; /* 0 not read, 1 being read, 2 ready */
static char host_name[sizeof(((struct utsname *)0)->nodename)];
static char exe_path[CW_EXE_MAX];

void cw_ident_where(const char **host, const char **exe)
{
	int st = atomic_load_explicit(&where_state, memory_order_acquire);
	if (st != 2) {
		int expected = 0;
		if (!atomic_compare_exchange_strong(&where_state, &expected, 1)) {
			*host = *exe = ""; /* another thread, or we interrupted our own read */
			return;
		}
		struct utsname u;
		if (uname(&u) == 0) {
			memcpy(host_name, u.nodename, sizeof host_name);
			host_name[sizeof host_name - 1] = 0;
		}
		ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
		exe_path[n > 0 ? n : 0] = 0;
		atomic_store_explicit(&where_state, 2, memory_order_release);
	}
	*host = host_name;
	*exe = exe_path;
}
