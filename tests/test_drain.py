"""Warn and drain modes (issue 4): lingering close that saves the data.

Every test runs an ordinary server (tests/progs/drain_server.c, drain_epoll.c)
on loopback, with and without the shim, and checks what the client received,
what the capture saw on the wire, and what the shim logged."""
import os
import select
import socket
import struct
import subprocess
import threading
import time

from cwtest import (Capture, count_flag, counter_delta, fd_targets, finish, kernel_counters,
                    plain_env, prog, read_records, read_to_end, require_root, shim_env, tell, timeout,
                    wait_for)

UPLOAD = 4 << 20     # what the client sends
HEAD = 1024          # what the server reads of it
ANSWER = 64 << 10    # what the server answers
FIRST = HEAD + (16 << 10)  # sent before the server closes (unread: FIRST - HEAD)
# No test decides pass or fail from how fast something ran (machines are noisy): each
# checks the order of events instead. Where a test waits for an event that comes at once
# on a correct build (a close() that must not wait for its drain), the drain's idle
# timeout is LONG_IDLE_MS and the test waits at most HANG_S: a wrong build fails clearly,
# a slow machine never does.
LONG_IDLE_MS = 120_000
HANG_S = 60


# ---------------------------------------------------------------- fixtures

def drain_env(log, mode="drain", sync=False, idle=None, total=None, max_=None, events="all",
              backtrace=None):
    extra = {"CLOSEWATCH_DRAIN_SYNC": "1" if sync else "0"}
    if idle is not None:
        extra["CLOSEWATCH_DRAIN_IDLE_MS"] = idle
    if total is not None:
        extra["CLOSEWATCH_DRAIN_TIMEOUT_MS"] = total
    if max_ is not None:
        extra["CLOSEWATCH_DRAIN_MAX"] = max_
    return shim_env(log=log, mode=mode, events=events, backtrace=backtrace, extra=extra)


def start(ctx, name, *args, env):
    return ctx.start([prog(name)] + [str(a) for a in args], env=env, stdin=subprocess.PIPE)


def client(port, rcvbuf=None, family=socket.AF_INET, addr=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(addr if addr is not None else ("127.0.0.1", port))
    return s


def clients_with_unread(port, n, nbytes=100):
    """n clients, each having sent nbytes the server will not read."""
    cs = []
    for _ in range(n):
        c = client(port)
        c.sendall(b"x" * nbytes)
        cs.append(c)
    return cs


def pump(s, upload, timeout=30):
    """Send `upload` bytes while reading whatever comes back, then
    shutdown(SHUT_WR), and read to the end. Returns a dict: sent, got, read
    ('eof' | 'reset' | 'timeout'), write ('done' | 'reset' | 'pipe'), and
    reset (True when ECONNRESET or EPIPE was seen on either side)."""
    s.setblocking(False)
    data = b"u" * 65536
    res = {"sent": 0, "got": 0, "read": None, "write": None if upload else "done"}
    if not upload:
        s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + timeout
    while res["read"] is None or res["write"] is None:
        left = deadline - time.monotonic()
        if left <= 0:
            res["read"] = res["read"] or "timeout"
            res["write"] = res["write"] or "timeout"
            break
        r, w, _ = select.select([s] if res["read"] is None else [],
                                [s] if res["write"] is None else [], [], min(left, 1))
        if r:
            try:
                b = s.recv(65536)
                if b:
                    res["got"] += len(b)
                else:
                    res["read"] = "eof"
            except ConnectionResetError:
                res["read"] = "reset"
            except BlockingIOError:
                pass
        if w:
            try:
                res["sent"] += s.send(data[:min(len(data), upload - res["sent"])])
                if res["sent"] == upload:
                    s.shutdown(socket.SHUT_WR)
                    res["write"] = "done"
            except ConnectionResetError:
                res["write"] = "reset"
            except BrokenPipeError:
                res["write"] = "pipe"
            except BlockingIOError:
                pass
    res["reset"] = res["read"] == "reset" or res["write"] in ("reset", "pipe")
    return res


def closes(recs, call="close"):
    return [r for r in recs if r["call"] == call and r.get("proto") in ("tcp", "unix")
            and r.get("state") != "LISTEN"]


def drains(recs):
    return [r for r in recs if r["call"] == "drain"]


def wait_drains(log, n, timeout=10):
    return wait_for(lambda: len(drains(read_records(log))) >= n and drains(read_records(log)),
                    timeout=timeout, what=f"{n} drain record(s) in {log}")


def end_delivered(srv, log, cs, n, upload):
    """Each client sends upload bytes and closes, the server is told to end: n drains,
    every one delivered (returned)."""
    for c in cs:
        assert pump(c, upload)["read"] == "eof"
    wait_drains(log, n)
    tell(srv)
    assert finish(srv) == 0
    ds = drains(read_records(log))
    assert len(ds) == n and all(d["result"] == "delivered" for d in ds), ds
    return ds


def closed_line(srv, timeout=10):
    """'closed fd F ns T rc R' → (fd, ns, rc)."""
    w = srv.expect("closed fd ", timeout=timeout).split()
    return int(w[0]), int(w[2]), int(w[4])


def closed_line_first(srv):
    """The server's 'closed fd' line, awaited while its peers still withhold their FIN: an
    async close() returns at once, but a close() that waited for its drain (which needs that
    FIN, or LONG_IDLE_MS of silence) would not return before the test gives up."""
    try:
        return closed_line(srv, timeout=HANG_S)
    except AssertionError as e:
        raise AssertionError(f"close() did not return while the peer withheld its FIN: it waits "
                             f"for the drain ({e})") from None


def drain_ended_before(log, srv, timeout):
    """For a sync close(): its 'closed fd' line, and whether the drain record was already
    in the log when that line came (a sync close() returns only after its drain ended, and
    the drain record is written before it returns). Read once, no wait."""
    closed = closed_line(srv, timeout=timeout)
    return closed, bool(drains(read_records(log)))


def linger0_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ---------------------------------------------------------------- early answer, unread upload

def early_answer(ctx, mode, sync=False, nonblock=False):
    """Server reads HEAD bytes of an UPLOAD, answers ANSWER bytes, closes once
    FIRST - HEAD bytes more are unread. The client sends FIRST bytes and,
    unless the close() drains synchronously, reads nothing until the server's
    close() has returned: the answer is still queued at the server when it
    closes (its send buffer holds it all), whatever the speed of either side.
    Then the client sends the rest of the upload, and reads through a small
    receive buffer. Async: the client's FIN (which ends the drain) comes only
    after close() returned, and a close() that waited for its drain would wait
    for LONG_IDLE_MS: the test gives up first."""
    require_root()
    log = ctx.path("log")
    args = ["--read", HEAD, "--write", ANSWER, "--sndbuf", 1 << 20, "--waitinq", FIRST - HEAD,
            "--wait"] + (["--nonblock"] if nonblock else [])
    srv = start(ctx, "drain_server", *args,
                env=drain_env(log, mode=mode, sync=sync, idle=None if sync else LONG_IDLE_MS,
                              total=None if sync else LONG_IDLE_MS))
    port = int(srv.expect("port "))
    before = kernel_counters()
    drained_at_close = None
    with Capture(ctx, f"tcp port {port}") as cap:
        c = client(port, rcvbuf=4096)
        c.sendall(b"h" * FIRST)
        if sync:  # close() returns when the drain has ended: the client's FIN ends it
            res = pump(c, UPLOAD - FIRST)
            (fd, ns, rc), drained_at_close = drain_ended_before(log, srv, timeout=HANG_S)
        else:
            fd, ns, rc = closed_line_first(srv)
            res = pump(c, UPLOAD - FIRST)
        res["sent"] += FIRST
        c.close()
        if mode == "drain":
            wait_drains(log, 1)
    after = kernel_counters()
    tell(srv)
    assert finish(srv) == 0, srv.stderr
    return dict(res=res, recs=read_records(log), pkts=cap.packets(), port=port, fd=fd, ns=ns, rc=rc,
                drained_at_close=drained_at_close,
                aborts=counter_delta(before, after, "TcpExt.TCPAbortOnClose"),
                rsts=counter_delta(before, after, "Tcp.OutRsts"))


def check_saved(r, sync):
    res, port = r["res"], r["port"]
    assert r["rc"] == 0
    assert res["got"] == ANSWER and res["read"] == "eof" and not res["reset"], res
    assert res["sent"] == UPLOAD and res["write"] == "done", res
    assert count_flag(r["pkts"], "R") == 0, f"RST on the wire: {r['pkts'][-10:]}"
    assert count_flag(r["pkts"], "F", sport=port) == 1
    assert r["aborts"] == 0 and r["rsts"] == 0, (r["aborts"], r["rsts"])
    (cl,) = closes(r["recs"])
    assert cl["verdict"] == "rst_unread" and cl["action"] == "drained" and cl["fd"] == r["fd"], cl
    (dr,) = drains(r["recs"])
    assert dr["result"] == "delivered", dr
    # exactly the bytes the server never read
    assert dr["discarded"] == UPLOAD - HEAD, dr
    assert dr["fd"] == r["fd"] and dr["peer"] == cl["peer"] and dr["verdict"] == "rst_unread"
    # async: close() returned before the client's FIN (early_answer withheld it until then),
    # and the drain still ended `delivered`, by that FIN: close() did not wait for it.
    # sync: close() returned only after its drain ended.
    if sync:
        assert r["drained_at_close"], "sync close() returned before its drain ended"


def test_early_answer_without_drain_resets(ctx):
    r = early_answer(ctx, "observe")
    res = r["res"]
    assert res["reset"], res
    assert res["got"] < ANSWER, f"client got the whole answer despite the reset: {res}"
    assert count_flag(r["pkts"], "R", sport=r["port"]) >= 1
    assert r["aborts"] >= 1
    (cl,) = closes(r["recs"])
    assert cl["verdict"] == "rst_unread" and cl["action"] == "none"
    assert not drains(r["recs"])


def test_early_answer_drain_async(ctx):
    check_saved(early_answer(ctx, "drain"), sync=False)


def test_early_answer_drain_async_nonblocking(ctx):
    check_saved(early_answer(ctx, "drain", nonblock=True), sync=False)


def test_early_answer_drain_sync(ctx):
    check_saved(early_answer(ctx, "drain", sync=True), sync=True)


def test_early_answer_unix(ctx):
    """AF_UNIX: unread bytes at close turn the client's EOF into ECONNRESET;
    drained, the client reads the answer and EOF."""
    for mode in ("observe", "drain"):
        log = ctx.path(f"log-{mode}")
        path = ctx.path(f"sock-{mode}")
        srv = start(ctx, "drain_server", "--unix", path, "--read", HEAD, "--write", ANSWER, "--wait",
                    env=drain_env(log, mode=mode))
        srv.expect("listening")
        c = client(None, family=socket.AF_UNIX, addr=path)
        res = pump(c, UPLOAD)
        closed_line(srv)
        c.close()
        if mode == "drain":
            (dr,) = wait_drains(log, 1)
            assert res["got"] == ANSWER and res["read"] == "eof" and not res["reset"], res
            assert dr["result"] == "delivered" and dr["discarded"] == UPLOAD - HEAD and dr["proto"] == "unix", dr
        else:
            assert res["reset"], res
        tell(srv)
        assert finish(srv) == 0, srv.stderr
        (cl,) = closes(read_records(log))
        assert cl["verdict"] == "rst_unread" and cl["action"] == ("drained" if mode == "drain" else "none"), cl


def test_unix_seqpacket_empty_record_is_not_eof(ctx):
    """SOCK_SEQPACKET: recv() returns 0 for an empty record as for EOF; the
    drain tells them apart and counts every byte."""
    log, path = ctx.path("log"), ctx.path("sock")
    srv = start(ctx, "drain_server", "--unix", path, "--seqpacket", "--read", 1000, "--write", 100,
                "--waitinq", 500, "--wait", env=drain_env(log))
    srv.expect("listening")
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.settimeout(10)
    c.connect(path)
    c.send(b"h" * 1000)
    c.send(b"r" * 500)          # unread at close: rst_unread
    closed_line(srv)
    c.send(b"")                 # an empty record
    time.sleep(0.2)
    c.send(b"s" * 700)
    c.shutdown(socket.SHUT_WR)
    assert c.recv(1000) == b"a" * 100 and c.recv(1000) == b""
    c.close()
    (dr,) = wait_drains(log, 1)
    tell(srv)
    assert finish(srv) == 0
    (cl,) = closes(read_records(log))
    assert cl["verdict"] == "rst_unread" and cl["action"] == "drained", cl
    assert dr["result"] == "delivered" and dr["discarded"] == 1200, dr


def test_unix_clean_close_not_drained(ctx):
    """Nothing unread on a unix socket: no late reset exists there, no drain."""
    log, path = ctx.path("log"), ctx.path("sock")
    srv = start(ctx, "drain_server", "--unix", path, "--read", 100, "--write", 100, "--wait",
                env=drain_env(log))
    srv.expect("listening")
    c = client(None, family=socket.AF_UNIX, addr=path)
    c.sendall(b"x" * 100)
    closed_line(srv)
    assert read_to_end(c) == (100, "eof")
    tell(srv)
    assert finish(srv) == 0
    recs = read_records(log)
    (cl,) = closes(recs)
    # fin_pending when the client had not read the answer yet: still not drained
    assert cl["verdict"] in ("clean", "fin_pending") and cl["action"] == "none", cl
    assert not drains(recs)


# ---------------------------------------------------------------- the late RST

def late_rst(ctx, mode, pending):
    """The server reads the whole request and answers; then closes, either
    once the answer is acknowledged (clean) or with most of it still queued
    (fin_pending: the client's receive buffer is small). The client sends more
    after the close (a pipelined request), then reads."""
    require_root()
    log = ctx.path("log")
    late = 100_000
    answer = 256 << 10 if pending else 1000
    args = ["--read", 1000, "--write", answer, "--wait"]
    args += ["--sndbuf", 1 << 20] if pending else ["--waitoutq0"]
    srv = start(ctx, "drain_server", *args, env=drain_env(log, mode=mode))
    port = int(srv.expect("port "))
    with Capture(ctx, f"tcp port {port}") as cap:
        c = client(port, rcvbuf=4096 if pending else None)
        c.sendall(b"q" * 1000)
        closed_line(srv)
        res = pump(c, late)
        c.close()
        if mode == "drain":
            wait_drains(log, 1)
    tell(srv)
    assert finish(srv) == 0, srv.stderr
    recs, pkts = read_records(log), cap.packets()
    (cl,) = closes(recs)
    assert cl["verdict"] == ("fin_pending" if pending else "clean"), cl
    assert cl["state"] == "ESTABLISHED" and cl["recvq"] == 0
    if mode == "drain":
        assert cl["action"] == "drained"
        assert count_flag(pkts, "R") == 0, f"RST on the wire: {pkts[-10:]}"
        assert res["got"] == answer and res["read"] == "eof" and not res["reset"], res
        (dr,) = drains(recs)
        assert dr["result"] == "delivered" and dr["discarded"] == late, dr
    else:
        assert count_flag(pkts, "R", sport=port) >= 1, "no late RST without drain"
        assert res["reset"], res
        if pending:
            assert res["got"] < answer, res
        assert not drains(recs)


def test_late_rst_clean_without_drain(ctx):
    late_rst(ctx, "observe", pending=False)


def test_late_rst_clean_drained(ctx):
    late_rst(ctx, "drain", pending=False)


def test_clean_drain_fin_leaves_in_close(ctx):
    """A clean close in ESTABLISHED that drain mode lingers on sends its FIN
    inside close(), as close() does without closewatch: the peer sees EOF
    once close() has returned, not once the drain thread runs (which can be
    much later on a busy CPU). The program (drain_fin_at_close) reads its
    client end right after close() without blocking once, on one CPU at
    SCHED_FIFO (root), where the drain thread cannot run before it. Failed
    before: eof=0 (the thread sent the FIN)."""
    require_root()
    for mode in ("none", "drain"):
        log = ctx.path(f"log-{mode}")
        env = plain_env() if mode == "none" else drain_env(log)
        p = ctx.start([prog("drain_fin_at_close")], env=env, stdin=subprocess.PIPE)
        line = p.expect("answer=")
        tell(p)
        assert finish(p, timeout=HANG_S) == 0, p.stderr
        assert line.split() == ["6", "eof=1", "fifo=1"], (mode, line)
    recs = read_records(log)
    (cl,) = [r for r in closes(recs) if r["action"] == "drained"]
    assert cl["verdict"] == "clean" and cl["state"] == "ESTABLISHED", cl
    (dr,) = drains(recs)
    assert dr["result"] == "delivered" and dr["discarded"] == 0, dr


def test_late_rst_fin_pending_without_drain(ctx):
    late_rst(ctx, "observe", pending=True)


def test_late_rst_fin_pending_drained(ctx):
    late_rst(ctx, "drain", pending=True)


# ---------------------------------------------------------------- timeouts, resets, linger

def quiet_drain(ctx, sync=False, idle=1000, total=LONG_IDLE_MS, trickle=False, peer_reset=False):
    """The client sends 10 bytes the server never reads, then keeps the
    connection open: silent, or trickling a byte every 100 ms, or resetting.
    Returns the drain record, and for a sync close() whether that record was
    already in the log when close() returned."""
    log = ctx.path("log")
    srv = start(ctx, "drain_server", "--read", 0, "--waitinq", 10, "--wait",
                env=drain_env(log, sync=sync, idle=idle, total=total))
    port = int(srv.expect("port "))
    c = client(port)
    c.sendall(b"0123456789")
    if not sync:  # a sync close() returns only when the drain is over
        fd, ns, rc = closed_line(srv)
    trickling_when_ended = None
    if peer_reset:
        time.sleep(0.2)
        linger0_close(c)
    elif trickle:
        # until the drain ends (the bound only ends a hang)
        stop = time.monotonic() + HANG_S
        trickling_when_ended = False
        while time.monotonic() < stop:
            if drains(read_records(log)):
                trickling_when_ended = True
                break
            try:
                c.send(b".")
            except OSError:
                break
            time.sleep(0.1)
    drained_at_close = None
    if sync:
        (fd, ns, rc), drained_at_close = drain_ended_before(log, srv, timeout=HANG_S)
    (dr,) = wait_drains(log, 1, timeout=HANG_S)
    tell(srv)
    assert finish(srv) == 0, srv.stderr
    c.close()
    (cl,) = closes(read_records(log))
    assert cl["action"] == "drained" and rc == 0
    if sync:
        assert drained_at_close, "sync close() returned before its drain ended"
    if trickle:
        assert trickling_when_ended, "the drain did not end while the peer kept sending"
    return dr


# The drain's own times (waited_ms) are checked against its configured limits only from
# below: a timeout never fires early. Which limit ended a drain is told apart by setting the
# other one far beyond what the test waits for (LONG_IDLE_MS, HANG_S).

def test_idle_timeout(ctx):
    dr = quiet_drain(ctx, idle=1000)
    assert dr["result"] == "timeout" and dr["discarded"] == 10, dr
    assert 1000 <= dr["waited_ms"] < LONG_IDLE_MS, dr


def test_idle_timeout_sync(ctx):
    """The same inside close(): it returns only once the drain has ended (checked by
    quiet_drain: the drain record is in the log before the program sees close() return)."""
    dr = quiet_drain(ctx, sync=True, idle=1000)
    assert dr["result"] == "timeout" and dr["discarded"] == 10, dr
    assert 1000 <= dr["waited_ms"] < LONG_IDLE_MS, dr


def test_total_timeout(ctx):
    """A peer that keeps sending keeps the drain from going idle; the total timeout ends it
    while the peer is still sending."""
    dr = quiet_drain(ctx, idle=LONG_IDLE_MS, total=2000, trickle=True)
    assert dr["result"] == "timeout" and dr["discarded"] > 10, dr
    assert 2000 <= dr["waited_ms"] < LONG_IDLE_MS, dr


def test_total_timeout_sync(ctx):
    dr = quiet_drain(ctx, sync=True, idle=LONG_IDLE_MS, total=2000, trickle=True)
    assert dr["result"] == "timeout" and dr["discarded"] > 10, dr
    assert 2000 <= dr["waited_ms"] < LONG_IDLE_MS, dr


def test_peer_reset(ctx):
    """The peer's RST ends the drain at once: long before its idle timeout could."""
    dr = quiet_drain(ctx, idle=LONG_IDLE_MS, peer_reset=True)
    assert dr["result"] == "peer_reset" and dr["discarded"] == 10, dr
    assert dr["waited_ms"] < LONG_IDLE_MS, dr


def test_async_close_returns_at_once(ctx):
    """close() returns without waiting for the drain (the first drain of a process also
    starts the drain thread): both closes return while the clients still withhold their
    FIN, and only then do the clients close, which ends both drains `delivered`. A close()
    that waited for its drain would wait for LONG_IDLE_MS, and the test would give up."""
    log = ctx.path("log")
    srv = start(ctx, "drain_server", "--conns", 2, "--batch", "--read", 0, "--waitinq", 100, "--wait",
                env=drain_env(log, idle=LONG_IDLE_MS, total=LONG_IDLE_MS))
    port = int(srv.expect("port "))
    cs = [client(port), client(port)]
    for c in cs:
        c.sendall(b"x" * 100)
    closed = [closed_line_first(srv) for _ in cs]
    assert not drains(read_records(log)), "a drain ended before its peer closed"
    res = [pump(c, 0) for c in cs]
    ds = wait_drains(log, 2)
    tell(srv)
    assert finish(srv) == 0
    assert all(rc == 0 for _, _, rc in closed), closed
    for dr in ds:
        assert dr["result"] == "delivered" and dr["discarded"] == 100, dr
    assert all(r["read"] == "eof" and not r["reset"] for r in res), res


def test_linger0_never_drained(ctx):
    """SO_LINGER {1,0} is an intended abort: with unread data (rst_unread) or
    without (rst_linger0), the close is not drained and the RST goes out."""
    require_root()
    for unread in (True, False):
        log = ctx.path(f"log-{unread}")
        args = ["--read", 0 if unread else 10, "--waitinq" if unread else "--waitoutq0"]
        args += ([10] if unread else []) + ["--linger", 0, "--wait"]
        srv = start(ctx, "drain_server", *args, env=drain_env(log))
        port = int(srv.expect("port "))
        with Capture(ctx, f"tcp port {port}") as cap:
            c = client(port)
            c.sendall(b"0123456789")
            closed_line(srv)
            got = read_to_end(c)
        tell(srv)
        assert finish(srv) == 0
        recs = read_records(log)
        (cl,) = closes(recs)
        assert cl["linger"] == 0 and cl["action"] == "none", cl
        assert cl["verdict"] == ("rst_unread" if unread else "rst_linger0"), cl
        assert not drains(recs)
        assert got[1] == "reset", got
        assert count_flag(cap.packets(), "R", sport=port) >= 1


# ---------------------------------------------------------------- many, fork, exit

@timeout(180)
def test_drain_max(ctx):
    """200 concurrent drains with CLOSEWATCH_DRAIN_MAX=50: 50 drained, 150
    skipped (closed normally: RST), all logged."""
    log = ctx.path("log")
    n, cap_ = 200, 50
    srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 0, "--waitinq", 100, "--wait",
                env=drain_env(log, max_=cap_, idle=60000))
    port = int(srv.expect("port "))
    cs = clients_with_unread(port, n)
    srv.expect("done", timeout=60)
    # The drain thread writes the close records of the drains it took over.
    recs = wait_for(lambda: len(closes(read_records(log))) >= n and closes(read_records(log)),
                    timeout=10, what=f"{n} close records")
    assert len(recs) == n
    assert sum(r["action"] == "drained" for r in recs) == cap_
    assert sum(r["action"] == "drain_skipped" for r in recs) == n - cap_
    assert all(r["verdict"] == "rst_unread" for r in recs)
    for c in cs:
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    outcomes = [read_to_end(c, timeout=5)[1] for c in cs]
    for c in cs:
        c.close()
    assert outcomes.count("eof") == cap_ and outcomes.count("reset") == n - cap_, outcomes
    ds = wait_drains(log, cap_)
    tell(srv)
    assert finish(srv) == 0
    ds = drains(read_records(log))
    assert len(ds) == cap_
    assert all(d["result"] == "delivered" and d["discarded"] == 100 for d in ds), ds
    drained_fds = sorted(r["fd"] for r in recs if r["action"] == "drained")
    assert sorted(d["fd"] for d in ds) == drained_fds


def test_fork_while_drains_pending(ctx):
    """Children forked while drains are pending hold none of them (the
    parent's drains finish while the children live: each waits for a byte from
    the test before it exits), and log none."""
    log = ctx.path("log")
    n = 5
    srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 0, "--waitinq", 100,
                "--fork", 3, "--child-wait", "--wait", env=drain_env(log, idle=60000))
    port = int(srv.expect("port "))
    cs = clients_with_unread(port, n)
    children = [srv.expect("child ").split() for _ in range(3)]
    pids = {int(w[0]) for w in children}
    assert all(w[1:] == ["sockets", "0"] for w in children), children
    for c in cs:
        assert pump(c, 1000)["read"] == "eof"
    ds = wait_drains(log, n, timeout=HANG_S)  # while the children still live
    # now the children may exit (LeakSanitizer checks each under make check)
    srv.p.stdin.write(b"xxx")
    srv.p.stdin.flush()
    srv.expect("children done", timeout=60)
    tell(srv)
    assert finish(srv) == 0
    recs = read_records(log)
    ds = drains(recs)
    assert len(ds) == n and all(d["result"] == "delivered" and d["discarded"] == 1100 for d in ds), ds
    assert all(r["pid"] not in pids for r in recs if r["call"] in ("drain", "close")), recs


@timeout(120)
def test_fork_storm_while_draining(ctx):
    """Forking again and again while the drain thread is busy reading: every
    drain still counts every byte, no child inherits a socket."""
    log = ctx.path("log")
    n, forks = 8, 40
    srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 0, "--waitinq", 100,
                "--fork", forks, "--wait", env=drain_env(log, idle=60000))
    port = int(srv.expect("port "))
    cs = clients_with_unread(port, n)
    for _ in range(n):
        closed_line(srv)
    sent = [100] * n
    stop = threading.Event()

    def feed():
        chunk = b"y" * 4096
        while not stop.is_set():
            for i, c in enumerate(cs):
                sent[i] += c.send(chunk)

    t = threading.Thread(target=feed)
    t.start()
    try:
        kids = [srv.expect("child ").split() for _ in range(forks)]
        srv.expect("children done", timeout=30)
    finally:
        stop.set()
        t.join()
    assert all(k[1:] == ["sockets", "0"] for k in kids), kids
    ds = end_delivered(srv, log, cs, n, 0)
    by_port = {int(d["peer"].rsplit(":", 1)[1]): d["discarded"] for d in ds}
    assert by_port == {c.getsockname()[1]: want for c, want in zip(cs, sent)}, (by_port, sent)
    for c in cs:
        c.close()


def test_close_record_survives_exit_and_exec_right_after(ctx):
    """An async drain's close record is written by the drain thread. A
    program that closes and at once calls _exit, _Exit or exec (no exit
    handlers) still leaves exactly one close record per drained close."""
    n = 8
    for how in ("_exit", "_Exit", "exec"):
        log = ctx.path(f"log-{how}")
        srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 0, "--waitinq", 100,
                    "--then", how, env=drain_env(log))
        port = int(srv.expect("port "))
        cs = clients_with_unread(port, n)
        assert finish(srv) == 0
        ports = sorted(c.getsockname()[1] for c in cs)
        recs = closes(read_records(log))
        assert sorted(int(r["peer"].rsplit(":", 1)[1]) for r in recs) == ports, (how, recs)
        assert all(r["action"] == "drained" and r["verdict"] == "rst_unread" for r in recs), recs
        for c in cs:
            c.close()


def test_exec_writes_quiet_close_records_once(ctx):
    """EVENTS=risky: a clean close in ESTABLISHED is drained quietly (its close record is
    due only if the drain loses something). An exec right after such closes cuts the drains
    short: the drain thread writes each close record once, when the exec's flush message
    reaches it, and no drain record (the thread ends with the image)."""
    n = 6
    log = ctx.path("log")
    srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 10, "--write", 100,
                "--then", "exec", env=drain_env(log, events="risky", idle=60000))
    port = int(srv.expect("port "))
    cs = []
    for _ in range(n):
        c = client(port)
        c.sendall(b"0123456789")
        cs.append(c)
    assert finish(srv) == 0
    recs = read_records(log)
    cl = closes(recs)
    assert sorted(int(r["peer"].rsplit(":", 1)[1]) for r in cl) == \
        sorted(c.getsockname()[1] for c in cs), cl
    assert all(r["action"] == "drained" and r["verdict"] == "clean" for r in cl), cl
    assert not drains(recs), recs
    for c in cs:
        c.close()


def test_exit_waits_for_pending_drains(ctx):
    """At exit, pending drains get a bounded wait (<= the idle timeout), and
    each is logged: delivered if the peer closes in time, else timeout.
    No clock decides: when the peer closes, the idle timeout is LONG_IDLE_MS, so
    an exit that waited for it rather than for the drain would outlast HANG_S;
    when it stays silent, the total timeout is, so an exit that waited for that
    one (or for ever) would."""
    for peer_closes in (True, False):
        log = ctx.path(f"log-{peer_closes}")
        idle = LONG_IDLE_MS if peer_closes else 1500
        srv = start(ctx, "drain_server", "--read", 0, "--waitinq", 10,
                    env=drain_env(log, idle=idle, total=LONG_IDLE_MS))
        port = int(srv.expect("port "))
        c = client(port)
        c.sendall(b"0123456789")
        closed_line(srv)
        srv.expect("done")
        if peer_closes:
            time.sleep(0.3)  # (not needed to pass: lets the FIN come while exit waits)
            c.shutdown(socket.SHUT_WR)
        assert finish(srv, timeout=HANG_S) == 0
        c.close()
        (dr,) = drains(read_records(log))
        if peer_closes:
            assert dr["result"] == "delivered", dr
        else:
            assert dr["result"] == "timeout" and 1500 <= dr["waited_ms"] < LONG_IDLE_MS, dr


def test_exit_right_after_close_waits_for_the_drain(ctx):
    """Fork-per-connection servers (Python's ForkingMixIn, many C servers) end each child
    with _exit right after its close: pending drains get the same bounded wait there as at
    exit, so the client still gets the whole answer and EOF, with no reset (a drain cut short
    by _exit used to reset the very client it lingered for), and the drain is logged."""
    for how in ("_exit", "_Exit", None):
        log = ctx.path(f"log-{how}")
        srv = start(ctx, "drain_server", "--read", 0, "--write", 100000, "--waitinq", 10,
                    *(("--then", how) if how else ()),
                    env=drain_env(log, idle=LONG_IDLE_MS, total=LONG_IDLE_MS))
        port = int(srv.expect("port "))
        c = client(port)
        c.sendall(b"0123456789")
        closed_line(srv)
        res = pump(c, 300000)  # an upload still coming after the answer and the close
        c.close()
        assert finish(srv, timeout=HANG_S) == 0, how
        assert res["read"] == "eof" and not res["reset"] and res["got"] == 100000, (how, res)
        (dr,) = drains(read_records(log))
        assert dr["result"] == "delivered" and dr["discarded"] >= 300000, (how, dr)


def test_dup2_over_our_fds(ctx):
    """A program that dup2()s over a range of high fd numbers where ours live
    (the log's, the drain channel's program end) while drains are pending: its
    dup2s and closes all succeed, our fds move out of its way, the drains
    complete. (Over every number up to RLIMIT_NOFILE: the channel is given up,
    see test_program_wipes_every_fd_while_drains_pend.)"""
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    n = 4
    srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 0, "--waitinq", 100,
                "--dup2-range", soft - 128, soft - 65, "--wait", env=drain_env(None, idle=60000))
    port = int(srv.expect("port "))
    cs = clients_with_unread(port, n)
    assert srv.expect("dup2 failures ") == "0"
    for c in cs:
        res = pump(c, 5000)
        assert res["read"] == "eof" and not res["reset"], res
        c.close()
    time.sleep(0.5)
    tell(srv)
    assert finish(srv) == 0
    import json
    recs = [json.loads(l) for l in srv.stderr.splitlines() if l.startswith("{")]
    ds = drains(recs)
    assert len(ds) == n and all(d["result"] == "delivered" and d["discarded"] == 5100 for d in ds), ds


def socket_inodes(path):
    """Inodes of the sockets in an fd directory (/proc/PID/fd, /proc/PID/task/TID/fd)."""
    return {t[8:-1] for t in fd_targets(path) if t.startswith("socket:[")}


def drain_thread(pid):
    """The tid of pid's drain thread (a sanitizer may run threads of its own)."""
    tids = []
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/comm") as f:
            if f.read().strip() == "closewatch-drn":
                tids.append(t)
    assert len(tids) == 1, tids
    return tids[0]


def tcp_inodes():
    out = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(f) as fh:
            next(fh)
            out |= {line.split()[9] for line in fh}
    return out


def sockets_in_the_threads_table(ctx, wrapper, n):
    """drain_server (run through wrapper) closes n connections with unread bytes: while
    their drains are pending, the drained sockets are in the drain thread's table, none in
    the program's; then every drain delivers."""
    log = ctx.path("log")
    srv = ctx.start(wrapper + [prog("drain_server"), "--conns", str(n), "--batch", "--read", "0",
                               "--waitinq", "100", "--wait"],
                    env=drain_env(log, idle=60000), stdin=subprocess.PIPE)
    port = int(srv.expect("port "))
    cs = clients_with_unread(port, n)
    srv.expect("done")
    pid = srv.p.pid
    wait_for(lambda: len(closes(read_records(log))) == n, what="the close records (at receipt)")
    tcp = tcp_inodes()
    prog_socks = socket_inodes(f"/proc/{pid}/fd")
    # P, and (until a drain after the thread has taken its own table) the program's copy
    # of the thread's end: both unix sockets, hidden from the program.
    assert 1 <= len(prog_socks) <= 2 and not prog_socks & tcp, prog_socks
    thread_socks = socket_inodes(f"/proc/{pid}/task/{drain_thread(pid)}/fd")
    assert len(thread_socks & tcp) == n, thread_socks
    end_delivered(srv, log, cs, n, 1000)
    for c in cs:
        c.close()


def test_drained_sockets_live_in_the_drain_threads_own_table(ctx):
    """While drains are pending, the program's fd table holds no drained socket and no
    fd of the engine but the channel (unix sockets, shown to the program as not open); the
    drain thread's own table (close_range's CLOSE_RANGE_UNSHARE) holds the sockets."""
    sockets_in_the_threads_table(ctx, [], 3)


def test_drain_thread_own_table_where_unshare_is_refused(ctx):
    """The same where a seccomp filter refuses unshare (Docker's default profile without
    CAP_SYS_ADMIN): close_range's CLOSE_RANGE_UNSHARE is not unshare(2)."""
    sockets_in_the_threads_table(ctx, [prog("no_unshare")], 2)


@timeout(120)
def test_program_wipes_every_fd_while_drains_pend(ctx):
    """Daemons sanitise their fds: dup2 over every number, close every number in a loop, or
    close_range(3, ~0) while drains are pending. The drained sockets are not in the
    program's table (only the channel's program end is, shown as not open): every call
    gives the program what it gives without closewatch, every pending drain delivers, and
    a drain after the wipe works too (a new channel when the old one had to go)."""
    n = 4
    wipes = {"dup2": ["--dup2-range", 3, "max"], "closeloop": ["--wipe", "closeloop"],
             "close_range": ["--wipe", "close_range"]}
    for how, args in wipes.items():
        outs = {}
        for shim in (False, True):
            log = ctx.path(f"log-{how}-{shim}")
            env = drain_env(log, idle=60000) if shim else os.environ.copy()
            srv = start(ctx, "drain_server", "--conns", n, "--batch", "--read", 0,
                        "--waitinq", 100, *args, "--again", 1, "--wait", env=env)
            port = int(srv.expect("port "))
            cs = clients_with_unread(port, n)
            for _ in range(n):
                closed_line(srv)
            outs[shim] = srv.expect("dup2 failures " if how == "dup2" else "wipe ", timeout=60)
            port2 = int(srv.expect("port "))
            cs += clients_with_unread(port2, 1)
            closed_line(srv)
            if shim:
                for c in cs:
                    res = pump(c, 5000)
                    assert res["read"] == "eof" and not res["reset"], (how, res)
                wait_drains(log, n + 1, timeout=HANG_S)
            tell(srv)
            assert finish(srv) == 0, (how, shim, srv.stderr)
            for c in cs:
                c.close()
            if shim:
                recs = read_records(log)
                cl, ds = closes(recs), drains(recs)
                assert len(cl) == n + 1 and all(r["action"] == "drained" for r in cl), (how, cl)
                assert len(ds) == n + 1 and all(d["result"] == "delivered" and
                                                d["discarded"] == 5100 for d in ds), (how, ds)
        assert outs[True] == outs[False], (how, outs)


# ---------------------------------------------------------------- programs with their own epoll

def epoll_program(ctx, et):
    log = ctx.path(f"log-{et}")
    args = ["--et"] if et else []
    srv = start(ctx, "drain_epoll", *args, env=drain_env(log, idle=60000))
    port = int(srv.expect("port "))
    a = client(port)
    a.sendall(b"a" * 1024)
    first = srv.expect("closed fd ").split()
    fd_a = int(first[0])
    extra = 0
    for _ in range(5):  # the drained connection keeps receiving
        a.sendall(b"A" * 4096)
        extra += 4096
        time.sleep(0.02)
    b = client(port)
    acc = srv.expect("accepted fd ").split()
    assert int(acc[0]) == fd_a, f"fd number not reused: {first} {acc}"
    b.sendall(b"b" * 10)
    for _ in range(5):
        a.sendall(b"A" * 4096)
        extra += 4096
        time.sleep(0.02)
    a.shutdown(socket.SHUT_WR)  # EOF (and HUP) on the drained connection
    assert read_to_end(a) == (1000, "eof")
    wait_drains(log, 1)
    time.sleep(0.2)
    b.sendall(b"b" * 1014)
    srv.expect("closed fd ")
    b.shutdown(socket.SHUT_WR)
    assert read_to_end(b) == (1000, "eof")
    wait_drains(log, 2)
    tell(srv, "quit")
    assert srv.expect("stale ") == "0", srv.lines
    assert finish(srv) == 0
    ds = drains(read_records(log))
    assert all(d["result"] == "delivered" for d in ds), ds
    assert ds[0]["discarded"] == extra and ds[1]["discarded"] == 0, ds


def test_epoll_program_level_triggered(ctx):
    epoll_program(ctx, et=False)


def test_epoll_program_edge_triggered(ctx):
    epoll_program(ctx, et=True)


# ---------------------------------------------------------------- warn mode

def test_warn_mode_one_line_with_backtrace(ctx):
    log = ctx.path("log")
    srv = start(ctx, "drain_server", "--read", 0, "--waitinq", 100, "--wait",
                env=drain_env(log, mode="warn"))
    port = int(srv.expect("port "))
    c = client(port)
    c.sendall(b"x" * 100)
    fd, _, rc = closed_line(srv)
    got = read_to_end(c)
    tell(srv)
    assert finish(srv) == 0
    assert rc == 0 and got[1] == "reset"
    warnings = [l for l in srv.stderr.splitlines() if l.startswith("closewatch: warning:")]
    assert len(warnings) == 1, srv.stderr
    w = warnings[0]
    assert f"close({fd}) of tcp 127.0.0.1:{port} <-> 127.0.0.1:" in w, w
    assert "will send RST (unread data): 100 unread byte(s)" in w, w
    # Under TSan its close() interceptor is a frame between the program and us.
    site = "close_conn+0x" if os.environ.get("CW_SANITIZER") == "tsan" else "; closed at close_conn+0x"
    assert site in w and "<- main+0x" in w and "drain_server)" in w, w
    assert srv.stderr.count("\n") == 1, srv.stderr  # nothing else on stderr
    recs = read_records(log)
    (cl,) = closes(recs)
    assert cl["action"] == "warned" and cl["bt"], cl
    assert not drains(recs)
