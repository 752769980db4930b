"""Hostile programs (issue 9): the shim runs inside programs that race it, interrupt it, go
after its log fd, starve it of fds, run setuid, fill its disk and churn thousands of drains.
In every case the program must run exactly as it would without the shim, and the log must
stay whole.

Programs: tests/progs/hostile_*.c. Under make check (CW_SANITIZER set) the sizes shrink so
that the sanitized suite stays within CI's time budget; nothing is skipped."""
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

import cwtest
from cwtest import plain_env, prog, read_records, records_for, shim_env

SAN = os.environ.get("CW_SANITIZER", "") or ("on" if cwtest.PRELOAD_PREFIX else "")


def scaled(normal, sanitized):
    return sanitized if SAN else normal


def run(argv, env, timeout=60, preexec_fn=None, cwd=None):
    """Run to the end: (status, stdout lines, stderr text)."""
    try:
        r = subprocess.run([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           preexec_fn=preexec_fn, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv[0]} still running after {timeout}s (deadlock?); "
                             f"stderr {e.stderr!r}")
    out = r.stdout.decode(errors="replace").splitlines()
    return r.returncode, out, r.stderr.decode(errors="replace")


def warnings(stderr):
    """The shim's human lines on stderr (records in JSON format start with '{')."""
    return [l for l in stderr.splitlines() if l.startswith("closewatch:")]


def json_lines(stderr):
    return [json.loads(l) for l in stderr.splitlines() if l.startswith("{")]


def cmp_lines(lines):
    return [l for l in lines if l.startswith("cmp ")]


def nofile(n):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def few_fds_env(env):
    """With RLIMIT_NOFILE at its minimum the sanitizer runtime has no fd either: reports go
    to stderr (fd 2) instead of a log_path file it could not open, and LeakSanitizer, which
    must open /proc/self/maps at exit, is off."""
    env = dict(env)
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"):
        if k in env:
            env[k] += ":log_path=stderr" + (":detect_leaks=0" if k == "ASAN_OPTIONS" else "")
    return env


def no_leak_check_env(env):
    """LeakSanitizer cannot run in a setuid (non-dumpable) process: it needs ptrace."""
    env = dict(env)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    return env


# ---------------------------------------------------------------- threads, fork, exec

@cwtest.timeout(180)
def test_threads_close_and_shutdown_while_forking_and_exec(ctx):
    """16 threads close and shut down sockets (unix pairs and loopback TCP) while the main
    thread forks and execs (fork+exec and posix_spawn): every call returns what it should,
    every close and shutdown of the parent is logged once, each child logs its own, no line
    is torn, nothing deadlocks."""
    threads, iters, forks = 16, scaled(1000, 150), scaled(200, 40)
    log = ctx.path("cw.%p.log")
    rc, out, err = run([prog("hostile_threads"), threads, iters, forks],
                       shim_env(log=log, events="all"), timeout=170)
    assert rc == 0, f"status {rc}; stderr {err[-2000:]}; {out[-3:]}"
    assert not warnings(err), err
    last = out[-1].split()
    assert last[0] == "closes" and last[-1] == "0", out[-1]
    ncloses, nshut = int(last[1]), int(last[3])
    # 3 calls per pair round, 4 per TCP round (every 4th), the listener, 2 per fork round
    assert ncloses == threads * (2 * iters + 2 * ((iters + 3) // 4) + 1) + 2 * forks, out[-1]
    assert nshut == threads * (iters + (iters + 3) // 4), out[-1]
    logs = {int(f.split(".")[1]): f for f in os.listdir(ctx.tmp) if f.startswith("cw.")}
    children = {int(l.split()[1]): l.split()[2] for l in out if l.startswith("child ")}
    assert len(children) == forks and all(l.endswith(" 0") for l in out if l.startswith("child ")), \
        [l for l in out if l.startswith("child ") and not l.endswith(" 0")]
    parents = [pid for pid in logs if pid not in children]
    assert len(parents) == 1, f"logs of unknown processes: {parents}"
    parent = read_records(ctx.path(logs[parents[0]]))  # fails on a torn line
    calls = collections.Counter(r["call"] for r in parent)
    assert calls == {"close": ncloses, "shutdown": nshut}, (calls, ncloses, nshut)
    assert all(r["pid"] == parents[0] for r in parent)
    tids = {r["tid"] for r in parent}
    assert len(tids) == threads + 1, f"{len(tids)} threads logged"
    for pid, how in children.items():
        recs = read_records(ctx.path(logs[pid])) if pid in logs else []
        # fork: the close before exec, then the exec'd child's two; spawn: those two
        want = 3 if how == "fork" else 2
        assert len(recs) == want and all(r["pid"] == pid for r in recs), (pid, how, recs)
        unread = [r for r in recs if r["verdict"] == "rst_unread"]
        assert len(unread) == 1 and unread[0]["recvq"] == 3, recs


# ---------------------------------------------------------------- signals

def _signal_storm(ctx, backtrace, interval_us):
    """hostile_signal runs until both the main loop and the handler have done their share
    (a count, not a time: a loaded machine only takes longer); its time limit, like run()'s,
    only ends a hang."""
    log = ctx.path("cw.log")
    rounds, handler_runs = scaled(20000, 4000), scaled(200, 50)
    env = shim_env(log=log, events="all", backtrace=backtrace)
    rc, out, err = run([prog("hostile_signal"), rounds, handler_runs, interval_us, 80000], env,
                       timeout=100)
    assert rc == 0, f"status {rc}: {out} {err[-2000:]}"
    w = out[-1].split()
    main, handler, errors = int(w[1]), int(w[3]), int(w[5])
    assert errors == 0, out
    assert main >= rounds and handler >= handler_runs, out
    recs = read_records(log)  # fails on a torn line
    by = collections.Counter((r["call"], r["verdict"], r["recvq"]) for r in recs)
    # The main thread's closes are all logged, whatever the handler does meanwhile.
    assert by[("close", "rst_unread", 1)] == main, by
    # The handler's: at most one record per call (a close that interrupted the shim may
    # pass straight through), never more.
    assert by[("close", "rst_unread", 2)] <= handler, by
    assert sum(v for (c, _, _), v in by.items() if c == "shutdown") <= main + handler, by
    assert not warnings(err), err


@cwtest.timeout(120)
def test_close_in_signal_handler_while_inside_the_shim(ctx):
    """SIGALRM every 200 us; the handler closes and shuts down sockets while the main thread
    is in the middle of its own closes (inside the shim): right return values, errno kept,
    no deadlock, no torn line."""
    _signal_storm(ctx, 0, scaled(200, 1000))


@cwtest.timeout(120)
def test_close_in_signal_handler_with_backtraces(ctx):
    """The same with backtraces on: the handler's closes unwind and name their frames while
    the main thread may be doing the same (nothing on that path allocates: under TSan a
    malloc in a handler would be reported). The timer is a little slower: the point is to
    land inside the shim, not to starve the program."""
    _signal_storm(ctx, 8, scaled(1000, 5000))


# ---------------------------------------------------------------- the log fd

def test_program_closes_dups_over_and_wipes_the_log_fd(ctx):
    """A program that finds the shim's log fd through /proc/self/fd, closes it, dup2s its own
    file over it, writes there, then close_range/closefrom/close-loops/dup2s over every fd:
    its own fds behave exactly as without the shim, its data lands in its file, and every
    marker close is in the log, in order. Every hooked call that takes an fd (fcntl, dup*,
    shutdown, setsockopt, accept, recvmsg, close) answers for the log fd exactly as for an fd
    that is not open, and closefrom(-1) (glibc: from 0) leaves the log fd alone."""
    log, own = ctx.path("cw.log"), ctx.path("own.txt")
    argv = [prog("hostile_logfd"), log, own]
    rc0, plain, err0 = run(argv, plain_env(), preexec_fn=nofile(512))
    assert rc0 == 0, err0
    os.unlink(own)
    rc, out, err = run(argv, shim_env(log=log, events="risky"), preexec_fn=nofile(512))
    assert rc == 0, f"status {rc}: {out} {err}"
    assert cmp_lines(out) == cmp_lines(plain), \
        f"the program's own fds behave differently:\nwith shim {cmp_lines(out)}\nwithout {cmp_lines(plain)}"
    assert "log found yes" in out, out
    assert "log close -1 EBADF" in out, out  # to the program, our fd is not open
    # Every hooked call answers for our fd exactly as for a number that is not open...
    probes = lambda lines, p: [l[len(p):] for l in lines if l.startswith(p + " probe closed ")]
    assert probes(out, "log") == probes(out, "cmp") and probes(out, "cmp"), \
        f"the log fd answers otherwise than a closed fd:\n{probes(out, 'log')}\n{probes(out, 'cmp')}"
    # ...the calls the shim does not hook still see it (README, Limits).
    assert "log sees fstat open" in out and "log sees write0 open" in out, out
    assert "log dup2 ok" in out and "log probe dup EBADF" in out, out
    with open(own) as f:
        assert f.read() == "mine\n", "the program's write through the dup2'd fd went elsewhere"
    with open(log) as f:
        assert "mine" not in f.read(), "the program's data went into the log"
    recs = read_records(log)
    markers = [r["recvq"] for r in recs]
    want = [int(l.split()[2]) for l in cmp_lines(plain) if l.startswith("cmp marker") and l.endswith(" ok")]
    assert want == [1, 2, 3, 4, 5, 6, 8], plain  # marker 7 cannot be made: every fd is taken
    want.append(9)  # after closefrom(-1), which closes stdout too: only in the log
    assert markers == want, f"markers logged {markers}, made {want}"
    assert all(r["verdict"] == "rst_unread" and r["call"] == "close" for r in recs), recs
    assert not err.strip(), err


# ---------------------------------------------------------------- calls that fail

@cwtest.timeout(120)
def test_failing_calls_are_not_closes(ctx):
    """dup2/dup3 with a bad oldfd, bad flags, oldfd == newfd or newfd past RLIMIT_NOFILE,
    close_range with an unknown flag or first > last, shutdown with a bad how, on a pipe, on
    an unconnected socket, close of fds that are not open, fclose of a stream whose fd is
    gone, and the syscall() forms, all aimed at a loopback TCP socket and a unix socket that
    hold unread bytes: every call returns what it returns without the shim (value and
    errno), none is logged, none drains (the sockets keep their unread bytes, stay writable,
    no SIGPIPE), and each socket's real close afterwards is logged once, as rst_unread. The
    program sees no fd it did not open (warn mode's backtraces: libunwind's own pipe)."""
    argv = [prog("hostile_badcalls")]
    rc0, plain, err0 = run(argv, plain_env())
    assert rc0 == 0, f"status {rc0} without the shim: {plain} {err0}"
    fds = {l.split()[1]: int(l.split()[2]) for l in plain if l.startswith("fd ")}
    short = {"CLOSEWATCH_DRAIN_IDLE_MS": 200}  # a sync drain of u waits for up, closed after it
    for mode, extra in (("observe", None), ("warn", None), ("drain", short),
                        ("drain", dict(short, CLOSEWATCH_DRAIN_SYNC=1))):
        log = ctx.path(f"cw-{mode}-{len(extra or ())}.log")
        rc, out, err = run(argv, shim_env(log=log, mode=mode, events="all", extra=extra))
        what = f"mode {mode} {extra or ''}"
        assert rc == 0, f"{what}: status {rc} (141: SIGPIPE on a socket shut behind its back): " \
                        f"{out} {err[-2000:]}"
        assert cmp_lines(out) == cmp_lines(plain), f"{what}: the calls answer differently:\n" + \
            "\n".join(f"  with {a!r}\n  without {b!r}" for a, b in zip(cmp_lines(out), cmp_lines(plain))
                      if a != b)
        recs = read_records(log)
        wrong = [r for r in recs if r["call"] in ("dup2", "dup3", "close_range", "closefrom",
                                                    "shutdown", "fclose")]
        assert not wrong, f"{what}: failed calls logged: {wrong}"
        for name in ("c", "u"):
            got = [r for r in recs if r["fd"] == fds[name] and r["call"] != "drain"]
            assert len(got) == 1 and got[0]["call"] == "close" and got[0]["verdict"] == "rst_unread", \
                f"{what}: records for {name} (fd {fds[name]}): {got}"
            assert got[0]["recvq"] == (6 if name == "c" else 5), got[0]
            drains = records_for(recs, call="drain", fd=fds[name])
            assert len(drains) == (mode == "drain"), f"{what}: drains of {name}: {drains}"


# ---------------------------------------------------------------- the log file's medium

FULLFS = r"""
set -e
D="$1"; OUT="$2"; FILL_KB="$3"; PRELOAD="$4"; shift 4
mount -t tmpfs -o size=64k cwtest-full "$D"
if [ "$FILL_KB" -gt 0 ]; then dd if=/dev/zero of="$D/fill" bs=1k count="$FILL_KB" 2>/dev/null || true; fi
set +e
LD_PRELOAD="$PRELOAD" "$@" >"$OUT/stdout" 2>"$OUT/stderr"
echo $? >"$OUT/status"
df -k "$D" | tail -1 >"$OUT/df"
cp "$D/cw.log" "$OUT/cw.log" 2>/dev/null
exit 0
"""


def _full_fs(ctx, fill_kb):
    cwtest.require_root()
    d, out = ctx.path("full"), ctx.path("out")
    os.mkdir(d)
    os.mkdir(out)
    acts = ["threads", 2, scaled(300, 100), "pair", "socket", "tcp4", "close", "say", "end"]
    rc0, plain, _ = run([prog("cwprog")] + acts, plain_env())
    env = shim_env(log=os.path.join(d, "cw.log"), events="all")
    preload = env.pop("LD_PRELOAD")  # only for the program, not for mount, dd, cp
    script = ctx.path("full.sh")
    with open(script, "w") as f:
        f.write(FULLFS)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", script, d, out,
                        str(fill_kb), preload, prog("cwprog")] + [str(a) for a in acts],
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=100)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "status")) as f:
        status = int(f.read())
    with open(os.path.join(out, "stdout")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(out, "stderr")) as f:
        err = f.read()
    assert status == rc0 == 0, (status, err)
    assert lines == plain, f"output changed on a full disk: {lines} vs {plain}"
    assert len(warnings(err)) <= 1 and not json_lines(err), f"stderr: {err[:2000]}"
    raw = b""
    if os.path.exists(os.path.join(out, "cw.log")):
        with open(os.path.join(out, "cw.log"), "rb") as f:
            raw = f.read()
    # Every complete line is a record; only the write that hit ENOSPC may leave a
    # fragment, and only at the very end.
    body, _, tail = raw.rpartition(b"\n")
    for n, line in enumerate(body.split(b"\n") if body else [], 1):
        json.loads(line)
    assert len(tail) < 4096
    return len(body.split(b"\n")) if body else 0


@cwtest.timeout(120)
def test_log_on_a_full_filesystem(ctx):
    """The log file on a 64 KB tmpfs that is already full: the program runs unaffected, no
    record lands anywhere else (not on stderr), the shim does not spin or fail."""
    n = _full_fs(ctx, 64)
    assert n == 0, f"{n} records on a full filesystem?"


@cwtest.timeout(120)
def test_log_fills_the_filesystem_midway(ctx):
    """Room for a few dozen records, then ENOSPC: the records before are whole, at most one
    fragment at the end, the program unaffected."""
    n = _full_fs(ctx, 52)
    assert n > 0, "no record fitted in the free room"


def _unopenable(ctx, log, as_user=None):
    acts = ["socketpair", "write", 3, "use", "pair", "close", "socket", "tcp4", "close",
            "say", "end"]
    env = shim_env(log=log, events="all")
    argv = [prog("cwprog")] + acts
    pre = None
    if as_user:
        # a copy the unprivileged user can run (the build tree may not be reachable)
        d = tempfile.mkdtemp(dir=ctx.tmp)
        os.chmod(ctx.tmp, 0o755)
        os.chmod(d, 0o755)
        shutil.copy(prog("cwprog"), d)
        shutil.copy(cwtest.LIB, d)
        # the preload only after the switch to nobody: setpriv itself would open the log as root
        preload = env.pop("LD_PRELOAD").replace(cwtest.LIB, os.path.join(d, "libclosewatch.so"))
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "env", "LD_PRELOAD=" + preload, os.path.join(d, "cwprog")] + acts
    rc0, plain, _ = run([prog("cwprog")] + acts, plain_env())
    rc, out, err = run(argv, env)
    assert rc == rc0 == 0, (rc, err)
    assert out == plain, (out, plain)
    w = warnings(err)
    assert len(w) == 1, f"expected exactly one warning line, got {w}"
    assert "cannot open log file" in w[0] and log.replace("%p", "") in w[0], w[0]
    # The warning says "using stderr": the records must be there.
    recs = json_lines(err)
    # the reader closed with 3 bytes unread, the tcp socket, the writer still open at exit
    assert [(r["call"], r["fd"]) for r in recs] == [("close", 4), ("close", 4), ("exit", 3)] \
        and recs[0]["verdict"] == "rst_unread", f"records after the warning 'using stderr': {recs}"
    return err


def test_log_path_in_a_missing_directory(ctx):
    _unopenable(ctx, ctx.path("no/such/dir/cw.log"))


def test_log_path_is_a_directory(ctx):
    _unopenable(ctx, ctx.tmp)


def test_log_path_is_a_symlink(ctx):
    """O_NOFOLLOW: a symlink planted at the log path is never followed."""
    target = ctx.path("target")
    with open(target, "w") as f:
        f.write("precious\n")
    os.symlink(target, ctx.path("cw.log"))
    _unopenable(ctx, ctx.path("cw.log"))
    with open(target) as f:
        assert f.read() == "precious\n"


def test_log_path_not_writable(ctx):
    cwtest.require_root()
    d = ctx.path("rootonly")
    os.mkdir(d, 0o755)
    _unopenable(ctx, os.path.join(d, "cw.log"), as_user=True)
    assert not os.path.exists(os.path.join(d, "cw.log"))


# ---------------------------------------------------------------- RLIMIT_NOFILE

def _rlimit(ctx, limit, log):
    argv = [prog("hostile_rlimit"), 64]
    few = few_fds_env if limit < 64 else dict
    rc0, plain, err0 = run(argv, few(plain_env()), preexec_fn=nofile(limit))
    assert rc0 == 0, err0
    logpath = log if log != "stderr" else None
    rc, out, err = run(argv, few(shim_env(log=log, events="all")), preexec_fn=nofile(limit),
                       timeout=100)
    assert rc == 0, f"status {rc}: {out} {err[-2000:]}"
    return plain, out, err, logpath


def _count(lines, key):
    return [int(l.split()[-1]) for l in lines if l.startswith(key + " ")]


def test_rlimit_nofile_minimum(ctx):
    """RLIMIT_NOFILE 4 (stdio and one more: what the dynamic loader needs), 5 and 16.
    Logging to stderr the shim takes no fd: the program sees exactly what it sees without
    it. Logging to a file the shim takes one fd, never more, and that fd is the log: every
    close the program makes is in it (or, with no fd to be had, on stderr after one
    warning)."""
    for limit in (4, 5, 16):
        plain, out, err, _ = _rlimit(ctx, limit, "stderr")
        assert out == plain, f"limit {limit}, log on stderr: {out} vs {plain}"
        assert len(json_lines(err)) == _count(out, "closes")[0], (limit, err)
        log = ctx.path(f"cw{limit}.log")
        plain, out, err, _ = _rlimit(ctx, limit, log)
        for key in ("cmp sockets", "cmp sockets-again"):
            a, b = _count(plain, key), _count(out, key)
            assert b[0] >= a[0] - 1, f"limit {limit}: {key} {b} with the shim, {a} without"
        extra = [l for l in out if l.startswith("fd ")]
        assert len(extra) <= 1 and all(l.endswith(" " + log) for l in extra), \
            f"limit {limit}: fds the program did not open: {extra}"
        closes = _count(out, "closes")[0]
        recs = read_records(log) + json_lines(err)
        assert len(recs) == closes, \
            f"limit {limit}: {closes} socket closes, {len(recs)} records; stderr {err!r}; {out}"
        assert len(warnings(err)) <= 1, err


@cwtest.timeout(120)
def test_rlimit_nofile_one_million(ctx):
    """RLIMIT_NOFILE 1,000,000 (needs nr_open >= 1e6 and CAP_SYS_RESOURCE; without the
    capability the highest hard limit allowed is used, and said): sockets at the top of
    the range are logged with their numbers, close_range over the range that holds the
    shim's log fd logs its sockets and keeps the log, a close loop over a million fds
    stays fast: each close() of an fd the program does not hold is that one syscall, as
    without the shim (counted by strace over a stretch of the range, not timed)."""
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    limit = min(1_000_000, nr_open)
    try:
        subprocess.run(["true"], preexec_fn=nofile(limit), check=True)
    except (subprocess.SubprocessError, OSError):
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        print(f"    note: cannot raise RLIMIT_NOFILE to 1,000,000 (no CAP_SYS_RESOURCE); "
              f"testing at the hard limit {limit}", flush=True)
    assert limit >= 4096, limit
    log = ctx.path("cw.log")
    plain, out, err, _ = _rlimit(ctx, limit, log)
    assert cmp_lines(out) == cmp_lines(plain), (out, plain)
    assert f"cmp limit {limit}" in out
    recs = read_records(log)
    assert len(recs) == _count(out, "closes")[0], (len(recs), out)
    top = {r["fd"]: r for r in recs if r["fd"] >= limit - 3}
    assert top[limit - 1]["call"] == "close" and top[limit - 1]["verdict"] == "rst_unread", top
    for fd in (limit - 2, limit - 3):
        assert top[fd]["call"] == "close_range" and top[fd]["verdict"] == "rst_unread", top
    assert any(r["verdict"] == "rst_unread" and r["fd"] < 100 for r in recs[-2:]), \
        "the marker after the close loop is missing: the log did not survive"
    print(f"    close loop over {limit} fds: {_count(out, 'closeloop ms')} ms (not checked)")
    assert not err.strip(), err
    # Below the top of the range, where the shim keeps its own fds.
    lo = limit // 2
    hi = min(lo + 4999, limit - 1024)
    plain_calls = _closeloop_syscalls(ctx, limit, lo, hi, with_shim=False)
    shim_calls = _closeloop_syscalls(ctx, limit, lo, hi, with_shim=True)
    assert plain_calls == {"close": hi - lo + 1, "write": 1}, plain_calls  # + "closed 0"
    assert shim_calls == plain_calls, f"with the shim {shim_calls} vs without {plain_calls}"


def _closeloop_syscalls(ctx, limit, lo, hi, with_shim):
    """The syscalls (name: count) of tests/progs/cwprog's `closeloop LO HI` over fds it does
    not hold, RLIMIT_NOFILE at `limit`, under strace, between two markers it writes."""
    if not shutil.which("strace"):
        cwtest.skip("strace is not installed")
    out = ctx.path(f"strace-closeloop-{with_shim}.txt")
    cmd = ["strace", "-f", "-qq", "-o", out]
    if with_shim:
        for k, v in shim_env(log=ctx.path("cw-closeloop.log")).items():
            if k == "LD_PRELOAD" or k.startswith("CLOSEWATCH_"):
                cmd += ["-E", f"{k}={v}"]
    # a socket close first: the shim is loaded and its log open before the loop
    cmd += [prog("cwprog"), "socket", "tcp4", "close", "say", "loop-begin",
            "closeloop", lo, hi, "say", "loop-end"]
    rc, _, err = run(cmd, plain_env(), preexec_fn=nofile(limit), timeout=100)
    assert rc == 0, err[-2000:]
    with open(out) as f:
        lines = f.read().splitlines()
    b = [i for i, l in enumerate(lines) if 'write(1, "loop-begin' in l]
    e = [i for i, l in enumerate(lines) if 'write(1, "loop-end' in l]
    assert len(b) == 1 and len(e) == 1, "markers not found in strace output"
    names = collections.Counter()
    for l in lines[b[0] + 1:e[0]]:
        w = l.split(None, 1)
        if len(w) == 2 and "(" in w[1] and w[1][0].isalpha():
            name = w[1].split("(", 1)[0]
            # a sanitizer runtime maps its own memory now and then (seen: TSan's close
            # interceptor), with or without the shim; the shim's close path allocates nothing
            if not (SAN and name in ("mmap", "munmap", "madvise", "mprotect")):
                names[name] += 1
    if with_shim:
        assert records_for(read_records(ctx.path("cw-closeloop.log")), call="close"), \
            "the shim was loaded"
    return dict(names)


# ---------------------------------------------------------------- setuid

SETUID_INNER = r"""
import json, os, socket, subprocess, sys
tmp, use_syslog, argv = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
got = []
if use_syslog:
    # A private /dev with our own syslog socket (this runs in its own mount namespace).
    import tempfile
    dev = tempfile.mkdtemp(prefix="dev-", dir=tmp)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "cwtest-dev", dev], check=True)
    for name in ("null", "zero", "random", "urandom", "full", "tty"):
        if os.path.exists("/dev/" + name):
            open(os.path.join(dev, name), "w").close()
            subprocess.run(["mount", "--bind", "/dev/" + name, os.path.join(dev, name)], check=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(dev, "log"))
    os.chmod(os.path.join(dev, "log"), 0o666)
    subprocess.run(["mount", "--bind", dev, "/dev"], check=True)
r = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True,
                   text=True, timeout=60)
if use_syslog:
    s.setblocking(False)
    while True:
        try:
            got.append(s.recv(65536).decode(errors="replace"))
        except BlockingIOError:
            break
print(json.dumps({"status": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "syslog": got}))
"""


def _setuid(ctx, use_syslog):
    """Copy hostile_setuid_inspect and the library into a directory the loader trusts for
    setuid programs ($ORIGIN is honoured only there), make it setuid root, run it as
    nobody with CLOSEWATCH_LOG naming files root may write but nobody may not."""
    cwtest.require_root()
    base = tempfile.mkdtemp(prefix="cwtest-suid-", dir="/usr/lib")
    try:
        os.chmod(base, 0o755)
        os.mkdir(os.path.join(base, "tests"), 0o755)
        exe = os.path.join(base, "tests", "prog")
        shutil.copy(prog("hostile_setuid_inspect"), exe)
        shutil.copy(cwtest.LIB, os.path.join(base, "libclosewatch.so"))
        os.chown(exe, 0, 0)
        os.chmod(exe, 0o4755)
        os.chmod(os.path.join(base, "libclosewatch.so"), 0o755)
        victim = ctx.path("victim")
        os.mkdir(victim, 0o755)
        os.chmod(ctx.tmp, 0o755)
        existing = os.path.join(victim, "existing.log")
        with open(existing, "w") as f:
            f.write("precious\n")
        os.chmod(existing, 0o600)
        results = {}
        for name in ("new.log", "existing.log", "new-%p.log"):
            env = no_leak_check_env(shim_env(log=os.path.join(victim, name), events="risky"))
            env.pop("LD_PRELOAD")  # a path in LD_PRELOAD is ignored for setuid programs anyway
            inner = ctx.path("inner.py")
            with open(inner, "w") as f:
                f.write(SETUID_INNER)
            cmd = ["unshare", "-m", "--propagation", "private", sys.executable, inner,
                   ctx.tmp, "1" if use_syslog else "0",
                   "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", exe]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
            assert r.returncode == 0, r.stderr
            res = json.loads(r.stdout)
            out = res["stdout"].splitlines()
            assert res["status"] == 0, res
            assert out[:4] == ["uid 65534 euid 0", "inspect rst_unread", "closed 0 0", "done"], res
            results[name] = res
        assert sorted(os.listdir(victim)) == ["existing.log"], os.listdir(victim)
        with open(existing) as f:
            assert f.read() == "precious\n", "a setuid program appended to a file named by the user"
        return results
    finally:
        shutil.rmtree(base, ignore_errors=True)


@cwtest.timeout(120)
def test_setuid_program_logs_to_syslog_never_to_the_named_file(ctx):
    for name, res in _setuid(ctx, use_syslog=True).items():
        msgs = res["syslog"]
        assert len(msgs) == 1, f"{name}: syslog got {msgs}; stderr {res['stderr']!r}"
        assert msgs[0].startswith("<12>prog[") and '"verdict":"rst_unread"' in msgs[0], msgs
        assert not warnings(res["stderr"]) and not json_lines(res["stderr"]), res["stderr"]


@cwtest.timeout(120)
def test_setuid_program_without_syslog(ctx):
    """No /dev/log: one warning, records on stderr (the invoking user's own fd), still no file."""
    for name, res in _setuid(ctx, use_syslog=False).items():
        w = warnings(res["stderr"])
        assert len(w) == 1 and "/dev/log" in w[0], f"{name}: {res['stderr']!r}"
        recs = json_lines(res["stderr"])
        assert len(recs) == 1 and recs[0]["verdict"] == "rst_unread", \
            f"{name}: the warning says 'using stderr', records there: {recs}"


def test_syslog_lines_carry_no_raw_control_characters(ctx):
    """comm is whatever name the program was executed under (a symlink's name, chosen by
    whoever runs it, setuid programs included): in the syslog prefix as in the record, a
    newline or an escape sequence must not reach the log raw (log forging)."""
    cwtest.require_root()
    link = os.path.join(ctx.tmp, "cw\nx\x1b[1mforged")
    os.symlink(prog("cwprog"), link)
    env = shim_env(log="syslog", events="risky")
    inner = ctx.path("inner.py")
    with open(inner, "w") as f:
        f.write(SETUID_INNER)
    preload = env.pop("LD_PRELOAD")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, inner, ctx.tmp,
                        "1", "env", "LD_PRELOAD=" + preload, link, "socketpair", "write", "3",
                        "use", "pair", "close", "say", "end"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["status"] == 0, res
    msgs = res["syslog"]
    assert len(msgs) >= 1 and any('"verdict":"rst_unread"' in m for m in msgs), res
    for m in msgs:
        bad = [c for c in m if ord(c) < 0x20 or ord(c) == 0x7f]
        assert not bad, f"raw control characters {bad} in a syslog message: {m[:200]!r}"


# ---------------------------------------------------------------- drain churn

@cwtest.timeout(240)
def test_drain_churn_peer_resets_half(ctx):
    """10,000 connections closed with 1000 bytes unread, in drain mode; the peer closes
    half normally and resets the other half once it sees the drain's FIN. No fd leaks (the
    socket count returns to one: the drain engine's only fd in the program's table, the
    program end of its channel, a unix socket; nothing else is new), every
    drain is logged exactly once with the right result, and the peer never sees a reset."""
    n = scaled(10000, 2000)
    log = ctx.path("cw.log")
    env = shim_env(log=log, mode="drain", events="risky",
                   extra={"CLOSEWATCH_DRAIN_IDLE_MS": 20000, "CLOSEWATCH_DRAIN_TIMEOUT_MS": 60000})
    srv = ctx.start([prog("hostile_drain_churn"), "server", str(n)], env=env)
    start_all, start_socks = map(int, srv.expect("fds-start").split())
    port = int(srv.expect("port"))
    rc, out, err = run([prog("hostile_drain_churn"), "peer", port, n, 64], plain_env(), timeout=200)
    assert rc == 0, (out, err)
    assert out[-1] == f"peer eof {n} reset 0 other 0", out
    end = srv.expect("fds-end", timeout=90).split()
    assert srv.wait(60) == 0, srv.stderr
    end_all, end_socks, new = int(end[0]), int(end[1]), end[2]
    assert start_socks == 0 and end_socks == 1, f"sockets left open: {end_socks}"
    assert len(new.split(",")) == 1 and new.startswith("socket:"), f"new fds: {new}"
    assert end_all == start_all + 1, f"fds: {start_all} at the start, {end_all} at the end"
    recs = read_records(log)
    closes = [r for r in recs if r["call"] == "close"]
    drains = [r for r in recs if r["call"] == "drain"]
    assert len(closes) == n and all(r["action"] == "drained" and r["verdict"] == "rst_unread"
                                    for r in closes), collections.Counter(
        (r["action"], r["verdict"]) for r in closes)
    assert collections.Counter(r["peer"] for r in drains) == \
        collections.Counter(r["peer"] for r in closes), "a drain logged twice, or not at all"
    results = collections.Counter(r["result"] for r in drains)
    assert results == {"delivered": n // 2, "peer_reset": n // 2}, results
    assert sum(r["discarded"] for r in drains) == 1000 * n, "unread bytes not all discarded"
