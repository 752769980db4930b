"""Shared helpers of the real-program suite (tests/apps/, issue 7).

Every scenario is a function workload(ctx, run) that drives one real program and returns
what can be observed from outside (its output, exit status, what its peers received,
kernel counters). It runs twice on the same workload: once without the shim and once
under it (observe mode, JSON, every event); the two outcomes must be identical, and the
shim run's records are then checked against the workload."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import cwtest

HERE = os.path.dirname(os.path.abspath(__file__))
H4 = "127.0.0.1"
# The interpreter itself, not a wrapper script (pyenv's shims are bash scripts whose own
# processes would be preloaded too).
PY = os.path.realpath(sys.executable)

# Debian packages that provide the programs (CI installs them from .ci/packages).
PACKAGES = {"curl": "curl", "socat": "socat", "ncat": "ncat", "nginx": "nginx-light",
            "node": "nodejs", "cc": "build-essential"}


# Programs we did not build: under make check (CW_SANITIZER) the sanitizer runtime would
# be preloaded into them too, and would report their own leaks (or hang curl): they are
# verified by `make test`; python and our helpers still run under the sanitizers.
THIRD_PARTY = {"curl", "socat", "ncat", "nginx", "node"}


def need(*tools):
    san = os.environ.get("CW_SANITIZER")
    if san and THIRD_PARTY & set(tools):
        raise cwtest.Skip(f"{'/'.join(sorted(THIRD_PARTY & set(tools)))} not run under the {san} runtime")
    for t in tools:
        if not shutil.which(t) and not os.path.exists(os.path.join("/usr/sbin", t)):
            cwtest.skip(f"{t} is not installed (Debian package {PACKAGES.get(t, t)})")
    assert os.path.exists(cwtest.LIB), f"{cwtest.LIB} is not built"


def which(tool):
    return shutil.which(tool) or os.path.join("/usr/sbin", tool)


def helper(name):
    """Build tests/apps/NAME.c into $BUILD/apps/NAME (when missing or older) and return it."""
    src = os.path.join(HERE, name + ".c")
    out_dir = os.path.join(cwtest.BUILD, "apps")
    out = os.path.join(out_dir, name)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(out_dir, exist_ok=True)
        tmp = f"{out}.tmp{os.getpid()}"
        r = subprocess.run([os.environ.get("CC", "cc"), "-std=gnu11", "-O2", "-g", "-Wall",
                            "-Wextra", "-Werror", "-D_GNU_SOURCE", "-o", tmp, src],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, f"cannot build {src}:\n{r.stdout}"
        os.replace(tmp, out)
    return out


def free_port():
    """A TCP port free on 127.0.0.1 right now (for programs that cannot report theirs)."""
    s = socket.socket()
    s.bind((H4, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    """Wait until something accepts connections on 127.0.0.1:port."""
    def up():
        try:
            socket.create_connection((H4, port), timeout=1).close()
            return True
        except OSError:
            return False
    cwtest.wait_for(up, timeout=timeout, step=0.02, what=f"a listener on port {port}")


def wait_for_lines(path, text, count, timeout=10):
    """Wait until a log file has at least count lines containing text."""
    def enough():
        try:
            with open(path, errors="replace") as f:
                return sum(text in l for l in f) >= count
        except FileNotFoundError:
            return False
    cwtest.wait_for(enough, timeout=timeout, step=0.02, what=f"{count} x {text!r} in {path}")


def socket_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def wait_sockets(pid, n, timeout=10):
    """Wait until process pid holds at most n sockets (its handlers have closed theirs)."""
    cwtest.wait_for(lambda: socket_fds(pid) <= n, timeout=timeout, step=0.02,
                    what=f"pid {pid} down to {n} sockets")


def pattern_bytes(n, seed=b"closewatch"):
    """n deterministic, incompressible-looking bytes (the same in both runs)."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def tcp_state(s):
    """The kernel's TCP state of a Python socket (tcpi_state: 1 ESTABLISHED ... 7 CLOSE)."""
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def wait_reset(s, timeout=10):
    """After EOF: wait until the peer's RST puts our socket in CLOSE; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tcp_state(s) == 7:
            return True
        time.sleep(0.01)
    return False


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def counters():
    return cwtest.kernel_counters()


RST_KEYS = ("Tcp.OutRsts", "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData",
            "TcpExt.TCPAbortOnLinger")


def rst_delta(before, after):
    """What the kernel reset during the workload (exact inside run.py's private netns)."""
    return {k.split(".")[1]: after[k] - before[k] for k in RST_KEYS}


def aborts(before, after):
    """Resets caused by a close (unread data, data after close, linger): OutRsts also
    counts the kernel's answers to stray segments (seen once in a few hundred thousand
    loopback connections under load, with and without the shim alike)."""
    d = rst_delta(before, after)
    return d["TCPAbortOnClose"] + d["TCPAbortOnData"] + d["TCPAbortOnLinger"]


# ---------------------------------------------------------------- one run, two runs

class Run:
    """One run of a workload: the environment every program of it gets, its directory,
    and (under the shim) its log."""

    def __init__(self, ctx, shim, mode="observe", extra=None):
        self.ctx = ctx
        self.shim = shim
        self.mode = mode
        self.tag = ("shim-" + mode) if shim else "plain"
        self.dir = ctx.path(self.tag)
        n = 1
        while os.path.exists(self.dir):  # a test may run its workload more than twice
            n += 1
            self.dir = ctx.path(f"{self.tag}{n}")
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "cw.log")
        if shim:
            self.env = cwtest.shim_env(log=self.log, mode=mode, extra=extra)
        else:
            self.env = cwtest.plain_env()
        self.env.pop("PYTHONSTARTUP", None)

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, argv, shim=True, **kw):
        """A program of the workload; shim=False keeps a helper out of the shim's reach."""
        env = self.env if shim else cwtest.plain_env()
        return self.ctx.start(argv, env=kw.pop("env", env), **kw)

    def records(self):
        return cwtest.read_records(self.log) if self.shim else []


def both(ctx, workload, mode="observe", extra=None):
    """Run workload without and with the shim; assert the outcomes are identical.
    Returns (outcome, shim Run)."""
    plain = Run(ctx, False)
    out_plain = workload(ctx, plain)
    shim = Run(ctx, True, mode=mode, extra=extra)
    out_shim = workload(ctx, shim)
    same(out_plain, out_shim)
    assert out_plain is not None
    assert not plain.records(), "records without the shim?"
    return out_shim, shim


def same(a, b):
    if a == b:
        return
    lines = ["outcome differs with the shim (plain vs shim):"]
    for k in sorted(set(a) | set(b), key=str):
        if a.get(k) != b.get(k):
            lines.append(f"  {k}: {a.get(k)!r}  !=  {b.get(k)!r}")
    raise AssertionError("\n".join(lines))


def normalize(text, *subs):
    """Replace run-specific strings (ports, pids, paths) and dates with placeholders."""
    for old, new in subs:
        text = text.replace(str(old), new)
    text = re.sub(r"\d\d/\w\w\w/\d{4}[ :]\d\d:\d\d:\d\d( [+-]\d{4})?", "DATE", text)
    text = re.sub(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d", "DATE", text)
    return text


def stop(proc, sig=signal.SIGTERM, timeout=15):
    """Signal a program and return its exit status (negative: killed by a signal)."""
    if proc.p.poll() is None:
        proc.p.send_signal(sig)
    return proc.wait(timeout)


# ---------------------------------------------------------------- records

FIELDS = ("ts", "pid", "tid", "comm", "call", "fd", "proto", "local", "peer", "state", "recvq",
          "sendq", "unsent", "backlog", "linger", "verdict", "lost", "action")
CALLS = {"close", "shutdown", "close_range", "closefrom", "dup2", "dup3", "fclose", "exit"}
VERDICTS = {"clean", "fin_pending", "rst_unread", "rst_linger0", "rst_backlog", "linger_wait",
            "shared", "no_conn"}
RISKY = {"rst_unread", "rst_linger0", "rst_backlog"}
TCP_STATES = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"}
UNIX_STATES = {"CONNECTED", "LISTEN", "UNCONNECTED"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$")
DRAIN_RESULTS = {"delivered", "timeout", "peer_reset"}


def valid(rec, mode="observe"):
    """A record is well formed and its verdict agrees with its own numbers."""
    if rec.get("call") == "drain":
        for k in ("ts", "pid", "fd", "result", "discarded", "waited_ms"):
            assert k in rec, f"drain record without {k}: {rec}"
        assert rec["result"] in DRAIN_RESULTS, rec
        return
    for k in FIELDS:
        assert k in rec, f"record without {k}: {rec}"
    assert TS_RE.match(rec["ts"]), rec
    assert rec["call"] in CALLS, rec
    if rec["call"] == "shutdown":
        assert rec.get("how") in ("rd", "wr", "rdwr"), rec
    assert rec["proto"] in ("tcp", "unix"), rec
    assert rec["state"] in (TCP_STATES if rec["proto"] == "tcp" else UNIX_STATES), rec
    for k in ("pid", "tid", "fd", "recvq", "sendq", "unsent", "backlog", "lost"):
        assert isinstance(rec[k], int) and rec[k] >= 0, f"{k} in {rec}"
    v = rec["verdict"]
    assert v in VERDICTS, rec
    if rec["proto"] == "tcp":
        assert rec["unsent"] <= rec["sendq"], rec
    # shutdown() leaves unread bytes readable: only a close throws them away.
    unread_ok = rec["call"] == "shutdown"
    if v == "clean":
        assert (unread_ok or rec["recvq"] == 0) and rec["sendq"] == 0 and rec["lost"] == 0, rec
    elif v == "fin_pending":
        assert (unread_ok or rec["recvq"] == 0) and rec["sendq"] > 0 and rec["lost"] == 0, rec
    elif v == "rst_unread":
        assert rec["recvq"] > 0, rec
        want = rec["recvq"] + rec["sendq"] if rec["proto"] == "tcp" else rec["recvq"]
        assert rec["lost"] == want, rec
    elif v == "rst_backlog":
        assert rec["state"] == "LISTEN" and rec["backlog"] > 0 and rec["lost"] == 0, rec
    else:
        assert rec["lost"] == 0, rec
    if mode == "observe":
        assert rec["action"] == "none", rec


def all_valid(recs, mode="observe"):
    for r in recs:
        valid(r, mode)


def tcp(recs):
    return [r for r in recs if r.get("proto") == "tcp"]


def unix(recs):
    return [r for r in recs if r.get("proto") == "unix"]


def port_of(addr):
    return int(addr.rsplit(":", 1)[1]) if addr and addr[-1].isdigit() and ":" in addr else None


def involves(rec, ports):
    return port_of(rec["local"]) in ports or port_of(rec["peer"]) in ports


def no_strays(recs, ports, unix_ok=False, what=""):
    """Every record is a socket of this workload: TCP records on one of its ports (or a
    listener or reset socket of its own pid set), unix records only where expected."""
    for r in recs:
        if r.get("call") == "drain":
            continue
        if r["proto"] == "unix":
            assert unix_ok, f"unexpected unix-socket record{what}: {r}"
            continue
        ok = involves(r, ports) or (r["peer"] == "unnamed" and r["state"] in ("CLOSE", "LISTEN"))
        assert ok, f"record for a socket outside the workload (ports {sorted(ports)}){what}: {r}"


def fmt(recs):
    return "\n".join(json.dumps(r, sort_keys=True) for r in recs)


def by_pid(recs):
    out = {}
    for r in recs:
        out.setdefault(r["pid"], []).append(r)
    return out
