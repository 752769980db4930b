"""Fixtures shared by closewatch tests: paths, running programs under the shim,
reading records, packet capture, kernel counters, and peers that report what
they saw (EOF vs ECONNRESET).

Everything talks to the real kernel over loopback (inside the private network
namespace that run.py creates when it runs as root)."""
import contextlib
import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("CW_BUILD", "build"))
LIB = os.path.join(BUILD, "libclosewatch.so")
CLI = os.path.join(BUILD, "closewatch")
PCAPTOOL = os.path.join(BUILD, "cw-pcap")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Extra libraries that must come first in LD_PRELOAD (the sanitizer runtime in make check).
PRELOAD_PREFIX = os.environ.get("CW_PRELOAD_PREFIX", "")


class Skip(Exception):
    pass


def skip(why):
    """Skip, except in CI where everything the suite needs is there: fail instead."""
    if IN_CI:
        raise AssertionError(f"would skip in CI: {why}")
    raise Skip(why)


def require_root():
    if os.geteuid() != 0:
        skip("needs root (network namespace, packet capture)")


def timeout(seconds):
    """Decorator: a longer time limit for one test (default 120 s)."""
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


@contextlib.contextmanager
def time_limit(seconds):
    def on_alarm(signum, frame):
        raise TimeoutError(f"test took longer than {seconds}s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, shell=True, check=check, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def prog(name):
    """Path of a test program built from tests/progs/NAME.c."""
    return os.path.join(BUILD, "tests", name)


def shim_env(log=None, mode=None, fmt="json", events="all", backtrace=None, extra=None, base=None):
    """Environment for a program under the shim. log=None → stderr."""
    env = dict(os.environ if base is None else base)
    for k in list(env):
        if k.startswith("CLOSEWATCH_"):
            del env[k]
    preload = LIB if not PRELOAD_PREFIX else PRELOAD_PREFIX + ":" + LIB
    env["LD_PRELOAD"] = preload
    if log is not None:
        env["CLOSEWATCH_LOG"] = log
    if mode is not None:
        env["CLOSEWATCH_MODE"] = mode
    if fmt is not None:
        env["CLOSEWATCH_FORMAT"] = fmt
    if events is not None:
        env["CLOSEWATCH_EVENTS"] = events
    if backtrace is not None:
        env["CLOSEWATCH_BACKTRACE"] = str(backtrace)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def plain_env(base=None):
    env = dict(os.environ if base is None else base)
    env.pop("LD_PRELOAD", None)
    for k in list(env):
        if k.startswith("CLOSEWATCH_"):
            del env[k]
    return env


def read_records(path):
    """Every JSON record in a log file, in order; fails on a line that is not JSON."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise AssertionError(f"{path}:{n}: not a JSON record: {line[:200]!r} ({e})")
    return out


def records_for(recs, **match):
    return [r for r in recs if all(r.get(k) == v for k, v in match.items())]


def one_record(recs, **match):
    got = records_for(recs, **match)
    assert len(got) == 1, f"expected exactly one record matching {match}, got {len(got)}: {recs}"
    return got[0]


def check_fields(rec, **expected):
    for k, v in expected.items():
        assert rec.get(k) == v, f"record field {k}: expected {v!r}, got {rec.get(k)!r} in {rec}"


class Proc:
    """A program started with stdout piped; lines can be awaited."""

    def __init__(self, argv, env=None, cwd=None, stdin=subprocess.DEVNULL, stderr=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=stderr if stderr is not None else subprocess.PIPE)
        self._buf = b""
        self.lines = []

    def expect(self, prefix, timeout=10):
        """Wait for a stdout line starting with prefix; return the rest of it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.lines):
                if line.startswith(prefix):
                    del self.lines[: i + 1]
                    return line[len(prefix):].strip()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.argv[0]}: no line {prefix!r} within {timeout}s; got {self.lines}")
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    err = self.p.stderr.read().decode(errors="replace") if self.p.stderr else ""
                    raise AssertionError(f"{self.argv}: exited ({self.p.wait()}) before {prefix!r}; lines {self.lines}; stderr {err}")
                self._buf += chunk
                *done, self._buf = self._buf.split(b"\n")
                self.lines += [d.decode(errors="replace") for d in done]

    def wait(self, timeout=30):
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"{self.argv}: still running after {timeout}s; stderr {err!r}")
        rest = (self._buf + (out or b"")).decode(errors="replace")
        self.lines += [l for l in rest.split("\n") if l]
        self.stderr = (err or b"").decode(errors="replace")
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


# ---------------------------------------------------------------- peers

def connect(host, port, timeout=10):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def read_to_end(s, timeout=10, limit=1 << 30):
    """Read until EOF or error. Returns (bytes_read, 'eof' | 'reset' | 'timeout' | errno name)."""
    s.settimeout(timeout)
    total = 0
    while total < limit:
        try:
            b = s.recv(1 << 16)
        except ConnectionResetError:
            return total, "reset"
        except socket.timeout:
            return total, "timeout"
        except OSError as e:
            return total, errno.errorcode.get(e.errno, str(e))
        if not b:
            return total, "eof"
        total += len(b)
    return total, "limit"


def wait_for(cond, timeout=5, step=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- kernel counters

def kernel_counters():
    """Tcp OutRsts and the TcpExt abort counters of this network namespace."""
    out = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with open(path) as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            prefix, names = names.split(":", 1)
            _, values = values.split(":", 1)
            for k, v in zip(names.split(), values.split()):
                out[f"{prefix}.{k}"] = int(v)
    return out


def counter_delta(before, after, key):
    return after[key] - before[key]


# ---------------------------------------------------------------- capture

class Capture:
    """Packet capture with the project's libpcap helper (build/cw-pcap).

    with Capture(ctx, "tcp port 5000") as cap: ...   then cap.packets()
    Each packet: dict(ts, src, dst, sport, dport, flags, seq, ack, len)."""

    def __init__(self, ctx, bpf="tcp", iface="lo"):
        require_root()
        self.path = os.path.join(ctx.tmp, f"cap{len(ctx.captures)}.pcap")
        ctx.captures.append(self)
        self.bpf, self.iface = bpf, iface
        self.proc = None

    def __enter__(self):
        self.proc = Proc([PCAPTOOL, "capture", "--iface", self.iface, "--filter", self.bpf,
                          "--out", self.path])
        self.proc.expect("ready", timeout=10)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc and self.proc.p.poll() is None:
            time.sleep(0.2)  # let the last packets of a close reach the capture
            self.proc.p.send_signal(signal.SIGINT)
            rc = self.proc.wait(10)
            assert rc == 0, f"cw-pcap capture exited {rc}: {self.proc.stderr}"

    def packets(self):
        r = subprocess.run([PCAPTOOL, "dump", self.path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, check=True)
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def flags_of(pkts, sport=None, dport=None):
    return [p["flags"] for p in pkts
            if (sport is None or p["sport"] == sport) and (dport is None or p["dport"] == dport)]


def count_flag(pkts, flag, sport=None, dport=None):
    return sum(1 for f in flags_of(pkts, sport, dport) if flag in f)


# ---------------------------------------------------------------- context

class Ctx:
    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="cw-" + name.replace(".", "-") + "-")
        self.captures = []
        self.procs = []

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start(self, argv, env=None, **kw):
        p = Proc(argv, env=env, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            p.kill()
        for c in self.captures:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 — cleanup of a failed test
                pass
        if not os.environ.get("CW_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- scenario programs (cwprog)

class ProcKw(Proc):
    """Proc that passes extra Popen arguments (pass_fds, preexec_fn, …)."""

    def __init__(self, argv, env=None, stdin=subprocess.DEVNULL, stderr=None, **popen_kw):
        self.argv = argv
        self.p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=stderr if stderr is not None else subprocess.PIPE,
                                  **popen_kw)
        self._buf = b""
        self.lines = []


def cwprog(ctx, *actions, env=None, name="cwprog", **kw):
    """Start tests/progs/cwprog.c (or another interpreter built from it) with a
    scenario; stdin is a pipe so that the `wait` action can be released with tell().
    Extra keyword arguments go to Popen (pass_fds, preexec_fn, cwd…)."""
    kw.setdefault("stdin", subprocess.PIPE)
    p = ProcKw([prog(name)] + [str(a) for a in actions], env=env, **kw)
    ctx.procs.append(p)
    return p


def fd_targets(path):
    """What each fd of an fd directory (/proc/PID/fd, /proc/PID/task/TID/fd) refers to;
    an fd closed while the directory is read is left out."""
    out = []
    for name in os.listdir(path):
        try:
            out.append(os.readlink(f"{path}/{name}"))
        except FileNotFoundError:
            continue
    return out


def tell(proc, line="go"):
    """Release one `wait` action of a cwprog scenario."""
    proc.p.stdin.write((line + "\n").encode())
    proc.p.stdin.flush()


def finish(proc, timeout=30):
    """Wait for the program (its stdin is closed: a pending `wait` fails) and return its
    exit status; proc.stderr holds what it wrote there."""
    return proc.wait(timeout)


def inq(s):
    """Unread bytes on a Python socket (FIONREAD)."""
    import array
    import fcntl
    import termios
    buf = array.array("i", [0])
    fcntl.ioctl(s.fileno(), termios.FIONREAD, buf, True)
    return buf[0]


def tcp_listener(host, backlog=16):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(backlog)
    s.settimeout(10)
    return s, s.getsockname()[1]


def addr_str(host, port):
    """The README's address form: ip:port or [ip6]:port."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def payload_len(pkts, sport, dport):
    return sum(p["len"] for p in pkts if p["sport"] == sport and p["dport"] == dport)


def isn_of(pkts, sport, dport):
    """Initial sequence number of the sport→dport direction (from its SYN or SYN-ACK)."""
    for p in pkts:
        if p["sport"] == sport and p["dport"] == dport and "S" in p["flags"]:
            return p["seq"]
    raise AssertionError(f"no SYN from port {sport} to {dport} in the capture")


def rel_seq(p, isn):
    """Sequence number relative to the first data byte (0 = first byte after the SYN)."""
    return (p["seq"] - isn - 1) % (1 << 32)


def bytes_sent(pkts, sport, dport):
    """Distinct payload bytes sent sport→dport, as sequence-space coverage (retransmissions
    counted once): the highest relative seq+len seen."""
    isn = isn_of(pkts, sport, dport)
    return max([rel_seq(p, isn) + p["len"] for p in pkts
                if p["sport"] == sport and p["dport"] == dport and p["len"] > 0] or [0])
