"""curl under the shim: a normal download, and an upload to a server that answers early
(curl the victim, the server the closer)."""
import os
import platform
import subprocess

import cwtest
import cwapps
from cwapps import H4, PY

READ_SYSCALL = {"aarch64": 63}.get(platform.machine(), 0)  # read(2): 0 on x86_64


def _serve_dir(run, files):
    """python3 http.server (HTTP/1.0: it closes each connection) on files, out of the shim."""
    www = run.path("www")
    os.makedirs(www, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(www, name), "wb") as f:
            f.write(data)
    srv = run.start([PY, "-u", "-m", "http.server", "-b", H4, "-d", www, "0"], shim=False)
    port = int(srv.expect("Serving HTTP on").split(" port ")[1].split()[0])
    return srv, port


def test_curl_download(ctx):
    """Two downloads in one curl run: the same bytes and status with and without the shim;
    curl's records are clean/fin_pending only, one per connection, plus its socketpair."""
    cwapps.need("curl")
    files = {"big.bin": cwapps.pattern_bytes(3 << 20), "small.txt": b"hello\n"}

    def workload(ctx, run):
        srv, port = _serve_dir(run, files)
        out1, out2 = run.path("o1"), run.path("o2")
        before = cwapps.counters()
        p = run.start(["curl", "-sS", "-w", "%{http_code} %{size_download}\\n",
                       "-o", out1, f"http://{H4}:{port}/big.bin",
                       "-o", out2, f"http://{H4}:{port}/small.txt"])
        rc = p.wait(20)
        resets = cwapps.aborts(before, cwapps.counters())
        cwapps.stop(srv)
        run.port = port
        with open(out1, "rb") as f1, open(out2, "rb") as f2:
            got = (cwapps.sha(f1.read()), cwapps.sha(f2.read()))
        return {"rc": rc, "stdout": p.lines, "stderr": p.stderr, "files": got,
                "resets": resets}

    out, run = cwapps.both(ctx, workload)
    assert out["rc"] == 0 and out["stdout"] == [f"200 {3 << 20}", "200 6"], out
    assert out["files"] == (cwapps.sha(files["big.bin"]), cwapps.sha(files["small.txt"]))
    assert out["resets"] == 0, out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, {run.port}, unix_ok=True, what=" (curl)")
    t = cwapps.tcp(recs)
    assert len(t) == 2, f"expected one record per connection:\n{cwapps.fmt(recs)}"
    for r in t:
        cwtest.check_fields(r, call="close", comm="curl", peer=f"{H4}:{run.port}")
        assert r["verdict"] in ("clean", "fin_pending"), r
    # curl's wakeup socketpair: the first end closed is clean; the second finds its
    # peer gone (POLLHUP), so nothing is left to reset: no_conn
    u = cwapps.unix(recs)
    for r in u:
        cwtest.check_fields(r, call="close", comm="curl")
        assert (r["state"], r["verdict"]) in (("CONNECTED", "clean"), ("UNCONNECTED", "no_conn")), r
    assert sum(r["verdict"] == "clean" for r in u) == sum(r["verdict"] == "no_conn" for r in u), cwapps.fmt(u)


def blocked_reading_stdin(pid):
    """pid sleeps in read(0, ...) (/proc/PID/syscall: number, then the arguments)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            nr, fd = f.read().split()[:2]
    except (OSError, ValueError):
        return False
    return int(nr) == READ_SYSCALL and int(fd, 16) == 0


def test_curl_upload_early_answer(ctx):
    """curl uploads (chunked, from a pipe it keeps reading); the server reads the request
    head only, answers 413 and closes with the upload unread: its record is rst_unread
    with exactly the unread bytes it measured, the kernel resets, and curl loses the whole
    answer (exit 55) — with or without the shim."""
    cwapps.need("curl")
    upload = 30000  # fits in the server's receive window: all of it arrives unread

    def workload(ctx, run):
        srv = run.start([PY, "-u", os.path.join(cwapps.HERE, "early_answer.py"), str(4 << 20), "wait"],
                        stdin=subprocess.PIPE)
        port = int(srv.expect("port"))
        before = cwapps.counters()
        curl = run.start(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", "-H", "Expect:",
                          "-T", "-", f"http://{H4}:{port}/upload"], stdin=subprocess.PIPE)
        curl.p.stdin.write(b"u" * upload + b"END!")
        curl.p.stdin.flush()
        unread = int(srv.expect("unread"))
        # The answer goes out only once curl waits for more of its input: curl
        # still running its loop could read the answer before the reset (exit
        # 56 with the 413) rather than meet the reset sending (exit 55).
        cwtest.wait_for(lambda: blocked_reading_stdin(curl.p.pid), what="curl blocked reading its stdin")
        cwtest.tell(srv)
        srv.expect("closed")
        rc = curl.wait(20)  # closes curl's input: curl was blocked reading it, now it goes on
        src = srv.wait(10)
        resets = cwapps.rst_delta(before, cwapps.counters())
        run.port, run.unread, run.srv_pid, run.curl_pid = port, unread, srv.p.pid, curl.p.pid
        return {"rc": rc, "stdout": curl.lines, "stderr": curl.stderr, "server": src,
                "abort_on_close": resets["TCPAbortOnClose"]}

    out, run = cwapps.both(ctx, workload)
    assert out["rc"] == 55 and out["stdout"] == ["000"], out
    assert "Connection reset by peer" in out["stderr"], out
    assert out["server"] == 0 and out["abort_on_close"] == 1, out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, {run.port}, unix_ok=True)
    srv = [r for r in recs if r["pid"] == run.srv_pid]
    conn = cwtest.one_record(srv, call="close", state="ESTABLISHED")
    cwtest.check_fields(conn, verdict="rst_unread", recvq=run.unread, local=f"{H4}:{run.port}")
    assert conn["sendq"] > 0 and conn["lost"] == run.unread + conn["sendq"], conn
    cwtest.one_record(srv, call="close", state="LISTEN", verdict="no_conn")
    assert len(srv) == 2, cwapps.fmt(srv)
    cur = [r for r in recs if r["pid"] == run.curl_pid]
    t = cwapps.tcp(cur)
    assert len(t) == 1, cwapps.fmt(cur)
    # curl's socket was reset: nothing more goes on the wire when it closes.
    cwtest.check_fields(t[0], call="close", state="CLOSE", verdict="no_conn")
    assert not [r for r in cur if r["verdict"] in cwapps.RISKY], cwapps.fmt(cur)
