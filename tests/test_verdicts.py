"""One test per verdict (clean, fin_pending, rst_unread, rst_linger0, rst_backlog, shared,
no_conn), over IPv4 and IPv6, plus AF_UNIX.

Each test runs tests/progs/cwprog.c under the shim, checks the JSON record against numbers
the scenario makes exact, and then checks what the kernel really did: what the Python peer
read (EOF vs ECONNRESET), what a libpcap capture saw from the closing side (FIN vs RST), and
where exact, the namespace's counters (Tcp.OutRsts, TcpExt.TCPAbortOnClose/OnData)."""
import os
import re
import socket
import struct
import time

import cwtest
from cwtest import (Capture, addr_str, check_fields, count_flag, cwprog, finish, kernel_counters,
                    one_record, read_records, read_to_end, records_for, tell)

H4, H6 = "127.0.0.1", "::1"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$")


def start(ctx, *actions, log=None, **envkw):
    """cwprog under the shim, JSON, every event, logging to a file in ctx.tmp."""
    log = log or ctx.path("cw.log")
    env = cwtest.shim_env(log=log, **envkw)
    p = cwprog(ctx, *actions, env=env)
    p.log = log
    return p


def common(rec, p, fd):
    """Fields every record of a single-threaded cwprog has."""
    check_fields(rec, pid=p.p.pid, tid=p.p.pid, comm="cwprog", fd=fd)
    assert TS_RE.match(str(rec.get("ts"))), f"ts is not RFC 3339 UTC with microseconds: {rec}"


def delta(before, after, key):
    return after[key] - before[key]


def no_flag(pkts, flag, sport, dport=None):
    n = count_flag(pkts, flag, sport=sport, dport=dport)
    assert n == 0, f"expected no {flag} from port {sport}, saw {n}: {cwtest.flags_of(pkts, sport, dport)}"


def queue_dropped(got, pkts, sport, dport, wrote, rec):
    """A close that reset the connection with `wrote` bytes written: the peer saw a reset
    (one RST, no FIN from sport), fewer bytes went on the wire than were written, and the
    record's send queue accounts for what never left."""
    n, how = got
    assert how == "reset", got
    assert count_flag(pkts, "R", sport=sport, dport=dport) == 1
    no_flag(pkts, "F", sport)
    sent = cwtest.bytes_sent(pkts, sport, dport)
    assert n <= sent < wrote, f"peer read {n}, {sent} sent of {wrote}: the queue was dropped"
    assert 0 < rec["unsent"] <= rec["sendq"] <= wrote, rec
    assert sent <= wrote - rec["unsent"], f"{sent} bytes on the wire but record said {rec['unsent']} of {wrote} unsent"


# ---------------------------------------------------------------- clean

def _clean(ctx, host):
    log = ctx.path("cw.log")
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        p = start(ctx, "listen", host, 0, "accept", "read", 100, "write", 1000, "waitoutq0",
                  "close", "say", "closed", "wait", log=log)
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(host, port)
        c.sendall(b"q" * 100)
        afd = int(p.expect("fd"))
        cport = int(p.expect("pport"))
        assert cport == c.getsockname()[1]
        p.expect("closed")
        got = read_to_end(c)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    assert got == (1000, "eof"), f"peer read {got}, expected 1000 bytes then EOF"
    pkts = cap.packets()
    assert count_flag(pkts, "F", sport=port, dport=cport) == 1, cwtest.flags_of(pkts, port, cport)
    no_flag(pkts, "R", port)
    no_flag(pkts, "R", cport)
    assert cwtest.bytes_sent(pkts, port, cport) == 1000
    assert delta(before, after, "Tcp.OutRsts") == 0
    rec = one_record(read_records(log), call="close", fd=afd)
    common(rec, p, afd)
    check_fields(rec, proto="tcp", state="ESTABLISHED", verdict="clean", recvq=0, sendq=0,
                 unsent=0, lost=0, linger="off", action="none",
                 local=addr_str(host, port), peer=addr_str(host, cport))


def test_clean_v4(ctx):
    _clean(ctx, H4)


def test_clean_v6(ctx):
    _clean(ctx, H6)


def _clean_close_wait(ctx, host):
    """The peer closed first; we read the EOF and close: CLOSE_WAIT → our FIN, nothing lost."""
    srv, port = cwtest.tcp_listener(host)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", host, port, "readeof", "close", "say", "closed", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        c.sendall(b"z" * 10)
        c.shutdown(socket.SHUT_WR)
        assert p.expect("eof") == "10"
        p.expect("closed")
        got = read_to_end(c)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    assert got == (0, "eof"), got
    pkts = cap.packets()
    assert count_flag(pkts, "F", sport=lport) == 1
    no_flag(pkts, "R", lport)
    no_flag(pkts, "R", port)
    rec = one_record(read_records(p.log), call="close", fd=fd)
    common(rec, p, fd)
    check_fields(rec, proto="tcp", state="CLOSE_WAIT", verdict="clean", recvq=0, sendq=0,
                 lost=0, local=addr_str(host, lport), peer=addr_str(host, port))


def test_clean_close_wait_v4(ctx):
    _clean_close_wait(ctx, H4)


def test_clean_close_wait_v6(ctx):
    _clean_close_wait(ctx, H6)


# ---------------------------------------------------------------- fin_pending

def _fin_pending(ctx, host):
    """The peer does not read (tiny SO_RCVBUF), the server fills its send queue and closes:
    the FIN waits behind the data, and the peer later reads every byte, then EOF."""
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        p = start(ctx, "listen", host, 0, "accept", "write-nb", 4 << 20, "close", "say", "closed",
                  "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(10)
        c.connect((host, port))
        afd = int(p.expect("fd"))
        cport = int(p.expect("pport"))
        wrote = int(p.expect("wrote"))
        p.expect("closed")
        peer_inq = cwtest.inq(c)
        got = read_to_end(c, timeout=10)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    assert got == (wrote, "eof"), f"peer read {got}, expected all {wrote} bytes then EOF"
    pkts = cap.packets()
    assert count_flag(pkts, "F", sport=port, dport=cport) == 1
    no_flag(pkts, "R", port)
    assert cwtest.bytes_sent(pkts, port, cport) == wrote
    fin = [x for x in pkts if x["sport"] == port and "F" in x["flags"]][0]
    fin_at = cwtest.rel_seq(fin, cwtest.isn_of(pkts, port, cport)) + fin["len"]
    assert fin_at == wrote, f"the FIN must follow all {wrote} bytes, it came at {fin_at}"
    assert delta(before, after, "Tcp.OutRsts") == 0
    rec = one_record(read_records(p.log), call="close", fd=afd)
    common(rec, p, afd)
    check_fields(rec, proto="tcp", state="ESTABLISHED", verdict="fin_pending", recvq=0, lost=0,
                 local=addr_str(host, port), peer=addr_str(host, cport))
    sendq, unsent = rec["sendq"], rec["unsent"]
    assert 0 < unsent <= sendq <= wrote, f"sendq {sendq} unsent {unsent} wrote {wrote}"
    # Everything written is either still in our send queue or already in the peer's buffer.
    assert peer_inq + sendq >= wrote, f"peer had {peer_inq}, record sendq {sendq}, wrote {wrote}"
    assert peer_inq <= wrote - unsent, f"peer had {peer_inq} but {unsent} were unsent of {wrote}"


def test_fin_pending_v4(ctx):
    _fin_pending(ctx, H4)


def test_fin_pending_v6(ctx):
    _fin_pending(ctx, H6)


def _drop_everything(sock):
    """A classic BPF socket filter that drops every packet sock receives: the
    peer's data is never acknowledged (no netem needed)."""
    import ctypes
    insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET|BPF_K 0
    prog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(insn))
    sock.setsockopt(socket.SOL_SOCKET, 26, prog)  # SO_ATTACH_FILTER (the kernel copies it)


def test_fin_pending_sent_unacked_v4(ctx):
    """Bytes sent but never acknowledged (the peer drops every packet), none
    unsent: the send queue must come from the kernel (SIOCOUTQ), not be
    taken as empty because tcp_info says nothing is unsent."""
    p = start(ctx, "listen", H4, 0, "accept", "wait", "write", 1000, "sleep", 300, "queues", "close",
              "say", "closed", "wait")
    p.expect("fd")
    port = int(p.expect("port"))
    c = socket.create_connection((H4, port), timeout=10)
    _drop_everything(c)
    afd = int(p.expect("fd"))
    # The program writes only once the filter is on: a timed sleep there let a
    # loaded machine (CI) acknowledge the bytes before the filter was attached.
    tell(p)
    q = dict(kv.split("=") for kv in p.expect("queues").split())
    p.expect("closed")
    tell(p)
    assert finish(p) == 0, p.stderr
    # Let the retransmissions in: every byte, then the FIN (fin_pending), and
    # no orphan left retransmitting into the next test's capture.
    c.setsockopt(socket.SOL_SOCKET, 27, 0)  # SO_DETACH_FILTER
    assert read_to_end(c, timeout=20) == (1000, "eof")
    c.close()
    assert int(q["outq"]) == 1000 and int(q["nsd"]) == 0, q
    rec = one_record(read_records(p.log), call="close", fd=afd)
    check_fields(rec, verdict="fin_pending", sendq=1000, unsent=0, recvq=0, lost=0)


# ---------------------------------------------------------------- rst_unread

def _rst_unread(ctx, host):
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        p = start(ctx, "listen", host, 0, "accept", "waitinq", 100, "close", "say", "closed", "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(host, port)
        c.sendall(b"u" * 100)
        afd = int(p.expect("fd"))
        cport = int(p.expect("pport"))
        p.expect("closed")
        got = read_to_end(c)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    assert got == (0, "reset"), f"peer saw {got}, expected ECONNRESET"
    pkts = cap.packets()
    assert count_flag(pkts, "R", sport=port, dport=cport) == 1, cwtest.flags_of(pkts, port, cport)
    no_flag(pkts, "F", port)
    assert delta(before, after, "TcpExt.TCPAbortOnClose") == 1
    assert delta(before, after, "Tcp.OutRsts") == 1
    rec = one_record(read_records(p.log), call="close", fd=afd)
    common(rec, p, afd)
    check_fields(rec, proto="tcp", state="ESTABLISHED", verdict="rst_unread", recvq=100, sendq=0,
                 unsent=0, lost=100, linger="off", local=addr_str(host, port),
                 peer=addr_str(host, cport))


def test_rst_unread_v4(ctx):
    _rst_unread(ctx, H4)


def test_rst_unread_v6(ctx):
    _rst_unread(ctx, H6)


def test_rst_unread_v4mapped(ctx):
    """A dual-stack listener on ::ffff:127.0.0.1, an IPv4 client."""
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "listen", "::ffff:127.0.0.1", 0, "accept", "waitinq", 100, "close",
                  "say", "closed", "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(H4, port)
        c.sendall(b"m" * 100)
        afd = int(p.expect("fd"))
        cport = int(p.expect("pport"))
        p.expect("closed")
        got = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    assert got == (0, "reset")
    assert count_flag(cap.packets(), "R", sport=port, dport=cport) == 1
    rec = one_record(read_records(p.log), call="close", fd=afd)
    check_fields(rec, proto="tcp", verdict="rst_unread", recvq=100, lost=100, state="ESTABLISHED")
    for k, pt in (("local", port), ("peer", cport)):
        assert "127.0.0.1" in rec[k] and rec[k].endswith(f":{pt}"), f"{k}: {rec[k]!r}"


def test_rst_unread_with_send_queue_v4(ctx):
    """100 unread bytes and a full send queue: lost = recvq + sendq, the queue is dropped."""
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "listen", H4, 0, "accept", "waitinq", 100, "write-nb", 4 << 20, "close",
                  "say", "closed", "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(10)
        c.connect((H4, port))
        c.sendall(b"u" * 100)
        afd = int(p.expect("fd"))
        cport = int(p.expect("pport"))
        wrote = int(p.expect("wrote"))
        p.expect("closed")
        got = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    rec = one_record(read_records(p.log), call="close", fd=afd)
    check_fields(rec, verdict="rst_unread", recvq=100, state="ESTABLISHED")
    assert rec["lost"] == 100 + rec["sendq"], rec
    queue_dropped(got, cap.packets(), port, cport, wrote, rec)


# ---------------------------------------------------------------- rst_linger0

def _rst_linger0(ctx, host):
    srv, port = cwtest.tcp_listener(host)
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        p = start(ctx, "connect", host, port, "write", 10, "waitoutq0", "linger", 1, 0, "close",
                  "say", "closed", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        p.expect("closed")
        time.sleep(0.05)
        got = read_to_end(c)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    # The 10 bytes were in the peer's buffer before the RST: Linux lets it read them first.
    assert got == (10, "reset"), f"peer saw {got}, expected 10 bytes then ECONNRESET"
    pkts = cap.packets()
    assert count_flag(pkts, "R", sport=lport, dport=port) == 1, cwtest.flags_of(pkts, lport, port)
    no_flag(pkts, "F", lport)
    assert delta(before, after, "TcpExt.TCPAbortOnData") == 1
    assert delta(before, after, "TcpExt.TCPAbortOnClose") == 0
    assert delta(before, after, "Tcp.OutRsts") == 1
    rec = one_record(read_records(p.log), call="close", fd=fd)
    common(rec, p, fd)
    check_fields(rec, proto="tcp", state="ESTABLISHED", verdict="rst_linger0", linger=0, recvq=0,
                 sendq=0, lost=0, local=addr_str(host, lport), peer=addr_str(host, port))


def test_rst_linger0_v4(ctx):
    _rst_linger0(ctx, H4)


def test_rst_linger0_v6(ctx):
    _rst_linger0(ctx, H6)


def test_rst_linger0_with_send_queue_v4(ctx):
    """SO_LINGER {1,0} with a full send queue: lost = sendq, the queue never reaches the peer."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
    srv.bind((H4, 0))
    srv.listen(4)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "write-nb", 4 << 20, "linger", 1, 0, "close",
                  "say", "closed", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        wrote = int(p.expect("wrote"))
        p.expect("closed")
        got = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    rec = one_record(read_records(p.log), call="close", fd=fd)
    check_fields(rec, verdict="rst_linger0", linger=0, recvq=0)
    assert rec["lost"] == rec["sendq"], rec
    queue_dropped(got, cap.packets(), lport, port, wrote, rec)


# ---------------------------------------------------------------- rst_backlog

def _rst_backlog(ctx, host, nclients=3):
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        # The listener waits for our word after the last connection is queued:
        # closed sooner, its RST could beat connect() to the client's socket.
        p = start(ctx, "listen", host, 0, 8, "waitbacklog", nclients, "say", "queued", "wait",
                  "close-listener", "say", "closed", "wait")
        lfd = int(p.expect("fd"))
        port = int(p.expect("port"))
        clients = [cwtest.connect(host, port) for _ in range(nclients)]
        cports = {c.getsockname()[1] for c in clients}
        p.expect("queued")
        tell(p)
        p.expect("closed")
        got = [read_to_end(c) for c in clients]
        for c in clients:
            c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    assert got == [(0, "reset")] * nclients, f"clients saw {got}"
    pkts = cap.packets()
    rsts = [x for x in pkts if x["sport"] == port and "R" in x["flags"]]
    assert len(rsts) == nclients, f"expected {nclients} RSTs, saw {[(x['dport'], x['flags']) for x in rsts]}"
    assert {x["dport"] for x in rsts} == cports, "one RST per queued connection"
    no_flag(pkts, "F", port)
    assert delta(before, after, "Tcp.OutRsts") == nclients
    rec = one_record(read_records(p.log), call="close", fd=lfd)
    common(rec, p, lfd)
    check_fields(rec, proto="tcp", state="LISTEN", verdict="rst_backlog", backlog=nclients,
                 lost=0, recvq=0, local=addr_str(host, port))


def test_rst_backlog_v4(ctx):
    _rst_backlog(ctx, H4)


def test_rst_backlog_v6(ctx):
    _rst_backlog(ctx, H6)


def test_rst_backlog_one_v4(ctx):
    _rst_backlog(ctx, H4, nclients=1)


# ---------------------------------------------------------------- shared

def _shared(ctx, host):
    """close() of one of two fds of a socket: nothing is sent; closing the other sends FIN."""
    srv, port = cwtest.tcp_listener(host)
    with Capture(ctx, "tcp") as cap1:
        p = start(ctx, "connect", host, port, "dup", "close", "say", "closed", "wait",
                  "use", "dup", "close", "say", "closed2", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        dupfd = int(p.expect("dupfd"))
        c, _ = srv.accept()
        p.expect("closed")
        first = read_to_end(c, timeout=0.5)
    assert first == (0, "timeout"), f"peer saw {first} after closing a shared fd"
    pk1 = cap1.packets()
    no_flag(pk1, "F", lport)
    no_flag(pk1, "R", lport)
    with Capture(ctx, "tcp") as cap2:
        tell(p)
        p.expect("closed2")
        second = read_to_end(c)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    assert second == (0, "eof"), second
    pk2 = cap2.packets()
    assert count_flag(pk2, "F", sport=lport) == 1
    no_flag(pk2, "R", lport)
    rec2 = one_record(read_records(p.log), call="close", fd=dupfd)
    check_fields(rec2, verdict="clean", state="ESTABLISHED", lost=0)
    rec = one_record(read_records(p.log), call="close", fd=fd)
    common(rec, p, fd)
    check_fields(rec, proto="tcp", state="ESTABLISHED", verdict="shared", lost=0,
                 local=addr_str(host, lport), peer=addr_str(host, port))


def test_shared_v4(ctx):
    _shared(ctx, H4)


def test_shared_v6(ctx):
    _shared(ctx, H6)


def test_shared_forked_child_v4(ctx):
    """Best effort (README, Limits): a live forked child still holds the socket."""
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "fork-hold", 1500, "close", "say", "closed",
                  "reap", "say", "reaped", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        p.expect("closed")
        first = read_to_end(c, timeout=0.3)
        p.expect("reaped", timeout=5)
        second = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    assert first == (0, "timeout"), first
    assert second == (0, "eof"), second  # the child's exit was the last reference
    assert count_flag(cap.packets(), "F", sport=lport) == 1
    rec = one_record(read_records(p.log), call="close", fd=fd)
    check_fields(rec, verdict="shared", lost=0)


# ---------------------------------------------------------------- no_conn

def _no_conn_unconnected(ctx, kind, family):
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "socket", kind, "close", "say", "closed")
        fd = int(p.expect("fd"))
        p.expect("closed")
        assert finish(p) == 0, p.stderr
    assert cap.packets() == [], "an unconnected socket's close sent packets"
    rec = one_record(read_records(p.log), call="close", fd=fd)
    common(rec, p, fd)
    check_fields(rec, proto="tcp", state="CLOSE", verdict="no_conn", recvq=0, sendq=0, lost=0)


def test_no_conn_unconnected_v4(ctx):
    _no_conn_unconnected(ctx, "tcp4", socket.AF_INET)


def test_no_conn_unconnected_v6(ctx):
    _no_conn_unconnected(ctx, "tcp6", socket.AF_INET6)


def _no_conn_after_shutdown(ctx, host):
    """shutdown(SHUT_WR) sends the FIN (a `shutdown` record, how:"wr"); the later close()
    has nothing to send: no_conn in FIN_WAIT2, and the wire stays quiet."""
    srv, port = cwtest.tcp_listener(host)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", host, port, "shutdown", "wr", "waitoutq0", "say", "shut",
                  "wait", "close", "say", "closed", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        p.expect("shut")
        assert read_to_end(c) == (0, "eof")
        tell(p)
        p.expect("closed")
        time.sleep(0.1)
        got = read_to_end(c, timeout=0.3)  # still at EOF, no reset
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    assert got == (0, "eof"), got
    pkts = cap.packets()
    assert count_flag(pkts, "F", sport=lport) == 1, "exactly one FIN: from shutdown, none from close"
    no_flag(pkts, "R", lport)
    no_flag(pkts, "R", port)
    recs = read_records(p.log)
    sh = one_record(recs, call="shutdown", fd=fd)
    check_fields(sh, how="wr", proto="tcp", state="ESTABLISHED", recvq=0, lost=0)
    rec = one_record(recs, call="close", fd=fd)
    check_fields(rec, proto="tcp", state="FIN_WAIT2", verdict="no_conn", recvq=0, sendq=0, lost=0)


def test_no_conn_after_shutdown_v4(ctx):
    _no_conn_after_shutdown(ctx, H4)


def test_no_conn_after_shutdown_v6(ctx):
    _no_conn_after_shutdown(ctx, H6)


def test_no_conn_after_peer_reset_v4(ctx):
    """The peer reset the connection (its SO_LINGER {1,0}); our close sends nothing."""
    import struct
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "readeof", "close", "say", "closed")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        assert p.expect("readerr") == "0 ECONNRESET"
        p.expect("closed")
        assert finish(p) == 0, p.stderr
    pkts = cap.packets()
    no_flag(pkts, "F", lport)
    no_flag(pkts, "R", lport)
    rec = one_record(read_records(p.log), call="close", fd=fd)
    check_fields(rec, proto="tcp", state="CLOSE", verdict="no_conn", recvq=0, sendq=0, lost=0)


# ---------------------------------------------------------------- AF_UNIX

def _unix_rst_unread(ctx, path, kind):
    stype = socket.SOCK_SEQPACKET if kind == "seqpacket" else socket.SOCK_STREAM
    p = start(ctx, "unix-listen", path, kind, "accept", "waitinq", 12, "close", "say", "closed",
              "wait")
    lfd = int(p.expect("fd"))
    c = socket.socket(socket.AF_UNIX, stype)
    c.settimeout(10)
    c.connect("\0" + path[1:] if path.startswith("@") else path)
    c.sendall(b"hello")
    c.sendall(b"world!!")  # two messages: for SOCK_SEQPACKET, recvq counts both (12 bytes)
    afd = int(p.expect("fd"))
    assert afd != lfd
    p.expect("closed")
    try:
        data = c.recv(100)
        got = f"read {data!r}"
    except ConnectionResetError:
        got = "reset"
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == "reset", f"peer: {got}, expected ECONNRESET"
    rec = one_record(read_records(p.log), call="close", fd=afd)
    common(rec, p, afd)
    check_fields(rec, proto="unix", state="CONNECTED", verdict="rst_unread", recvq=12,
                 local=path, peer="unnamed")
    assert rec["lost"] == 12 + rec["sendq"], rec


def test_unix_stream_rst_unread(ctx):
    _unix_rst_unread(ctx, ctx.path("s.sock"), "stream")


def test_unix_stream_rst_unread_abstract(ctx):
    _unix_rst_unread(ctx, f"@cwtest-{os.getpid()}-{time.monotonic_ns()}", "stream")


def test_unix_seqpacket_rst_unread(ctx):
    _unix_rst_unread(ctx, ctx.path("q.sock"), "seqpacket")


def test_unix_stream_clean(ctx):
    path = ctx.path("c.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(10)
    p = start(ctx, "unix-connect", path, "write", 7, "close", "say", "closed", "wait")
    fd = int(p.expect("fd"))
    c, _ = srv.accept()
    p.expect("closed")
    c.settimeout(5)
    data, eof = c.recv(100), c.recv(100)
    tell(p)
    assert finish(p) == 0, p.stderr
    assert (data, eof) == (b"x" * 7, b""), "peer reads the 7 bytes, then EOF"
    rec = one_record(read_records(p.log), call="close", fd=fd)
    common(rec, p, fd)
    check_fields(rec, proto="unix", state="CONNECTED", recvq=0, lost=0, local="unnamed", peer=path)
    # The peer had not read the 7 bytes yet: SIOCOUTQ on unix is memory charged for them,
    # and the verdict is not a risky one (nothing is thrown away).
    assert rec["verdict"] in ("clean", "fin_pending"), rec
    assert rec["sendq"] > 0, "unread-by-peer data is charged to our socket (SIOCOUTQ)"


def test_unix_rst_backlog(ctx):
    path = ctx.path("b.sock")
    p = start(ctx, "unix-listen", path, 8, "say", "listening", "wait", "close-listener",
              "say", "closed", "wait")
    lfd = int(p.expect("fd"))
    p.expect("listening")
    clients = []
    for _ in range(2):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect(path)
        clients.append(c)
    tell(p)
    p.expect("closed")
    got = []
    for c in clients:
        try:
            got.append(c.recv(10))
        except ConnectionResetError:
            got.append("reset")
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == ["reset", "reset"], got
    rec = one_record(read_records(p.log), call="close", fd=lfd)
    check_fields(rec, proto="unix", state="LISTEN", verdict="rst_backlog", backlog=2, lost=0,
                 local=path)


def test_unix_no_conn_unconnected(ctx):
    p = start(ctx, "socket", "unix", "close", "socket", "seqpacket", "close")
    fd1 = int(p.expect("fd"))
    fd2 = int(p.expect("fd"))
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)
    assert len(records_for(recs, call="close")) == 2, recs
    for rec in records_for(recs, call="close"):
        assert rec["fd"] in (fd1, fd2)
        check_fields(rec, proto="unix", verdict="no_conn", recvq=0, lost=0)


# ---------------------------------------------------------------- linger_wait and precedence

def test_linger_wait_v4(ctx):
    """SO_LINGER {1,2}, nothing queued: close() returns at once, FIN, peer reads all + EOF."""
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "write", 10, "waitoutq0", "linger", 1, 2, "close",
                  "say", "closed", "wait")
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c, _ = srv.accept()
        p.expect("closed")
        got = read_to_end(c)
        c.close()
        tell(p)
        assert finish(p) == 0, p.stderr
    assert got == (10, "eof"), got
    pkts = cap.packets()
    assert count_flag(pkts, "F", sport=lport) == 1
    no_flag(pkts, "R", lport)
    rec = one_record(read_records(p.log), call="close", fd=fd)
    check_fields(rec, proto="tcp", state="ESTABLISHED", verdict="linger_wait", linger=2,
                 recvq=0, sendq=0, lost=0)


def _unread_beats_linger(ctx, secs):
    """Unread bytes decide first (tcp_close step 3): even with SO_LINGER {1,secs} the close
    is an RST counted as TCPAbortOnClose, not OnData."""
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        p = start(ctx, "listen", H4, 0, "accept", "linger", 1, secs, "waitinq", 50, "close",
                  "say", "closed", "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(H4, port)
        c.sendall(b"p" * 50)
        afd = int(p.expect("fd"))
        p.expect("closed")
        got = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    assert got == (0, "reset"), got
    assert count_flag(cap.packets(), "R", sport=port) == 1
    assert delta(before, after, "TcpExt.TCPAbortOnClose") == 1
    assert delta(before, after, "TcpExt.TCPAbortOnData") == 0
    rec = one_record(read_records(p.log), call="close", fd=afd)
    check_fields(rec, verdict="rst_unread", recvq=50, lost=50, linger=secs)


def test_unread_beats_linger0_v4(ctx):
    _unread_beats_linger(ctx, 0)


def test_unread_beats_linger2_v4(ctx):
    _unread_beats_linger(ctx, 2)


def test_rst_backlog_listener_shutdown_rd_v4(ctx):
    """shutdown(SHUT_RD) of a listener disconnects it (inet_shutdown → tcp_disconnect):
    every queued connection gets RST, as at close; the later close sends nothing."""
    nclients = 3
    with Capture(ctx, "tcp") as cap:
        before = kernel_counters()
        p = start(ctx, "listen", H4, 0, 8, "waitbacklog", nclients, "say", "queued", "wait",
                  "shutdown", "rd", "say", "shut", "wait", "close-listener", "say", "closed", "wait")
        lfd = int(p.expect("fd"))
        port = int(p.expect("port"))
        clients = [cwtest.connect(H4, port) for _ in range(nclients)]
        p.expect("queued")  # as in _rst_backlog: no RST before connect() returned
        tell(p)
        p.expect("shut")
        got = [read_to_end(c) for c in clients]
        for c in clients:
            c.close()
        tell(p)
        p.expect("closed")
        tell(p)
        assert finish(p) == 0, p.stderr
    after = kernel_counters()
    assert got == [(0, "reset")] * nclients, f"clients saw {got}"
    rsts = [x for x in cap.packets() if x["sport"] == port and "R" in x["flags"]]
    assert len(rsts) == nclients, f"expected {nclients} RSTs, saw {len(rsts)}"
    assert delta(before, after, "Tcp.OutRsts") == nclients
    recs = read_records(p.log)
    sh = one_record(recs, call="shutdown", fd=lfd)
    check_fields(sh, how="rd", state="LISTEN", verdict="rst_backlog", backlog=nclients, lost=0)
    cl = one_record(recs, call="close", fd=lfd)
    check_fields(cl, verdict="no_conn", backlog=0)
