"""Backtraces (warn mode, CLOSEWATCH_BACKTRACE): the call site of a close is found and named
without touching anything the program can reach. No fd of the shim or of a library it
calls may sit at an ordinary number: a daemon that closes every fd and reuses the numbers
for its sockets must find in them exactly the bytes it sent, whatever the shim unwinds
meanwhile (threads on stacks of their own, close loops, close_range, fork).

Programs: tests/progs/hostile_bt_fds.c. Cost is measured by `make bench` (the backtrace
row), never asserted here."""
import os
import resource
import subprocess

import cwtest
from cwtest import plain_env, prog, shim_env

SAN = os.environ.get("CW_SANITIZER", "") or ("on" if cwtest.PRELOAD_PREFIX else "")


def run(argv, env, timeout=60, nofile=None):
    pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
    try:
        r = subprocess.run([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           preexec_fn=pre)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv[0]} still running after {timeout}s; stdout {e.stdout!r}")
    return r.returncode, r.stdout.decode(errors="replace").splitlines(), r.stderr.decode(errors="replace")


def bt_warnings(err):
    return [l for l in err.splitlines() if l.startswith("closewatch: warning:")]


@cwtest.timeout(120)
def test_daemon_that_closes_every_fd_keeps_its_bytes(ctx):
    """Warn mode, 8 frames: the program closes every fd from 3 up (close loop, then
    close_range), opens socketpairs on the freed numbers, and threads on mmap'd stacks of
    their own exchange numbered messages over them between risky closes. Every byte read
    is the byte sent, nothing extra is queued, no read hangs; every risky close was warned
    with a named call site (risky_close is a static function: named from .symtab).
    Before: libunwind's memory-validation pipe sat on those numbers; its read() stole a
    byte or hung, its write() put one into the program's socket."""
    rounds, threads = (4, 4) if not SAN else (2, 3)
    argv = [prog("hostile_bt_fds"), "bytes", rounds, threads]
    rc, out, err = run(argv, plain_env())
    assert rc == 0 and out[-1].startswith("ok "), (rc, out)
    want = out[-1]
    for attempt in range(3):
        rc, out, err = run(argv, shim_env(events="risky", mode="warn", fmt="json"))
        assert rc == 0, f"run {attempt}: status {rc}: {out[-5:]}"
        assert out[-1] == want, f"run {attempt}: {out[-5:]} (without the shim: {want})"
        risky = int(want.split()[2])
        w = bt_warnings(err)
        assert len(w) == risky, f"run {attempt}: {len(w)} warnings for {risky} risky closes"
        site = "risky_close+0x" if SAN == "tsan" else "; closed at risky_close+0x"
        assert all(site in l and "hostile_bt_fds)" in l for l in w), \
            [l for l in w if site not in l][:3]
        # Both callers, on the main stack and on the threads' own.
        assert any("<- mode_bytes+0x" in l for l in w) and any("<- work+0x" in l for l in w), w[:3]


def test_no_fd_at_an_ordinary_number(ctx):
    """The fds of the process before and after a backtraced close (and a fork whose child
    makes one): nothing new below 1024. The shim's own fds live near RLIMIT_NOFILE (4096
    here). Before: libunwind's pipe, two fds at the lowest free numbers."""
    log = ctx.path("cw.log")
    rc, out, err = run([prog("hostile_bt_fds"), "fds"],
                       shim_env(log=log, events="risky", mode="warn"), nofile=4096)
    assert rc == 0, (rc, out, err)
    assert out == ["new 0:"], f"fds appeared at ordinary numbers: {out}"
    recs = cwtest.read_records(log)
    assert len(recs) == 2 and all(r["bt"] for r in recs), recs
    pids = {r["pid"] for r in recs}
    assert len(pids) == 2, recs  # the parent's close and the forked child's
    for r in recs:
        assert r["bt"][0].startswith("risky_close+0x") or SAN == "tsan", r["bt"]
        assert any(f.startswith("mode_fds+0x") for f in r["bt"]), r["bt"]
