"""Core shim behaviour (issue 3): every intercepted call, the exit records, the log fd that
survives close-all loops, many threads, bad settings, errno, the non-socket fast path,
formats, the log path, and closewatch_inspect().

Scenarios are run by tests/progs/cwprog.c (an ordinary program); peers are Python sockets
over loopback; where a close should or should not send something, a capture checks it."""
import json
import os
import re
import resource
import socket
import subprocess
import time

import cwtest
from cwtest import (Capture, addr_str, check_fields, count_flag, cwprog, finish, one_record,
                    read_records, read_to_end, records_for, tell)

H4 = "127.0.0.1"
FIELDS = ("ts", "pid", "tid", "comm", "host", "exe", "call", "fd", "proto", "local", "peer",
          "state", "recvq", "sendq", "unsent", "backlog", "linger", "verdict", "lost", "action")


def start(ctx, *actions, log=None, name="cwprog", pass_fds=(), preexec_fn=None, **envkw):
    log = log or ctx.path("cw.log")
    p = cwprog(ctx, *actions, env=cwtest.shim_env(log=log, **envkw), name=name,
               pass_fds=pass_fds, preexec_fn=preexec_fn)
    p.log = log
    return p


def run_plain(ctx, *actions, **kw):
    """The same scenario without the shim: stdout lines and exit status."""
    p = cwprog(ctx, *actions, env=cwtest.plain_env(), **kw)
    rc = finish(p)
    return rc, p.lines


def accept_n(srv, n):
    return [srv.accept()[0] for _ in range(n)]


# ---------------------------------------------------------------- dup2 / dup3

def test_dup2_onto_open_socket(ctx):
    """dup2(b, a) closes socket a: a `dup2` record for fd a (conn A gets its FIN); then b has
    two fds: closing one is `shared`, the other `clean`."""
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "as", "a", "connect", H4, port, "as", "b",
                  "dup2", "a", "say", "duped", "wait", "close", "use", "a", "close",
                  "say", "closed", "wait")
        fa = int(p.expect("fd"))
        la = int(p.expect("lport"))
        fb = int(p.expect("fd"))
        lb = int(p.expect("lport"))
        ca, cb = accept_n(srv, 2)
        if ca.getpeername()[1] != la:
            ca, cb = cb, ca
        assert p.expect("dup2") == str(fa)
        p.expect("duped")
        got_a = read_to_end(ca)
        tell(p)
        p.expect("closed")
        got_b = read_to_end(cb)
        tell(p)
        assert finish(p) == 0, p.stderr
    assert got_a == (0, "eof") and got_b == (0, "eof"), (got_a, got_b)
    pkts = cap.packets()
    assert count_flag(pkts, "F", sport=la) == 1 and count_flag(pkts, "F", sport=lb) == 1
    assert count_flag(pkts, "R") == 0
    recs = read_records(p.log)
    d = one_record(recs, call="dup2")
    check_fields(d, fd=fa, proto="tcp", verdict="clean", state="ESTABLISHED",
                 local=addr_str(H4, la), peer=addr_str(H4, port), pid=p.p.pid)
    closes = records_for(recs, call="close")
    assert [(r["fd"], r["verdict"], r["local"]) for r in closes] == [
        (fb, "shared", addr_str(H4, lb)), (fa, "clean", addr_str(H4, lb))], closes


def test_dup2_devnull_over_socket_with_unread_data(ctx):
    """The daemon pattern dup2(open("/dev/null"), sock): a `dup2` record with the socket's
    fate — here 100 unread bytes, so rst_unread and an RST."""
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "listen", H4, 0, "accept", "as", "s", "waitinq", 100, "open", "/dev/null",
                  "dup2", "s", "say", "duped", "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(H4, port)
        c.sendall(b"d" * 100)
        sfd = int(p.expect("fd"))
        p.expect("fd")
        p.expect("duped")
        got = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    assert got == (0, "reset"), got
    assert count_flag(cap.packets(), "R", sport=port) == 1
    recs = read_records(p.log)
    d = one_record(recs, call="dup2")
    check_fields(d, fd=sfd, verdict="rst_unread", recvq=100, lost=100, proto="tcp")
    assert not records_for(recs, call="exit", fd=sfd), "fd now refers to /dev/null: no exit record"


def test_dup3_onto_open_socket(ctx):
    srv, port = cwtest.tcp_listener(H4)
    p = start(ctx, "connect", H4, port, "as", "a", "open", "/dev/null", "dup3", "a",
              "say", "done", "wait")
    fa = int(p.expect("fd"))
    c = srv.accept()[0]
    p.expect("done")
    got = read_to_end(c)
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == (0, "eof")
    check_fields(one_record(read_records(p.log), call="dup3"), fd=fa, verdict="clean",
                 proto="tcp")


def test_dup2_onto_itself_is_not_a_close(ctx):
    srv, port = cwtest.tcp_listener(H4)
    p = start(ctx, "connect", H4, port, "as", "a", "dup2", "a", "close")
    fa = int(p.expect("fd"))
    assert p.expect("dup2") == str(fa)
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)
    assert not records_for(recs, call="dup2"), recs
    check_fields(one_record(recs, call="close"), fd=fa, verdict="clean")


# ---------------------------------------------------------------- exit

def test_exit_with_open_socket(ctx):
    """exit(3) with a connected socket: one call:"exit" record; the kernel closes it (FIN)."""
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "exit", 3)
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c = srv.accept()[0]
        assert finish(p) == 3, "exit status must be kept"
        got = read_to_end(c)
    assert got == (0, "eof")
    assert count_flag(cap.packets(), "F", sport=lport) == 1
    recs = read_records(p.log)
    assert len(recs) == 1, recs
    check_fields(recs[0], call="exit", fd=fd, proto="tcp", verdict="clean", state="ESTABLISHED",
                 local=addr_str(H4, lport), peer=addr_str(H4, port), pid=p.p.pid)


def test_return_from_main_with_unread_data(ctx):
    """main() returns with a listener and an accepted socket holding 100 unread bytes:
    one exit record each; the one with data is rst_unread and the peer is reset."""
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "listen", H4, 0, "accept", "waitinq", 100)
        lfd = int(p.expect("fd"))
        port = int(p.expect("port"))
        c = cwtest.connect(H4, port)
        c.sendall(b"e" * 100)
        afd = int(p.expect("fd"))
        assert finish(p) == 0, p.stderr
        got = read_to_end(c)
    assert got == (0, "reset")
    assert count_flag(cap.packets(), "R", sport=port) == 1
    recs = read_records(p.log)
    assert sorted(r["fd"] for r in recs) == sorted([lfd, afd]), recs
    check_fields(one_record(recs, fd=afd), call="exit", verdict="rst_unread", recvq=100, lost=100)
    check_fields(one_record(recs, fd=lfd), call="exit", state="LISTEN", backlog=0)


# ---------------------------------------------------------------- the log fd survives

def _survives(ctx, *wipe, rlimit=None):
    """A socket closed before `wipe`, then wipe (closes every fd), then another socket:
    both closes are in the log file."""
    srv, port = cwtest.tcp_listener(H4)
    pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit, rlimit))) if rlimit else None
    p = start(ctx, "connect", H4, port, "close", *wipe, "connect", H4, port, "close",
              "say", "done", preexec_fn=pre)
    f1 = int(p.expect("fd"))
    l1 = int(p.expect("lport"))
    p.closed = p.expect("closed") if "closeloop" in wipe else None
    f2 = int(p.expect("fd"))
    l2 = int(p.expect("lport"))
    p.expect("done")
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)
    closes = records_for(recs, call="close")
    want = [(f1, addr_str(H4, l1)), (f2, addr_str(H4, l2))]
    assert [(r["fd"], r["local"]) for r in closes] == want, \
        f"expected close records {want} (the second after {wipe}), got {recs}"
    return p


def test_closeloop_3_to_1023_keeps_log(ctx):
    p = _survives(ctx, "closeloop", 3, 1023, rlimit=1024)
    assert p.closed == "0", f"no fd was open in 3..1023, yet the loop closed {p.closed}"


def test_closeloop_to_rlimit_keeps_log(ctx):
    _survives(ctx, "closeloop", 3, "max")


def test_close_range_all_keeps_log(ctx):
    _survives(ctx, "close-range", 3, "max")


def test_closefrom_keeps_log(ctx):
    _survives(ctx, "closefrom", 3)


def test_dup2_over_every_fd_keeps_log(ctx):
    _survives(ctx, "dup2range", 3, "max", "closeloop", 3, "max", rlimit=4096)


def test_close_all_results_unchanged(ctx):
    """What the program sees from a close-all loop is the same with and without the shim."""
    acts = ("open", "/dev/null", "dup2range", 3, 300, "closeloop", 3, "max",
            "close-range", 3, "max", "say", "end")
    pre = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (2048, 2048))  # noqa: E731
    rc0, plain = run_plain(ctx, *acts, preexec_fn=pre)
    p = start(ctx, *acts, preexec_fn=pre)
    assert finish(p) == 0 and rc0 == 0, p.stderr
    assert p.lines == plain, f"with shim {p.lines} vs without {plain}"
    assert "closed 298" in plain, plain


# ---------------------------------------------------------------- threads

@cwtest.timeout(60)
def test_threads_8x500_no_torn_lines(ctx):
    p = start(ctx, "threads", 8, 500, "pair", "pid")
    p.expect("threads done", timeout=40)
    assert finish(p) == 0, p.stderr
    with open(p.log, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == 4000, f"{len(lines)} lines, expected 4000"
    recs = []
    for n, line in enumerate(lines, 1):
        assert len(line) + 1 <= 4096, f"line {n} is {len(line)} bytes"
        try:
            recs.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(f"line {n} torn or invalid: {line[:300]!r} ({e})")
    tids = {}
    for r in recs:
        for k in FIELDS:
            assert k in r, f"field {k} missing: {r}"
        assert r["pid"] == p.p.pid and r["call"] == "close" and r["proto"] == "unix", r
        tids[r["tid"]] = tids.get(r["tid"], 0) + 1
    assert len(tids) == 8 and set(tids.values()) == {500}, tids
    assert p.p.pid not in tids, "closes were made by the 8 threads, not main"
    unread = [r for r in recs if r["verdict"] == "rst_unread"]
    assert len(unread) == 2000 and all(r["recvq"] == 1 for r in unread), len(unread)


@cwtest.timeout(60)
def test_threads_tcp_churn(ctx):
    """8 threads x (100 loopback TCP closes + their listener): 808 records, all valid."""
    p = start(ctx, "threads", 8, 100, "tcp")
    p.expect("threads done", timeout=40)
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)
    assert len(recs) == 808, len(recs)
    assert len(records_for(recs, state="LISTEN")) == 8
    assert all(r["proto"] == "tcp" and r["call"] == "close" for r in recs)


# ---------------------------------------------------------------- settings

def test_bad_format_one_warning(ctx):
    p = start(ctx, "socket", "tcp4", "close", "socket", "unix", "close", "say", "done",
              fmt="yaml")
    p.expect("done")
    assert finish(p) == 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one warning line, got {lines}"
    assert "CLOSEWATCH_FORMAT" in lines[0] and "text" in lines[0], lines[0]
    with open(p.log) as f:
        text = f.read().splitlines()
    assert len(text) == 2, text
    assert all(not l.startswith("{") for l in text), "fell back to text, not json"


def test_bad_values_one_warning_each(ctx):
    p = start(ctx, "socket", "tcp4", "close", "say", "done", events="sometimes", mode="loud",
              backtrace="many", extra={"CLOSEWATCH_DRAIN_TIMEOUT_MS": "soon"})
    p.expect("done")
    assert finish(p) == 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    for var, default in (("CLOSEWATCH_EVENTS", "risky"), ("CLOSEWATCH_MODE", "observe"),
                         ("CLOSEWATCH_BACKTRACE", "0"), ("CLOSEWATCH_DRAIN_TIMEOUT_MS", "30000")):
        mine = [l for l in lines if var in l]
        assert len(mine) == 1 and default in mine[0], f"{var}: {mine}"
    assert len(lines) == 4, lines
    assert read_records(p.log) == [], "events fell back to risky: a no_conn close is not logged"


# One rule for every numeric variable (core/config.c's table): a bad value means the default,
# with exactly one warning naming the variable and the value used; an empty value is unset.
NUMERIC = (  # variable, default, a value out of its range
    ("CLOSEWATCH_BACKTRACE", "0", "17"),
    ("CLOSEWATCH_DRAIN_TIMEOUT_MS", "30000", "0"),
    ("CLOSEWATCH_DRAIN_IDLE_MS", "5000", "86400001"),
    ("CLOSEWATCH_DRAIN_MAX", "1024", "65537"),
    ("CLOSEWATCH_DRAIN_SYNC", "0", "2"),
)


def bad_forms(out_of_range):
    return {"negative": "-5", "junk": "abc", "empty": "", "over-long": "9" * 30,
            "out of range": out_of_range}


def drained_close(ctx, name, extra):
    """One close with 100 unread bytes in (async) drain mode, JSON events=all: the client must
    get EOF (drained, not reset), the drain must be delivered (the client closes at once, well
    inside the default idle and total times), and the record carries no backtrace (default 0).
    Returns the stderr lines."""
    p = start(ctx, "listen", H4, 0, "accept", "waitinq", 100, "close", "say", "done",
              log=ctx.path(f"{name}.log"), mode="drain", extra=extra)
    p.expect("fd")
    port = int(p.expect("port"))
    c = cwtest.connect(H4, port)
    c.sendall(b"r" * 100)
    p.expect("fd")
    p.expect("done")
    outcome = read_to_end(c)[1]
    c.close()
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)
    closes = [r for r in recs if r["call"] == "close"]
    drains = [r for r in recs if r["call"] == "drain"]
    assert outcome == "eof", f"{name}: the client got {outcome}: {closes}"
    assert len(closes) == 1 and closes[0]["action"] == "drained", f"{name}: {closes}"
    assert "bt" not in closes[0], f"{name}: backtrace recorded: {closes[0]}"
    assert len(drains) == 1 and drains[0]["result"] == "delivered", f"{name}: {drains}"
    return [l for l in p.stderr.splitlines() if l.strip()]


def test_bad_numbers_mean_the_default_with_one_warning(ctx):
    for var, default, out_of_range in NUMERIC:
        for form, value in bad_forms(out_of_range).items():
            name = f"{var}-{form}".replace(" ", "_")
            lines = drained_close(ctx, name, {var: value})
            if form == "empty":
                assert lines == [], f"{var}='' is unset, not a bad value: {lines}"
                continue
            assert len(lines) == 1, f"{var}={value!r} ({form}): {lines}"
            assert lines[0].startswith(f"closewatch: {var}={value} "), (form, lines[0])
            assert lines[0].endswith(f"; using {default}"), (form, lines[0])


def test_bad_backtrace_in_warn_mode_means_8(ctx):
    """The default of CLOSEWATCH_BACKTRACE depends on the mode: warn mode's is 8."""
    p = start(ctx, "socket", "tcp4", "close", "say", "done", mode="warn", backtrace="99")
    p.expect("done")
    assert finish(p) == 0
    lines = [l for l in p.stderr.splitlines() if "CLOSEWATCH_" in l]
    assert len(lines) == 1 and lines[0].endswith("CLOSEWATCH_BACKTRACE=99 is not valid "
                                                 "(an integer from 0 to 16); using 8"), lines
    recs = read_records(p.log)
    assert len(recs) == 1 and len(recs[0].get("bt", [])) >= 1, recs


def test_empty_choice_values_are_unset(ctx):
    p = start(ctx, "socket", "tcp4", "close", "say", "done", mode="", fmt="", events="")
    p.expect("done")
    assert finish(p) == 0
    assert p.stderr.strip() == "", p.stderr
    assert read_records(p.log) == [], "events unset means risky: a no_conn close is not logged"


def test_log_to_stderr_by_default(ctx):
    p = cwprog(ctx, "socket", "tcp4", "close", "say", "done",
               env=cwtest.shim_env(log=None, fmt="json", events="all"))
    p.expect("done")
    assert finish(p) == 0
    recs = [json.loads(l) for l in p.stderr.splitlines() if l.startswith("{")]
    assert len(recs) == 1 and recs[0]["verdict"] == "no_conn", p.stderr


def test_events_risky_by_default(ctx):
    """Default CLOSEWATCH_EVENTS: only the rst_* closes are logged."""
    p = start(ctx, "listen", H4, 0, "accept", "close", "accept", "waitinq", 100, "close",
              "socket", "tcp4", "close", "say", "done", events=None)
    p.expect("fd")
    port = int(p.expect("port"))
    c1 = cwtest.connect(H4, port)
    p.expect("fd")
    c2 = cwtest.connect(H4, port)
    c2.sendall(b"r" * 100)
    f2 = int(p.expect("fd"))
    p.expect("done")
    assert finish(p) == 0, p.stderr
    assert read_to_end(c1) == (0, "eof") and read_to_end(c2) == (0, "reset")
    recs = read_records(p.log)
    assert len(recs) == 1, recs
    check_fields(recs[0], fd=f2, verdict="rst_unread", recvq=100)


def test_text_format_same_fields(ctx):
    def scenario(fmt):
        p = start(ctx, "listen", H4, 0, "accept", "waitinq", 100, "close", "say", "done",
                  log=ctx.path(f"cw-{fmt}.log"), fmt=fmt, events="risky")
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(H4, port)
        c.sendall(b"t" * 100)
        p.expect("fd")
        p.expect("done")
        assert finish(p) == 0, p.stderr
        with open(p.log) as f:
            return p, port, c.getsockname()[1], f.read().splitlines()
    pj, _, _, jl = scenario("json")
    pt, port, cport, tl = scenario("text")
    assert len(jl) == 1 and len(tl) == 1, (jl, tl)
    rec, line = json.loads(jl[0]), tl[0]
    assert not line.startswith("{"), line
    for k in rec:
        assert re.search(r"(^|\s)" + re.escape(k) + "=", line), f"text line lacks {k}=: {line}"
    for k in ("call", "fd", "proto", "state", "recvq", "sendq", "unsent", "backlog", "linger",
              "verdict", "lost", "comm", "action"):
        assert re.search(r"(^|\s)" + re.escape(f"{k}={rec[k]}") + r"(\s|$)", line), \
            f"text line lacks {k}={rec[k]}: {line}"
    for k, v in (("pid", pt.p.pid), ("local", addr_str(H4, port)), ("peer", addr_str(H4, cport))):
        assert re.search(r"(^|\s)" + re.escape(f"{k}={v}") + r"(\s|$)", line), f"text line lacks {k}={v}: {line}"


def test_log_path_pid(ctx):
    p = start(ctx, "socket", "tcp4", "close", "say", "done", log=ctx.path("cw-%p.log"))
    p.expect("done")
    assert finish(p) == 0, p.stderr
    path = ctx.path(f"cw-{p.p.pid}.log")
    assert os.path.exists(path), os.listdir(ctx.tmp)
    assert not os.path.exists(ctx.path("cw-%p.log"))
    recs = read_records(path)
    assert len(recs) == 1 and recs[0]["pid"] == p.p.pid, recs
    assert os.stat(path).st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- errno and return values

def test_close_minus1_and_double_close_keep_ebadf(ctx):
    acts = ("close-minus1", "socket", "tcp4", "double-close", "open", "/dev/null",
            "double-close", "say", "done")
    rc0, plain = run_plain(ctx, *acts)
    p = start(ctx, *acts)
    assert finish(p) == 0 and rc0 == 0, p.stderr
    assert p.lines == plain, f"with shim {p.lines} vs without {plain}"
    assert plain.count("ebadf ok") == 3, plain
    recs = read_records(p.log)
    assert len(recs) == 1, f"one socket closed once: {recs}"
    check_fields(recs[0], call="close", verdict="no_conn")


def test_nonsocket_close_makes_no_extra_syscall(ctx):
    """strace counts the syscalls of 1000 open+close of a regular file: the shim adds none."""
    path = ctx.path("plain.txt")
    with open(path, "w") as f:
        f.write("x")
    n = 1000
    acts = ["socket", "tcp4", "close", "fileloop", path, 20, "say", "loop-begin",
            "fileloop", path, n, "say", "loop-end"]

    def count(with_shim):
        out = ctx.path(f"strace-{with_shim}.txt")
        env = cwtest.plain_env()
        cmd = ["strace", "-f", "-qq", "-o", out]
        if with_shim:
            senv = cwtest.shim_env(log=ctx.path("cw.log"))
            for k, v in senv.items():
                if k == "LD_PRELOAD" or k.startswith("CLOSEWATCH_"):
                    cmd += ["-E", f"{k}={v}"]
        cmd += [cwtest.prog("cwprog")] + [str(a) for a in acts]
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        with open(out) as f:
            lines = f.read().splitlines()
        b = [i for i, l in enumerate(lines) if 'write(1, "loop-begin' in l]
        e = [i for i, l in enumerate(lines) if 'write(1, "loop-end' in l]
        assert len(b) == 1 and len(e) == 1, "markers not found in strace output"
        calls = [l for l in lines[b[0] + 1:e[0]] if re.match(r"^\d+\s+\w+\(", l)]
        names = {}
        for l in calls:
            nm = re.match(r"^\d+\s+(\w+)\(", l).group(1)
            names[nm] = names.get(nm, 0) + 1
        return len(calls), names
    if not os.path.exists("/usr/bin/strace"):
        cwtest.skip("strace not installed")
    plain = count(False)
    shim = count(True)
    assert plain[0] == 2 * n, f"without the shim: {plain}"
    assert shim == plain, f"with the shim {shim} vs without {plain}"
    assert records_for(read_records(ctx.path("cw.log")), call="close"), "the shim was loaded"


# ---------------------------------------------------------------- shutdown

def test_shutdown_records_how(ctx):
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap:
        p = start(ctx, "connect", H4, port, "shutdown", "wr", "connect", H4, port,
                  "shutdown", "rd", "connect", H4, port, "shutdown", "rdwr", "say", "done", "wait")
        fds, lports = [], []
        for _ in range(3):
            fds.append(int(p.expect("fd")))
            lports.append(int(p.expect("lport")))
        peers = {c.getpeername()[1]: c for c in accept_n(srv, 3)}
        p.expect("done")
        got = [read_to_end(peers[lp], timeout=0.5) for lp in lports]
    tell(p)  # the capture is over: the FINs sent when the program exits are not counted
    assert finish(p) == 0, p.stderr
    assert got == [(0, "eof"), (0, "timeout"), (0, "eof")], got
    pkts = cap.packets()
    fins = [count_flag(pkts, "F", sport=lp) for lp in lports]
    assert fins == [1, 0, 1], f"FINs from the wr/rd/rdwr sockets: {fins}"
    assert count_flag(pkts, "R") == 0
    recs = read_records(p.log)
    shuts = records_for(recs, call="shutdown")
    assert [(r["fd"], r["how"]) for r in shuts] == list(zip(fds, ["wr", "rd", "rdwr"])), shuts
    for r in shuts:
        check_fields(r, proto="tcp", state="ESTABLISHED", recvq=0, lost=0)
        assert not r["verdict"].startswith("rst_"), r


def test_shutdown_with_unread_data_is_fin_then_close_is_rst(ctx):
    """shutdown(SHUT_RDWR) with 100 unread bytes sends FIN, not RST (nothing thrown away yet);
    the close() after it does throw them away: rst_unread and an RST."""
    with Capture(ctx, "tcp") as cap1:
        p = start(ctx, "listen", H4, 0, "accept", "waitinq", 100, "shutdown", "rdwr",
                  "say", "shut", "wait", "close", "say", "closed", "wait")
        p.expect("fd")
        port = int(p.expect("port"))
        c = cwtest.connect(H4, port)
        c.sendall(b"s" * 100)
        afd = int(p.expect("fd"))
        p.expect("shut")
        first = read_to_end(c)
    pk1 = cap1.packets()
    with Capture(ctx, "tcp") as cap2:
        tell(p)
        p.expect("closed")
        time.sleep(0.05)
        tell(p)
        assert finish(p) == 0, p.stderr
    pk2 = cap2.packets()
    assert first == (0, "eof"), first
    assert count_flag(pk1, "F", sport=port) == 1 and count_flag(pk1, "R", sport=port) == 0
    assert count_flag(pk2, "R", sport=port) == 1, cwtest.flags_of(pk2, port)
    recs = read_records(p.log)
    sh = one_record(recs, call="shutdown", fd=afd)
    check_fields(sh, how="rdwr", recvq=100)
    assert not sh["verdict"].startswith("rst_"), f"shutdown sent FIN, record says {sh}"
    check_fields(one_record(recs, call="close", fd=afd), verdict="rst_unread", recvq=100,
                 lost=100)


# ---------------------------------------------------------------- fclose, close_range, closefrom

def test_fclose_socket_stream(ctx):
    srv, port = cwtest.tcp_listener(H4)
    p = start(ctx, "connect", H4, port, "fclose", "say", "done", "wait")
    fd = int(p.expect("fd"))
    c = srv.accept()[0]
    assert p.expect("fclose") == "0"
    got = read_to_end(c)
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == (0, "eof")
    recs = read_records(p.log)
    assert len(recs) == 1, f"one record for one fclose: {recs}"
    check_fields(recs[0], call="fclose", fd=fd, proto="tcp", verdict="clean")


def _range_close(ctx, *acts, call):
    srv, port = cwtest.tcp_listener(H4)
    p = start(ctx, "connect", H4, port, "open", "/dev/null", "connect", H4, port,
              "socketpair", *acts, "say", "done", "wait")
    fds = [int(p.expect("fd")) for _ in range(3)]
    pair = [int(x) for x in p.expect("fd").split()]
    peers = accept_n(srv, 2)
    p.expect("done")
    got = [read_to_end(c) for c in peers]
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == [(0, "eof")] * 2, got
    recs = read_records(p.log)
    assert sorted(r["fd"] for r in recs) == sorted([fds[0], fds[2]] + pair), recs
    assert all(r["call"] == call for r in recs), recs
    assert [r["proto"] for r in sorted(recs, key=lambda r: r["fd"])] == ["tcp", "tcp", "unix", "unix"]


def test_close_range_sockets(ctx):
    _range_close(ctx, "close-range", 3, "max", call="close_range")


def test_closefrom_sockets(ctx):
    _range_close(ctx, "closefrom", 3, call="closefrom")


# ---------------------------------------------------------------- fd tracking

def test_inherited_socket_fd(ctx):
    """A socket the program inherited at start-up (no socket() call seen) is still logged."""
    a, b = socket.socketpair()
    b.sendall(b"12345")
    fd = a.fileno()
    p = start(ctx, "use", fd, "wait", "close", "say", "done", pass_fds=(fd,))
    a.close()  # the program now holds the only reference
    tell(p)
    p.expect("done")
    assert finish(p) == 0, p.stderr
    b.settimeout(2)
    try:
        got = b.recv(10)
    except ConnectionResetError:
        got = "reset"
    assert got == "reset", got
    rec = one_record(read_records(p.log), call="close", fd=fd)
    check_fields(rec, proto="unix", verdict="rst_unread", recvq=5)


def test_socket_received_over_scm_rights(ctx):
    srv, port = cwtest.tcp_listener(H4)
    a, b = socket.socketpair()
    t = cwtest.connect(H4, port)
    peer = srv.accept()[0]
    peer.sendall(b"x" * 100)
    socket.send_fds(a, [b"f"], [t.fileno()])
    t.close()
    bfd = b.fileno()
    p = start(ctx, "use", bfd, "recvfd", "waitinq", 100, "close", "say", "done", "wait",
              pass_fds=(bfd,))
    fd = int(p.expect("fd"))
    p.expect("done")
    got = read_to_end(peer)
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == (0, "reset"), got
    rec = one_record(read_records(p.log), call="close", fd=fd)
    check_fields(rec, proto="tcp", verdict="rst_unread", recvq=100, peer=addr_str(H4, port))


def test_fcntl_dupfd_is_tracked(ctx):
    srv, port = cwtest.tcp_listener(H4)
    p = start(ctx, "connect", H4, port, "as", "a", "dupfd", 100, "as", "d", "use", "a", "close",
              "use", "d", "close", "say", "done", "wait")
    fa = int(p.expect("fd"))
    fd = int(p.expect("fd"))
    assert fd >= 100
    c = srv.accept()[0]
    p.expect("done")
    got = read_to_end(c)
    tell(p)
    assert finish(p) == 0, p.stderr
    assert got == (0, "eof")
    closes = records_for(read_records(p.log), call="close")
    assert [(r["fd"], r["verdict"]) for r in closes] == [(fa, "shared"), (fd, "clean")], closes


# ---------------------------------------------------------------- closewatch_inspect()

def _inspect_fields(line):
    return dict(kv.split("=", 1) for kv in line.split())


def test_inspect_api(ctx):
    """A program linked with -lclosewatch asks about its own sockets."""
    p = cwprog(ctx, "listen", H4, 0, "waitbacklog", 2, "inspect", "accept", "waitinq", 100,
               "inspect", "write", 10, "waitoutq0", "inspect", "open", "/dev/null", "inspect",
               "socket", "udp", "inspect", "say", "done", name="cwinspect",
               env=cwtest.plain_env())
    lfd = int(p.expect("fd"))
    port = int(p.expect("port"))
    c1 = cwtest.connect(H4, port)
    c1.sendall(b"i" * 100)
    c2 = cwtest.connect(H4, port)  # noqa: F841 — stays in the backlog
    lst = _inspect_fields(p.expect("inspect"))
    afd = int(p.expect("fd"))
    acc = _inspect_fields(p.expect("inspect"))
    acc2 = _inspect_fields(p.expect("inspect"))
    p.expect("fd")
    nul = p.expect("inspect")
    p.expect("fd")
    udp = p.expect("inspect")
    p.expect("done")
    assert finish(p) == 0, p.stderr
    for k, v in dict(rc="0", fd=str(lfd), proto="1", family=str(int(socket.AF_INET)),
                     state="LISTEN", listening="1", backlog="2", verdict="rst_backlog",
                     risky="1", lost="0", local=addr_str(H4, port)).items():
        assert lst[k] == v, f"listener {k}: {lst[k]} != {v} ({lst})"
    for k, v in dict(rc="0", fd=str(afd), state="ESTABLISHED", listening="0", linger="-1",
                     shared="0", recvq="100", sendq="0", unsent="0", lost="100",
                     verdict="rst_unread", risky="1", local=addr_str(H4, port),
                     peer=addr_str(H4, c1.getsockname()[1])).items():
        assert acc[k] == v, f"accepted {k}: {acc[k]} != {v} ({acc})"
    assert acc2["recvq"] == "100" and acc2["sendq"] == "0", acc2
    assert nul == "rc=-1 errno=ENOTSOCK", nul
    assert udp == "rc=-1 errno=EPROTONOSUPPORT", udp


# ---------------------------------------------------------------- fork and signals

def test_fork_child_closes_inherited_socket(ctx):
    """After fork the child closes the socket: its record carries its own pid (in its own
    %p log file), and as the parent still holds the socket, nothing is sent: `shared`.
    Then the parent's close is the last one: `clean` and a FIN."""
    srv, port = cwtest.tcp_listener(H4)
    with Capture(ctx, "tcp") as cap1:
        p = start(ctx, "connect", H4, port, "fork-close", "say", "forked", "wait", "close",
                  "say", "closed", "wait", log=ctx.path("cw-%p.log"))
        fd = int(p.expect("fd"))
        lport = int(p.expect("lport"))
        c = srv.accept()[0]
        child, crc = (int(x) for x in p.expect("child").split())
        p.expect("forked")
        first = read_to_end(c, timeout=0.3)
    with Capture(ctx, "tcp") as cap2:
        tell(p)
        p.expect("closed")
        second = read_to_end(c)
        tell(p)
        assert finish(p) == 0, p.stderr
    assert crc == 0 and first == (0, "timeout") and second == (0, "eof"), (crc, first, second)
    assert count_flag(cap1.packets(), "F", sport=lport) == 0
    assert count_flag(cap2.packets(), "F", sport=lport) == 1
    crecs = read_records(ctx.path(f"cw-{child}.log"))
    assert len(crecs) == 1, crecs
    check_fields(crecs[0], pid=child, call="close", fd=fd, verdict="shared", lost=0)
    precs = read_records(ctx.path(f"cw-{p.p.pid}.log"))
    check_fields(one_record(precs, call="close"), pid=p.p.pid, fd=fd, verdict="clean")


@cwtest.timeout(60)
def test_signal_handler_closes_are_safe(ctx):
    """Closes in a SIGALRM handler (every 100 us) interrupting the program's own closes:
    no deadlock, no torn line, every close of the program itself logged."""
    n = 20000
    p = start(ctx, "sigstorm", n)
    k = int(p.expect("sigstorm", timeout=40).split()[1])
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)  # fails on a torn line
    assert k > 0, "the handler never ran"
    assert n <= len(recs) <= n + k, f"{len(recs)} records for {n} + {k} closes"
    assert all(r["call"] == "close" and r["verdict"] == "no_conn" for r in recs)


@cwtest.timeout(60)
def test_signal_handler_closes_all_logged(ctx):
    """The same storm: the closes made inside the handler are logged too (one record per
    socket close, even when the signal interrupted the shim)."""
    n = 20000
    p = start(ctx, "sigstorm", n)
    k = int(p.expect("sigstorm", timeout=40).split()[1])
    assert finish(p) == 0, p.stderr
    recs = read_records(p.log)
    assert len(recs) == n + k, f"{len(recs)} records for {n} + {k} socket closes: {n + k - len(recs)} missing"


def test_library_has_soname(ctx):
    """A program linked with -lclosewatch records this name; ldconfig keys on it."""
    out = subprocess.run(["readelf", "-d", cwtest.LIB], capture_output=True, text=True,
                         check=True).stdout
    assert re.search(r"\(SONAME\)\s+Library soname: \[libclosewatch\.so\]", out), out


def test_exports_only_the_interposed_symbols(ctx):
    """-fvisibility=hidden: the library exports the functions it interposes
    (every one bound in core/real.h, plus the execl* wrappers) and the public
    API of include/closewatch.h, nothing else."""
    src = open(os.path.join(cwtest.ROOT, "core", "real.h")).read()
    hooked = set(re.findall(r"^\s*X\((\w+),", src, re.M)) | {"execl", "execle", "execlp"}
    api = set(re.findall(r"\b(closewatch_\w+)\(", open(os.path.join(cwtest.ROOT, "include",
                                                                     "closewatch.h")).read()))
    out = subprocess.run(["nm", "-D", "--defined-only", cwtest.LIB], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[1] in "TWiV"}
    assert exported == hooked | api, (sorted(exported - hooked - api), sorted((hooked | api) - exported))


def test_records_name_the_closing_process_and_thread(ctx):
    """pid, tid and comm are cached per thread (ident.c): a rename by prctl,
    pthread_setname_np or syscall(SYS_prctl) shows in the next record, and a
    child forked by syscall(SYS_fork), which runs no atfork handler, logs its
    own pid and tid."""
    log = ctx.path("cw.log")
    p = start(ctx, "socket", "tcp4", "close",
              "rename", "prctl", "one", "socket", "tcp4", "close",
              "rename", "pthread", "two", "socket", "tcp4", "close",
              "rename", "syscall", "three", "socket", "tcp4", "close",
              "socket", "tcp4", "rawfork-close", "close", log=log)
    fds = [int(p.expect("fd")) for _ in range(4)]
    fds.append(int(p.expect("fd")))
    child, crc = (int(x) for x in p.expect("child").split())
    assert finish(p) == 0, p.stderr
    assert crc == 0
    recs = [r for r in read_records(log) if r["call"] == "close"]
    me = p.p.pid
    got = [(r["pid"], r["tid"], r["comm"], r["fd"]) for r in recs]
    assert got == [(me, me, "cwprog", fds[0]), (me, me, "one", fds[1]), (me, me, "two", fds[2]),
                   (me, me, "three", fds[3]), (child, child, "three", fds[4]),
                   (me, me, "three", fds[4])], got
    assert recs[4]["verdict"] == "shared" and recs[5]["verdict"] == "no_conn", recs
    # host and exe are read once; a forked child (even without atfork handlers) has the same
    where = {(r["host"], r["exe"]) for r in recs}
    assert where == {(os.uname().nodename, os.path.realpath(cwtest.prog("cwprog")))}, where
