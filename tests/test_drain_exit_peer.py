"""Drain mode at exit, in a program that holds both ends of a connection (a
test harness, an in-process client of its own server): the drain of the end
it closed waits for an EOF that only the program's own exit can send, so
exit does not wait for it (it used to wait the whole idle timeout). The drain
ends at exit as a timeout and is logged; a drain whose peer is another
process still gets its wait.

No clock decides: the idle and total timeouts are LONG_IDLE_MS, so an exit
that waited for them would outlast HANG_S; the other process's peer is told
to close only once the program has reached exit."""
import subprocess
import time

from cwtest import finish, prog, read_records
from test_drain import HANG_S, LONG_IDLE_MS, closes, drain_env, drains


def run_selfpeer(ctx, *args):
    log = ctx.path("log-" + "-".join(a.strip("-") for a in args))
    p = ctx.start([prog("drain_selfpeer"), *args], stdin=subprocess.PIPE,
                  env=drain_env(log, idle=LONG_IDLE_MS, total=LONG_IDLE_MS))
    return p, log


def test_exit_does_not_wait_for_a_drain_whose_peer_it_holds(ctx):
    for args in ((), ("--then", "_exit"), ("--unix",), ("--unix", "--then", "_exit")):
        p, log = run_selfpeer(ctx, *args)
        p.expect("closed")
        assert finish(p, timeout=HANG_S) == 0, args
        recs = read_records(log)
        (c,) = [r for r in closes(recs) if r["verdict"] == "rst_unread"]
        assert c["action"] == "drained", (args, c)
        (dr,) = drains(recs)
        assert dr["result"] == "timeout" and dr["waited_ms"] < LONG_IDLE_MS, (args, dr)


def test_exit_still_waits_for_a_drain_whose_peer_is_elsewhere(ctx):
    """Beside a drain whose peer is the program itself, one whose peer is a
    child process: exit waits for that one (delivered when the child closes)."""
    p, log = run_selfpeer(ctx, "--other")
    p.expect("other closed")
    p.expect("closed")
    time.sleep(0.3)  # not needed to pass: the program is in its exit wait by now
    assert p.p.poll() is None, "exit did not wait for the drain whose peer is another process"
    # finish() closes stdin: the child closes its end, that drain is delivered.
    assert finish(p, timeout=HANG_S) == 0
    results = sorted(r["result"] for r in drains(read_records(log)))
    assert results == ["delivered", "timeout"], results
