"""Programs that start in ways LD_PRELOAD shims trip over: daemon() after closing every
fd, posix_spawn, vfork+exec. They must start and run as without the shim, the shim must
keep logging afterwards, and sockets a spawned child inherited must count as shared."""
import glob
import os
import socket
import subprocess

import cwtest
import cwapps
from cwapps import H4


def read_line(s, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            raise EOFError(f"EOF after {buf!r}")
        buf += b
    return buf.decode().strip()


def still_open(s):
    """No EOF and no reset pending on s (and nothing unread)."""
    t = s.gettimeout()
    s.settimeout(0)
    try:
        s.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.settimeout(t)


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _daemon(ctx, run):
    ls, port = cwtest.tcp_listener(H4)
    p = run.start([cwapps.helper("daemonize"), str(port)])
    rc = p.wait(10)  # the original process returns from daemon() in its parent: _exit(0)
    c, _ = ls.accept()
    line = read_line(c)
    pid = int(line.split()[1])
    c.sendall(b"bye\n")
    c.shutdown(socket.SHUT_WR)
    end = cwtest.read_to_end(c)
    c.close()
    cwtest.wait_for(lambda: gone(pid), timeout=10, what="the daemon's exit")
    run.port, run.parent, run.daemon = port, p.p.pid, pid
    return {"rc": rc, "out": p.lines, "err": p.stderr, "line": line.replace(str(pid), "PID"),
            "end": end}


def test_daemon_close_all_at_startup(ctx):
    """A daemon that closes every fd (close() loop, close_range, closefrom: the shim's own
    log fd answers EBADF and survives), then daemon(): starts, talks, exits like without
    the shim; the daemon's records are there (its socketpair: clean, then no_conn; its TCP
    connection: clean in CLOSE_WAIT), none for its file and pipe, none from the parent."""
    def workload(ctx, run):
        return _daemon(ctx, run)
    out, run = cwapps.both(ctx, workload)
    assert out["rc"] == 0 and out["line"] == "daemon PID" and out["end"] == (0, "eof"), out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, {run.port}, unix_ok=True)
    assert {r["pid"] for r in recs} == {run.daemon}, cwapps.fmt(recs)
    u = cwapps.unix(recs)
    # the socketpair: the first end is clean, the second finds its peer gone (no_conn)
    assert len(u) == 2 and all(r["call"] == "close" for r in u), cwapps.fmt(u)
    assert sorted(r["verdict"] for r in u) == ["clean", "no_conn"], cwapps.fmt(u)
    t = cwtest.one_record(cwapps.tcp(recs), call="close")
    cwtest.check_fields(t, state="CLOSE_WAIT", verdict="clean", peer=f"{H4}:{run.port}")
    assert len(recs) == 3, cwapps.fmt(recs)


def test_daemon_log_per_pid(ctx):
    """CLOSEWATCH_LOG with %p: the daemon's records go to the file named by the daemon's
    own pid (glibc's daemon() forks internally, past the shim's fork())."""
    run = cwapps.Run(ctx, True)
    run.env["CLOSEWATCH_LOG"] = run.path("cw.%p.log")
    out = _daemon(ctx, run)
    assert out["rc"] == 0 and out["end"] == (0, "eof"), out
    files = {os.path.basename(f): cwtest.read_records(f) for f in glob.glob(run.path("cw.*.log"))}
    mine = files.get(f"cw.{run.daemon}.log", [])
    assert len(mine) == 3 and {r["pid"] for r in mine} == {run.daemon}, (
        f"daemon {run.daemon} (parent {run.parent}); files: "
        + ", ".join(f"{k}: pids {sorted({r['pid'] for r in v})}" for k, v in files.items()))


def _spawner(ctx, run, mode):
    ls, port = cwtest.tcp_listener(H4)
    p = run.start([cwapps.helper("spawner"), mode, str(port)], stdin=subprocess.PIPE)
    conns = {}
    for _ in range(2):
        c, addr = ls.accept()
        name, pid = read_line(c).split()
        conns[name] = (c, addr[1])
    S, sport = conns["S"]
    U, uport = conns["U"]
    o = {}
    p.expect("closed S")
    child = read_line(S)
    cpid = int(child.split()[1])
    o["S open after the parent's close"] = still_open(S)
    S.sendall(b"bye\n")
    S.shutdown(socket.SHUT_WR)
    o["S"] = cwtest.read_to_end(S)
    o["child exit"] = p.expect("child exited")
    o["U open after the child's close"] = still_open(U)
    cwtest.tell(p)
    p.expect("closed U")
    o["U"] = cwtest.read_to_end(U)
    T, addr = ls.accept()
    tport = addr[1]
    o["T line"] = read_line(T).split()[0]
    T.shutdown(socket.SHUT_WR)
    o["T"] = cwtest.read_to_end(T)
    p.expect("done")
    o["rc"] = p.wait(10)
    for c in (S, U, T):
        c.close()
    run.pid, run.cpid, run.port = p.p.pid, cpid, port
    run.sport, run.uport, run.tport = sport, uport, tport
    return o


def _check_spawner(ctx, mode):
    cwapps.need("cc")

    def workload(ctx, run):
        return _spawner(ctx, run, mode)
    out, run = cwapps.both(ctx, workload)
    assert out == {"S open after the parent's close": True, "S": (0, "eof"), "child exit": "0",
                   "U open after the child's close": True, "U": (0, "eof"), "T line": "after",
                   "T": (0, "eof"), "rc": 0}, out
    recs = run.records()
    cwapps.all_valid(recs)
    cwapps.no_strays(recs, {run.port})
    got = {(r["pid"] == run.pid and "parent" or r["pid"] == run.cpid and "child" or r["pid"],
            cwapps.port_of(r["local"]), r["call"]): r for r in recs}
    names = {run.sport: "S", run.uport: "U", run.tport: "T"}
    summary = sorted((who, names.get(port, port), r["verdict"]) for (who, port, call), r in got.items())
    want = [("child", "S", "clean"), ("child", "U", "shared"), ("parent", "S", "shared"),
            ("parent", "T", "clean"), ("parent", "U", "clean")]
    assert len(recs) == 5 and summary == want, (
        f"{mode}: who closed what, with which verdict: {summary}\nexpected {want}\n"
        "(the kernel's truth is in the outcome: S stayed open after the parent's close, U "
        "after the child's)\n" + cwapps.fmt(recs))


def test_posix_spawn_inherited_sockets(ctx):
    """posix_spawn: the child (this program again, under the shim through the inherited
    environment) inherits S and U. The parent's close of S while the child lives is
    `shared` (S stays open on the wire), the child's close of U while the parent holds
    it is `shared` (U stays open), each last close is clean, and the parent's later
    connection is logged too."""
    _check_spawner(ctx, "posix_spawn")


def test_vfork_exec_inherited_sockets(ctx):
    """The same with vfork()+execve()."""
    _check_spawner(ctx, "vfork")
