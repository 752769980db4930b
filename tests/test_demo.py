"""`make demo` and `make install`.

The demo (demo/demo.py) runs its three acts with the real server and client, and
writes what happened in each to a JSON file; the tests here check those facts
themselves rather than trusting the demo's own verdict:
  (a) plain: the client is reset and part of the 413 answer never arrives; RST on the wire;
  (b) observe: the same, plus a rst_unread record with the unread bytes and a backtrace
      into server.c, `report` and `wire` agreeing (RST);
  (c) drain: the whole answer, EOF, FIN and no RST;
  (d) the same server in Go (demo/server.go), watched through the trap: plain, reset;
      under `closewatch run --mode drain`, the whole answer, EOF, FIN and no RST, with the
      drain made by closewatch. Skipped by the demo, saying why, only where Go is missing.

Install: `make install DESTDIR=… PREFIX=/usr` puts every file in place, the .pc file
gives the flags a program needs to build against the installed header and library,
the installed `closewatch run` finds the installed library from any directory, and
`make uninstall` removes it all."""
import json
import os
import stat
import subprocess
import sys

import cwtest
from cwtest import BUILD, ROOT

DEMO = os.path.join(ROOT, "demo", "demo.py")
ANSWER_BODY = 1 << 20


def run_demo(ctx, *flags, timeout=90):
    out = ctx.path("demo.json")
    env = dict(os.environ, BUILD=BUILD)
    env.pop("LD_PRELOAD", None)
    if cwtest.PRELOAD_PREFIX:
        env["LD_PRELOAD"] = cwtest.PRELOAD_PREFIX
    r = subprocess.run([sys.executable, DEMO, "--json", out] + list(flags), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, cwd=ctx.tmp)
    assert os.path.exists(out), f"demo wrote no {out}; exit {r.returncode}; output:\n{r.stdout[-4000:]}"
    with open(out) as f:
        res = json.load(f)
    acts = {a["act"]: a for a in res["acts"]}
    assert set(acts) == {"a", "b", "c", "d"}, res
    return r, res, acts


def check_lossy(a, capture):
    """Acts (a) and (b): reset, the answer cut short, RST from the server."""
    assert a["client_end"] == "reset", a
    assert a["status"] == 413, f"the client saw no 413 status line at all: {a}"
    assert a["expected"] == ANSWER_BODY, a
    assert a["body"] < ANSWER_BODY and a["lost"] > 0, a
    assert a["lost"] == a["answer_bytes"] - a["received"], a
    if capture:
        w = a["wire"]
        assert w["server_rst"] >= 1, f"no RST from the server on the wire: {w}"
        assert w["server_payload"] < a["answer_bytes"], w


@cwtest.timeout(150)
def test_demo_three_acts(ctx):
    r, res, acts = run_demo(ctx)
    out = r.stdout
    capture = res["capture"]
    if os.geteuid() == 0:
        assert capture, "running as root, yet the demo took no packet capture"
    else:
        assert "NOTE: no packet capture" in out
    for h in ("Act (a) of 4", "Act (b) of 4", "Act (c) of 4", "Act (d) of 4", "Summary"):
        assert h in out, f"heading {h!r} missing from the demo's output"
    assert r.returncode == 0, f"demo exit {r.returncode}:\n{out[-6000:]}"
    assert res["ok"] is True

    a, b, c = acts["a"], acts["b"], acts["c"]
    check_lossy(a, capture)
    check_lossy(b, capture)

    # (b): the record says why, exactly, and where.
    rec = b["record"]
    assert rec and rec["call"] == "close" and rec["verdict"] == "rst_unread", rec
    assert rec["proto"] == "tcp" and rec["state"] == "ESTABLISHED", rec
    assert rec["recvq"] > 0, rec
    assert rec["lost"] == rec["recvq"] + rec["sendq"], rec
    assert rec["unsent"] > 0 and rec["sendq"] >= rec["unsent"], rec
    assert any(f.startswith("handle_upload+") and "/demo/server)" in f for f in rec.get("bt", [])), \
        f"backtrace does not point into the server's handle_upload: {rec.get('bt')}"
    assert "demo/server.c:" in out, "the backtrace was not resolved to a line of server.c"
    if capture:
        assert b["wire_rc"] == 0, "closewatch wire found a wrong prediction in act (b)"
        # What the server sent is what the record said was sent: everything but
        # `unsent`. Under a sanitizer the window between the shim's look and the
        # real close is wide enough for more to leave (never less).
        sent = b["answer_bytes"] - rec["unsent"]
        if os.environ.get("CW_SANITIZER"):
            assert sent <= b["wire"]["server_payload"] <= b["answer_bytes"], (b["wire"], rec)
        else:
            assert b["wire"]["server_payload"] == sent, (b["wire"], rec)

    # (c): the same programs, nothing lost.
    assert c["client_end"] == "eof", c
    assert c["status"] == 413 and c["body"] == c["expected"] == ANSWER_BODY, c
    assert c["lost"] == 0 and c["received"] == c["answer_bytes"], c
    if capture:
        w = c["wire"]
        assert w["server_fin"] >= 1, w
        assert w["server_rst"] == 0 and w["client_rst"] == 0, f"RST on the wire in act (c): {w}"
        assert w["server_payload"] == c["answer_bytes"], w
        assert c["wire_rc"] == 0, "closewatch wire found a wrong prediction in act (c)"

    check_go_act(acts["d"], capture)

    # The summary table: one row per act.
    tail = out[out.index("Summary"):]
    for row in ("(a) plain", "(b) closewatch run", "(c) closewatch run --mode drain", "(d) Go"):
        assert row in tail, f"summary row {row!r} missing"
    assert "All acts behaved as described" in tail


def check_go_act(d, capture):
    """Act (d): skipped only where Go is missing (a failure under CI); otherwise the Go
    server resets its client plain, and delivers the whole answer under drain (the trap)."""
    if d.get("skipped"):
        assert not os.path.exists(os.path.join(BUILD, "demo", "server-go")), d
        cwtest.skip(f"act (d) skipped by the demo: {d['skipped']}")
        return
    check_lossy(d["plain"], capture)
    c = d["drain"]
    assert c["client_end"] == "eof", c
    assert c["status"] == 413 and c["body"] == c["expected"] == ANSWER_BODY, c
    assert c["lost"] == 0 and c["received"] == c["answer_bytes"], c
    if capture:
        w = c["wire"]
        assert w["server_fin"] >= 1 and w["server_rst"] == 0 and w["client_rst"] == 0, w
        assert w["server_payload"] == c["answer_bytes"], w


@cwtest.timeout(120)
def test_demo_without_capture(ctx):
    """What a non-root user gets: the acts still run and are judged on what the
    client saw and what closewatch logged; the demo says the capture was skipped."""
    r, res, acts = run_demo(ctx, "--no-capture")
    assert res["capture"] is False
    assert "NOTE: no packet capture" in r.stdout
    assert "closewatch wire: skipped" in r.stdout
    assert r.returncode == 0, f"demo exit {r.returncode}:\n{r.stdout[-6000:]}"
    check_lossy(acts["a"], False)
    check_lossy(acts["b"], False)
    assert acts["a"]["fin_rst"] == "RST (client)"
    assert acts["c"]["client_end"] == "eof" and acts["c"]["lost"] == 0
    assert acts["c"]["fin_rst"] == "FIN (client)"
    check_go_act(acts["d"], False)


# ---------------------------------------------------------------- install

INSTALLED = {
    "usr/lib/libclosewatch.so": 0o755,
    "usr/bin/closewatch": 0o755,
    "usr/include/closewatch.h": 0o644,
    "usr/lib/pkgconfig/closewatch.pc": 0o644,
    "usr/share/man/man1/closewatch.1": 0o644,
    "usr/share/man/man7/libclosewatch.7": 0o644,
}


def make(*args, timeout=300):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, f"BUILD={BUILD}"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout[-4000:]}"
    return r.stdout


def pkgconf(dest, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(dest, "usr/lib/pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=dest, PKG_CONFIG_LIBDIR="")
    r = subprocess.run(["pkg-config"] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, f"pkg-config {args}: {r.stderr}"
    return r.stdout.strip()


@cwtest.timeout(300)
def test_install_destdir(ctx):
    dest = ctx.path("stage")
    make("install", f"DESTDIR={dest}", "PREFIX=/usr")
    for rel, mode in INSTALLED.items():
        p = os.path.join(dest, rel)
        assert os.path.isfile(p), f"not installed: /{rel}"
        assert stat.S_IMODE(os.stat(p).st_mode) == mode, f"/{rel}: mode {oct(os.stat(p).st_mode)}"
    found = sorted(os.path.relpath(os.path.join(d, f), dest)
                   for d, _, fs in os.walk(dest) for f in fs)
    assert found == sorted(INSTALLED), f"installed files: {found}"
    # The .pc file describes /usr, not the staging directory.
    pc = open(os.path.join(dest, "usr/lib/pkgconfig/closewatch.pc")).read()
    assert "prefix=/usr\n" in pc and dest not in pc, pc
    for page in ("usr/share/man/man1/closewatch.1", "usr/share/man/man7/libclosewatch.7"):
        head = open(os.path.join(dest, page)).read(200)
        assert head.startswith(".TH "), f"/{page} is not a man page"

    # pkg-config, as a cross build against the staging tree would use it.
    assert pkgconf(dest, "--exists", "closewatch") == ""
    cflags = pkgconf(dest, "--cflags", "closewatch").split()
    libs = pkgconf(dest, "--libs", "closewatch").split()
    assert f"-I{dest}/usr/include" in cflags, cflags
    assert f"-L{dest}/usr/lib" in libs and "-lclosewatch" in libs, libs
    assert pkgconf(dest, "--variable=preload", "closewatch") == f"{dest}/usr/lib/libclosewatch.so"
    assert pkgconf(dest, "--modversion", "closewatch")

    # Those flags build and run a program against the installed header and library.
    src = ctx.path("use.c")
    with open(src, "w") as f:
        f.write('#include <closewatch.h>\n#include <stdio.h>\n#include <string.h>\n'
                'int main(void) {\n'
                '  puts(closewatch_verdict_name(CLOSEWATCH_RST_UNREAD));\n'
                '  return !closewatch_verdict_is_risky(CLOSEWATCH_RST_UNREAD);\n}\n')
    exe = ctx.path("use")
    cc = subprocess.run(["cc", "-o", exe, src] + cflags + libs, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=60)
    assert cc.returncode == 0, cc.stdout
    env = dict(cwtest.plain_env(), LD_LIBRARY_PATH=f"{dest}/usr/lib")
    if cwtest.PRELOAD_PREFIX:  # make check: the sanitizer runtime must come first
        env["LD_PRELOAD"] = cwtest.PRELOAD_PREFIX
    run = subprocess.run([exe], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == "rst_unread", (run.stdout, run.stderr)

    # The installed `closewatch run`, started from an unrelated directory with a
    # PATH that knows nothing of the build, preloads the installed library.
    elsewhere = ctx.path("elsewhere")
    os.mkdir(elsewhere)
    log = os.path.join(elsewhere, "cw.log")
    env = cwtest.plain_env()
    env["PATH"] = "/usr/bin:/bin"
    if cwtest.PRELOAD_PREFIX:
        env["LD_PRELOAD"] = cwtest.PRELOAD_PREFIX
    prog = ("import os, socket\n"
            "print(os.environ['LD_PRELOAD'])\n"
            "a, b = socket.socketpair()\n"
            "a.send(b'xyz')\n"
            "b.close()\n")
    r = subprocess.run([os.path.join(dest, "usr/bin/closewatch"), "run", "--json", "--log", log,
                        "--", sys.executable, "-c", prog], cwd=elsewhere, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, f"installed closewatch run: exit {r.returncode}: {r.stderr}"
    preload = r.stdout.strip().split(":")
    lib = os.path.realpath(os.path.join(dest, "usr/lib/libclosewatch.so"))
    assert lib in preload, f"LD_PRELOAD {preload} does not name the installed {lib}"
    recs = cwtest.read_records(log)
    rec = cwtest.one_record(recs, verdict="rst_unread")
    cwtest.check_fields(rec, proto="unix", recvq=3, call="close")

    make("uninstall", f"DESTDIR={dest}", "PREFIX=/usr")
    left = [os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs]
    assert left == [], f"left after uninstall: {left}"
