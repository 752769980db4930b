"""Fleet-ready records and the review of what log pipelines deliver.

- every record says where it comes from: `host` (uname) and `exe` (/proc/self/exe), in
  text and JSON, also for a program that exec()s another one, and for a close made by
  another library's constructor (before ours ran);
- `report` reads rsyslog's file formats (traditional, RFC 3339) and `journalctl -o json`
  entries, mixed with plain records and with other programs' lines (counted as other);
- hosts and programs tables, --since/--until, in text and JSON;
- a real rsyslogd (Debian's, in a private mount namespace with its own /dev/log on a
  tmpfs: the machine's logging is untouched) receives CLOSEWATCH_LOG=syslog records, and
  `report` on its files gives the totals of the JSON file target for the same workload."""
import json
import os
import shlex
import shutil
import subprocess
import sys

import cwtest
from cwtest import LIB, prog, read_records, require_root
from test_cli import base_env, cli, cwprog_argv, every_verdict, report_json

HOST = os.uname().nodename


def shim_run(argv, log, fmt="json", **extra):
    env = base_env(LD_PRELOAD=os.path.realpath(LIB), CLOSEWATCH_LOG=log,
                   CLOSEWATCH_FORMAT=fmt, CLOSEWATCH_EVENTS="all", **extra)
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=90)
    assert r.returncode == 0, r
    return r


# ---------------------------------------------------------------- host and exe in records

def test_records_carry_host_and_exe_text_and_json(ctx):
    cwprog_path = os.path.realpath(prog("cwprog"))
    for fmt in ("json", "text"):
        log = ctx.path(f"where-{fmt}.log")
        shim_run(cwprog_argv("socket", "tcp4", "close"), log, fmt=fmt)
        if fmt == "text":
            with open(log) as f:
                line = f.readline()
            assert f" host={HOST} exe={cwprog_path} " in line, line
        got = report_json(log)
        assert got["records"] == 1 and got["malformed"] == 0, got
        assert [h["key"] for h in got["hosts"]] == [HOST], got["hosts"]
        assert [p["key"] for p in got["programs"]] == [cwprog_path], got["programs"]
    rec = read_records(ctx.path("where-json.log"))[0]
    assert rec["host"] == HOST and rec["exe"] == cwprog_path, rec


def test_exe_follows_exec_and_is_escaped(ctx):
    """A process that exec()s another program: records before the exec name the first
    program, records after it the second (the constructor runs again in the new image).
    A path with a space, a quote, UTF-8 (e acute), a C1 control (U+0085) and a byte of
    broken UTF-8 (0xff): the log keeps it readable and valid UTF-8, report gives it back."""
    odd = ctx.path('odd dir "\xe9"' + os.fsdecode(b"\xc2\x85\xff"))
    os.makedirs(odd)
    copy = os.path.join(odd, "cw prog")
    with open(os.path.realpath(prog("cwprog")), "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    os.chmod(copy, 0o755)
    script = ctx.path("exec.py")
    with open(script, "w") as f:
        f.write("import os, socket, sys\n"
                "socket.socket().close()\n"
                "os.execv(sys.argv[1], [sys.argv[1], 'socket', 'tcp4', 'close'])\n")
    py = os.path.realpath(sys.executable)
    for fmt in ("json", "text"):
        log = ctx.path(f"exec-{fmt}.log")
        shim_run([py, script, copy], log, fmt=fmt)
        got = report_json(log)
        assert got["records"] == 2 and got["malformed"] == 0, got
        progs = sorted(p["key"] for p in got["programs"])
        # Well-formed UTF-8 is kept; 0xff, which no UTF-8 text holds, comes back from
        # report --json as U+00FF (its code point), whichever format the log had.
        want = os.fsencode(copy).replace(b"\xff", "\u00ff".encode()).decode()
        assert progs == sorted([py, want]), (progs, py, want)
        with open(log, "rb") as f:
            raw = f.read()
        raw.decode()  # the log itself is valid UTF-8
        if fmt == "json":
            assert b'\\"\xc3\xa9\\"\\u0085\\u00ff/cw prog"' in raw, raw
        else:
            assert b'\\"\\xc3\\xa9\\"\\xc2\\x85\\xff/cw prog"' in raw, raw


def test_host_and_exe_right_before_our_constructor(ctx):
    """A close from a library constructor that runs before ours (a library preloaded
    after us runs its constructor first): the record names host and exe all the same."""
    src = ctx.path("early.c")
    so = ctx.path("libearly.so")
    with open(src, "w") as f:
        f.write("#include <sys/socket.h>\n#include <unistd.h>\n"
                "__attribute__((constructor)) static void early(void)\n"
                "{ close(socket(AF_INET, SOCK_STREAM, 0)); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", so, src], check=True, timeout=60)
    log = ctx.path("early.log")
    env = base_env(LD_PRELOAD=os.path.realpath(LIB) + ":" + so, CLOSEWATCH_LOG=log,
                   CLOSEWATCH_FORMAT="json", CLOSEWATCH_EVENTS="all")
    subprocess.run(["/bin/true"], env=env, check=True, timeout=30)
    recs = read_records(log)
    assert recs and all(r["host"] == HOST for r in recs), recs
    assert all(r["exe"] == os.path.realpath("/bin/true") for r in recs), recs


# ---------------------------------------------------------------- what pipelines deliver

def journal_entry(message, host="web9", ident="svc", pid=42, usec=1764642018093811,
                  as_bytes=False):
    """One line as `journalctl -o json` prints it: MESSAGE a string, or an array of byte
    values (what journalctl prints for a message that is not printable UTF-8)."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            as_bytes = True
        if as_bytes:
            message = list(message.encode() if isinstance(message, str) else message)
    return json.dumps({"__CURSOR": f"s=abc;i={usec:x}", "__REALTIME_TIMESTAMP": str(usec),
                       "__MONOTONIC_TIMESTAMP": "123456", "_BOOT_ID": "0" * 32,
                       "PRIORITY": "6", "SYSLOG_FACILITY": "1", "SYSLOG_IDENTIFIER": ident,
                       "_PID": str(pid), "_HOSTNAME": host, "_TRANSPORT": "syslog",
                       "MESSAGE": message}, separators=(",", ":"))


def test_report_reads_syslog_and_journal_lines_mixed(ctx):
    """The same records as plain lines, behind rsyslog's two file headers, and inside
    journal entries (string and byte-array MESSAGE), mixed with other programs' lines,
    some on stdin: the totals are the plain totals times four; other programs' lines are
    `other`, a cut record is `malformed`; a record without host takes the header's."""
    jlog = ctx.path("plain.json.log")
    tlog = ctx.path("plain.text.log")
    shim_run(cwprog_argv(*every_verdict()), jlog, fmt="json")
    shim_run(cwprog_argv("socket", "tcp4", "close"), tlog, fmt="text")
    plain = report_json(jlog, tlog)
    n = plain["records"]
    assert n >= 20 and plain["malformed"] == 0 and plain["other"] == 0, plain
    with open(jlog) as f:
        jlines = f.read().splitlines()
    with open(tlog) as f:
        tlines = f.read().splitlines()
    lines = jlines + tlines
    trad, rfc, journal = [], [], []
    for i, line in enumerate(lines):
        trad.append(f"Dec  2 02:20:{i % 60:02d} web1 cwprog[{1000 + i}]: {line}")
        trad.append(f"Dec  2 02:20:{i % 60:02d} web1 sshd[77]: Accepted publickey for root")
        rfc.append(f"2026-12-02T02:20:18.{i:06d}+00:00 web2 cwprog[{1000 + i}]: {line}")
        rfc.append("2026-12-02T02:20:18.000000+00:00 web2 kernel: eth0: link up")
        # journald keeps the message; the record without host takes _HOSTNAME
        rec_wo_host = line.replace(f'"host":"{HOST}",', "").replace(f" host={HOST} ", " ")
        journal.append(journal_entry(rec_wo_host, host="web3", as_bytes=i % 2 == 0))
        journal.append(journal_entry("GET / 200" if i % 2 else b"bin \xff\x01", ident="nginx"))
    journal.append(journal_entry(lines[0][: len(lines[0]) // 2]))  # a cut record: malformed
    journal.append('{"level":"info","msg":"a program that logs JSON"}')
    for name, content in (("trad.log", trad), ("rfc.log", rfc), ("journal.json", journal)):
        with open(ctx.path(name), "w") as f:
            f.write("\n".join(content) + "\n")
    with open(ctx.path("journal.json")) as f:
        r = cli("report", "--json", ctx.path("trad.log"), jlog, "-", tlog, ctx.path("rfc.log"),
                stdin=f, check=0)
    got = json.loads(r.stdout)
    assert got["records"] == 4 * n, got
    assert got["malformed"] == 1 and got["other"] == 2 * len(lines) + len(lines) + 1, got
    for k in ("closes", "shutdowns", "risky", "lost", "never_sent", "in_flight", "not_read"):
        assert got[k] == 4 * plain[k], (k, got[k], plain[k])
    for v, t in plain["verdicts"].items():
        assert got["verdicts"][v]["count"] == 4 * t["count"], v
    hosts = {h["key"]: h["count"] for h in got["hosts"]}
    closes = plain["closes"] + plain["shutdowns"]
    # records name their host: the syslog header's host is only a fallback
    assert hosts == {HOST: 3 * closes, "web3": closes}, hosts
    # the text form: the hosts table is there (more than one host)
    with open(ctx.path("journal.json")) as f:
        r = cli("report", ctx.path("trad.log"), "-", stdin=f, check=0)
    assert "other lines: " in r.stdout and "  host\n" in r.stdout, r.stdout


def test_report_hosts_programs_and_window(ctx):
    """Records from two hosts and two programs: the hosts table (closes, risky, bytes,
    drains), the programs table; --since/--until keep a window; JSON says the same."""
    base = {"ts": "", "pid": 1, "tid": 1, "comm": "x", "call": "close", "fd": 3,
            "proto": "tcp", "local": "10.0.0.1:80", "peer": "10.0.0.2:5555",
            "state": "ESTABLISHED", "recvq": 7, "sendq": 0, "unsent": 0, "backlog": 0,
            "linger": "off", "verdict": "rst_unread", "lost": 7, "action": "none"}
    log = ctx.path("fleet.log")
    with open(log, "w") as f:
        for i, (host, exe) in enumerate([("a", "/usr/sbin/nginx"), ("a", "/usr/bin/app"),
                                         ("b", "/usr/bin/app"), ("b", "/usr/bin/app")]):
            rec = dict(base, ts=f"2026-12-02T0{i}:00:00.000000Z", host=host, exe=exe, pid=10 + i)
            f.write(json.dumps(rec) + "\n")
        f.write(json.dumps({"ts": "2026-12-02T03:30:00.000000Z", "pid": 13, "tid": 13,
                            "comm": "x", "host": "b", "exe": "/usr/bin/app", "call": "drain",
                            "result": "delivered", "discarded": 0, "waited_ms": 1}) + "\n")
    got = report_json(log)
    hosts = {h["key"]: (h["count"], h["risky"], h["not_read"], h["drains"]) for h in got["hosts"]}
    assert hosts == {"a": (2, 2, 14, 0), "b": (2, 2, 14, 1)}, hosts
    progs = {p["key"]: (p["count"], p["not_read"]) for p in got["programs"]}
    assert progs == {"/usr/sbin/nginx": (1, 7), "/usr/bin/app": (3, 21)}, progs
    assert got["processes"] == 4, got
    r = cli("report", log, check=0)
    assert "  host\n" in r.stdout and "  program\n" in r.stdout, r.stdout
    w = json.loads(cli("report", "--json", "--since", "2026-12-02T01:00:00Z", "--until",
                       "2026-12-02T03:00:00+00:00", log, check=0).stdout)
    assert w["closes"] == 2 and w["outside_window"] == 3, w
    assert {h["key"] for h in w["hosts"]} == {"a", "b"}, w["hosts"]
    # one host left: no hosts table in text, the programs table stays
    r = cli("report", "--since", "2026-12-02T02:00:00Z", log, check=0)
    assert "  host\n" not in r.stdout and "  program\n" in r.stdout, r.stdout
    assert "records outside --since/--until left out" in r.stdout, r.stdout
    assert cli("report", "--since", "yesterday", log).returncode == 2


# ---------------------------------------------------------------- a real rsyslogd

RSYSLOG_CONF = """
global(workDirectory="{d}" maxMessageSize="16k")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0"
       SysSock.Unlink="on")
*.* action(type="omfile" file="{d}/traditional.log" template="RSYSLOG_TraditionalFileFormat")
*.* action(type="omfile" file="{d}/rfc3339.log" template="RSYSLOG_FileFormat")
"""

# Runs as `unshare -m sh SCRIPT DIR EXPECTED CMD...`: a private mount namespace where
# /dev is a tmpfs with the few nodes the programs need, so rsyslogd's /dev/log is ours.
NS_SCRIPT = r"""
set -eu
d=$1; want=$2; shift 2
mount --make-rprivate /
mkdir -p "$d/olddev"
mount --rbind /dev "$d/olddev"
mount -t tmpfs -o size=1m,mode=755 cwdev /dev
for n in null zero full random urandom; do : > /dev/$n; mount --bind "$d/olddev/$n" /dev/$n; done
ln -s /proc/self/fd /dev/fd
# rsyslogd itself runs without the shim (and without the sanitizer runtime)
env -u LD_PRELOAD rsyslogd -n -f "$d/rsyslog.conf" -i "$d/rsyslogd.pid" 2> "$d/rsyslogd.err" &
rs=$!
i=0; while [ ! -S /dev/log ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -S /dev/log ] || { echo "rsyslogd did not create /dev/log" >&2; kill $rs; exit 1; }
"$@"
count() { cat "$d/traditional.log" "$d/rfc3339.log" 2>/dev/null | grep -c 'closewatch: ts=\|{"ts":' || true; }
i=0; while [ "$(count)" -lt "$want" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
kill $rs; wait $rs || true
"""


def test_real_rsyslogd_gives_the_json_file_totals(ctx):
    require_root()
    for tool in ("rsyslogd", "unshare"):
        if not shutil.which(tool):
            cwtest.skip(f"{tool} not installed (packages rsyslog, util-linux)")
    flog = ctx.path("file.json.log")
    shim_run(cwprog_argv(*every_verdict()), flog, fmt="json")
    want = report_json(flog)
    n = want["records"]
    assert n >= 20 and want["malformed"] == 0, want
    d = ctx.path("rsyslog")
    os.makedirs(d)
    with open(os.path.join(d, "rsyslog.conf"), "w") as f:
        f.write(RSYSLOG_CONF.format(d=d))
    with open(os.path.join(d, "ns.sh"), "w") as f:
        f.write(NS_SCRIPT)
    # the same workload twice through syslog: text records, then JSON records
    env = base_env(LD_PRELOAD=os.path.realpath(LIB), CLOSEWATCH_LOG="syslog",
                   CLOSEWATCH_EVENTS="all")
    inner = " && ".join(
        "env CLOSEWATCH_FORMAT=" + fmt + " " + " ".join(shlex.quote(a) for a in
                                                        cwprog_argv(*every_verdict()))
        for fmt in ("text", "json"))
    def machine_dev_log():
        try:
            st = os.lstat("/dev/log")
            return (st.st_dev, st.st_ino)
        except FileNotFoundError:
            return None
    dev_log_before = machine_dev_log()
    r = subprocess.run(["unshare", "-m", "sh", os.path.join(d, "ns.sh"), d, str(4 * n),
                        "sh", "-c", inner], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert machine_dev_log() == dev_log_before, "the machine's /dev/log was touched"
    for name in ("traditional.log", "rfc3339.log"):
        path = os.path.join(d, name)
        got = report_json(path)
        assert got["records"] == 2 * n and got["malformed"] == 0, (name, got)
        assert got["other"] >= 1, got  # rsyslogd's own start message
        for k in ("closes", "shutdowns", "risky", "lost", "never_sent", "in_flight", "not_read",
                  "drain_records"):
            assert got[k] == 2 * want[k], (name, k, got[k], want[k])
        for v, t in want["verdicts"].items():
            assert got["verdicts"][v]["count"] == 2 * t["count"], (name, v)
        assert [h["key"] for h in got["hosts"]] == [HOST], got["hosts"]
        assert [p["key"] for p in got["programs"]] == [os.path.realpath(prog("cwprog"))]
    with open(os.path.join(d, "rfc3339.log")) as f:
        first = next(line for line in f if "closewatch: ts=" in line)
    assert first[:4].isdigit() and first[10] == "T", first


# ---------------------------------------------------------------- through the trap

def test_trap_records_carry_host_and_exe_across_exec(ctx):
    """`closewatch run --via trap`: the supervisor writes the records of another process;
    they name its host and its program (/proc/PID/exe), and after the program exec()s
    another one (a static cwprog, which LD_PRELOAD cannot reach), the new one. The sockets
    closed by the exec itself (close-on-exec) are the old program's."""
    import test_trap
    test_trap.have_trap()
    static = os.path.realpath(prog(test_trap.STATIC))
    script = ctx.path("exec.py")
    with open(script, "w") as f:
        f.write("import os, socket, sys\n"
                "socket.socket().close()\n"
                "keep = socket.socket()  # close-on-exec: closed by the exec\n"
                "os.execv(sys.argv[1], [sys.argv[1], 'socket', 'tcp4', 'close'])\n")
    py = os.path.realpath(sys.executable)
    log = ctx.path("trap.log")
    r = subprocess.run([cwtest.CLI, "run", "--via", "trap", "--json", "--events", "all",
                        "--log", log, "--", py, script, static], env=test_trap.trap_env(log),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=90)
    assert r.returncode == 0, r
    recs = read_records(log)
    assert all(rec["host"] == HOST for rec in recs), recs
    by_exe = {}
    for rec in recs:
        by_exe.setdefault(rec["exe"], []).append(rec["call"])
    assert sorted(by_exe.get(py, [])) == ["close", "exit"], (by_exe, recs)
    assert by_exe.get(static) == ["close"], (by_exe, recs)
