"""The closewatch command line (issue 5): run, report, wire, and the cw-pcap helper.

`run` is checked through the environment its child sees and the status it passes on;
`report` on real logs written by the shim (text and JSON), corrupted and split across
processes; `wire` on real captures made by `run --pcap` around tests/progs/cwprog.c
scenarios that produce every verdict, and on a log edited to predict wrongly."""
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess

import cwtest
from cwtest import CLI, LIB, PCAPTOOL, prog, read_records, require_root

ENV_KEYS = ("CLOSEWATCH_MODE", "CLOSEWATCH_LOG", "CLOSEWATCH_FORMAT", "CLOSEWATCH_EVENTS",
            "CLOSEWATCH_BACKTRACE")


def base_env(**extra):
    """A clean environment; under `make check` the sanitizer runtime stays preloaded."""
    env = cwtest.plain_env()
    if cwtest.PRELOAD_PREFIX:
        env["LD_PRELOAD"] = cwtest.PRELOAD_PREFIX
    for k, v in extra.items():
        if k == "LD_PRELOAD" and cwtest.PRELOAD_PREFIX:
            v = cwtest.PRELOAD_PREFIX + ":" + v
        env[k] = str(v)
    return env


def preload(*rest):
    """The LD_PRELOAD a child of `run` should see: [sanitizer runtime:]our library[:rest]."""
    parts = [p for p in cwtest.PRELOAD_PREFIX.split(":") if p] + [os.path.realpath(LIB)]
    return ":".join(parts + list(rest))


def cli(*args, env=None, timeout=60, check=None, cli_path=CLI, **kw):
    r = subprocess.run([cli_path] + [str(a) for a in args], env=env or base_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check is not None:
        assert r.returncode == check, (
            f"closewatch {' '.join(map(str, args))}: exit {r.returncode}, expected {check}\n"
            f"stdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
    return r


def child_env(*run_args, env=None, cli_path=CLI):
    """Environment of a program run by `closewatch run RUN_ARGS -- env -0`."""
    r = cli("run", *run_args, "--", "env", "-0", env=env, check=0, cli_path=cli_path)
    out = {}
    for item in r.stdout.split("\0"):
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
    return out, r


def cwprog_argv(*actions):
    return [prog("cwprog")] + [str(a) for a in actions]


def report_json(*logs):
    r = cli("report", "--json", *logs, check=0)
    return json.loads(r.stdout)


def no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# ---------------------------------------------------------------- run: environment

def test_run_sets_variables_from_flags(ctx):
    lib = preload()
    env, _ = child_env()
    assert env["LD_PRELOAD"] == lib, env.get("LD_PRELOAD")
    for k in ENV_KEYS:
        if k != "CLOSEWATCH_LOG":
            assert k not in env, f"{k} set without a flag: {env[k]}"
    cases = [
        (["--mode", "warn"], "CLOSEWATCH_MODE", "warn"),
        (["--mode=drain"], "CLOSEWATCH_MODE", "drain"),
        (["--mode", "observe"], "CLOSEWATCH_MODE", "observe"),
        (["--log", ctx.path("my.log")], "CLOSEWATCH_LOG", ctx.path("my.log")),
        (["--log", "stderr"], "CLOSEWATCH_LOG", "stderr"),
        (["--json"], "CLOSEWATCH_FORMAT", "json"),
        (["--events", "all"], "CLOSEWATCH_EVENTS", "all"),
        (["--events", "risky"], "CLOSEWATCH_EVENTS", "risky"),
        (["--backtrace", "12"], "CLOSEWATCH_BACKTRACE", "12"),
        (["--backtrace", "0"], "CLOSEWATCH_BACKTRACE", "0"),
    ]
    for flags, key, want in cases:
        env, _ = child_env(*flags)
        assert env.get(key) == want, f"{flags}: {key}={env.get(key)!r}, expected {want!r}"
        assert env["LD_PRELOAD"] == lib
        for other in ENV_KEYS:
            if other not in (key, "CLOSEWATCH_LOG"):
                assert other not in env, f"{flags} also set {other}={env[other]}"
    # all together
    env, _ = child_env("--mode", "warn", "--json", "--events", "all", "--backtrace", "3",
                       "--log", ctx.path("all.%p.log"))
    assert [env.get(k) for k in ENV_KEYS] == ["warn", ctx.path("all.%p.log"), "json", "all", "3"]


def test_run_default_log_is_temporary_and_summarised(ctx):
    env, r = child_env()
    tmp = env["CLOSEWATCH_LOG"]
    assert os.path.isabs(tmp) and "closewatch-" in os.path.basename(tmp), tmp
    assert not os.path.exists(tmp), f"temporary log {tmp} left behind"
    assert "records not kept" in r.stderr, r.stderr
    # an inherited CLOSEWATCH_LOG is used (and kept) when --log is not given
    log = ctx.path("inherited.log")
    env, r = child_env(env=base_env(CLOSEWATCH_LOG=log))
    assert env["CLOSEWATCH_LOG"] == log
    assert f"log: {log}" in r.stderr, r.stderr


def test_run_summary_counts_this_run_only(ctx):
    log = ctx.path("cw.log")
    for round_ in (1, 2):
        r = cli("run", "--json", "--events", "all", "--log", log, "--",
                *cwprog_argv("socket", "tcp4", "close", "socket", "tcp6", "close"), check=0)
        assert "2 socket closes logged by 1 process: no_conn 2" in r.stderr, r.stderr
        assert "0 risky closes: answer bytes never sent 0, in flight at the reset 0" in r.stderr, \
            r.stderr
        assert "drains: 0" in r.stderr, r.stderr
    assert len(read_records(log)) == 4


def test_run_keeps_existing_ld_preload(ctx):
    other = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
                              "/lib64/libm.so.6") if os.path.exists(p)), None)
    if other is None:
        cwtest.skip("no libm.so.6 to preload")
    env, _ = child_env(env=base_env(LD_PRELOAD=other))
    assert env["LD_PRELOAD"] == preload(other), env["LD_PRELOAD"]
    # already there: not added twice
    env, _ = child_env(env=base_env(LD_PRELOAD=f"{other} {os.path.realpath(LIB)}"))
    assert env["LD_PRELOAD"] == preload(other), env["LD_PRELOAD"]


def test_run_finds_library_in_installed_layout(ctx):
    root = ctx.path("inst")
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "lib"))
    shutil.copy(CLI, os.path.join(root, "bin", "closewatch"))
    r = cli("run", "--", "true", cli_path=os.path.join(root, "bin", "closewatch"))
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert "cannot find libclosewatch.so" in r.stderr and root in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    shutil.copy(LIB, os.path.join(root, "lib", "libclosewatch.so"))
    env, _ = child_env(cli_path=os.path.join(root, "bin", "closewatch"))
    assert env["LD_PRELOAD"].split(":")[-1] == os.path.realpath(os.path.join(root, "lib", "libclosewatch.so"))


# ---------------------------------------------------------------- run: status and signals

def test_run_passes_exit_status(ctx):
    for code in (0, 1, 7, 255):
        cli("run", "--", "sh", "-c", f"exit {code}", check=code)
    cli("run", "--", "sh", "-c", "kill -TERM $$", check=128 + signal.SIGTERM)
    cli("run", "--", "sh", "-c", "kill -KILL $$", check=128 + signal.SIGKILL)
    r = cli("run", "--", ctx.path("does-not-exist"), check=127)
    assert "cannot run" in r.stderr, r.stderr
    cli("run", "--", "/dev/null", check=126)


def test_run_forwards_signals(ctx):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        p = cwtest.ProcKw([CLI, "run", "--"] + cwprog_argv("say", "ready", "sleep", 20000),
                          env=base_env(), preexec_fn=no_core)
        ctx.procs.append(p)
        p.expect("ready")
        p.p.send_signal(sig)
        rc = p.wait(15)
        assert rc == 128 + sig, f"signal {sig}: closewatch exited {rc}: {p.stderr}"
        assert "socket close" in p.stderr, p.stderr  # the summary is still printed


# ---------------------------------------------------------------- usage

def test_usage_and_help(ctx):
    for cmd in ([], ["run"], ["report"], ["wire"]):
        r = cli(*cmd, "--help", check=0)
        assert "usage: closewatch" in r.stdout, r.stdout
    top = cli("--help", check=0).stdout
    for shown in ("report [--json] [--top N]", "wire [--json] [--skew MS]", "--version"):
        assert shown in top, (shown, top)
    bad = [
        [], ["frobnicate"], ["run"], ["run", "--mode", "loud", "--", "true"],
        ["run", "--events", "some", "--", "true"], ["run", "--backtrace", "x", "--", "true"],
        ["run", "--bogus", "--", "true"], ["run", "--log"], ["run", "--iface", "lo", "--", "true"],
        ["report"], ["report", "--nope", "x"], ["wire"], ["wire", "only-one"],
        ["wire", "--skew", "abc", "a", "b"],
    ]
    for args in bad:
        r = cli(*args, check=2)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("closewatch"), (args, r.stderr)
    r = cli("report", ctx.path("missing.log"), check=1)
    assert "cannot read log" in r.stderr and "missing.log" in r.stderr, r.stderr
    open(ctx.path("empty.log"), "w").close()
    r = cli("wire", ctx.path("empty.log"), ctx.path("missing.pcap"), check=2)
    assert "missing.pcap" in r.stderr, r.stderr
    r = cli("wire", ctx.path("missing.log"), ctx.path("missing.pcap"), check=2)
    assert "missing.log" in r.stderr, r.stderr


def test_unknown_option_is_named(ctx):
    for cmd in (["run", "--bogus", "--", "true"], ["report", "--bogus", "x"],
                ["wire", "--bogus", "a", "b"]):
        r = cli(*cmd, check=2)
        assert r.stderr.startswith(f"closewatch {cmd[0]}: unknown option '--bogus'"), r.stderr


def test_version(ctx):
    """One version string: the Makefile's VERSION, also written into closewatch.pc."""
    mk = open(os.path.join(cwtest.ROOT, "Makefile")).read()
    version = re.search(r"^VERSION\s*\?=\s*(\S+)", mk, re.M).group(1)
    r = cli("--version", check=0)
    assert r.stdout == f"closewatch {version}\n" and r.stderr == "", (r.stdout, r.stderr)


def test_run_option_values_as_the_library_takes_them(ctx):
    """--backtrace, --mode, --events take exactly what the variable accepts (the library's
    table): anything else is exit 2 naming the option, never a value the library would
    then replace (--backtrace 99 was accepted, and the library used 16)."""
    for opt, value in (("--backtrace", "99"), ("--backtrace", "17"), ("--backtrace", "-1"),
                       ("--backtrace", ""), ("--backtrace", "9" * 30), ("--mode", ""),
                       ("--mode", "Warn"), ("--events", "")):
        r = cli("run", opt, value, "--", "true", check=2)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"closewatch run: {opt} '{value}'"), \
            (opt, value, r.stderr)
    env, _ = child_env("--backtrace", "16", "--mode", "warn")
    assert env["CLOSEWATCH_BACKTRACE"] == "16" and env["CLOSEWATCH_MODE"] == "warn"


def test_run_warns_once_for_a_bad_inherited_variable(ctx):
    """A bad CLOSEWATCH_* variable in run's environment: one warning for the whole run, not
    one per process (the program here starts three more, each loading the library)."""
    script = "/bin/true & /bin/true & /bin/true & wait"
    for var, value, used in (("CLOSEWATCH_DRAIN_MAX", "-1", "1024"),
                             ("CLOSEWATCH_MODE", "loud", "observe")):
        r = cli("run", "--", "sh", "-c", script, env=base_env(**{var: value}), check=0)
        lines = [l for l in r.stderr.splitlines() if var in l]
        assert lines == [f"closewatch: {var}={value} is not valid "
                         f"({'an integer from 1 to 65536' if var.endswith('MAX') else 'observe|warn|drain'})"
                         f"; using {used}"], r.stderr
        env, _ = child_env(env=base_env(**{var: value}))
        assert var not in env, "the bad value is left out: CMD gets the default"
    # A good inherited value is passed on as it is.
    env, r = child_env(env=base_env(CLOSEWATCH_DRAIN_MAX="7"))
    assert env["CLOSEWATCH_DRAIN_MAX"] == "7" and "CLOSEWATCH_DRAIN_MAX" not in r.stderr


def numeric_ranges():
    """{variable: (lo, hi)} as the library states them in its warnings."""
    out = {}
    for var in ("CLOSEWATCH_BACKTRACE", "CLOSEWATCH_DRAIN_TIMEOUT_MS",
                "CLOSEWATCH_DRAIN_IDLE_MS", "CLOSEWATCH_DRAIN_MAX"):
        r = subprocess.run(["true"], env=cwtest.shim_env(extra={var: "x"}),
                           stderr=subprocess.PIPE, text=True, check=True)
        m = re.search(var + r"=x is not valid \(an integer from (\d+) to (\d+)\)", r.stderr)
        assert m, r.stderr
        out[var] = (m.group(1), m.group(2))
    return out


def test_ranges_agree_in_help_man_and_readme(ctx):
    ranges = numeric_ranges()
    read = lambda *p: open(os.path.join(cwtest.ROOT, *p)).read()
    readme, man1, man7 = read("README.md"), read("tools", "closewatch.1"), read("man", "libclosewatch.7")
    for var, (lo, hi) in ranges.items():
        said = f"{lo} to {hi}"
        row = [l for l in readme.splitlines() if l.startswith(f"| `{var}`")]
        assert len(row) == 1 and said in row[0], (var, said, row)
        for name, page in (("closewatch.1", man1), ("libclosewatch.7", man7)):
            m = re.search(r"^\.BR? " + var + r"\n(.*?)\n\.(TP|SH)", page, re.M | re.S)
            assert m and said in m.group(1), (name, var, said, m and m.group(1))
    lo, hi = ranges["CLOSEWATCH_BACKTRACE"]
    run_help = cli("run", "--help", check=0).stdout
    assert re.search(rf"--backtrace N .*\b{lo} to {hi}\b", run_help), run_help
    assert re.search(rf"^\.BI \\-\\-backtrace.*\n.*\n.*\b{lo} to {hi}\b", man1, re.M), \
        "closewatch.1: --backtrace"


def test_make_builds_library_and_cli_and_test_build_is_quiet(ctx):
    """`make` (all) builds the library, the CLI and cw-pcap, nothing else (README); the suite's
    programs come from `make test-build`, which prints nothing once all is built (no stray
    "Nothing to be done" line in `make test`)."""
    fresh = ctx.path("fresh-build")
    r = subprocess.run(["make", "-n", "--no-print-directory", "-C", cwtest.ROOT, f"BUILD={fresh}",
                        "all"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    outputs = set(re.findall(r" -o (\S+)", r.stdout))
    built = {os.path.relpath(o, fresh) for o in outputs if not o.endswith(".o")}
    assert built == {"libclosewatch.so", "closewatch", "cw-pcap"}, sorted(built)
    make = ["make", "--no-print-directory", "-C", cwtest.ROOT, f"BUILD={cwtest.BUILD}", "test-build"]
    subprocess.run(make, capture_output=True, text=True, timeout=600, check=True)
    r = subprocess.run(make, capture_output=True, text=True, timeout=600, check=True)
    assert r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


# ---------------------------------------------------------------- scenarios

def every_verdict():
    """One cwprog process producing every TCP verdict (fixed ports: run.py gives us a
    private network namespace as root)."""
    h4, h6 = "127.0.0.1", "::1"
    return [
        # clean: the server closes first (FIN), the client reads EOF and closes (FIN)
        "listen", h4, 5201, "as", "L1", "connect", h4, 5201, "as", "C1",
        "use", "L1", "accept", "close", "use", "C1", "readeof", "close",
        # fin_pending (v6): the client does not read; FIN behind 4 MB; then the client reads all
        "listen", h6, 5202, "as", "L2", "connect", h6, 5202, "as", "C2",
        "use", "L2", "accept", "write-nb", 4 << 20, "close", "use", "C2", "readeof", "close",
        # rst_unread: 100 unread bytes
        "listen", h4, 5203, "as", "L3", "connect", h4, 5203, "as", "C3", "write", 100,
        "use", "L3", "accept", "waitinq", 100, "close", "use", "C3", "readeof", "close",
        # rst_linger0 (v6)
        "listen", h6, 5204, "as", "L4", "connect", h6, 5204, "as", "C4",
        "use", "L4", "accept", "linger", 1, 0, "close", "use", "C4", "readeof", "close",
        # linger_wait
        "listen", h4, 5205, "as", "L5", "connect", h4, 5205, "as", "C5",
        "use", "L5", "accept", "linger", 1, 5, "write", 1000, "close", "use", "C5", "readeof", "close",
        # shared: the first close of a dup'd socket sends nothing, the second is clean
        "listen", h4, 5206, "as", "L6", "connect", h4, 5206, "as", "C6",
        "use", "L6", "accept", "dup", "close", "use", "dup", "close", "use", "C6", "readeof", "close",
        # rst_backlog: 3 connections never accepted
        "listen", h4, 5207, "as", "L7", "connect", h4, 5207, "as", "B1", "connect", h4, 5207, "as", "B2",
        "connect", h4, 5207, "as", "B3", "use", "L7", "waitbacklog", 3, "close",
        "use", "B1", "readeof", "close", "use", "B2", "readeof", "close", "use", "B3", "readeof", "close",
        # no_conn: never connected
        "socket", "tcp4", "close",
        # the other listeners, nothing queued
        "use", "L1", "close", "use", "L2", "close", "use", "L3", "close", "use", "L4", "close",
        "use", "L5", "close", "use", "L6", "close",
        "say", "done",
    ]


def late_rst():
    """The server reads the request and closes (clean, FIN); the client sends more: the
    orphaned socket answers with RST — the late RST lingering close exists to avoid."""
    return ["listen", "127.0.0.1", 5211, "as", "L", "connect", "127.0.0.1", 5211, "as", "C",
            "write", 10, "use", "L", "accept", "read", 10, "close",
            "use", "C", "sleep", 50, "write", 100, "readeof", "close", "use", "L", "close"]


def run_scenario(ctx, actions, name, fmt_json=True, pcap=True, extra=(), iface="lo"):
    log = ctx.path(f"{name}.log")
    args = ["run", "--events", "all", "--log", log]
    if fmt_json:
        args.append("--json")
    cap = None
    if pcap:
        cap = ctx.path(f"{name}.pcap")
        args += ["--pcap", cap] + (["--iface", iface] if iface else [])
    r = cli(*args, *extra, "--", *cwprog_argv(*actions), check=0, timeout=90)
    return log, cap, r


def verdict_counts(recs):
    out = {}
    for rec in recs:
        if rec.get("call") != "drain":
            out[rec["verdict"]] = out.get(rec["verdict"], 0) + 1
    return out


# ---------------------------------------------------------------- report

def test_report_counts_corrupted_lines_and_totals_the_rest(ctx):
    log, _, _ = run_scenario(ctx, every_verdict(), "verdicts", pcap=False)
    recs = read_records(log)
    assert len(recs) >= 20, recs
    with open(log) as f:
        lines = f.read().splitlines()
    corrupt = ctx.path("corrupt.log")
    with open(corrupt, "w") as f:
        for i, line in enumerate(lines):
            f.write(line + "\n")
            if i == 2:
                f.write(line[: len(line) // 2] + "\n")         # truncated record
            if i == 5:
                f.write("\x00\x01 not a record at all }{\n")      # garbage
        f.write(lines[0][:-1].replace('"pid":', '"pid":"x') + "\n")  # broken JSON, no newline
    got = report_json(corrupt)
    assert got["malformed"] == 3, got
    assert got["records"] == len(recs), got
    want = verdict_counts(recs)
    for v, n in want.items():
        assert got["verdicts"][v]["count"] == n, (v, got["verdicts"][v], n)
    assert got["closes"] + got["shutdowns"] == sum(want.values())
    assert got["lost"] == sum(r["lost"] for r in recs), got
    for v in got["verdicts"]:
        assert got["verdicts"][v]["lost"] == sum(r["lost"] for r in recs if r["verdict"] == v)
    assert want.get("rst_unread") == 1 and want.get("rst_backlog") == 1, want
    assert got["processes"] == 1
    # the text form says the same
    r = cli("report", corrupt, check=0)
    assert re.search(r"malformed lines: 3\b", r.stdout), r.stdout
    unread = [x for x in recs if x["verdict"] == "rst_unread"][0]
    assert re.search(rf"^rst_unread\s+1\s+{unread['unsent']}\s+{unread['sendq'] - unread['unsent']}"
                     r"\s+100\s+risky$", r.stdout, re.M), r.stdout
    assert re.search(rf"^total\s+{got['closes'] + got['shutdowns']}\s+{got['never_sent']}\s+{got['in_flight']}"
                     rf"\s+{got['not_read']}$", r.stdout, re.M), r.stdout


def test_report_reads_text_logs_like_json(ctx):
    jlog, _, _ = run_scenario(ctx, every_verdict(), "json", pcap=False)
    tlog, _, _ = run_scenario(ctx, every_verdict(), "text", fmt_json=False, pcap=False)
    with open(tlog) as f:
        first = f.readline()
    assert first.startswith("closewatch: ts="), first
    j, t = report_json(jlog), report_json(tlog)
    assert t["malformed"] == 0, t
    for k in ("records", "closes", "lost", "risky", "verdicts", "calls"):
        assert j[k] == t[k], (k, j[k], t[k])
    # both at once, in either order
    both = report_json(tlog, jlog)
    assert both["records"] == j["records"] * 2 and both["processes"] == 2


def test_report_merges_logs_of_four_processes(ctx):
    d = ctx.path("logs")
    os.mkdir(d)
    progs = []
    for i in range(4):
        port = 5301 + i
        acts = ["listen", "127.0.0.1", port, "as", "L", "connect", "127.0.0.1", port, "as", "C",
                "write", 10 * (i + 1), "use", "L", "accept", "waitinq", 10 * (i + 1), "close",
                "use", "C", "readeof", "close", "use", "L", "close"]
        progs.append(" ".join(cwprog_argv(*acts)))
    script = " & ".join(progs) + " & wait"
    r = cli("run", "--json", "--events", "all", "--log", os.path.join(d, "cw.%p.log"), "--",
            "sh", "-c", script, check=0, timeout=60)
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if os.path.getsize(os.path.join(d, f)))
    assert len(files) == 4, (files, r.stderr)
    assert "logged by 4 processes" in r.stderr, r.stderr
    per = [read_records(f) for f in files]
    allrecs = [x for recs in per for x in recs]
    assert len({x["pid"] for x in allrecs}) == 4
    got = report_json(*reversed(files))
    assert got["processes"] == 4 and got["malformed"] == 0, got
    assert got["records"] == len(allrecs)
    assert got["verdicts"]["rst_unread"]["count"] == 4, got["verdicts"]
    assert got["verdicts"]["rst_unread"]["lost"] == 10 + 20 + 30 + 40, got["verdicts"]
    assert got["lost"] == sum(x["lost"] for x in allrecs)
    for v, n in verdict_counts(allrecs).items():
        assert got["verdicts"][v]["count"] == n
    # the run summary agrees with the report
    assert (f"4 risky closes: answer bytes never sent {got['never_sent']}, in flight at the reset "
            f"{got['in_flight']} (they reach the peer unless dropped), request bytes not read "
            f"{got['not_read']}") in r.stderr, r.stderr
    assert got["not_read"] == 10 + 20 + 30 + 40, got


def test_report_groups_call_sites_and_peers(ctx):
    log, _, _ = run_scenario(ctx, every_verdict(), "bt", pcap=False, extra=("--backtrace", "4"))
    recs = read_records(log)
    if not any(r.get("bt") for r in recs):
        cwtest.skip("the shim recorded no backtraces")
    got = report_json(log)
    sites = got["call_sites"]
    assert sites and all(s["bt"] for s in sites), sites
    assert sum(s["count"] for s in sites) + got["no_backtrace"] == got["closes"] + got["shutdowns"]
    assert sites[0]["risky"] == max(s["risky"] for s in sites)
    peers = {p["key"]: p for p in got["peers"]}
    assert "127.0.0.1" in peers and "::1" in peers, peers
    r = cli("report", log, check=0)
    assert "top call sites" in r.stdout and "top peers" in r.stdout


# ---------------------------------------------------------------- wire

@cwtest.timeout(180)
def test_run_pcap_then_wire_every_verdict(ctx):
    require_root()
    log, pcap, r = run_scenario(ctx, every_verdict(), "verdicts")
    assert "capture:" in r.stderr and pcap in r.stderr, r.stderr
    recs = read_records(log)
    w = cli("wire", "--json", log, pcap, timeout=60)
    assert w.returncode == 0, w.stdout + w.stderr
    got = json.loads(w.stdout)
    assert got["mismatches"] == 0, [c for c in got["closes"] if not c["match"]]
    assert got["skipped"] == 1, got                       # the shared close
    table = {}
    for c in got["closes"]:
        key = (c["verdict"], c["listener"])
        table.setdefault(key, {}).setdefault(c["observed"], 0)
        table[key][c["observed"]] += 1
    # exact counts per predicted verdict x observed fate
    assert table[("clean", False)] == {"FIN": 6}, table   # C1 A1 C2 C5 dup C6
    assert table[("fin_pending", False)] == {"FIN": 1}, table
    assert table[("rst_unread", False)] == {"RST": 1}, table
    assert table[("rst_linger0", False)] == {"RST": 1}, table
    assert table[("linger_wait", False)] == {"FIN": 1}, table
    assert table[("rst_backlog", True)] == {"RST": 1}, table
    backlog = [c for c in got["closes"] if c["verdict"] == "rst_backlog"][0]
    assert backlog["rsts"] == 3, backlog
    # the other listeners close after the last packet: the capture cannot show "nothing"
    assert table[("no_conn", True)] == {"not_checked": 6}, table
    ended = [c["not_checked"] for c in got["closes"] if c["listener"] and not c["checked"]]
    assert ended == ["capture_ended_before"] * 6, ended
    nc = table[("no_conn", False)]
    assert sum(nc.values()) == 6 and set(nc) <= {"none", "not_checked", "FIN"}, nc
    assert got["total"] == len(recs) - 1
    assert got["checked"] + got["not_checked"] == got["total"], got
    assert got["checked"] == got["matched"] == 11, got    # 6 unnamed peers: not checked
    assert got["late_rst"] == 0, got
    # the text form: a confusion table with the same numbers
    w = cli("wire", log, pcap, check=0)
    assert re.search(r"^clean\s+FIN\s+6\s+0\s+0\s+0\s+0\s+0$", w.stdout, re.M), w.stdout
    assert re.search(r"^rst_unread\s+RST\s+0\s+1\s+0\s+0\s+0\s+0$", w.stdout, re.M), w.stdout
    assert re.search(r"^rst_backlog\s+one RST per queued connection\s+0\s+1\s", w.stdout, re.M), w.stdout
    assert "0 wrong" in w.stdout and "mismatches:" not in w.stdout


@cwtest.timeout(120)
def test_wire_exits_1_on_a_wrong_prediction(ctx):
    require_root()
    log, pcap, _ = run_scenario(ctx, every_verdict(), "verdicts")
    cli("wire", log, pcap, check=0)
    edited = ctx.path("edited.log")
    n_edit = 0
    with open(log) as f, open(edited, "w") as out:
        for line in f:
            rec = json.loads(line)
            if rec["verdict"] == "rst_unread":      # the kernel sent RST; claim FIN
                rec["verdict"], rec["lost"] = "clean", 0
                n_edit += 1
            elif rec["verdict"] == "linger_wait":   # the kernel sent FIN; claim RST
                rec["verdict"] = "rst_linger0"
                n_edit += 1
            out.write(json.dumps(rec) + "\n")
    assert n_edit == 2
    w = cli("wire", edited, pcap, check=1)
    assert "2 wrong" in w.stdout and "mismatches:" in w.stdout, w.stdout
    assert re.search(r"verdict clean, expected FIN, saw RST", w.stdout), w.stdout
    assert re.search(r"verdict rst_linger0, expected RST, saw FIN", w.stdout), w.stdout
    got = json.loads(cli("wire", "--json", edited, pcap, check=1).stdout)
    assert got["mismatches"] == 2, got
    # a backlog that did not happen
    with open(log) as f, open(edited, "w") as out:
        for line in f:
            rec = json.loads(line)
            if rec["verdict"] == "rst_backlog":
                rec["backlog"] = 5
            out.write(json.dumps(rec) + "\n")
    w = cli("wire", edited, pcap, check=1)
    assert "saw 3 RSTs" in w.stdout, w.stdout


@cwtest.timeout(120)
def test_wire_reports_late_rst(ctx):
    require_root()
    log, pcap, _ = run_scenario(ctx, late_rst(), "late")
    w = cli("wire", "--json", log, pcap)
    assert w.returncode == 0, w.stdout + w.stderr
    got = json.loads(w.stdout)
    assert got["late_rst"] == 1 and got["mismatches"] == 0, got
    late = [c for c in got["closes"] if c["late_rst"]]
    assert late[0]["verdict"] == "clean" and late[0]["observed"] == "FIN", late
    w = cli("wire", log, pcap, check=0)
    assert "late RSTs (peer data arrived after the close):" in w.stdout, w.stdout
    assert re.search(r"^clean\s+FIN\s+1\s+0\s+0\s+0\s+0\s+1$", w.stdout, re.M), w.stdout


@cwtest.timeout(120)
def test_run_pcap_opens_with_tcpdump(ctx):
    require_root()
    if not shutil.which("tcpdump"):
        cwtest.skip("tcpdump is not installed")
    log, pcap, _ = run_scenario(ctx, late_rst(), "dump", iface=None)  # default: any (cooked)
    r = subprocess.run(["tcpdump", "-nn", "-r", pcap], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if " IP " in l]
    dump = subprocess.run([PCAPTOOL, "dump", pcap], stdout=subprocess.PIPE, text=True, check=True)
    pkts = [json.loads(l) for l in dump.stdout.splitlines()]
    assert len(lines) == len(pkts) > 5, (len(lines), len(pkts))
    assert any("Flags [R" in l for l in lines) and any("Flags [F" in l for l in lines)
    got = json.loads(cli("wire", "--json", log, pcap, check=0).stdout)
    assert got["late_rst"] == 1 and got["mismatches"] == 0, got


def test_run_pcap_permission_error_is_clear(ctx):
    """Without CAP_NET_RAW, run --pcap and cw-pcap capture say so in one line, and CMD
    never runs; an unknown interface is named."""
    if os.geteuid() == 0:
        r = cli("run", "--pcap", ctx.path("x.pcap"), "--iface", "no-such-if0", "--", "true")
        assert r.returncode == 125 and "no-such-if0" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        if not shutil.which("setpriv"):
            cwtest.skip("setpriv (util-linux) is not installed")
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all"]
    else:
        drop = []
    marker = ctx.path("ran")
    os.chmod(ctx.tmp, 0o777)
    r = subprocess.run(drop + [CLI, "run", "--pcap", ctx.path("x.pcap"), "--", "touch", marker],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env())
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert "no permission to capture" in r.stderr and "CAP_NET_RAW" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.path.exists(marker), "CMD ran although the capture could not start"
    r = subprocess.run(drop + [PCAPTOOL, "capture", "--iface", "lo", "--out", ctx.path("y.pcap")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 1 and "no permission to capture" in r.stderr, r.stderr
    assert "ready" not in r.stdout


# ---------------------------------------------------------------- cw-pcap on every link type

def _tcp(sport, dport, flags, seq, ack, payload=b""):
    off = 5 << 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off, flags, 65535, 0, 0) + payload


def _ipv4(tcp):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + tcp


def _ipv6(tcp):
    src = bytes(15) + b"\x01"
    dst = bytes([0x20, 0x01, 0x0d, 0xb8]) + bytes(11) + b"\x02"
    return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst + tcp


def _pcap(path, linktype, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i, 250000, len(fr), len(fr)) + fr)


def test_cw_pcap_dump_link_types(ctx):
    t4 = _tcp(40000, 80, 0x02, 1000, 0)                    # S
    t6 = _tcp(80, 40000, 0x19, 7, 1001, b"x" * 33)          # F P A, 33 bytes
    eth = lambda ip, et: b"\x00" * 12 + struct.pack("!H", et) + ip
    vlan = lambda ip, et: b"\x00" * 12 + struct.pack("!HHH", 0x8100, 5, et) + ip
    sll = lambda ip, et: struct.pack("!HHH8sH", 0, 772, 0, b"", et) + ip
    sll2 = lambda ip, et: struct.pack("!HHIHBB8s", et, 0, 1, 772, 0, 0, b"") + ip
    null = lambda ip, fam: struct.pack("<I", fam) + ip
    loop = lambda ip, fam: struct.pack("!I", fam) + ip
    cases = {
        "en10mb": (1, [eth(_ipv4(t4), 0x0800), vlan(_ipv6(t6), 0x86DD), eth(b"\x00" * 40, 0x0806)]),
        "null": (0, [null(_ipv4(t4), 2), null(_ipv6(t6), 10)]),
        "loop": (108, [loop(_ipv4(t4), 2), loop(_ipv6(t6), 24)]),
        "sll": (113, [sll(_ipv4(t4), 0x0800), sll(_ipv6(t6), 0x86DD)]),
        "sll2": (276, [sll2(_ipv4(t4), 0x0800), sll2(_ipv6(t6), 0x86DD)]),
        "raw": (101, [_ipv4(t4), _ipv6(t6), _ipv4(t4)[:30]]),   # the last one is truncated
    }
    for name, (lt, frames) in cases.items():
        path = ctx.path(f"{name}.pcap")
        _pcap(path, lt, frames)
        r = subprocess.run([PCAPTOOL, "dump", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        assert r.returncode == 0, (name, r.stderr)
        pk = [json.loads(l) for l in r.stdout.splitlines()]
        assert len(pk) == 2, (name, pk)
        assert pk[0] == {"ts": 1700000000.25, "src": "10.0.0.1", "dst": "10.0.0.2", "sport": 40000,
                         "dport": 80, "flags": "S", "seq": 1000, "ack": 0, "len": 0}, (name, pk[0])
        assert pk[1] == {"ts": 1700000001.25, "src": "::1", "dst": "2001:db8::2", "sport": 80,
                         "dport": 40000, "flags": "FPA", "seq": 7, "ack": 1001, "len": 33}, (name, pk[1])
    bad = ctx.path("bad.pcap")
    with open(bad, "wb") as f:
        f.write(b"not a pcap file")
    r = subprocess.run([PCAPTOOL, "dump", bad], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 1 and "bad.pcap" in r.stderr, r.stderr


def test_cw_pcap_capture_stops_cleanly(ctx):
    require_root()
    srv, port = cwtest.tcp_listener("127.0.0.1")
    with cwtest.Capture(ctx, f"tcp port {port}") as cap:
        c = cwtest.connect("127.0.0.1", port)
        a, _ = srv.accept()
        c.sendall(b"y" * 123)
        a.recv(1000)
        a.close()
        c.close()
    pk = cap.packets()
    assert sum(p["len"] for p in pk if p["dport"] == port) == 123, pk
    assert cwtest.count_flag(pk, "S") == 2 and cwtest.count_flag(pk, "F") == 2, pk
    r = subprocess.run([PCAPTOOL, "capture", "--iface", "lo", "--filter", "tcp port", "--out",
                        ctx.path("x.pcap")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=10)
    assert r.returncode == 1 and "filter" in r.stderr, r.stderr
