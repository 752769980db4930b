"""`closewatch wire` tells the truth (issue "Summaries and reviews that tell the truth",
items 1 and 2): a shutdown(SHUT_WR) before the close explains the FIN, so the close's
own RST is its outcome and not a "late RST"; a close the capture cannot show is "not
checked" with its reason, never "as predicted"; nothing checked is exit 3, not 0; a
capture cut mid-packet is reported and not fatal. Real captures made by `run --pcap`
over loopback (run.py gives us a private network namespace as root)."""
import json
import os
import re
import signal
import struct
import subprocess
import sys

import cwtest
from cwtest import require_root
from test_cli import CLI, base_env, cli, run_scenario


def answer_shutdown_close_unread(n=3, port=5241):
    """A server that reads the request (100 of 300 bytes uploaded), answers, shuts its
    write side and closes with 200 upload bytes unread: the FIN of the shutdown, then
    the close's RST (rst_unread), n times. The client reads the answer and EOF (or the
    reset) and closes: its peer is gone by then ("unnamed")."""
    acts = []
    for i in range(n):
        p = port + i
        acts += ["listen", "127.0.0.1", p, "as", f"L{i}", "connect", "127.0.0.1", p, "as", f"C{i}",
                 "write", 300, "use", f"L{i}", "accept", "read", 100, "write", 50,
                 "shutdown", "wr", "waitinq", 200, "close",
                 "use", f"C{i}", "readeof", "close", "use", f"L{i}", "close"]
    return acts + ["say", "done"]


def wire_json(*args, check=None):
    r = cli("wire", "--json", *args, check=check)
    return json.loads(r.stdout), r


@cwtest.timeout(120)
def test_wire_shutdown_then_close_with_unread_upload(ctx):
    """3 connections: every server close is checked and as predicted (RST after the
    shutdown's FIN), no late RST, exit 0. Before: 3 wrong of 3, 3 late RSTs, exit 1."""
    require_root()
    log, pcap, _ = run_scenario(ctx, answer_shutdown_close_unread(), "sd")
    recs = cwtest.read_records(log)
    assert len([r for r in recs if r["call"] == "shutdown" and r["how"] == "wr"]) == 3, recs
    got, w = wire_json(log, pcap)
    assert w.returncode == 0, w.stdout + w.stderr
    srv = [c for c in got["closes"] if c["verdict"] == "rst_unread"]
    assert len(srv) == 3, got
    for c in srv:
        assert c["after_shutdown"] and c["checked"] and c["match"], c
        assert c["observed"] == "RST" and not c["late_rst"], c
    assert got["mismatches"] == 0 and got["late_rst"] == 0, got
    # the clients' closes (peer reset, so "unnamed"): not checked, and not "as predicted"
    cl = [c for c in got["closes"] if c["peer"] == "unnamed" and not c["listener"]]
    assert len(cl) == 3, got
    for c in cl:
        assert not c["checked"] and c["not_checked"] == "unnamed_peer" and c["match"] is None, c
    assert got["not_checked_by_reason"]["unnamed_peer"] == 3, got
    assert got["checked"] + got["not_checked"] == got["total"], got
    assert got["matched"] == got["checked"] >= 3, got
    w = cli("wire", log, pcap, check=0)
    assert re.search(r"^rst_unread \(after shutdown\)\s+RST\s+0\s+3\s+0\s+0\s+0\s+0$", w.stdout,
                     re.M), w.stdout
    assert "0 wrong" in w.stdout and "late RSTs (" not in w.stdout, w.stdout


@cwtest.timeout(120)
def test_wire_late_rst_after_shutdown_and_clean_close(ctx):
    """The server reads all, answers, shuts its write side and closes (no_conn: the FIN
    went with the shutdown); the client then sends more: the orphan's RST is a late RST
    (peer data after the close), and the close itself sent nothing: as predicted."""
    require_root()
    acts = ["listen", "127.0.0.1", 5251, "as", "L", "connect", "127.0.0.1", 5251, "as", "C",
            "write", 10, "use", "L", "accept", "read", 10, "write", 50, "shutdown", "wr", "close",
            "use", "C", "sleep", 50, "write", 100, "readeof", "close", "use", "L", "close"]
    log, pcap, _ = run_scenario(ctx, acts, "late")
    got, w = wire_json(log, pcap)
    assert w.returncode == 0, w.stdout + w.stderr
    srv = [c for c in got["closes"] if c["local"] == "127.0.0.1:5251" and not c["listener"]]
    assert len(srv) == 1, got
    c = srv[0]
    assert c["verdict"] == "no_conn" and c["after_shutdown"], c
    assert c["checked"] and c["match"] and c["late_rst"] and c["observed"] == "none", c
    assert got["late_rst"] == 1 and got["mismatches"] == 0, got
    w = cli("wire", log, pcap, check=0)
    assert "late RSTs (peer data arrived after the close):" in w.stdout, w.stdout
    assert "FIN before (shutdown), RST +" in w.stdout, w.stdout


@cwtest.timeout(120)
def test_wire_empty_capture_checks_nothing(ctx):
    """A capture without packets (made by `run --pcap` around a program that sends
    nothing): nothing is checked, wire says so and exits 3. Before: "N as predicted",
    exit 0."""
    require_root()
    log, _, _ = run_scenario(ctx, answer_shutdown_close_unread(1), "log", pcap=False)
    empty = ctx.path("empty.pcap")
    cli("run", "--pcap", empty, "--iface", "lo", "--", "true", check=0)
    got, w = wire_json(log, empty, check=3)
    assert got["checked"] == 0 and got["matched"] == 0 and got["mismatches"] == 0, got
    assert got["not_checked"] == got["total"] > 0, got
    assert got["capture"]["tcp_packets"] == 0, got
    assert all(c["match"] is None and not c["checked"] for c in got["closes"]), got
    assert "nothing could be checked" in w.stderr, w.stderr
    w = cli("wire", log, empty, check=3)
    assert "nothing could be checked" in w.stdout and " 0 as predicted" in w.stdout, w.stdout
    # a capture of other connections, made later: nothing to check either
    _, later, _ = run_scenario(ctx, answer_shutdown_close_unread(1, 5245), "later")
    got, w = wire_json(log, later, check=3)
    assert got["checked"] == 0 and got["capture"]["tcp_packets"] > 0, got
    assert got["not_checked_by_reason"]["capture_started_after"] > 0, got


def _frames(path):
    """(offset, length) of every frame record of a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    off, out = 24, []
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        out.append((off, 16 + incl))
        off += 16 + incl
    return data, out


@cwtest.timeout(120)
def test_wire_truncated_capture_is_reported(ctx):
    """The capture file cut in the middle of a packet, after the first connection:
    reported (text, JSON and stderr), not fatal; the first connection is checked, the
    closes after the cut are "capture truncated"."""
    require_root()
    log, pcap, _ = run_scenario(ctx, answer_shutdown_close_unread(3, 5261), "cut")
    data, frames = _frames(pcap)
    dump = subprocess.run([cwtest.PCAPTOOL, "dump", pcap], stdout=subprocess.PIPE, text=True,
                          check=True)
    pkts = [json.loads(l) for l in dump.stdout.splitlines()]
    assert len(pkts) == len(frames), (len(pkts), len(frames))
    # cut inside the first packet of the second connection (its SYN)
    k = next(i for i, p in enumerate(pkts) if p["dport"] == 5262 and p["flags"] == "S")
    cut = ctx.path("cut.pcap")
    with open(cut, "wb") as f:
        f.write(data[:frames[k][0] + frames[k][1] // 2])
    got, w = wire_json(log, cut)
    assert w.returncode == 0, w.stdout + w.stderr
    assert got["capture"]["truncated"] is True, got
    assert "truncated" in w.stderr, w.stderr
    first = [c for c in got["closes"] if c["local"] == "127.0.0.1:5261" and not c["listener"]]
    assert first[0]["checked"] and first[0]["match"] and first[0]["observed"] == "RST", first
    later = [c for c in got["closes"] if c["local"] in ("127.0.0.1:5262", "127.0.0.1:5263")]
    assert len(later) == 4 and all(c["not_checked"] == "capture_truncated" for c in later), later
    assert got["mismatches"] == 0, got
    w = cli("wire", log, cut, check=0)
    assert "capture truncated: the file ends in the middle of a packet" in w.stdout, w.stdout


@cwtest.timeout(120)
def test_wire_snaplen_cut_frames_are_not_checked(ctx):
    """The same capture with every frame cut by a 20-byte snap length (no TCP header
    left): no close is found, so none is checked; each is "capture truncated", exit 3."""
    require_root()
    log, pcap, _ = run_scenario(ctx, answer_shutdown_close_unread(1, 5271), "snap")
    data, frames = _frames(pcap)
    hdr = bytearray(data[:24])
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    struct.pack_into(endian + "I", hdr, 16, 20)
    snap = ctx.path("snap.pcap")
    with open(snap, "wb") as f:
        f.write(hdr)
        for off, ln in frames:
            ts_s, ts_u, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
            f.write(struct.pack(endian + "IIII", ts_s, ts_u, min(incl, 20), orig))
            f.write(data[off + 16:off + 16 + min(incl, 20)])
    got, w = wire_json(log, snap, check=3)
    assert got["capture"]["snap_cut"] == len(frames) and got["checked"] == 0, got
    conn = [c for c in got["closes"] if c["peer"] != "unnamed"]
    assert conn and all(c["not_checked"] == "capture_truncated" for c in conn), conn


@cwtest.timeout(120)
def test_wire_python_http_server(ctx):
    """python3 -m http.server answers a POST it does not support (501) without reading
    the 60 kB body, shuts its write side and closes: rst_unread after the shutdown's FIN,
    3 times; wire: all as predicted, exit 0."""
    require_root()
    log, pcap = ctx.path("py.log"), ctx.path("py.pcap")
    py = os.path.realpath(sys.executable)  # the interpreter, not a wrapper script
    srv = subprocess.Popen([CLI, "run", "--events", "all", "--json", "--log", log, "--pcap", pcap,
                            "--iface", "lo", "--", py, "-u", "-m", "http.server", "-b",
                            "127.0.0.1", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=base_env())
    try:
        line = srv.stdout.readline()
        assert "Serving HTTP on" in line, line
        port = int(line.split(" port ")[1].split()[0])
        body = b"u" * 60000

        def closed():
            return sum(1 for r in cwtest.read_records(log) if r["call"] == "close")
        for i in range(3):
            s = cwtest.connect("127.0.0.1", port)
            try:
                s.sendall(b"POST /x HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                end = cwtest.read_to_end(s)[1]
            except ConnectionResetError:
                end = "reset"
            assert end in ("eof", "reset"), end
            # Keep our side open until the server has closed: our FIN first would
            # end its connection (TIME_WAIT) before its close() and race the verdict.
            cwtest.wait_for(lambda: closed() >= i + 1, timeout=10, what="the server's close")
            s.close()
    finally:
        srv.send_signal(signal.SIGINT)
        srv.communicate(timeout=30)
    recs = cwtest.read_records(log)
    closes = [r for r in recs if r["call"] == "close" and r["state"] != "LISTEN"]
    assert len(closes) == 3 and all(r["verdict"] == "rst_unread" for r in closes), recs
    got, w = wire_json(log, pcap)
    assert w.returncode == 0, w.stdout + w.stderr
    srvc = [c for c in got["closes"] if c["verdict"] == "rst_unread"]
    assert len(srvc) == 3 and all(c["checked"] and c["match"] and c["observed"] == "RST"
                                  and not c["late_rst"] for c in srvc), srvc
    assert got["mismatches"] == 0 and got["late_rst"] == 0, got
