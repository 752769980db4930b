"""Drain mode in forked children (fork-per-connection servers, prefork workers, daemons).

A process that holds a socket starts its drain thread before it forks, and its children
hand their drains to that thread through the channel they inherit: no child pays for a
thread of its own, and a child's exit waits for nothing (the drain goes on in the parent).
Once the parent exits or is killed, its children drain with a thread of their own.

Every test runs tests/progs/fork_server.c on loopback: each child answers early and closes
with the client's upload unread (rst_unread, drained). The clients check that the whole
answer and EOF arrive, with no reset, while they go on uploading after the close.

Under TSan (make check-tsan) a child never uses its parent's thread: TSan sees one process
and would take the other side of the shared slot table for races. The tests then check the
same outcome on the wire and in the records, but not the thread counts or the exit order."""
import os
import signal

from cwtest import finish, read_records, tell, wait_for
from test_drain import LONG_IDLE_MS, HANG_S, client, closes, drain_env, drains, pump, start

TSAN = os.environ.get("CW_SANITIZER") == "tsan"
UPLOAD = 5000


def connect_children(srv, n, hold):
    """n clients, each with 100 bytes sent (unread by its child); returns (clients, child pids)
    in the order they connected."""
    cs, pids = [], []
    for _ in range(n):
        c = client(srv.port)
        c.sendall(b"x" * 100)
        cs.append(c)
        if hold:
            pids.append(int(srv.expect("child ").split()[0]))
    return cs, pids


def closed_lines(srv, n):
    """{pid: threads right after its close} of n children."""
    out = {}
    for _ in range(n):
        w = srv.expect("child ", timeout=HANG_S).split()
        assert w[1:3] == ["closed", "threads"], w
        out[int(w[0])] = int(w[3])
    return out


def check_records(log, pids, n):
    """One drained rst_unread close and one delivered drain per child, under its pid."""
    recs = read_records(log)
    cl = [r for r in closes(recs) if r["pid"] in pids]
    ds = drains(recs)
    assert sorted(r["pid"] for r in cl) == sorted(pids), recs
    assert all(r["verdict"] == "rst_unread" and r["action"] == "drained" for r in cl), cl
    assert sorted(d["pid"] for d in ds) == sorted(pids), ds
    assert all(d["result"] == "delivered" and d["discarded"] == 100 + UPLOAD for d in ds), ds
    assert len(ds) == n


def pump_all(cs):
    for c in cs:
        res = pump(c, UPLOAD)
        assert res["read"] == "eof" and not res["reset"] and res["got"] == 1000, res
        c.close()


def gone(pid):
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def test_fork_per_connection_children_use_the_parents_thread(ctx):
    """Each child's drained close goes to the parent's thread: the child has no thread of its
    own after its close, and it exits at once; the drain ends later, in the parent, when the
    client closes (the idle timeout is long: a child that waited for its drain would not be
    reaped before the client's end)."""
    n = 4
    log = ctx.path("log")
    srv = start(ctx, "fork_server", "--conns", n, env=drain_env(log, idle=LONG_IDLE_MS))
    srv.port = int(srv.expect("port "))
    cs, _ = connect_children(srv, n, hold=False)
    threads = closed_lines(srv, n)
    pids = list(threads)
    if TSAN:
        pump_all(cs)
    else:
        assert all(t == 1 for t in threads.values()), threads
        # every child gone (reaped), every drain still pending
        wait_for(lambda: all(gone(p) for p in pids), timeout=HANG_S, what="children gone")
        assert not drains(read_records(log))
        pump_all(cs)
    wait_for(lambda: len(drains(read_records(log))) >= n, timeout=HANG_S, what="drain records")
    srv.expect("done", timeout=HANG_S)
    tell(srv)
    assert finish(srv) == 0
    check_records(log, pids, n)


def children_outlive_their_parent(ctx, killed):
    n = 3
    log = ctx.path("log")
    srv = start(ctx, "fork_server", "--conns", n, "--hold", *(() if killed else ("--parent-exit",)),
                env=drain_env(log, idle=LONG_IDLE_MS))
    srv.port = int(srv.expect("port "))
    cs, pids = connect_children(srv, n, hold=True)  # every child forked, waiting
    if killed:
        os.kill(srv.p.pid, signal.SIGKILL)
        assert srv.p.wait(timeout=HANG_S) == -signal.SIGKILL
    else:  # (its "parent exits" may come before a child's "ready": not awaited)
        assert srv.p.wait(timeout=HANG_S) == 0
    srv.p.stdin.write(b"g" * n)  # now each child answers and closes
    srv.p.stdin.flush()
    threads = closed_lines(srv, n)
    assert sorted(threads) == sorted(pids)
    if not TSAN:  # each started a thread of its own for its drain
        assert all(t == 2 for t in threads.values()), threads
    pump_all(cs)
    wait_for(lambda: len(drains(read_records(log))) >= n, timeout=HANG_S, what="drain records")
    wait_for(lambda: all(gone(p) for p in pids), timeout=HANG_S, what="children gone")
    check_records(log, pids, n)


def test_children_drain_on_their_own_once_the_parent_exits(ctx):
    """A daemon's first process forks and exits: its children, which would have sent their
    drains to its thread, start one of their own."""
    children_outlive_their_parent(ctx, killed=False)


def test_children_drain_on_their_own_once_the_parent_is_killed(ctx):
    """The parent killed (SIGKILL: no exit handler runs) while its children wait: a child's
    send to the parent's thread fails, and the child drains that very close with a thread of
    its own."""
    children_outlive_their_parent(ctx, killed=True)
