"""The way in chosen for a program (`closewatch run --via auto`): tools/via.c over
shim/elfkind.c, checked against real binaries — a glibc program, gcc -static,
musl-gcc, Go with and without cgo, a setuid copy, scripts — and the facts that make
the choice necessary: a musl program does not even start with the glibc-built shim
preloaded, and a Go program built with cgo loads the shim yet none of its closes
goes through it."""
import os
import shutil
import stat
import subprocess

import cwtest
from cwtest import prog, read_records


def probe(*cmds, env=None):
    out = subprocess.run([prog("via_probe")] + list(cmds), check=True, text=True,
                         stdout=subprocess.PIPE, env=env).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def need(name, what):
    """A test program built only when its toolchain exists (mk/langs.mk)."""
    if not os.path.exists(prog(name)):
        cwtest.skip(f"{prog(name)} not built: {what} missing")
    return prog(name)


def test_glibc_programs_preload(ctx):
    got = probe("/bin/true", "true", prog("cwprog"), "python3")
    assert got == {"/bin/true": "preload", "true": "preload", prog("cwprog"): "preload",
                   "python3": "preload"}, got


def test_static_is_trap(ctx):
    got = probe(prog("cwprog-static"))
    assert got[prog("cwprog-static")] == "trap statically linked", got


def test_musl_is_trap(ctx):
    p = need("cwprog-musl", "musl-gcc (musl-tools)")
    got = probe(p)
    assert got[p].startswith("trap musl loader /lib/ld-musl-"), got


def test_musl_refuses_the_glibc_shim(ctx):
    """Why preload must not be used on musl: its loader cannot relocate the shim."""
    p = need("cwprog-musl", "musl-gcc (musl-tools)")
    r = subprocess.run([p, "say", "started"], env=cwtest.shim_env(), text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 127 and "started" not in r.stdout, (r.returncode, r.stdout, r.stderr)
    r = subprocess.run([p, "say", "started"], env=cwtest.plain_env(), text=True,
                       stdout=subprocess.PIPE, timeout=30)
    assert (r.returncode, r.stdout) == (0, "started\n")


def test_go_is_trap(ctx):
    for name, cgo in (("cwgo-cgo", True), ("cwgo-static", False)):
        p = need(name, "go (golang-go)")
        out = subprocess.run(["file", "-L", p], text=True, stdout=subprocess.PIPE).stdout \
            if shutil.which("file") else ""
        if out:
            # The two builds really differ: cgo loads glibc's linker, the other is static.
            assert ("ld-linux" in out) == cgo, out
        got = probe(p)
        assert got[p] == "trap Go program", (name, got)


def test_go_with_cgo_loads_the_shim_but_bypasses_it(ctx):
    """A cgo build starts under glibc's linker with the shim loaded, yet its closes are
    raw system calls: the shim logs nothing. This is why Go goes to the trap."""
    p = need("cwgo-cgo", "go (golang-go)")
    log = ctx.path("cw.log")
    r = subprocess.run([p, "threads", "2", "5", "listen", "127.0.0.1", "0", "close",
                        "say", "done"], env=cwtest.shim_env(log=log), text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0 and r.stdout.endswith("done\n"), (r.returncode, r.stdout, r.stderr)
    assert read_records(log) == [], read_records(log)
    # ... although the shim is loaded in it.
    w = cwtest.cwprog(ctx, "say", "ready", "wait", env=cwtest.shim_env(), name="cwgo-cgo")
    w.expect("ready")
    with open(f"/proc/{w.p.pid}/maps") as f:
        assert "libclosewatch.so" in f.read()
    cwtest.tell(w)
    assert cwtest.finish(w) == 0
    # The same scenario in C under the shim is seen (so the log path works).
    log2 = ctx.path("c.log")
    r = subprocess.run([prog("cwprog"), "listen", "127.0.0.1", "0", "close"],
                       env=cwtest.shim_env(log=log2), stdout=subprocess.PIPE, timeout=30)
    assert r.returncode == 0
    assert [x["call"] for x in read_records(log2)] == ["close"], read_records(log2)


def test_setuid_is_trap(ctx):
    if os.geteuid() != 0:
        cwtest.skip("needs root to make a setuid copy owned by another user")
    p = ctx.path("suid-true")
    shutil.copy("/bin/true", p)
    os.chown(p, 65534, -1)
    os.chmod(p, 0o755 | stat.S_ISUID)
    assert probe(p)[p] == "trap setuid"
    # Setuid to ourselves changes nothing: the loader still honours LD_PRELOAD.
    os.chown(p, 0, -1)
    os.chmod(p, 0o755 | stat.S_ISUID)
    assert probe(p)[p] == "preload"


def test_scripts_follow_the_interpreter(ctx):
    static = prog("cwprog-static")
    s1, s2, s3 = ctx.path("a.sh"), ctx.path("b"), ctx.path("c")
    with open(s1, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    with open(s2, "w") as f:
        f.write(f"#! {static} say\n")
    with open(s3, "w") as f:
        f.write("not a program\n")
    for s in (s1, s2, s3):
        os.chmod(s, 0o755)
    got = probe(s1, s2, s3)
    assert got[s1] == "preload", got
    assert got[s2] == f"trap statically linked (interpreter {static})", got
    # Not ELF and no #!: exec decides (execvp runs it with /bin/sh): preload.
    assert got[s3] == "preload", got


def test_path_search_like_execvp(ctx):
    d = ctx.path("bin")
    os.mkdir(d)
    shutil.copy(prog("cwprog-static"), os.path.join(d, "srv"))
    env = dict(os.environ, PATH=d + ":/usr/bin:/bin")
    assert probe("srv", env=env)["srv"] == "trap statically linked"
    # Not found anywhere: preload, and exec reports the error as without closewatch.
    assert probe("no-such-program-cw", env=env)["no-such-program-cw"] == "preload"
