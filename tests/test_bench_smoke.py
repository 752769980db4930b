"""The benchmarks of bench/ (make bench) still run: each once, in a tiny
configuration, through bench/run.py --smoke. Only that it ran and wrote
well-formed results is checked, never a timing: make bench measures."""
import json
import os
import shutil
import subprocess
import sys

import cwtest

RUNNER = os.path.join(cwtest.ROOT, "bench", "run.py")

# Group -> the rows it must produce (ids), each with a median when it ran.
GROUPS = {
    "openclose": ["openclose"],
    "churn": ["churn_observe", "churn_all_json", "churn_strace"],
    "nginx": ["nginx_observe", "nginx_drain"],
    "closelat": ["closelat_none", "closelat_observe", "closelat_drain_async", "closelat_drain_sync",
                 "closelat_first_drain"],
    "rss": ["rss_observe", "rss_drain"],
    "backtrace": ["backtrace_8"],
    "trap": ["trap_openclose", "trap_churn", "trap_openclose_floor", "trap_churn_floor",
             "trap_openclose_strace", "trap_churn_strace"],
    "gohttp": ["gohttp_trap_drain", "gohttp_trap_observe", "gohttp_floor"],
}


def smoke(ctx, group):
    out = ctx.path("bench.json")
    argv = [sys.executable, RUNNER, "--build", cwtest.BUILD, "--smoke", "--only", group, "--out", out]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=100)
    assert p.returncode == 0, f"bench/run.py --smoke --only {group}: exit {p.returncode}\n{p.stdout[-2000:]}"
    with open(out) as f:
        doc = json.load(f)
    m = doc["machine"]
    assert m["cores"] >= 1 and m["kernel"] and m["cpu"], m
    assert doc["smoke"] is True and doc["failed"] == [], doc["failed"]
    rows = {r["id"]: r for r in doc["rows"]}
    for rid in GROUPS[group]:
        assert rid in rows, f"no row {rid} in {sorted(rows)}"
        r = rows[rid]
        for k in ("title", "measure", "value", "per_round", "target", "met", "detail"):
            assert k in r, f"row {rid} has no {k}: {r}"
        v = r["value"]
        assert v and all(isinstance(v[k], (int, float)) for k in ("median", "min", "max")), r
        assert v["min"] <= v["median"] <= v["max"], r
    runs = doc["runs"][group]
    assert runs and all(isinstance(x, list) and x for x in runs.values()), runs
    for variant, results in runs.items():
        for res in results:
            assert isinstance(res, dict) and "log_records" in res, (variant, res)
    return doc


def test_openclose(ctx):
    smoke(ctx, "openclose")


def test_churn(ctx):
    if not shutil.which("strace"):
        cwtest.skip("strace is not installed")
    smoke(ctx, "churn")


def test_nginx(ctx):
    missing = [n for n in ("nginx", "wrk") if not shutil.which(n) and not os.access(f"/usr/sbin/{n}", os.X_OK)]
    if missing:
        cwtest.skip(" and ".join(missing) + " not installed (apt-get install nginx-light wrk)")
    smoke(ctx, "nginx")


def test_closelat(ctx):
    smoke(ctx, "closelat")


def test_rss(ctx):
    smoke(ctx, "rss")


def test_backtrace(ctx):
    smoke(ctx, "backtrace")


def test_trap(ctx):
    if not shutil.which("strace"):
        cwtest.skip("strace is not installed")
    smoke(ctx, "trap")


def test_gohttp(ctx):
    missing = [w for w, ok in (("wrk", shutil.which("wrk")),
                               ("Go", os.path.exists(os.path.join(cwtest.BUILD, "bench", "gohttp"))))
               if not ok]
    if missing:
        cwtest.skip(" and ".join(missing) + " missing (apt-get install wrk golang-go)")
    smoke(ctx, "gohttp")
