"""node (http module) answering early on an upload it never reads: the close is
rst_unread in observe mode (the kernel resets, the client loses the answer); in drain
mode the shim's lingering close lets the client have the whole answer."""
import os
import signal

import cwtest
import cwapps
import httpc
from cwapps import H4

ANSWER = 1 << 20
UPLOAD = 8 << 20


def workload(ctx, run):
    node = run.start([cwapps.which("node"), os.path.join(cwapps.HERE, "node_early.js"), str(ANSWER)])
    port = int(node.expect("port"))
    before = cwapps.counters()
    s = cwtest.connect(H4, port, timeout=20)
    lport = s.getsockname()[1]
    res = {}
    try:
        # Blocking: the whole upload, as a client that answers only after sending does.
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % UPLOAD)
        s.sendall(b"u" * UPLOAD)
        res["upload"] = "ok"
    except OSError as e:
        res["upload"] = type(e).__name__
    try:
        status, body, rest = httpc.read_response(s)
        n, end = cwtest.read_to_end(s)
        res["answer"] = (status, len(body) == ANSWER, len(rest) + n, end)
    except (OSError, EOFError) as e:
        res["answer"] = ("lost", type(e).__name__)
    s.close()
    resets = cwapps.rst_delta(before, cwapps.counters())
    rc = cwapps.stop(node, signal.SIGTERM)
    run.port, run.lport, run.pid = port, lport, node.p.pid
    run.resets = resets
    return {"res": res, "rc": rc, "reset": resets["TCPAbortOnClose"] + resets["TCPAbortOnData"] > 0}


def conn_records(run):
    recs = run.records()
    cwapps.all_valid(recs, run.mode)
    cwapps.no_strays(recs, {run.port})
    conn = [r for r in recs if r.get("call") != "drain" and r["state"] != "LISTEN"]
    assert conn, f"no record of node's connection at all:\n{cwapps.fmt(recs)}"
    return recs, conn


def check_close(run):
    """node's records of the connection agree with what the kernel did in this run.
    Returns the close's verdict."""
    recs, conn = conn_records(run)
    calls = [r["call"] for r in conn]
    assert calls != ["shutdown"], ("node's close of the connection was never logged: libuv "
                                   "closes with syscall(SYS_close, fd), which bypasses close(); "
                                   f"records:\n{cwapps.fmt(recs)}")
    assert calls == ["shutdown", "close"], cwapps.fmt(recs)
    sh, cl = conn
    cwtest.check_fields(sh, how="wr", peer=f"{H4}:{run.lport}", pid=run.pid, comm="node")
    cwtest.check_fields(cl, fd=sh["fd"], pid=run.pid)
    if cl["verdict"] == "rst_unread":
        assert cl["recvq"] > 0 and cl["lost"] == cl["recvq"] + cl["sendq"], cl
        assert run.resets["TCPAbortOnClose"] == 1, (run.resets, cl)
    else:
        # node's reads had just emptied the queue: its close finds nothing unread (its
        # FIN already queued by the shutdown: no_conn); the RST comes when the client's
        # next segment arrives (a late RST, TCPAbortOnData).
        cwtest.check_fields(cl, verdict="no_conn", recvq=0)
        assert run.resets["TCPAbortOnClose"] == 0 and run.resets["TCPAbortOnData"] >= 1, run.resets
    lst = cwtest.one_record(recs, state="LISTEN")
    assert lst["verdict"] == "no_conn", lst
    return cl["verdict"]


def test_node_early_answer_observe(ctx):
    """Observe: same outcome with and without the shim (the upload is reset, the answer
    lost); node's records: shutdown(wr), then close with the upload unread: rst_unread,
    lost = recvq + sendq, and the kernel's abort-on-close counter agrees. node's own reads
    race with its close (it resumes reading to discard the body when the answer is
    done), so a run may instead close with nothing unread and get a late RST: then the
    record must say so (no_conn, recvq 0) and the run is repeated, up to 5 times, until
    one shows rst_unread."""
    cwapps.need("node")
    out, run = cwapps.both(ctx, workload)
    assert out["reset"] and out["rc"] == 0, out
    assert out["res"]["upload"] in ("ConnectionResetError", "BrokenPipeError"), out
    assert out["res"]["answer"][1] is not True, f"the whole answer arrived despite the reset: {out}"
    seen = []
    for attempt in range(5):
        seen.append(check_close(run))
        if seen[-1] == "rst_unread":
            break
        run = cwapps.Run(ctx, True)
        cwapps.same(out, workload(ctx, run))
    assert seen[-1] == "rst_unread", f"node never closed with the upload unread: {seen}"


def test_node_early_answer_drain(ctx):
    """Drain (3 runs): the shim takes over node's close (action drained), discards the
    rest of the upload and lets the answer and the FIN out: the client's upload
    completes, it reads the whole answer then EOF; no reset; the drain ends `delivered`
    when the client closes."""
    cwapps.need("node")
    for attempt in range(3):
        run = cwapps.Run(ctx, True, mode="drain")
        out = workload(ctx, run)
        recs, conn = conn_records(run)
        cl = [r for r in conn if r["call"] == "close"]
        assert cl, f"node's close was never logged (syscall(SYS_close)):\n{cwapps.fmt(recs)}"
        assert cl[0]["action"] == "drained", f"not drained (run {attempt}):\n{cwapps.fmt(recs)}"
        assert out["res"] == {"upload": "ok", "answer": (413, True, 0, "eof")}, out
        assert not out["reset"] and out["rc"] == 0, out
        dr = cwtest.one_record(recs, call="drain")
        cwtest.check_fields(dr, result="delivered", pid=run.pid)
        assert dr["discarded"] > 0, dr
