"""python3 under the shim: http.server (ThreadingHTTPServer) and
socketserver.ForkingTCPServer (the parent's close after fork is `shared`, the child's
closes carry the verdicts)."""
import http.client
import os
import signal
import threading

import cwtest
import cwapps
from cwapps import H4, PY


def test_python_http_server_threaded(ctx):
    """python3 -m http.server: 24 requests (sequential and from 4 threads at once, 200s,
    404s, HEADs); same answers, log lines and exit status with the shim; per connection
    one shutdown(wr) record (clean/fin_pending) from a handler thread and one close
    (no_conn), then the listener's close at exit; nothing else."""
    files = {"index.html": b"<p>hi</p>\n", "a.bin": cwapps.pattern_bytes(300000),
             "b.txt": b"b" * 5000}
    paths = ["/a.bin", "/b.txt", "/index.html", "/missing", "/a.bin", "/"]
    n_seq, n_threads, per_thread = 8, 4, 4

    def fetch(port, path, method="GET"):
        c = http.client.HTTPConnection(H4, port, timeout=10)
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return (method, path, r.status, cwapps.sha(body), len(body))

    def workload(ctx, run):
        www = run.path("www")
        os.makedirs(www)
        for name, data in files.items():
            with open(os.path.join(www, name), "wb") as f:
                f.write(data)
        srv = run.start([PY, "-u", "-m", "http.server", "-b", H4, "-d", www, "0"])
        port = int(srv.expect("Serving HTTP on").split(" port ")[1].split()[0])
        before = cwapps.counters()
        results = [fetch(port, paths[i % len(paths)], "HEAD" if i == 3 else "GET")
                   for i in range(n_seq)]
        lock = threading.Lock()

        def worker(k):
            for i in range(per_thread):
                got = fetch(port, paths[(k + i) % len(paths)])
                with lock:
                    results.append(got)
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        resets = cwapps.aborts(before, cwapps.counters())
        # The handler threads are daemon threads that nobody joins: let them finish
        # their close() before we stop the server (else the exit closes the socket).
        cwapps.wait_sockets(srv.p.pid, 1)
        rc = cwapps.stop(srv, signal.SIGINT)
        run.port, run.pid = port, srv.p.pid
        log = sorted(cwapps.normalize(l, (port, "PORT")) for l in srv.stderr.splitlines())
        return {"results": sorted(results), "rc": rc, "stdout": srv.lines, "log": log,
                "resets": resets}

    out, run = cwapps.both(ctx, workload)
    n = n_seq + n_threads * per_thread
    assert out["rc"] == 0 and len(out["results"]) == n, out
    assert {r[2] for r in out["results"]} == {200, 404}, out["results"]
    assert out["resets"] == 0, out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, {run.port})
    assert all(r["pid"] == run.pid and r["comm"].startswith("python") for r in recs), cwapps.fmt(recs)
    shut = cwtest.records_for(recs, call="shutdown")
    conns = [r for r in recs if r["call"] == "close" and r["state"] != "LISTEN"]
    assert len(shut) == n and len(conns) == n, f"expected {n} connections:\n{cwapps.fmt(recs)}"
    for r in shut:
        cwtest.check_fields(r, how="wr", local=f"{H4}:{run.port}")
        assert r["verdict"] in ("clean", "fin_pending"), r
        assert r["tid"] != run.pid, f"handled on the main thread? {r}"
    for r in conns:
        assert r["verdict"] == "no_conn", r  # the FIN went with the shutdown
    lst = cwtest.one_record(recs, state="LISTEN")
    cwtest.check_fields(lst, call="close", verdict="no_conn", tid=run.pid)
    assert not [r for r in recs if r["verdict"] in cwapps.RISKY]


def test_python_forking_server(ctx):
    """socketserver.ForkingTCPServer, 3 connections: the parent's close right after fork
    is `shared` (the live child holds the socket; found by scanning /proc/<child>/fd);
    the child's shutdown(wr) carries the FIN and its close is no_conn, or rst_unread when
    the client sent more than the handler read (the kernel's abort counter agrees)."""
    extra = 20000  # third connection: more than the handler's 8 KiB buffered read

    def workload(ctx, run):
        srv = run.start([PY, "-u", os.path.join(cwapps.HERE, "forking_server.py"), "3"])
        port = int(srv.expect("port"))
        got = []
        before = cwapps.counters()
        for i in range(3):
            c = cwtest.connect(H4, port)
            srv.expect("handed")  # the parent has closed its copy, the child waits for us
            c.sendall(b"hi %d\n" % i + (b"x" * extra if i == 2 else b""))
            got.append(cwtest.read_to_end(c))
            if i == 2:
                # Keep our side open: the child's close then finds its peer still there
                # (FIN_WAIT2) and must reset (a FIN of ours first would turn its socket
                # into TIME_WAIT and the kernel would send nothing: a race, not a verdict).
                got.append(("reset", cwapps.wait_reset(c)))
            c.close()
        srv.expect("done")
        rc = srv.wait(10)
        resets = cwapps.rst_delta(before, cwapps.counters())
        run.port, run.pid = port, srv.p.pid
        return {"got": got, "rc": rc, "abort_on_close": resets["TCPAbortOnClose"]}

    out, run = cwapps.both(ctx, workload)
    assert out["rc"] == 0 and out["got"] == [(len("echo hi 0\n"), "eof")] * 3 + [("reset", True)], out
    assert out["abort_on_close"] == 1, out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, {run.port})
    parent = [r for r in recs if r["pid"] == run.pid]
    children = cwapps.by_pid([r for r in recs if r["pid"] != run.pid])
    pconns = [r for r in parent if r["state"] != "LISTEN"]
    assert len(pconns) == 3, cwapps.fmt(parent)
    for r in pconns:
        cwtest.check_fields(r, call="close", state="ESTABLISHED", verdict="shared", lost=0)
    cwtest.check_fields(cwtest.one_record(parent, state="LISTEN"), call="close", verdict="no_conn")
    assert len(parent) == 4, cwapps.fmt(parent)
    assert len(children) == 3, f"one set of records per child:\n{cwapps.fmt(recs)}"
    by_peer = {r["peer"]: r for r in pconns}
    for i, (pid, rs) in enumerate(sorted(children.items(), key=lambda kv: kv[1][0]["ts"])):
        assert [r["call"] for r in rs] == ["shutdown", "close"], cwapps.fmt(rs)
        sh, cl = rs
        assert sh["peer"] in by_peer, f"child {pid} closes a connection the parent never had"
        cwtest.check_fields(sh, how="wr", fd=by_peer[sh["peer"]]["fd"])
        assert sh["verdict"] in ("clean", "fin_pending"), sh
        assert cl["verdict"] != "shared", f"the parent had closed already: {cl}"
        if i < 2:
            cwtest.check_fields(cl, verdict="no_conn", recvq=0)
        else:
            cwtest.check_fields(cl, verdict="rst_unread")
            assert 0 < cl["recvq"] <= extra, cl
