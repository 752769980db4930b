/* `closewatch run [options] -- CMD ARGS…`: run a program under the shim,
 * optionally capturing its packets, then summarise what it closed. */
#include "../core/config.h"
#include "../core/elfkind.h"
#include "capture.h"
#include "cmds.h"
#include "preload.h"
#include "runlog.h"
#include "runstatus.h"
#include "util.h"
#include "via.h"
#include "watched.h"
#include "../trap/trap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_FAIL 125              /* closewatch itself failed (like env/timeout) */
#define CAPTURE_GRACE_MS 300      /* keep capturing after the program ends */

struct run_opts {
	const char *mode, *log, *events, *pcap, *iface;
	const char *backtrace;
	const char *via;
	int json;
};

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NFWD (sizeof(forwarded) / sizeof(forwarded[0]))

/* The signals `run` handles: the forwarded ones and SIGCHLD. They are blocked
 * in every thread of ours (the capture thread too) and taken synchronously
 * with sigwaitinfo(): no asynchronous handler, nothing to race with. */
static void handled_signals(sigset_t *set)
{
	sigemptyset(set);
	for (size_t k = 0; k < NFWD; k++)
		sigaddset(set, forwarded[k]);
	sigaddset(set, SIGCHLD);
}

static void usage(FILE *f)
{
	fputs("usage: closewatch run [--via auto|preload|trap] [--mode observe|warn|drain]\n"
	      "                      [--log PATH] [--json]\n"
	      "                      [--events all|risky] [--backtrace N] [--pcap FILE [--iface IF]]\n"
	      "                      -- CMD [ARGS...]\n"
	      "Run CMD with libclosewatch.so preloaded (found next to this program or in ../lib;\n"
	      "added in front of any LD_PRELOAD already set), or under a seccomp filter with\n"
	      "closewatch as the supervisor (--via trap), and print a summary on stderr at the\n"
	      "end: closes and shutdowns by verdict; what risky closes threw away (answer bytes\n"
	      "never sent, bytes in flight at the reset, request bytes not read); drains by result.\n"
	      "  --via W         the way in: preload (libclosewatch.so), trap (seccomp user\n"
	      "                  notification, closewatch supervises: static, musl and Go\n"
	      "                  programs), auto (default: preload where it sees the closes)\n"
	      "  --mode M        CLOSEWATCH_MODE (observe, warn, drain)\n"
	      "  --log PATH      CLOSEWATCH_LOG: a file (%p = pid; made absolute, and checked to\n"
	      "                  be writable: exit 125 if not), stderr or syslog. Without it\n"
	      "                  (and without CLOSEWATCH_LOG set), records go to a temporary file\n"
	      "                  that is summarised and then removed.\n"
	      "  --json          CLOSEWATCH_FORMAT=json\n"
	      "  --events E      CLOSEWATCH_EVENTS (all, risky; 'all' by default with --pcap)\n"
	      "  --backtrace N   CLOSEWATCH_BACKTRACE: frames per record, 0 to 16, 0 = off\n"
	      "  --pcap FILE     capture TCP packets with libpcap into FILE (pcap format) from\n"
	      "                  before CMD starts until shortly after it ends (needs root or\n"
	      "                  CAP_NET_RAW); check it with 'closewatch wire LOG FILE'\n"
	      "  --iface IF      interface to capture on (default: any)\n"
	      "Through the trap, do not SIGKILL closewatch: CMD's closes would fail with ENOSYS.\n"
	      "SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to CMD. Exit status: CMD's, or\n"
	      "128+N if it was killed by signal N; 125 if closewatch failed, 126/127 if CMD could\n"
	      "not be run; 2 on bad usage.\n", f);
}

static int opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
	const char *a = argv[*i];
	size_t n = strlen(name);
	if (strncmp(a, name, n))
		return 0;
	if (a[n] == '=') {
		*out = a + n + 1;
		return 1;
	}
	if (a[n])
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*out = argv[++*i];
	return 1;
}

/* An option that sets a CLOSEWATCH_* variable takes exactly the values the
 * library accepts (core/config.c's table): anything else, empty included, is
 * a usage error here rather than a warning and a default in every process. */
static int bad_setting(const char *opt, const char *value, int id)
{
	const struct cw_setting *s = &cw_settings[id];
	if (!value || cw_setting_check(s, value, NULL) > 0)
		return 0;
	char expect[80], msg[256];
	snprintf(msg, sizeof(msg), "%s '%.100s' is not valid (%s)", opt, value,
		 cw_setting_expect(s, expect, sizeof(expect)));
	cw_usage_error("run", msg);
	return 1;
}

/* Returns the index of CMD in argv, or -(exit status) on a usage error or --help. */
static int parse(int argc, char **argv, struct run_opts *o)
{
	static const struct { const char *name; size_t off; } vals[] = {
		{"--mode", offsetof(struct run_opts, mode)},
		{"--log", offsetof(struct run_opts, log)},
		{"--events", offsetof(struct run_opts, events)},
		{"--backtrace", offsetof(struct run_opts, backtrace)},
		{"--pcap", offsetof(struct run_opts, pcap)},
		{"--iface", offsetof(struct run_opts, iface)},
		{"--via", offsetof(struct run_opts, via)},
	};
	int i = 0;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (a[0] != '-' || !a[1])
			break;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return -0x100;
		}
		if (!strcmp(a, "--json")) {
			o->json = 1;
			continue;
		}
		int found = 0;
		for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]) && !found; k++) {
			const char *v;
			int r = opt_value(argc, argv, &i, vals[k].name, &v);
			if (r < 0) {
				char msg[80];
				snprintf(msg, sizeof(msg), "%s needs a value", vals[k].name);
				return -cw_usage_error("run", msg);
			}
			if (r > 0) {
				*(const char **)((char *)o + vals[k].off) = v;
				found = 1;
			}
		}
		if (!found)
			return -cw_unknown_option("run", a);
	}
	if (bad_setting("--mode", o->mode, CW_SET_MODE) || bad_setting("--log", o->log, CW_SET_LOG) ||
	    bad_setting("--events", o->events, CW_SET_EVENTS) ||
	    bad_setting("--backtrace", o->backtrace, CW_SET_BACKTRACE))
		return -2;
	if (o->via && strcmp(o->via, "auto") && strcmp(o->via, "preload") && strcmp(o->via, "trap"))
		return -cw_usage_error("run", "--via must be auto, preload or trap");
	if (o->iface && !o->pcap)
		return -cw_usage_error("run", "--iface only makes sense with --pcap");
	if ((o->log && !*o->log) || (o->pcap && !*o->pcap) || (o->iface && !*o->iface))
		return -cw_usage_error("run", "empty option value");
	if (i >= argc)
		return -cw_usage_error("run", "no command to run (closewatch run [options] -- CMD ARGS...)");
	return i;
}

static int set_env(const char *name, const char *value)
{
	if (setenv(name, value, 1) != 0) {
		cw_err("cannot set %s: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

static const char *env_lookup(const char *name, void *arg)
{
	(void)arg;
	return getenv(name);
}

static void warn_line(const char *line, size_t len, void *arg)
{
	(void)arg;
	fwrite(line, 1, len, stderr);
}

/* The CLOSEWATCH_* variables CMD inherits from our environment: a bad one is
 * reported here, once, in the library's own words (the same parser), and left
 * out of CMD's environment, which means the same (bad = default). Otherwise
 * every process of the run (each program a script starts) would print the
 * same warning again. Empty ones (= unset) go too. */
static void check_inherited(void)
{
	struct cw_config c;
	cw_config_parse(&c, env_lookup, NULL, warn_line, NULL);
	for (int i = 0; i < CW_NSETTINGS; i++)
		if (getenv(cw_settings[i].name) &&
		    cw_setting_check(&cw_settings[i], getenv(cw_settings[i].name), NULL) <= 0)
			unsetenv(cw_settings[i].name);
}

/* lib NULL: the trap watches, nothing is preloaded. */
static int setup_env(const struct run_opts *o, const char *lib)
{
	int rc = 0;
	if (lib) {
		char *preload = cw_preload_compose(lib, getenv("LD_PRELOAD"));
		rc = set_env("LD_PRELOAD", preload);
		free(preload);
	}
	if (o->mode)
		rc |= set_env("CLOSEWATCH_MODE", o->mode);
	if (o->json)
		rc |= set_env("CLOSEWATCH_FORMAT", "json");
	if (o->events)
		rc |= set_env("CLOSEWATCH_EVENTS", o->events);
	if (o->backtrace)
		rc |= set_env("CLOSEWATCH_BACKTRACE", o->backtrace);
	check_inherited(); /* after the options: they replace what they set */
	if (!o->events && o->pcap && !getenv("CLOSEWATCH_EVENTS"))
		rc |= set_env("CLOSEWATCH_EVENTS", "all");
	return rc;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* fork + exec CMD with the signal mask `old` (ours blocks the handled
 * signals); forward signals until it ends. Returns its wait status, or
 * -(exit status) if it could not run. */
static int spawn(char **cmd, const sigset_t *old)
{
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) != 0) {
		cw_err("pipe: %s", strerror(errno));
		return -RUN_FAIL;
	}
	pid_t pid = fork();
	if (pid < 0) {
		cw_err("fork: %s", strerror(errno));
		close(ep[0]);
		close(ep[1]);
		return -RUN_FAIL;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, old, NULL);
		close(ep[0]);
		execvp(cmd[0], cmd);
		int e = errno;
		if (write(ep[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(e == ENOENT ? 127 : 126);
	}
	close(ep[1]);
	int e = 0;
	ssize_t n;
	while ((n = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(ep[0]);
	sigset_t waitset;
	handled_signals(&waitset);
	int status = 0;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			cw_err("waitpid: %s", strerror(errno));
			status = RUN_FAIL << 8;
			break;
		}
		siginfo_t si;
		int sig = sigwaitinfo(&waitset, &si);
		/* SIGCHLD: look again. The terminal already sent a signal it
		 * generated to the whole foreground group, the child included. */
		if (sig > 0 && sig != SIGCHLD && !(si.si_code == SI_KERNEL && getpgid(pid) == getpgrp()))
			kill(pid, sig);
	}
	if (n == (ssize_t)sizeof(e)) {
		cw_err("cannot run %s: %s", cmd[0], strerror(e));
		return -(e == ENOENT ? 127 : 126);
	}
	return status;
}

int cw_cmd_run(int argc, char **argv)
{
	struct run_opts o;
	memset(&o, 0, sizeof(o));
	int ci = parse(argc, argv, &o);
	if (ci == -0x100)
		return 0;
	if (ci < 0)
		return -ci;
	/* What the command is, read once (resolved as execvp will): why the shim
	 * cannot reach it, or reachable. --via auto decides from it. */
	char why[256];
	int reachable = cw_via_auto(argv[ci], why, sizeof(why)) == CW_VIA_PRELOAD;
	int foreign = !reachable && !strcmp(why, CW_ELF_FOREIGN_WHY);
	int trap = o.via && !strcmp(o.via, "trap");
	if (!o.via || !strcmp(o.via, "auto"))
		trap = !reachable;
	char lib[4096], err[8192];
	if (trap)
		lib[0] = 0;
	else if (cw_find_library(lib, sizeof(lib), err, sizeof(err)) != 0) {
		cw_err("%s", err);
		return RUN_FAIL;
	}
	/* Before the capture thread starts, so that it inherits the mask. */
	sigset_t handled, old_mask;
	handled_signals(&handled);
	sigprocmask(SIG_BLOCK, &handled, &old_mask);
	/* A reader of our stderr that is gone (`closewatch run ... 2>&1 | head`) must
	 * not kill us: under the trap every trapped call of the program would then
	 * fail with ENOSYS, and in any case run's status is the program's. Blocked,
	 * not ignored: the program gets the old mask back, and an ignored signal
	 * would stay ignored in it across exec. A write then fails with EPIPE. */
	sigset_t pipe_sig;
	sigemptyset(&pipe_sig);
	sigaddset(&pipe_sig, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_sig, NULL);
	struct cw_runlog log;
	const char *spec = o.log ? o.log : getenv("CLOSEWATCH_LOG");
	if (cw_runlog_begin(&log, spec && *spec ? spec : NULL) != 0)
		return RUN_FAIL;
	if (set_env("CLOSEWATCH_LOG", log.spec) != 0 || setup_env(&o, trap ? NULL : lib) != 0) {
		cw_runlog_end(&log);
		return RUN_FAIL;
	}
	struct cw_capture *cap = NULL;
	if (o.pcap) {
		int perm;
		cap = cw_capture_open(o.iface, "tcp", o.pcap, err, sizeof(err), &perm);
		if (!cap || cw_capture_start_thread(cap) != 0) {
			if (!cap)
				cw_err("%s", err);
			else
				cw_capture_close(cap, NULL, NULL);
			cw_runlog_end(&log);
			return RUN_FAIL;
		}
	}
	/* A program LD_PRELOAD cannot reach (--via preload) is named up front and
	 * in the summary; one whose loader is not glibc's would not even start
	 * with the shim (musl's exits 127): refused. */
	const char *cmd_why = NULL;
	if (!trap && !reachable) {
		if (strstr(why, "loader ") == why || strstr(why, "musl loader ") == why) {
			cw_err("%s: cannot be watched with LD_PRELOAD (%s: it cannot load "
			       "libclosewatch.so, built for glibc): use --via trap", argv[ci], why);
			if (cap)
				cw_capture_close(cap, NULL, NULL);
			cw_runlog_end(&log);
			return RUN_FAIL;
		}
		if (!foreign)
			cw_err("%s: not watched (%s: use --via trap)", argv[ci], why);
		cmd_why = why;
	}
	/* A program of another ABI (a 32-bit one on x86-64) runs, but neither way
	 * in sees its system calls (the trap's filter lets them pass unexamined):
	 * said up front, and in the summary (from the shim's or the supervisor's
	 * look at the exec, trap/foreign.c). */
	if (foreign)
		cw_err("%s: not watched (%s: closewatch sees only this machine's native system "
		       "calls)", argv[ci], CW_ELF_FOREIGN_WHY);
	struct cw_runstatus rstat; /* what the watched processes tell us (records lost...) */
	cw_runstatus_begin(&rstat);
	int status = trap ? cw_trap_run(argv + ci, &old_mask) : spawn(argv + ci, &old_mask);
	int rc;
	if (status < 0)
		rc = -status;
	else if (WIFEXITED(status))
		rc = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		rc = 128 + WTERMSIG(status);
	else
		rc = RUN_FAIL;
	if (cap) {
		unsigned long pkts = 0, dropped = 0;
		sleep_ms(CAPTURE_GRACE_MS);
		if (cw_capture_close(cap, &pkts, &dropped) != 0 && rc == 0)
			rc = RUN_FAIL;
		fprintf(stderr, "closewatch: capture: %lu packet%s in %s", pkts, pkts == 1 ? "" : "s",
			o.pcap);
		if (dropped)
			fprintf(stderr, " (%lu dropped by the kernel: the capture is incomplete)", dropped);
		fputc('\n', stderr);
	}
	if (status >= 0) {
		cw_watched_summarize(stderr, rstat.path, argv[ci], cmd_why, trap);
		/* A death by a signal is no call either way in can look at: what
		 * the process still held was closed by the kernel, unseen. Said,
		 * so that "0 closes" is not read as "nothing was reset". */
		if (WIFSIGNALED(status)) {
			const char *sig = sigabbrev_np(WTERMSIG(status));
			fprintf(stderr, "closewatch: %s was killed by SIG%s: any socket it still held "
				"was closed by the kernel unseen (a death by a signal is no call to look at)\n",
				argv[ci], sig ? sig : "?");
		}
		cw_runlog_summarize(&log, stderr);
		cw_runstatus_summarize(&rstat, stderr);
	}
	cw_runstatus_end(&rstat);
	cw_runlog_end(&log);
	return rc;
}
