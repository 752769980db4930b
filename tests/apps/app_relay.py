"""socat and ncat relaying a stream both ways under the shim: half-close travels through
as shutdown(wr) (records with `how`), and a relay killed mid-stream."""
import array
import fcntl
import signal
import socket
import subprocess
import termios
import threading
import time

import cwtest
import cwapps
from cwapps import H4

UP, DOWN = 1000000, 500000


def backend():
    s, port = cwtest.tcp_listener(H4)
    return s, port


def connect_retry(port, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cwtest.connect(H4, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def outq(s):
    buf = array.array("i", [0])
    fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, buf, True)
    return buf[0]


def wait_stalled(s, quiet=0.3, timeout=10):
    """Wait until our send queue on s stops moving (the relay has stopped reading)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        q = outq(s)
        if q != last:
            last, since = q, time.monotonic()
        elif q > 0 and time.monotonic() - since >= quiet:
            return q
        time.sleep(0.02)
    raise AssertionError("the stream never stalled")


def half_close_both_ways(client, back):
    """client sends UP bytes then shuts down its write side; the backend reads them to
    EOF, answers DOWN bytes and closes; the client reads to EOF."""
    res = {}
    t = threading.Thread(target=lambda: res.update(back=cwtest.read_to_end(back)))
    t.start()
    client.sendall(cwapps.pattern_bytes(UP))
    client.shutdown(socket.SHUT_WR)
    t.join(20)
    back.sendall(cwapps.pattern_bytes(DOWN, b"down"))
    back.close()
    res["client"] = cwtest.read_to_end(client)
    client.close()
    return res


def socat_argv(lport, bport):
    return ["socat", f"TCP-LISTEN:{lport},bind={H4},reuseaddr", f"TCP:{H4}:{bport}"]


def test_socat_relay_half_close(ctx):
    """client -> socat -> backend: both directions arrive whole; the client's half-close
    reaches the backend as socat's shutdown(wr) (fin_pending or clean), the backend's
    close reaches the client as another; then socat shuts both down (rdwr, no_conn) and
    exits; every record is for the two connections or the listener."""
    cwapps.need("socat")

    def workload(ctx, run):
        ls, bport = backend()
        lport = cwapps.free_port()
        sc = run.start(socat_argv(lport, bport))
        c = connect_retry(lport)
        b, _ = ls.accept()
        before = cwapps.counters()
        res = half_close_both_ways(c, b)
        rc = sc.wait(15)
        run.ports = {lport, bport}
        run.lport, run.bport = lport, bport
        return {"res": res, "rc": rc, "stderr": sc.stderr,
                "resets": cwapps.aborts(before, cwapps.counters())}

    out, run = cwapps.both(ctx, workload)
    assert out["res"] == {"back": (UP, "eof"), "client": (DOWN, "eof")} and out["rc"] == 0, out
    assert out["resets"] == 0, out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, run.ports)
    assert all(r["comm"] == "socat" for r in recs)
    shut_wr = cwtest.records_for(recs, call="shutdown", how="wr")
    assert len(shut_wr) == 2, cwapps.fmt(recs)
    to_back, to_client = shut_wr
    assert to_back["peer"] == f"{H4}:{run.bport}", to_back   # the client's EOF first
    assert to_client["local"] == f"{H4}:{run.lport}", to_client
    for r in shut_wr:
        assert r["verdict"] in ("clean", "fin_pending") and r["recvq"] == 0, r
    assert not [r for r in recs if r["verdict"] in cwapps.RISKY], cwapps.fmt(recs)
    # Whatever socat does after (shutdown rdwr, close or exit), nothing more is sent.
    for r in recs:
        if r not in shut_wr and r["state"] != "LISTEN":
            assert r["verdict"] == "no_conn", r


def _killed(ctx, run, argv, sig, lport=None):
    """A relay between us (not reading) and a backend that keeps sending: once the stream
    has stalled, the relay gets sig. Returns what both ends saw."""
    ls, bport = backend()
    if lport:
        p = run.start(argv(lport, bport))
        c = connect_retry(lport)
    else:
        p = run.start(argv(bport), stdin=subprocess.PIPE)
        c = None
    b, _ = ls.accept()
    res = {}

    def pump():
        try:
            b.sendall(b"d" * (16 << 20))
            res["back_send"] = "ok"
        except OSError as e:
            res["back_send"] = type(e).__name__
    before = cwapps.counters()
    t = threading.Thread(target=pump)
    t.start()
    wait_stalled(b)
    p.p.send_signal(sig)
    rc = p.wait(10)
    t.join(15)
    if c is not None:
        n, end = cwtest.read_to_end(c)
        res["client"] = ("got data" if n else "nothing", end)
        c.close()
    b.close()
    run.ports = {bport} | ({lport} if lport else set())
    run.pid = p.p.pid
    resets = cwapps.rst_delta(before, cwapps.counters())
    return {"res": res, "rc": rc, "abort_on_close": resets["TCPAbortOnClose"]}


def test_socat_killed_mid_stream(ctx):
    """socat relays a backend that keeps sending to a client that does not read; with
    the stream stalled (data unread in socat's socket to the backend), SIGTERM: socat
    shuts both sockets down and exits; its exit records say rst_unread for the backend
    socket (the kernel's abort counter says 1, the backend's send fails) and no_conn for
    the client socket, whose data still arrives, then EOF. With SIGKILL nothing is logged
    and the kernel does the same. Both identical with and without the shim."""
    cwapps.need("socat")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        def workload(ctx, run):
            return _killed(ctx, run, socat_argv, sig, lport=cwapps.free_port())
        out, run = cwapps.both(ctx, workload)
        assert out["res"]["client"] == ("got data", "eof"), out
        assert out["res"]["back_send"] in ("ConnectionResetError", "BrokenPipeError"), out
        assert out["abort_on_close"] == 1, out
        recs = run.records()
        cwapps.all_valid(recs)
        cwapps.no_strays(recs, run.ports)
        if sig == signal.SIGKILL:
            assert out["rc"] == -signal.SIGKILL
            # Only the listener's close, from before the kill.
            assert [r["state"] for r in recs] == ["LISTEN"], cwapps.fmt(recs)
            continue
        assert out["rc"] == 128 + signal.SIGTERM, out
        ex = cwtest.records_for(recs, call="exit")
        assert len(ex) == 2, cwapps.fmt(recs)
        back = [r for r in ex if cwapps.port_of(r["peer"]) in run.ports - {cwapps.port_of(r["local"])}
                and r["verdict"] == "rst_unread"]
        assert len(back) == 1 and back[0]["recvq"] > 0, cwapps.fmt(ex)
        other = [r for r in ex if r is not back[0]][0]
        cwtest.check_fields(other, verdict="no_conn")


def ncat_connect_argv(bport):
    return ["ncat", H4, str(bport)]


def test_ncat_half_close(ctx):
    """ncat in connect mode relays its stdin to a backend and the backend to its stdout;
    at the end of stdin it shuts down (shutdown how=wr), reads the answer to EOF and
    closes (no_conn); both directions arrive whole, same with the shim."""
    cwapps.need("ncat")

    def workload(ctx, run):
        ls, bport = backend()
        p = run.start(ncat_connect_argv(bport), stdin=subprocess.PIPE)
        b, _ = ls.accept()
        res = {}
        t = threading.Thread(target=lambda: res.update(back=cwtest.read_to_end(b)))
        t.start()

        def feed():
            p.p.stdin.write(cwapps.pattern_bytes(UP))
            p.p.stdin.close()
        f = threading.Thread(target=feed)
        f.start()
        t.join(20)
        f.join(20)
        b.sendall(cwapps.pattern_bytes(DOWN, b"down"))
        b.close()
        out = p.p.stdout.read()
        rc = p.p.wait(10)
        run.ports = {bport}
        return {"res": res, "stdout": cwapps.sha(out), "rc": rc, "stderr": p.p.stderr.read()}

    out, run = cwapps.both(ctx, workload)
    assert out["res"] == {"back": (UP, "eof")} and out["rc"] == 0, out
    assert out["stdout"] == cwapps.sha(cwapps.pattern_bytes(DOWN, b"down")), out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, run.ports)
    assert [(r["call"], r.get("how")) for r in recs] == [("shutdown", "wr"), ("close", None)], cwapps.fmt(recs)
    sh, cl = recs
    assert sh["verdict"] in ("clean", "fin_pending"), sh
    cwtest.check_fields(cl, verdict="no_conn", fd=sh["fd"])


def test_ncat_killed_mid_stream(ctx):
    """ncat relays a backend that keeps sending to a stdout nobody reads; killed with
    SIGTERM (not caught: no exit handlers, no records), the kernel resets the backend
    (unread data), exactly as without the shim."""
    cwapps.need("ncat")

    def workload(ctx, run):
        return _killed(ctx, run, ncat_connect_argv, signal.SIGTERM)

    out, run = cwapps.both(ctx, workload)
    assert out["rc"] == -signal.SIGTERM and out["abort_on_close"] == 1, out
    assert out["res"]["back_send"] in ("ConnectionResetError", "BrokenPipeError"), out
    assert run.records() == [], cwapps.fmt(run.records())
