"""Drain mode under CLOSEWATCH_EVENTS=risky: a drain is an event when its
close would have thrown data away (a risky verdict), or when the drain does
not end delivered with nothing discarded. A clean close in ESTABLISHED (every
answer of a `Connection: close` server) whose drain ends delivered with
nothing discarded writes no record at all; one whose drain discarded bytes
(the late pipelined request that would have drawn the late RST) writes both
records, close first. EVENTS=all keeps writing both for every drain."""
import socket

from cwtest import finish, read_records, read_to_end, tell
from test_drain import client, closed_line, closes, drain_env, drains, pump, start

ANSWER = 1000


def clean_close(ctx, events, sync=False, late=0):
    """The server reads the request, answers, waits until the answer is
    acknowledged and closes (clean, ESTABLISHED: drained). The client then
    sends `late` more bytes (0: none), shuts its side and reads to the end.
    Returns (records, what the client saw)."""
    log = ctx.path("log")
    srv = start(ctx, "drain_server", "--read", ANSWER, "--write", ANSWER, "--waitoutq0", "--wait",
                env=drain_env(log, sync=sync, events=events))
    port = int(srv.expect("port "))
    c = client(port)
    c.sendall(b"q" * ANSWER)
    if sync:
        # close() returns only once the drain is over: the answer and FIN
        # first, then what the client sends late, then its FIN.
        got, how = read_to_end(c)
        if late:
            c.sendall(b"u" * late)
        c.shutdown(socket.SHUT_WR)
        res = {"got": got, "read": how, "reset": how == "reset"}
        closed_line(srv)
    else:
        closed_line(srv)
        res = pump(c, late)
    c.close()
    tell(srv)
    # At exit the shim waits for pending drains: every record is out.
    assert finish(srv) == 0, srv.stderr
    assert res["got"] == ANSWER and res["read"] == "eof" and not res["reset"], res
    return read_records(log), res


def test_quiet_clean_drain_delivered_writes_nothing(ctx):
    recs, _ = clean_close(ctx, "risky")
    assert not closes(recs) and not drains(recs), recs


def test_quiet_clean_drain_delivered_writes_nothing_sync(ctx):
    recs, _ = clean_close(ctx, "risky", sync=True)
    assert not closes(recs) and not drains(recs), recs


def check_both(recs, late):
    (cl,) = closes(recs)
    assert cl["verdict"] == "clean" and cl["action"] == "drained" and cl["state"] == "ESTABLISHED", cl
    (dr,) = drains(recs)
    assert dr["result"] == "delivered" and dr["discarded"] == late, dr
    # The close record comes first, and both are of the same socket.
    assert recs.index(cl) < recs.index(dr), recs
    assert (dr["fd"], dr["local"], dr["peer"]) == (cl["fd"], cl["local"], cl["peer"]), (cl, dr)


def test_quiet_clean_drain_that_discarded_writes_both(ctx):
    recs, _ = clean_close(ctx, "risky", late=5000)
    check_both(recs, 5000)


def test_quiet_clean_drain_that_discarded_writes_both_sync(ctx):
    recs, _ = clean_close(ctx, "risky", sync=True, late=5000)
    check_both(recs, 5000)


def test_events_all_clean_drain_writes_both(ctx):
    recs, _ = clean_close(ctx, "all")
    check_both(recs, 0)


def test_risky_verdict_drain_writes_both_under_risky(ctx):
    """rst_unread: the close record is an event whatever the drain's outcome."""
    log = ctx.path("log")
    srv = start(ctx, "drain_server", "--read", 0, "--waitinq", 100, "--wait",
                env=drain_env(log, events="risky"))
    port = int(srv.expect("port "))
    c = client(port)
    c.sendall(b"x" * 100)
    closed_line(srv)
    c.shutdown(socket.SHUT_WR)  # the drain then sees EOF
    assert read_to_end(c)[1] == "eof"
    c.close()
    tell(srv)
    assert finish(srv) == 0, srv.stderr
    recs = read_records(log)
    (cl,) = closes(recs)
    assert cl["verdict"] == "rst_unread" and cl["action"] == "drained", cl
    (dr,) = drains(recs)
    assert dr["result"] == "delivered" and dr["discarded"] == 100, dr
