#!/usr/bin/env python3
"""closewatch benchmarks, side by side: every benchmark runs with and without
the shim, alternating (the order rotates each round), for several rounds; each
row reports the median of the per-round ratios and their spread (min-max), so
that a noisy machine moves both sides of a ratio together.

Usage: bench/run.py [--build DIR] [--lib SO] [--rounds N] [--only NAME[,NAME]]
                    [--out FILE] [--smoke] [--no-netns] [--keep]

Benchmarks (--only): openclose, churn (incl. strace), nginx, closelat, rss,
backtrace (a logged close with 8 backtrace frames vs without),
trap (closewatch run --via trap on open+close and TCP churn, beside strace and
the trap's floor: closewatch's filter under a supervisor that only answers),
gohttp (a Go net/http server under wrk with Connection: close, plain and under
closewatch run --via trap --mode drain: every answer's close drained by the supervisor;
also the trap alone and the floor).
--smoke runs each once in a tiny configuration (what `make test` does): the
numbers mean nothing then, only that every program still runs.
--lib measures another build of the shim (e.g. a patched copy) against none.

Besides the ratio the issue asks for, churn rows show the median time of one
connection and the CPU time per connection, with / without: slowdown factors
that other load on the machine disturbs much less than throughput. Single-
process benchmarks are pinned to one CPU (both churn threads on it); nginx gets
that CPU and wrk another. closelat is not pinned (its drain thread must be
free to run elsewhere, as in a real server).

Results: an aligned table on stdout and JSON in --out (default
$BUILD/bench-results.json) with the machine they were measured on.
As root the run moves into a private network namespace (unshare -n), with a
wide ephemeral port range: TIME_WAIT and packet captures of other programs on
the host's loopback cannot interfere. Only loopback is used. Exit status: 0
when every benchmark ran (targets met or not), 1 when one failed to run, 2 on
bad usage."""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = ["openclose", "churn", "nginx", "closelat", "rss", "backtrace", "trap", "gohttp"]


class BenchError(Exception):
    pass


class Skipped(Exception):
    pass


# ------------------------------------------------------------------ running things

class Runner:
    def __init__(self, args):
        self.build = os.path.join(ROOT, args.build) if not os.path.isabs(args.build) else args.build
        self.lib = os.path.abspath(args.lib) if args.lib else os.path.join(self.build, "libclosewatch.so")
        # One CPU for the single-process benchmarks (both threads of churn on
        # it: no cross-CPU wakeups, which vary from run to run); nginx gets it
        # too, and wrk another one.
        cpus = sorted(os.sched_getaffinity(0))
        self.cpu_main = cpus[-1]
        self.cpu_other = cpus[0] if len(cpus) > 1 else cpus[-1]
        self.smoke = args.smoke
        self.keep = args.keep
        self.tmp = tempfile.mkdtemp(prefix="cw-bench-")
        self.base_env = {k: v for k, v in os.environ.items()
                         if not k.startswith("CLOSEWATCH_") and k != "LD_PRELOAD"}
        self.base_env["TMPDIR"] = self.tmp
        if not os.path.exists(self.lib):
            raise BenchError(f"{self.lib} not built (make BUILD={args.build})")

    def bin(self, name):
        path = os.path.join(self.build, "bench", name)
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path} not built")
        return path

    def env(self, shim=None):
        """shim: None (no shim) or a dict of CLOSEWATCH_* settings."""
        env = dict(self.base_env)
        if shim is not None:
            # Sanitizer runtimes (make check) must come first.
            prefix = os.environ.get("CW_PRELOAD_PREFIX", "")
            env["LD_PRELOAD"] = prefix + ":" + self.lib if prefix else self.lib
            env["CLOSEWATCH_LOG"] = os.path.join(self.tmp, "cw.log")
            for k, v in shim.items():
                env["CLOSEWATCH_" + k] = str(v)
        return env

    def log_records(self, env):
        """Lines the shim wrote (then the log is removed)."""
        path = env.get("CLOSEWATCH_LOG")
        if not path or not os.path.exists(path):
            return 0
        with open(path, "rb") as f:
            n = sum(1 for _ in f)
        os.unlink(path)
        return n

    def run_json(self, argv, env, timeout=120, cpu=None):
        """Run a bench program (pinned to cpu if given); its stdout is one JSON object."""
        try:
            p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout, preexec_fn=pin(cpu))
        except subprocess.TimeoutExpired:
            raise BenchError(f"{' '.join(argv)}: still running after {timeout}s")
        if p.returncode != 0:
            raise BenchError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise BenchError(f"{' '.join(argv)}: no JSON on stdout: {p.stdout[-300:]!r}")
        out = json.loads(lines[-1])
        out["log_records"] = self.log_records(env)
        warn = [ln for ln in p.stderr.splitlines() if ln.strip()]
        if warn:
            out["stderr"] = warn[:5]
        return out

    def cleanup(self):
        if self.keep:
            print(f"kept {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def pin(cpu):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


# ------------------------------------------------------------------ statistics

def stats(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def scaled(rounds, factor):
    """More rounds for the cheap benchmarks (1 stays 1: --smoke)."""
    return rounds if rounds == 1 else int(round(rounds * factor))


def interleave(variants, rounds, run_one):
    """Run every variant once per round, rotating the order each round so that
    none is always first. Returns {variant: [result per round]}."""
    res = {v: [] for v in variants}
    for r in range(rounds):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            res[v].append(run_one(v, r))
    return res


def ratio_row(rid, title, measure, res, metric, num, den, target=None, unit="",
              detail_fmt="{:.0f}", also=()):
    """A row whose value is, per round, res[num][r][metric] / res[den][r][metric].
    also: (metric, label) pairs of costs (CPU time per connection, median time
    of one connection or request) reported as with-tool / without per round:
    slowdown factors less sensitive than throughput to other load."""
    per = []
    for a, b in zip(res[num], res[den]):
        if a is None or b is None or not b.get(metric):
            per.append(None)
        else:
            per.append(a[metric] / b[metric])
    s = stats(per)
    values = {v: stats([x[metric] if x else None for x in res[v]]) for v in (den, num)}
    detail = ", ".join(f"{v} {detail_fmt.format(values[v]['median'])}{unit}"
                       for v in (den, num) if values[v])
    row = make_row(rid, title, measure, s, per, target, detail, values)
    tool, base = (den, num) if num == "none" else (num, den)
    row["also"] = {}
    for m, label in also:
        st = stats([a[m] / b[m] if a and b and a.get(m) is not None and b.get(m) else None
                    for a, b in zip(res[tool], res[base])])
        if st:
            row["also"][m] = st
            row["detail"] += f"; {label} x{st['median']:.3f} [{st['min']:.3f}-{st['max']:.3f}]"
    return row


def make_row(rid, title, measure, s, per, target, detail, values):
    met = None
    if target and s:
        op, lim = target
        met = s["median"] <= lim if op == "<=" else s["median"] >= lim if op == ">=" else s["median"] < lim
    return {"id": rid, "title": title, "measure": measure, "value": s, "per_round": per,
            "target": {"op": target[0], "value": target[1]} if target else None,
            "met": met, "detail": detail, "values": values}


# ------------------------------------------------------------------ benchmarks

def bench_openclose(R, rounds):
    argv = [R.bin("openclose")] + (["-n", "200", "-k", "2"] if R.smoke else ["-n", "20000", "-k", "10"])
    envs = {"none": R.env(), "shim": R.env({"MODE": "observe"})}
    # Cheap and the tightest target: twice the rounds.
    res = interleave(list(envs), scaled(rounds, 2),
                     lambda v, r: R.run_json(argv, envs[v], cpu=R.cpu_main))
    return [ratio_row("openclose", "open+close of a file", "ns/iter shim/none", res,
                      "ns_per_iter", "shim", "none", ("<=", 1.03), " ns")], res


def bench_churn(R, rounds):
    # Short runs, many rounds: the two sides of a ratio run close in time.
    argv = [R.bin("churn")] + (["-d", "0.05", "-n", "50"] if R.smoke else ["-d", "0.3"])
    variants = {"none": (R.env(), []),
                "observe": (R.env({"MODE": "observe", "EVENTS": "risky", "FORMAT": "text"}), []),
                "all_json": (R.env({"MODE": "observe", "EVENTS": "all", "FORMAT": "json"}), [])}
    strace = shutil.which("strace")
    if strace:
        variants["strace"] = (R.env(), [strace, "-f", "-qq", "-e", "trace=close,shutdown",
                                        "-o", os.path.join(R.tmp, "strace.out")])

    def one(v, r):
        env, wrap = variants[v]
        out = R.run_json(wrap + argv, env, cpu=R.cpu_main)
        if wrap:
            os.unlink(os.path.join(R.tmp, "strace.out"))
        return out

    res = interleave(list(variants), scaled(rounds, 3), one)
    rows = [ratio_row("churn_observe", "TCP churn, observe", "conn/s none/shim",
                      res, "conns_per_s", "none", "observe", ("<=", 1.05), "/s",
                      also=(("p50_conn_us", "p50 conn"), ("cpu_us_per_conn", "CPU/conn"))),
            ratio_row("churn_all_json", "TCP churn, all JSON",
                      "conn/s none/shim", res, "conns_per_s", "none", "all_json", ("<=", 1.30), "/s",
                      also=(("p50_conn_us", "p50 conn"), ("cpu_us_per_conn", "CPU/conn")))]
    if strace:
        rows.append(ratio_row("churn_strace", "TCP churn, strace",
                              "conn/s none/strace", res, "conns_per_s", "none", "strace", None, "/s",
                              also=(("p50_conn_us", "p50 conn"), ("cpu_us_per_conn", "CPU/conn"))))
    else:
        rows.append(skipped_row("churn_strace", "TCP churn, strace", "strace is not installed"))
    return rows, res


NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/html;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/www;
        location / {{ }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def run_wrk(R, wrk, wrk_args, url):
    """wrk against url from the other CPU; its parsed numbers."""
    w = subprocess.run([wrk] + wrk_args + [url], env=R.env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60,
                       preexec_fn=pin(R.cpu_other))
    if w.returncode != 0:
        raise BenchError(f"wrk: exit {w.returncode}: {w.stdout[-400:]}")
    return parse_wrk(w.stdout)


def stop_server(p, timeout):
    """SIGTERM, then SIGKILL if it is still there after timeout seconds."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def parse_wrk(out):
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not m:
        raise BenchError(f"wrk printed no Requests/sec: {out[-400:]!r}")
    res = {"rps": float(m.group(1))}
    m = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    res["p50_ms"] = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def bench_nginx(R, rounds):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    wrk = shutil.which("wrk")
    missing = [n for n, p in (("nginx", nginx), ("wrk", wrk)) if not p]
    if missing:
        raise Skipped(" and ".join(missing) + " not installed (apt-get install nginx-light wrk)")
    envs = {"none": R.env(), "observe": R.env({"MODE": "observe"}), "drain": R.env({"MODE": "drain"})}
    wrk_args = ["-t", "1", "-c", "2" if R.smoke else "16", "-d", "1s", "--latency",
                "-H", "Connection: close"]

    def one(v, r):
        d = os.path.join(R.tmp, f"nginx-{v}-{r}")
        os.makedirs(os.path.join(d, "www"))
        with open(os.path.join(d, "www", "small.html"), "w") as f:
            f.write("<html><body>" + "closewatch " * 50 + "</body></html>\n")
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, port=port, user="user root;" if os.geteuid() == 0 else ""))
        env = envs[v]
        err = open(os.path.join(d, "stderr"), "w")
        p = subprocess.Popen([nginx, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                             env=env, stdout=err, stderr=err, preexec_fn=pin(R.cpu_main))
        try:
            if not wait_port(port, p):
                raise BenchError(f"nginx did not start: {open(os.path.join(d, 'error.log')).read()[-400:]}")
            out = run_wrk(R, wrk, wrk_args, f"http://127.0.0.1:{port}/small.html")
        finally:
            stop_server(p, 20)
            err.close()
        out["log_records"] = R.log_records(env)
        if not R.keep:
            shutil.rmtree(d, ignore_errors=True)
        return out

    res = interleave(list(envs), scaled(rounds, 2), one)
    return [ratio_row("nginx_observe", "nginx, observe", "req/s shim/none",
                      res, "rps", "observe", "none", (">=", 0.97), "/s",
                      also=(("p50_ms", "p50 latency"),)),
            ratio_row("nginx_drain", "nginx, drain", "req/s shim/none",
                      res, "rps", "drain", "none", (">=", 0.95), "/s",
                      also=(("p50_ms", "p50 latency"),))], res


def bench_closelat(R, rounds):
    argv = [R.bin("closelat")] + (["-n", "20", "-w", "2"] if R.smoke else ["-n", "2000", "-w", "50"])
    envs = {"none": R.env(),
            "observe": R.env({"MODE": "observe"}),
            "drain_async": R.env({"MODE": "drain", "DRAIN_SYNC": "0"}),
            "drain_sync": R.env({"MODE": "drain", "DRAIN_SYNC": "1"})}
    # -f: each close timed in a fresh process (a prefork server's child): its
    # first close of a socket, then its second. fresh_observe: what any first
    # logged close costs in a fresh process (the shim's own first use of its
    # pages and calls there), apart from the drain engine's start.
    fresh = {"fresh_none": R.env(), "fresh_observe": R.env({"MODE": "observe"}),
             "fresh_drain": R.env({"MODE": "drain", "DRAIN_SYNC": "0"})}
    argv_fresh = argv + ["-f"]

    def one(v, r):
        return R.run_json(argv_fresh if v in fresh else argv, envs.get(v) or fresh[v])

    res = interleave(list(envs) + list(fresh), rounds, one)
    rows = []
    titles = {"none": "no shim", "observe": "observe",
              "drain_async": "drain, async", "drain_sync": "drain, sync"}
    for v in envs:
        p99 = stats([x["p99_us"] for x in res[v]])
        p50 = stats([x["p50_us"] for x in res[v]])
        detail = f"p50 {p50['median']:.1f} us [{p50['min']:.1f}-{p50['max']:.1f}]"
        rows.append(make_row(f"closelat_{v}", f"close() latency, {titles[v]}",
                             "p99 us", p99, [x["p99_us"] for x in res[v]],
                             ("<", 20.0) if v == "drain_async" else None, detail,
                             {"p50_us": p50, "p99_us": p99}))
    # A process's first drained close (it starts the drain thread) against a
    # steady-state drained close (drain_async of the same round).
    per = [a["p50_us"] / b["p50_us"] if a and b and b.get("p50_us") else None
           for a, b in zip(res["fresh_drain"], res["drain_async"])]
    vals = {k: stats([x[m] for x in res[v]]) for k, v, m in
            (("first_p50_us", "fresh_drain", "p50_us"), ("second_p50_us", "fresh_drain", "second_p50_us"),
             ("steady_p50_us", "drain_async", "p50_us"), ("none_first_p50_us", "fresh_none", "p50_us"),
             ("none_second_p50_us", "fresh_none", "second_p50_us"),
             ("observe_first_p50_us", "fresh_observe", "p50_us"),
             ("observe_second_p50_us", "fresh_observe", "second_p50_us"))}
    detail = (f"first {vals['first_p50_us']['median']:.1f} us, steady {vals['steady_p50_us']['median']:.1f} us; "
              f"same process's second {vals['second_p50_us']['median']:.1f} us; observe: first "
              f"{vals['observe_first_p50_us']['median']:.1f} us, second {vals['observe_second_p50_us']['median']:.1f} us; "
              f"no shim: first {vals['none_first_p50_us']['median']:.1f} us, second "
              f"{vals['none_second_p50_us']['median']:.1f} us")
    rows.append(make_row("closelat_first_drain", "first drained close of a fresh process",
                         "p50 first/steady", stats(per), per, ("<=", 2.0), detail, vals))
    return rows, res


def bench_backtrace(R, rounds):
    """A logged close (rst_unread, observe) made 8 calls deep, with CLOSEWATCH_BACKTRACE=8
    and without: the cost of finding and naming the call site, as a ratio of p50s."""
    argv = [R.bin("closelat"), "-d", "8"] + (["-n", "20", "-w", "2"] if R.smoke else ["-n", "2000", "-w", "50"])
    envs = {"bt0": R.env({"MODE": "observe", "BACKTRACE": 0}),
            "bt8": R.env({"MODE": "observe", "BACKTRACE": 8})}
    res = interleave(list(envs), scaled(rounds, 1), lambda v, r: R.run_json(argv, envs[v]))
    return [ratio_row("backtrace_8", "logged close, 8 backtrace frames vs none", "p50 ratio",
                      res, "p50_us", "bt8", "bt0", ("<=", 2.0), " us", "{:.1f}")], res


def bench_rss(R, rounds):
    argv = [R.bin("idle")]
    envs = {"none": R.env(), "observe": R.env({"MODE": "observe"}), "drain": R.env({"MODE": "drain"})}
    res = interleave(list(envs), rounds, lambda v, r: R.run_json(argv, envs[v]))
    rows = []
    for v in ("observe", "drain"):
        per = [(a["rss_kib"] - b["rss_kib"]) / 1024 for a, b in zip(res[v], res["none"])]
        values = {x: stats([y["rss_kib"] for y in res[x]]) for x in ("none", v)}
        detail = f"none {values['none']['median']:.0f} KiB, shim {values[v]['median']:.0f} KiB"
        rows.append(make_row(f"rss_{v}", f"idle RSS, {v}", "MiB shim-none",
                             stats(per), per, ("<=", 2.0), detail, values))
    return rows, res


def bench_trap(R, rounds):
    """The second way in (seccomp user notification, closewatch as the supervisor) on the
    same two programs, beside strace (ptrace stops) on the same calls. Every close is a
    trapped call, answered by the supervisor pinned to the program's CPU."""
    cli = os.path.join(R.build, "closewatch")
    if not os.access(cli, os.X_OK):
        raise BenchError(f"{cli} not built")
    log = os.path.join(R.tmp, "cw.log")
    trap = [cli, "run", "--via", "trap", "--log", log, "--"]
    strace = shutil.which("strace")
    st = [strace, "-f", "-qq", "-e", "trace=close,shutdown", "-o", os.path.join(R.tmp, "strace.out")]
    env_trap = R.env()
    env_trap["CLOSEWATCH_LOG"] = log
    oc = [R.bin("openclose")] + (["-n", "200", "-k", "2"] if R.smoke else ["-n", "20000", "-k", "5"])
    ch = [R.bin("churn")] + (["-d", "0.05", "-n", "50"] if R.smoke else ["-d", "0.3"])
    # The floor: closewatch's filter under a supervisor that only answers
    # (bench/trapfloor.c): what no supervisor can save on this machine.
    variants = {"none": [], "trap": trap, "floor": [R.bin("trapfloor")]}
    if strace:
        variants["strace"] = st

    def run(argv):
        def one(v, r):
            env = env_trap if v == "trap" else R.env()
            out = R.run_json(variants[v] + argv, env, cpu=R.cpu_main)
            if v == "strace":
                os.unlink(os.path.join(R.tmp, "strace.out"))
            return out
        return interleave(list(variants), scaled(rounds, 1), one)

    res_oc, res_ch = run(oc), run(ch)
    rows = [ratio_row("trap_openclose", "open+close of a file, trap", "ns/iter trap/none", res_oc,
                      "ns_per_iter", "trap", "none", ("<=", 6.0), " ns"),
            ratio_row("trap_churn", "TCP churn, trap (observe)", "conn/s none/trap", res_ch,
                      "conns_per_s", "none", "trap", ("<=", 1.5), "/s",
                      also=(("p50_conn_us", "p50 conn"), ("cpu_us_per_conn", "CPU/conn")))]
    rows += [ratio_row("trap_openclose_floor", "open+close of a file, trap floor",
                       "ns/iter floor/none", res_oc, "ns_per_iter", "floor", "none", None, " ns"),
             ratio_row("trap_churn_floor", "TCP churn, trap floor (same rounds)",
                       "conn/s none/floor", res_ch, "conns_per_s", "none", "floor", None, "/s",
                       also=(("p50_conn_us", "p50 conn"),))]
    if strace:
        rows += [ratio_row("trap_openclose_strace", "open+close of a file, strace",
                           "ns/iter strace/none", res_oc, "ns_per_iter", "strace", "none", None, " ns"),
                 ratio_row("trap_churn_strace", "TCP churn, strace (same rounds)",
                           "conn/s none/strace", res_ch, "conns_per_s", "none", "strace", None, "/s")]
    else:
        rows += [skipped_row("trap_openclose_strace", "open+close, strace", "strace is not installed"),
                 skipped_row("trap_churn_strace", "TCP churn, strace", "strace is not installed")]
    raw = {f"openclose_{v}": x for v, x in res_oc.items()}
    raw.update({f"churn_{v}": x for v, x in res_ch.items()})
    return rows, raw


def bench_gohttp(R, rounds):
    """bench/go/gohttp.go (net/http) under wrk, Connection: close: plain, and under
    `closewatch run --via trap --mode drain`, where every close is trapped and drained by
    the supervisor (the server and closewatch pinned to one CPU, wrk to another)."""
    wrk = shutil.which("wrk")
    go = os.path.join(R.build, "bench", "gohttp")
    if not wrk:
        raise Skipped("wrk not installed (apt-get install wrk)")
    if not os.access(go, os.X_OK):
        raise Skipped("bench/gohttp not built: Go is not installed (apt-get install golang-go)")
    cli = os.path.join(R.build, "closewatch")
    if not os.access(cli, os.X_OK):
        raise BenchError(f"{cli} not built")
    log = os.path.join(R.tmp, "cw-gohttp.log")
    # Beside trap + drain: the trap alone (observe) and the floor (closewatch's
    # filter under a supervisor that only answers, bench/trapfloor.c).
    variants = {"none": [], "trap_drain": [cli, "run", "--via", "trap", "--mode", "drain",
                                           "--log", log, "--"],
                "trap_observe": [cli, "run", "--via", "trap", "--log", log, "--"],
                "floor": [R.bin("trapfloor")]}
    wrk_args = ["-t", "1", "-c", "2" if R.smoke else "16", "-d", "1s", "--latency",
                "-H", "Connection: close"]

    def one(v, r):
        env = R.env()
        env["CLOSEWATCH_LOG"] = log
        p = subprocess.Popen(variants[v] + [go, "0"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=pin(R.cpu_main))
        try:
            line = p.stdout.readline()
            if not line.startswith("port "):
                raise BenchError(f"gohttp did not start: {line!r} {p.stderr.read()[-400:] if p.poll() is not None else ''}")
            port = int(line.split()[1])
            out = run_wrk(R, wrk, wrk_args, f"http://127.0.0.1:{port}/")
        finally:
            stop_server(p, 40)
        n = 0
        if os.path.exists(log):
            with open(log, "rb") as f:
                n = sum(1 for _ in f)
            os.unlink(log)
        out["log_records"] = n
        return out

    res = interleave(list(variants), scaled(rounds, 2), one)
    return [ratio_row("gohttp_trap_drain", "Go net/http, trap + drain", "req/s trap/none",
                      res, "rps", "trap_drain", "none", (">=", 0.8), "/s",
                      also=(("p50_ms", "p50 latency"),)),
            ratio_row("gohttp_trap_observe", "Go net/http, trap alone (observe)", "req/s trap/none",
                      res, "rps", "trap_observe", "none", None, "/s",
                      also=(("p50_ms", "p50 latency"),)),
            ratio_row("gohttp_floor", "Go net/http, trap floor", "req/s floor/none",
                      res, "rps", "floor", "none", None, "/s",
                      also=(("p50_ms", "p50 latency"),))], res


BENCHES = {"openclose": bench_openclose, "churn": bench_churn, "nginx": bench_nginx,
           "closelat": bench_closelat, "rss": bench_rss, "backtrace": bench_backtrace,
           "trap": bench_trap, "gohttp": bench_gohttp}


def skipped_row(rid, title, why):
    return {"id": rid, "title": title, "measure": "", "value": None, "per_round": [],
            "target": None, "met": None, "detail": "skipped: " + why, "values": {}}


# ------------------------------------------------------------------ machine, output

def machine():
    m = {"cpu": "unknown", "cores": os.cpu_count(), "kernel": platform.release(),
         "arch": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    m["cpu"] = ln.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            m["mem_mib"] = int(f.readline().split()[1]) // 1024
        with open("/etc/os-release") as f:
            for ln in f:
                if ln.startswith("PRETTY_NAME="):
                    m["os"] = ln.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    m["loadavg_start"] = os.getloadavg()[0]
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        m["commit"] = rev or None
    except OSError:
        m["commit"] = None
    return m


def fmt_target(t):
    if not t:
        return "(reported)"
    return {"<=": "<= ", ">=": ">= ", "<": "< "}[t["op"]] + f"{t['value']:g}"


def fmt_value(v):
    if not v:
        return "-", "-"
    return f"{v['median']:.3f}", f"{v['min']:.3f}-{v['max']:.3f}"


def print_table(rows, m, out=sys.stdout):
    head = ("benchmark", "measure", "median", "spread", "target", "met", "values (median)")
    lines = []
    for r in rows:
        med, spread = fmt_value(r["value"])
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append((r["title"], r["measure"], med, spread, fmt_target(r["target"]) if r["value"] else "",
                      met, r["detail"]))
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]
    right = {2, 3}
    for ln in [head] + lines:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w)
                        for i, (c, w) in enumerate(zip(ln, widths))).rstrip(), file=out)
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}"
          f"{', ' + m['os'] if m.get('os') else ''}; load {m['loadavg_start']:.2f} -> "
          f"{m.get('loadavg_end', 0):.2f}", file=out)


# ------------------------------------------------------------------ main

def enter_netns(args):
    """As root: re-run in a private network namespace (loopback only, own ports)."""
    if args.no_netns or os.geteuid() != 0 or os.environ.get("CW_BENCH_NETNS") or \
            os.environ.get("CW_IN_NETNS") or not shutil.which("unshare") or not shutil.which("ip"):
        return
    env = dict(os.environ, CW_BENCH_NETNS="1")
    try:
        os.execvpe("unshare", ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__)]
                   + sys.argv[1:], env)
    except OSError as e:
        print(f"run.py: cannot enter a network namespace ({e}); using the host's", file=sys.stderr)


def setup_netns():
    if not os.environ.get("CW_BENCH_NETNS"):
        return False
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
            f.write("1024 65000")
    except OSError:
        pass
    return True


def main():
    ap = argparse.ArgumentParser(description="closewatch benchmarks, with and without the shim")
    ap.add_argument("--build", default=os.environ.get("CW_BUILD", "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(GROUPS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny configuration, one round")
    ap.add_argument("--no-netns", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--lib", default=None, help="the shim to measure (default BUILD/libclosewatch.so)")
    args = ap.parse_args()
    only = [g for g in args.only.split(",") if g]
    bad = [g for g in only if g not in BENCHES]
    if bad or args.rounds < 1:
        ap.error(f"unknown benchmark {bad} (choose from {','.join(GROUPS)})" if bad else "--rounds >= 1")
    enter_netns(args)
    netns = setup_netns()
    rounds = 1 if args.smoke else args.rounds
    try:
        R = Runner(args)
    except BenchError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 1
    out_path = args.out or os.path.join(R.build, "bench-smoke.json" if args.smoke else "bench-results.json")
    m = machine()
    t0 = time.monotonic()
    rows, raw, failed = [], {}, []
    try:
        for g in only or GROUPS:
            tg = time.monotonic()
            print(f"[{g}] ...", file=sys.stderr, flush=True)
            try:
                grows, graw = BENCHES[g](R, rounds)
                rows += grows
                raw[g] = graw
            except Skipped as e:
                rows.append(skipped_row(g, g, str(e)))
                raw[g] = {"skipped": str(e)}
            except (BenchError, OSError, ValueError, KeyError) as e:
                failed.append(g)
                rows.append(skipped_row(g, g, f"FAILED: {e}"))
                raw[g] = {"error": str(e)}
                print(f"[{g}] FAILED: {e}", file=sys.stderr, flush=True)
            print(f"[{g}] {time.monotonic() - tg:.1f}s", file=sys.stderr, flush=True)
    finally:
        R.cleanup()
    m["loadavg_end"] = os.getloadavg()[0]
    if args.smoke:
        # A tiny configuration says nothing about the targets.
        for r in rows:
            r["met"] = None
    doc = {"machine": m, "smoke": args.smoke, "rounds": rounds, "netns": netns,
           "seconds": round(time.monotonic() - t0, 1),
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "rows": rows, "runs": raw, "failed": failed}
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print_table(rows, m)
    if args.smoke:
        print("smoke run: tiny configuration, the numbers mean nothing")
    print(f"{len(rows)} rows in {doc['seconds']}s; JSON in {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
