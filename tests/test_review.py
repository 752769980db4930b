"""Defects found in a review of the preloaded library, each shown by a program
that behaves differently under the shim than without it (tests/progs/review_*.c)."""
import os
import shutil
import subprocess

import cwtest
from cwtest import plain_env, prog, read_records, shim_env


def run(argv, env, timeout=60):
    r = subprocess.run([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split("\n")


def after_start(lines):
    assert lines[0] == "start", lines
    return lines[1:]


def no_cancel_under_asan():
    """ASan cannot follow a thread cancellation: the frames the forced unwind leaves are
    not unpoisoned, and its own thread exit then reports a stack-buffer-underflow in the
    test program itself, with or without the shim. These tests run everywhere else
    (plain build, TSan)."""
    if os.environ.get("CW_SANITIZER") == "asan":
        raise cwtest.Skip("ASan misreads a cancelled thread's stack (in the program itself)")


def strace_env_args(env):
    args = []
    for k, v in env.items():
        if k == "LD_PRELOAD" or k.startswith("CLOSEWATCH_"):
            args += ["-E", f"{k}={v}"]
    return args


def test_thread_cancelled_in_close_leaves_later_forks_unhindered(ctx):
    """A thread cancelled inside close() (a cancellation point) used to leave the fork
    gate's count of closes in flight raised forever: every later fork then waited the
    gate's whole bound (sched_yield and nanosleep in the forking thread). The program
    itself makes neither call; counted by strace in the main thread, not timed."""
    no_cancel_under_asan()
    if not shutil.which("strace"):
        cwtest.skip("strace is not installed")
    argv = [prog("review_cancel"), "close", "3"]
    plain = after_start(run(argv, plain_env()))
    assert plain[:3] == ["cancelled 1", "fd_open 1", "forks 3"], plain
    out = ctx.path("strace-cancel.txt")
    env = shim_env(log=ctx.path("log"), events="all")
    lines = after_start(run(["strace", "-f", "-qq", "-o", out] + strace_env_args(env) + argv,
                            plain_env()))
    assert lines[:3] == plain[:3], lines
    with open(out) as f:
        trace = f.read().splitlines()
    main_pid = trace[0].split()[0]  # the execve
    waits = [l for l in trace if l.split()[0] == main_pid and
             l.split(None, 1)[1].startswith(("sched_yield(", "nanosleep(", "clock_nanosleep("))]
    assert not waits, f"{len(waits)} waits in the forking thread, first: {waits[0]}"


def test_cancel_pending_shutdown_is_not_a_cancellation_point(ctx):
    """shutdown() is not a cancellation point: a thread with a cancel pending returns from
    it. The shim's record write (write() is one) used to act on the cancel inside
    shutdown() and end the thread there."""
    argv = [prog("review_cancel"), "shutdown", "0"]
    plain = after_start(run(argv, plain_env()))
    assert plain[0] == "cancelled 0", plain
    for fmt in ("json", "text"):
        lines = after_start(run(argv, shim_env(log=ctx.path(f"log-{fmt}"), fmt=fmt, events="all")))
        assert lines[0] == "cancelled 0", (fmt, lines)
        lines = after_start(run(argv, shim_env(fmt=fmt, events="all")))  # records on stderr
        assert lines[0] == "cancelled 0", (fmt, lines)


def test_cancel_pending_spawn_and_exec_are_not_cancellation_points(ctx):
    """posix_spawn() and execv() are no cancellation points. Under `closewatch run` (the
    status channel set) the shim reads the target's ELF headers first with open() and
    pread(), which are: a pending cancel used to end the thread there (the spawned child
    never reaped, the exec never made)."""
    status = ctx.path("status")
    open(status, "w").close()
    for mode, want in (("spawn", ["start", "spawned 1", "cancelled 0"]), ("exec", ["start", ""])):
        argv = [prog("review_cancel"), mode, "0"]
        plain = run(argv, plain_env())
        assert plain[:len(want)] == want, (mode, plain)
        env = shim_env(log=ctx.path(f"log-{mode}"), extra={"CLOSEWATCH_RUN_STATUS": status})
        lines = run(argv, env)
        assert lines == plain, (mode, lines)
    with open(status) as f:
        assert "exe=/usr/bin/true" in f.read(), "the status channel was in use"


def test_thread_cancelled_in_accept_leaves_later_children_alone(ctx):
    """accept() is a cancellation point (stopping an acceptor thread is the usual use). A
    thread cancelled in it used to leave the fork gate's count of sockets being made
    raised: every later child took itself for one forked in the middle of an accept and
    listed /proc/self/fd at its exit. Counted by strace in the children, not timed."""
    no_cancel_under_asan()
    if not shutil.which("strace"):
        cwtest.skip("strace is not installed")
    argv = [prog("review_cancel"), "accept", "2"]
    plain = after_start(run(argv, plain_env()))
    assert plain[:3] == ["cancelled 1", "fd_open 1", "forks 2"], plain
    out = ctx.path("strace-accept.txt")
    env = shim_env(log=ctx.path("log"), events="all")
    lines = after_start(run(["strace", "-f", "-qq", "-o", out, "-e", "trace=openat,fork,clone,exit_group"]
                            + strace_env_args(env) + argv, plain_env()))
    assert lines[:3] == plain[:3], lines
    with open(out) as f:
        trace = f.read().splitlines()
    main_pid = trace[0].split()[0]
    scans = [l for l in trace if l.split()[0] != main_pid and '"/proc/self/fd"' in l]
    children = {l.split()[0] for l in trace if l.split()[0] != main_pid}
    assert len(children) >= 2, "the children are in the trace"
    assert not scans, f"{len(scans)} children listed their fds, first: {scans[0]}"


def test_vfork_child_record_leaves_the_parents_log_alone(ctx):
    """A vfork() child shares the parent's memory, not its fd table. With a per-process
    log file (%p), opened by a process's first record, a child that closed a socket before
    the parent logged anything used to open its file and leave that fd's number as the
    log fd in the shared memory: the parent's records then went to a number not open in
    the parent (lost, "Bad file descriptor"; or into whatever file the program opened
    there later). Each process's records must be in its own file."""
    d = ctx.path("logs")
    os.mkdir(d)
    env = shim_env(log=os.path.join(d, "cw.%p.log"), events="all")
    lines = run([prog("review_vfork")], env)
    vals = dict(l.split(" ", 1) for l in lines if l)
    child, parent = int(vals["child"]), int(vals["parent"])
    child_fd, parent_fd = (int(x) for x in vals["closed"].split())
    mine = read_records(os.path.join(d, f"cw.{parent}.log"))
    assert [r for r in mine if r["call"] == "close" and r["fd"] == parent_fd], mine
    theirs = read_records(os.path.join(d, f"cw.{child}.log"))
    assert [r for r in theirs if r["call"] == "close" and r["fd"] == child_fd], theirs


def test_vfork_child_record_leaves_the_parents_pid_alone(ctx):
    """The pid and this thread's tid are cached at their first record. A vfork() child
    whose record came first used to cache its own pid and tid in the memory and the
    thread-local storage it shares with the parent: every later record of the parent
    carried the child's pid and tid."""
    env = shim_env(log=ctx.path("log"), events="all")
    lines = run([prog("review_vfork")], env)
    vals = dict(l.split(" ", 1) for l in lines if l)
    child, parent = int(vals["child"]), int(vals["parent"])
    child_fd, parent_fd = (int(x) for x in vals["closed"].split())
    recs = read_records(ctx.path("log"))
    got = [(r["call"], r["fd"], r["pid"], r["tid"]) for r in recs if r["call"] == "close"]
    assert ("close", child_fd, child, child) in got, got
    assert ("close", parent_fd, parent, parent) in got, got
    assert all(r["pid"] == parent for r in recs if r["call"] == "exit"), recs
