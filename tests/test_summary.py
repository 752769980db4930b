"""`run`'s summary and `report` tell the truth: where the records are, what was lost, and
in bounded memory.

- `run --log` into a directory that does not exist is refused (exit 125), like a bad --pcap;
- a relative `--log` with %p finds the records of a child that changed directory;
- %p leaves no empty file for a process that logged nothing;
- shutdown records are counted apart from closes;
- the loss is split as the peer sees it: the answer bytes a real client lost (the demo's
  upload server answering 413 early, over loopback) equal "never sent";
- an over-long line (64 MB) is one malformed line, read in bounded memory, and the record
  after it still counts; a log that is a device gets no summary instead of an endless read;
- totals saturate instead of wrapping."""
import json
import os
import re
import signal
import subprocess

import cwtest
from cwtest import BUILD, CLI, read_records
from test_cli import base_env, cli, cwprog_argv, report_json

SAN = os.environ.get("CW_SANITIZER", "") or ("on" if cwtest.PRELOAD_PREFIX else "")

# A valid record (the README's example, without backtrace); fields are replaced per test.
RECORD = {"ts": "2026-11-27T05:38:45.607753Z", "pid": 5205, "tid": 5205, "comm": "server",
          "call": "close", "fd": 5, "proto": "tcp", "local": "127.0.0.1:8080",
          "peer": "127.0.0.1:42414", "state": "ESTABLISHED", "recvq": 100, "sendq": 65536,
          "unsent": 0, "backlog": 0, "linger": "off", "verdict": "rst_unread", "lost": 65636,
          "action": "none"}


def record_line(**fields):
    rec = dict(RECORD, **fields)
    return json.dumps(rec, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------- where the records are

def test_run_refuses_log_in_missing_directory(ctx):
    missing = ctx.path("no-such-dir")
    for log in (os.path.join(missing, "cw.log"), os.path.join(missing, "cw.%p.log")):
        r = cli("run", "--log", log, "--", *cwprog_argv("socket", "tcp4", "close"), check=125)
        assert log in r.stderr and "No such file or directory" in r.stderr, r.stderr
        assert "socket close" not in r.stderr, f"a summary after refusing: {r.stderr}"
        assert not r.stdout, f"the program ran: {r.stdout!r}"
    # a directory is not a log file either
    r = cli("run", "--log", ctx.tmp, "--", "true", check=125)
    assert ctx.tmp in r.stderr, r.stderr


def test_run_relative_pid_log_follows_child_that_changes_directory(ctx):
    os.mkdir(ctx.path("elsewhere"))
    script = (f"cd elsewhere && {' '.join(cwprog_argv('socket', 'tcp4', 'close'))} && "
              f"env | grep ^CLOSEWATCH_LOG=")
    r = cli("run", "--json", "--events", "all", "--log", "rel.%p.log", "--", "sh", "-c", script,
            check=0, cwd=ctx.tmp)
    assert f"CLOSEWATCH_LOG={ctx.path('rel.%p.log')}" in r.stdout, r.stdout
    assert "1 socket close logged by 1 process: no_conn 1" in r.stderr, r.stderr
    assert os.listdir(ctx.path("elsewhere")) == [], "records went next to the child's cwd"
    logs = [f for f in os.listdir(ctx.tmp) if f.startswith("rel.")]
    assert len(logs) == 1 and len(read_records(ctx.path(logs[0]))) == 1, logs
    assert f"log: {ctx.path('rel.%p.log')}" in r.stderr, r.stderr


def test_pid_log_leaves_no_empty_files(ctx):
    d = ctx.path("logs")
    os.mkdir(d)
    # sh, the `true` it may fork and the cwprog that logs nothing (no socket) log nothing;
    # one cwprog closes a socket. Only its file may exist.
    script = (f"true; {' '.join(cwprog_argv('say', 'hi'))}; "
              f"{' '.join(cwprog_argv('socket', 'tcp4', 'close'))}; true")
    r = cli("run", "--json", "--events", "all", "--log", os.path.join(d, "cw.%p.log"), "--",
            "sh", "-c", script, check=0)
    files = sorted(os.listdir(d))
    empty = [f for f in files if not os.path.getsize(os.path.join(d, f))]
    assert not empty, f"empty %p files: {empty} of {files}"
    assert len(files) == 1, files
    assert "1 socket close logged by 1 process" in r.stderr, r.stderr


def test_summary_counts_shutdowns_apart_from_closes(ctx):
    log = ctx.path("sd.log")
    acts = ["listen", "127.0.0.1", 5401, "as", "L", "connect", "127.0.0.1", 5401, "as", "C",
            "use", "L", "accept", "shutdown", "wr", "shutdown", "rd", "close",
            "use", "C", "readeof", "close", "use", "L", "close"]
    r = cli("run", "--json", "--events", "all", "--log", log, "--", *cwprog_argv(*acts),
            check=0)
    recs = read_records(log)
    assert sum(x["call"] == "shutdown" for x in recs) == 2, recs
    assert sum(x["call"] == "close" for x in recs) == 3, recs
    assert re.search(r"closewatch: 3 socket closes and 2 shutdowns logged by 1 process", r.stderr), \
        r.stderr
    got = report_json(log)
    assert got["closes"] == 3 and got["shutdowns"] == 2, got
    rep = cli("report", log, check=0)
    assert "5 records (3 closes, 2 shutdowns, 0 drain records)" in rep.stdout, rep.stdout


# ---------------------------------------------------------------- loss figures

@cwtest.timeout(120)
def test_loss_split_matches_what_a_real_client_lost(ctx):
    """The demo's upload server answers 413 (a 1 MiB page) without reading an 8 MiB upload;
    its close resets the connection. What the client did not receive is exactly what the
    summary and the report call "answer bytes never sent"."""
    cwtest.require_root()
    log = ctx.path("demo.log")
    server, client = os.path.join(BUILD, "demo", "server"), os.path.join(BUILD, "demo", "client")
    srv = subprocess.Popen([CLI, "run", "--json", "--log", log, "--", server, "-p", "5402",
                            "-n", "1"], env=base_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline()
        assert "listening on" in line, line
        cl = subprocess.run([client, "-s", str(8 << 20), "-t", "20", "127.0.0.1", "5402"],
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, timeout=60)
        out, err = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    m = re.search(r"^result: .*\banswer=(\d+) .*\bend=(\w+)", cl.stdout, re.M)
    assert m, cl.stdout
    received, end = int(m.group(1)), m.group(2)
    answered = int(re.search(r"answered 413 \((\d+) bytes\)", out).group(1))
    assert end == "reset" and received < answered, (cl.stdout, out)
    client_lost = answered - received

    rec = [x for x in read_records(log) if x["verdict"] == "rst_unread"]
    assert len(rec) == 1, read_records(log)
    rec = rec[0]
    assert rec["unsent"] == client_lost, (rec, client_lost)
    # the upper bound counts the request bytes and the whole send queue: it is not the loss
    assert rec["lost"] > client_lost, rec

    got = report_json(log)
    assert got["never_sent"] == client_lost, (got, client_lost)
    assert got["in_flight"] == rec["sendq"] - rec["unsent"], got
    assert got["not_read"] == rec["recvq"], got
    assert got["lost"] == rec["lost"], got  # the old key keeps its meaning
    v = got["verdicts"]["rst_unread"]
    assert (v["never_sent"], v["in_flight"], v["not_read"]) == \
        (got["never_sent"], got["in_flight"], got["not_read"]), v
    rep = cli("report", log, check=0)
    assert f"answer bytes never sent: {client_lost} " in rep.stdout, rep.stdout
    assert f"request bytes not read: {rec['recvq']} " in rep.stdout, rep.stdout
    assert "upper bound" not in rep.stdout.splitlines()[2], "the headline is the upper bound"
    assert (f"1 risky close: answer bytes never sent {client_lost}, in flight at the reset "
            f"{rec['sendq'] - rec['unsent']}") in err, err
    assert f"request bytes not read {rec['recvq']}" in err, err


def test_loss_split_by_verdict_and_unix_kept_apart(ctx):
    """Hand-made records: rst_linger0 splits like rst_unread; a drained close and the
    verdicts that throw nothing away add nothing; a unix socket's send queue (memory, not
    bytes) stays out of the byte figures."""
    log = ctx.path("split.log")
    with open(log, "w") as f:
        f.write(record_line(verdict="rst_unread", recvq=10, sendq=300, unsent=200, lost=310))
        f.write(record_line(verdict="rst_linger0", recvq=0, sendq=50, unsent=20, lost=50,
                            linger=0))
        f.write(record_line(verdict="rst_unread", recvq=7, sendq=1000, unsent=1000, lost=1007,
                            action="drained"))
        f.write(record_line(verdict="fin_pending", recvq=0, sendq=4000, unsent=3000, lost=0))
        f.write(record_line(verdict="rst_unread", proto="unix", local="/run/a.sock",
                            peer="unnamed", state="CONNECTED", recvq=5, sendq=768, unsent=0,
                            lost=5))
    got = report_json(log)
    assert (got["never_sent"], got["in_flight"], got["not_read"]) == (220, 130, 15), got
    assert got["unix_risky"] == 1 and got["saved"] == 1007, got
    assert got["verdicts"]["rst_linger0"]["never_sent"] == 20, got["verdicts"]
    r = cli("report", log, check=0)
    assert "1 unix socket close: a unix send queue is memory charged, not bytes" in r.stdout, \
        r.stdout


# ---------------------------------------------------------------- bounded reading

def report_rss(*logs):
    """`report --json LOGS`: (its JSON, its own peak RSS in kB)."""
    argv = [CLI, "report", "--json"] + list(logs)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=base_env())
    out = p.stdout.read()
    p.stdout.close()
    # wait4 on the child ourselves: its own rusage, not the peak over all our children
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, (p.returncode, out)
    return json.loads(out), ru.ru_maxrss


@cwtest.timeout(180)
def test_report_over_long_line_is_malformed_in_bounded_memory(ctx):
    big = 64 << 20
    small = ctx.path("small.log")
    with open(small, "w") as f:
        f.write(record_line())
    first = ctx.path("long-first.log")   # 64 MB line, then a record
    last = ctx.path("long-last.log")     # a record, then 64 MB without a newline
    chunk = b"x" * (1 << 20)
    with open(first, "wb") as f:
        for _ in range(big >> 20):
            f.write(chunk)
        f.write(b"\n" + record_line().encode())
    with open(last, "wb") as f:
        f.write(record_line().encode())
        for _ in range(big >> 20):
            f.write(chunk)
    base, base_rss = report_rss(small)
    assert base["records"] == 1 and base["malformed"] == 0, base
    for path in (first, last):
        got, rss = report_rss(path)
        # the old reader kept the whole line: 64 MB more than reading one record
        assert rss - base_rss < 16 << 10, f"{path}: peak RSS {rss} kB vs {base_rss} kB"
        assert got["records"] == 1 and got["malformed"] == 1 and got["lines"] == 2, (path, got)
        assert got["first_malformed"] == f"{path}:{1 if path == first else 2}", got
        assert got["closes"] == 1 and got["lost"] == 65636, got
    # a line just at the limit (a record behind a syslog header) still counts; a line that
    # starts with '{' (a record, or a journal entry carrying one) may be 20480 bytes
    edge = ctx.path("edge.log")
    head = "Dec  2 02:20:18 web1 cw[1]: "

    def sized(total, prefix=""):  # total bytes with the newline; pads under 4096 each
        pads = {f"pad{i}": "" for i in range(6)}
        n = len(prefix + record_line(**pads))
        for i in range(6):
            take = min(4000, total - n)
            pads[f"pad{i}"] = "x" * take
            n += take
        line = prefix + record_line(**pads)
        assert len(line) == total, (len(line), total)
        return line

    with open(edge, "w") as f:
        f.write(sized(4096 + 512 + 1, head))   # 4608 + newline
        f.write(sized(4096 + 512 + 2, head))   # one byte over
        f.write(sized(20480 + 1))              # 20480 + newline
        f.write(sized(20480 + 2))              # one byte over
    got = report_json(edge)
    assert got["records"] == 2 and got["malformed"] == 2, got
    assert got["first_malformed"] == f"{edge}:2", got


def test_run_log_to_device_gets_no_summary(ctx):
    """`run --log /dev/full`: the old summary read /dev/full (endless zeros, no newline)
    into memory until the OOM killer came. Address space is limited so that the old code
    fails rather than eat the machine (not under sanitizers, which reserve terabytes)."""
    argv = [CLI, "run", "--log", "/dev/full", "--"] + cwprog_argv("socket", "tcp4", "close")
    if not SAN:
        argv = ["prlimit", "--as=" + str(1 << 30), "--"] + argv
    r = subprocess.run(argv, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert r.returncode == 0, r
    assert "records went to /dev/full; no summary" in r.stderr, r.stderr


def test_report_totals_saturate(ctx):
    log = ctx.path("huge.log")
    top = 4 * 10 ** 18  # near the largest number a record field may hold; 5 of them > 2^64
    with open(log, "w") as f:
        for _ in range(5):
            f.write(record_line(recvq=top, sendq=top, unsent=top, lost=top))
    got = report_json(log)
    umax = (1 << 64) - 1
    assert got["lost"] == umax and got["never_sent"] == umax and got["not_read"] == umax, got
    assert got["verdicts"]["rst_unread"]["lost"] == umax, got["verdicts"]
    assert got["peers"][0]["lost"] == umax and got["calls"][0]["never_sent"] == umax, got
    r = cli("report", log, check=0)
    assert f"answer bytes never sent: {umax} " in r.stdout, r.stdout


def test_run_says_a_death_by_signal_was_not_looked_at(ctx):
    """A program killed by a signal makes no call either way in can look at: the sockets it
    still held are closed by the kernel unseen. The summary says so, through the shim and
    through the trap, instead of a bare "0 socket closes"; a program that exits says nothing
    of the kind."""
    for via in ("preload", "trap"):
        for killed in (True, False):
            p = subprocess.Popen([CLI, "run", "--via", via, "--"] +
                                 cwprog_argv("listen", "127.0.0.1", 0, "pid", "wait"),
                                 env=base_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            pid = None
            for line in p.stdout:
                if line.startswith("pid "):
                    pid = int(line.split()[1])
                    break
            assert pid, (via, p.stderr.read())
            if killed:
                os.kill(pid, signal.SIGTERM)
            out, err = p.communicate(input=None if killed else "go\n", timeout=60)
            said = "was killed by SIGTERM: any socket it still held was closed by the kernel unseen"
            if killed:
                assert p.returncode == 128 + signal.SIGTERM and said in err, (via, err)
            else:
                assert p.returncode == 0 and "was killed by" not in err, (via, err)
