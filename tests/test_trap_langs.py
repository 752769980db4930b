"""Programs LD_PRELOAD cannot reach, watched through the trap (`closewatch run --via
trap`), proven on the wire like test_verdicts.py: a static C program (cwprog.c built
with gcc -static), a musl one (musl-gcc) and Go (tests/go/cwgo.go, with and without cgo).

For each: every verdict (clean, rst_unread, rst_linger0, rst_backlog, shared), shutdown,
dup2 onto a socket, close_range, exit with sockets open, exec with close-on-exec sockets,
fork with a shared socket (C), and many threads closing at once (no record lost or
doubled). Each test checks the record against numbers the scenario makes exact, then what
the peer saw (EOF vs ECONNRESET) and what a capture saw from the closing side (FIN vs RST).

A program whose toolchain is missing is skipped (a failure under CI=true); the rest run."""
import os
import socket
import subprocess

import cwtest
from cwtest import (Capture, ProcKw, addr_str, check_fields, count_flag, kernel_counters, prog,
                    read_records, read_to_end, records_for, tell)

H4 = "127.0.0.1"
PROGS = (("cwprog-static", "gcc -static (libc6-dev)"), ("cwprog-musl", "musl-gcc (musl-tools)"),
         ("cwgo-cgo", "go (golang-go)"), ("cwgo-static", "go (golang-go)"))


def each(fn, c_only=False):
    """Run fn(name) for every program built; then skip (fail in CI) if one is missing."""
    missing = []
    for name, what in PROGS:
        if c_only and name.startswith("cwgo"):
            continue
        if not os.path.exists(prog(name)):
            missing.append(f"{name}: {what} missing")
            continue
        try:
            fn(name)
        except AssertionError as e:
            raise AssertionError(f"[{name}] {e}") from e
    if missing:
        cwtest.skip("; ".join(missing))


class Trap:
    """NAME under `closewatch run --via trap`, JSON, every event, log in ctx.tmp."""

    def __init__(self, ctx, name, *actions, via="trap", opts=()):
        cwtest.require_root()
        self.log = ctx.path(f"{name}-{len(ctx.procs)}.log")
        argv = [cwtest.CLI, "run", "--via", via, "--json", "--events", "all", "--log", self.log] + \
            list(opts) + ["--", prog(name), "pid"] + [str(a) for a in actions]
        self.p = ProcKw(argv, env=cwtest.plain_env(), stdin=subprocess.PIPE)
        ctx.procs.append(self.p)
        self.pid = int(self.p.expect("pid"))

    def expect(self, prefix, timeout=10):
        return self.p.expect(prefix, timeout)

    def finish(self, rc=0):
        got = self.p.wait(60)
        assert got == rc, f"exit {got}, expected {rc}; stderr: {self.p.stderr}"
        assert "watched via trap" in self.p.stderr, self.p.stderr
        return read_records(self.log)


def one(recs, **match):
    found = records_for(recs, **match)
    assert len(found) == 1, f"expected one record with {match}, got {found} (all: {recs})"
    return found[0]


def listen_accept(t, send=0):
    """The program listens and accepts one client (which sends `send` bytes)."""
    t.expect("fd")
    port = int(t.expect("port"))
    c = cwtest.connect(H4, port)
    if send:
        c.sendall(b"u" * send)
    afd = int(t.expect("fd"))
    cport = int(t.expect("pport"))
    return c, port, afd, cport


def no_flag(pkts, flag, sport):
    assert count_flag(pkts, flag, sport=sport) == 0, cwtest.flags_of(pkts, sport)


# ---------------------------------------------------------------- verdicts

def test_clean(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "read", 100, "write", 1000,
                     "waitoutq0", "close", "say", "closed", "wait")
            c, port, afd, cport = listen_accept(t, send=100)
            t.expect("closed")
            got = read_to_end(c)
            c.close()
            tell(t.p)
            recs = t.finish()
        assert got == (1000, "eof"), got
        pkts = cap.packets()
        assert count_flag(pkts, "F", sport=port, dport=cport) == 1
        no_flag(pkts, "R", port)
        rec = one(recs, call="close", fd=afd)
        check_fields(rec, pid=t.pid, tid=t.pid, proto="tcp", state="ESTABLISHED", verdict="clean",
                     recvq=0, sendq=0, lost=0, local=addr_str(H4, port), peer=addr_str(H4, cport))
    each(one_prog)


def test_rst_unread(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            before = kernel_counters()
            t = Trap(ctx, name, "listen", H4, 0, "accept", "waitinq", 100, "close",
                     "say", "closed", "wait")
            c, port, afd, cport = listen_accept(t, send=100)
            t.expect("closed")
            got = read_to_end(c)
            c.close()
            tell(t.p)
            recs = t.finish()
        after = kernel_counters()
        assert got == (0, "reset"), got
        pkts = cap.packets()
        assert count_flag(pkts, "R", sport=port, dport=cport) == 1
        no_flag(pkts, "F", port)
        assert after["TcpExt.TCPAbortOnClose"] - before["TcpExt.TCPAbortOnClose"] == 1
        rec = one(recs, call="close", fd=afd)
        check_fields(rec, pid=t.pid, verdict="rst_unread", recvq=100, lost=100, state="ESTABLISHED")
    each(one_prog)


def test_rst_linger0(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            # The reset waits for the test: one sent while the client's (non-blocking)
            # connect() has not read SO_ERROR yet makes connect() itself fail.
            t = Trap(ctx, name, "listen", H4, 0, "accept", "wait", "linger", 1, 0, "close",
                     "say", "closed", "wait")
            c, port, afd, cport = listen_accept(t)
            tell(t.p)
            t.expect("closed")
            got = read_to_end(c)
            tell(t.p)
            recs = t.finish()
        assert got == (0, "reset"), got
        pkts = cap.packets()
        assert count_flag(pkts, "R", sport=port, dport=cport) == 1
        no_flag(pkts, "F", port)
        check_fields(one(recs, call="close", fd=afd), verdict="rst_linger0", linger=0, recvq=0)
    each(one_prog)


def test_rst_backlog(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, 8, "say", "listening", "waitbacklog", 2,
                     "close-listener", "say", "closed", "wait")
            lfd = int(t.expect("fd"))
            port = int(t.expect("port"))
            t.expect("listening")
            cs = [cwtest.connect(H4, port) for _ in range(2)]
            t.expect("closed")
            got = [read_to_end(c) for c in cs]
            tell(t.p)
            recs = t.finish()
        assert got == [(0, "reset")] * 2, got
        assert count_flag(cap.packets(), "R", sport=port) == 2
        check_fields(one(recs, call="close", fd=lfd), verdict="rst_backlog", backlog=2,
                     state="LISTEN", lost=0)
    each(one_prog)


def test_shared_by_fork(ctx):
    """A forked child holds the socket: the parent's close sends nothing (shared); the
    peer sees the FIN only when the child ends."""
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "fork-hold", 1500, "close",
                     "say", "closed", "reap", "say", "reaped")
            c, port, afd, cport = listen_accept(t)
            t.expect("child")
            t.expect("closed")
            c.settimeout(0.3)
            try:
                early = c.recv(1)
            except socket.timeout:
                early = None
            assert early is None, f"the peer saw {early!r} while the child still held the socket"
            t.expect("reaped", timeout=20)
            got = read_to_end(c)
            recs = t.finish()
        assert got == (0, "eof"), got
        no_flag(cap.packets(), "R", port)
        check_fields(one(recs, call="close", fd=afd, pid=t.pid), verdict="shared")
    each(one_prog, c_only=True)


# ---------------------------------------------------------------- calls

def test_shutdown_wr(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "write", 500, "shutdown", "wr",
                     "say", "shut", "wait", "close")
            c, port, afd, cport = listen_accept(t)
            t.expect("shutdown 0")
            t.expect("shut")
            c.settimeout(10)
            got = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got += b
            assert len(got) == 500
            tell(t.p)
            recs = t.finish()
            c.close()
        assert count_flag(cap.packets(), "F", sport=port) == 1
        check_fields(one(recs, call="shutdown", fd=afd), how="wr", state="ESTABLISHED")
    each(one_prog)


def test_dup2_onto_a_socket(ctx):
    """dup2(/dev/null, socket with unread bytes): the socket dies there, with an RST."""
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "as", "conn", "waitinq", 10,
                     "open", "/dev/null", "dup2", "conn", "say", "done", "wait")
            c, port, afd, cport = listen_accept(t, send=10)
            t.expect("fd")
            t.expect("dup2")
            t.expect("done")
            got = read_to_end(c)
            tell(t.p)
            recs = t.finish()
        assert got == (0, "reset"), got
        assert count_flag(cap.packets(), "R", sport=port, dport=cport) == 1
        recs = [r for r in recs if r["call"] in ("dup2", "dup3")]
        assert len(recs) == 1, recs
        check_fields(recs[0], fd=afd, verdict="rst_unread", recvq=10)
    each(one_prog)


def test_close_range(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "waitinq", 7, "close-range", 3, "max",
                     "say", "done", "wait")
            c, port, afd, cport = listen_accept(t, send=7)
            t.expect("close_range 0")
            t.expect("done")
            got = read_to_end(c)
            tell(t.p)
            recs = t.finish()
        assert got == (0, "reset"), got
        assert count_flag(cap.packets(), "R", sport=port, dport=cport) == 1
        check_fields(one(recs, call="close_range", fd=afd), verdict="rst_unread", recvq=7)
        # The listener went in the same call.
        lst = [r for r in recs if r["call"] == "close_range" and r["state"] == "LISTEN"]
        assert len(lst) == 1, recs
    each(one_prog)


def test_exit_with_sockets_open(ctx):
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "waitinq", 5, "exit", 3)
            c, port, afd, cport = listen_accept(t, send=5)
            got = read_to_end(c)
            recs = t.finish(rc=3)
        assert got == (0, "reset"), got
        assert count_flag(cap.packets(), "R", sport=port, dport=cport) == 1
        check_fields(one(recs, call="exit", fd=afd), pid=t.pid, verdict="rst_unread", recvq=5)
    each(one_prog)


def test_exec_with_cloexec_sockets(ctx):
    """The accepted socket is close-on-exec: exec ends it (an RST with unread bytes);
    the new program goes on (still watched)."""
    def one_prog(name):
        with Capture(ctx, "tcp") as cap:
            t = Trap(ctx, name, "listen", H4, 0, "accept", "cloexec", "waitinq", 4,
                     "exec", prog(name), "say", "new-image", "wait")
            c, port, afd, cport = listen_accept(t, send=4)
            t.expect("new-image")
            got = read_to_end(c)
            tell(t.p)
            recs = t.finish()
        assert got == (0, "reset"), got
        assert count_flag(cap.packets(), "R", sport=port, dport=cport) == 1
        check_fields(one(recs, fd=afd, verdict="rst_unread"), pid=t.pid, recvq=4, call="exit")
    each(one_prog)


def test_many_threads_no_record_lost_or_doubled(ctx):
    """8 threads closing unix socket pairs at once: exactly one record per close."""
    def one_prog(name):
        if name.startswith("cwgo"):
            t = Trap(ctx, name, "threads", 8, 50)   # 8 threads x 50 pairs x 2 closes
            expected = 8 * 50 * 2
        else:
            t = Trap(ctx, name, "threads", 8, 100, "pair")  # 8 threads x 100 closes
            expected = 8 * 100
        t.expect("threads done", timeout=60)
        recs = t.finish()
        closes = [r for r in recs if r["call"] == "close" and r["proto"] == "unix"]
        assert len(closes) == expected, f"{len(closes)} records for {expected} closes"
        keys = {(r["tid"], r["fd"], r["ts"]) for r in closes}
        assert len(keys) == expected, "a record was doubled"
        assert len({r["tid"] for r in closes}) >= 2, "the closes came from one thread only"
    each(one_prog)


def test_backtrace_through_the_trap(ctx):
    """--backtrace through the trap: the record's bt is unwound from outside
    (trap/remote_bt.c) down to the program's main; every frame is "symbol+0xoff (object)"
    or an address in its object. musl's libc has no unwind information on its system call
    path: its bt is the frame where the call was made, nothing more is guessed."""
    frame_re = __import__("re").compile(r"^(?:\S+\+0x[0-9a-f]+|0x[0-9a-f]+) \([^()]+\)$")

    def one_prog(name):
        t = Trap(ctx, name, "listen", H4, 0, "close", opts=("--backtrace", "8"))
        t.expect("port")
        rec = one(t.finish(), call="close")
        bt = rec.get("bt")
        assert bt and all(frame_re.match(f) for f in bt), rec
        names = [f.split("+")[0] for f in bt]
        if name == "cwprog-musl":
            assert "musl" in bt[0], bt
            return
        main = "main.main" if name.startswith("cwgo") else "main"
        assert main in names, bt
        close = [n for n in names if n in ("close", "__close", "__libc_close", "syscall.Close")]
        assert close and names.index(close[0]) < names.index(main), bt
    each(one_prog)


# ---------------------------------------------------------------- Go's own net package

def test_go_net_server_early_answer_resets_its_client(ctx):
    """A Go server (net package) answers an upload before reading it and closes: the
    client is reset. Without closewatch (the fact), and under the trap with a record
    that predicts it (rst_unread)."""
    for name in ("cwgo-static", "cwgo-cgo"):
        if not os.path.exists(prog(name)):
            cwtest.skip(f"{name}: go (golang-go) missing")

    def upload(port):
        """Upload 4 MiB while the server answers; returns (answer bytes, how it ended):
        a reset may surface in send() (then the buffered answer reads to a 0) or in recv()."""
        c = cwtest.connect(H4, port)
        sent, how = 0, None
        try:
            while sent < 4 << 20:
                sent += c.send(b"x" * 65536)
        except ConnectionResetError:
            how = "reset"
        n, end = read_to_end(c)
        return n, how or end

    plain = ProcKw([prog("cwgo-static"), "early", "0", str(1 << 20)], env=cwtest.plain_env())
    ctx.procs.append(plain)
    got = upload(int(plain.expect("port")))
    plain.expect("closed")
    assert plain.wait(30) == 0
    assert got[1] == "reset" and got[0] < 1 << 20, got

    def one_prog(name):
        t = Trap(ctx, name, "early", 0, 1 << 20)
        got = upload(int(t.expect("port")))
        recs = t.finish()
        assert got[1] == "reset", got
        risky = [r for r in recs if r["verdict"] == "rst_unread"]
        assert len(risky) == 1 and risky[0]["recvq"] > 0, recs
    for name in ("cwgo-static", "cwgo-cgo"):
        one_prog(name)
