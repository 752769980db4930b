"""The way in chosen for a program (`closewatch run --via auto`): tools/via.c over
core/elfkind.c, checked against real binaries — a glibc program, gcc -static,
musl-gcc, Go with and without cgo, a setuid copy, scripts — and the facts that make
the choice necessary: a musl program does not even start with the glibc-built shim
preloaded, and a Go program built with cgo loads the shim yet none of its closes
goes through it."""
import os
import re
import sys
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


# ---------------------------------------------------------------- run's summary: watched / not watched

def run_cli(ctx, *cmd, env=None, via=None, preload=True):
    """closewatch run. preload: the run ends up preloading the shim (under make check the
    sanitizer runtime must then come first, as test_cli.py does); not for a run through
    the trap, whose programs get nothing preloaded (a musl one could not even start)."""
    opts = ["--via", via] if via else []
    env = dict(env or cwtest.plain_env())
    if preload and cwtest.PRELOAD_PREFIX:
        env["LD_PRELOAD"] = cwtest.PRELOAD_PREFIX
    return subprocess.run([cwtest.CLI, "run"] + opts + ["--"] + list(cmd), text=True, cwd=ctx.tmp,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, env=env)


def test_run_names_programs_exec_later_it_cannot_watch(ctx):
    """sh (watched) execs a static program and a Go program: the summary names the one
    process watched via preload and lists both others as not watched, with the reason."""
    static = prog("cwprog-static")
    go = need("cwgo-static", "go (golang-go)")
    r = run_cli(ctx, "sh", "-c", f"{static} say a; {go} say b; {go} say c; exec {static} say d")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a\nb\nc\nd\n", r.stdout
    err = r.stderr
    assert re.search(r"^closewatch: watched via preload: 1 process: (dash|bash|sh)\[\d+\]$", err, re.M), err
    assert f"closewatch: {static}: not watched (statically linked: use --via trap) (2 processes)\n" in err, err
    assert f"closewatch: {go}: not watched (Go program: use --via trap) (2 processes)\n" in err, err
    assert "closewatch: 0 socket closes logged by 0 processes" in err, err


def test_run_posix_spawn_and_path_search(ctx):
    """posix_spawnp finds the program in PATH like execvp; the pid is the child's."""
    d = ctx.path("bin")
    os.mkdir(d)
    shutil.copy(prog("cwprog-static"), os.path.join(d, "srv"))
    code = ("import os\n"
            "pid = os.posix_spawnp('srv', ['srv', 'say', 'x'], os.environ)\n"
            "os.waitpid(pid, 0)\n"
            # One write, after the child's own output: no interleaving.
            "os.write(1, b'child %d\\n' % pid)\n")
    env = cwtest.plain_env()
    env["PATH"] = d + ":" + env.get("PATH", "/usr/bin:/bin")
    r = run_cli(ctx, sys.executable, "-c", code, env=env)
    assert r.returncode == 0, r.stderr
    m = re.search(r"child (\d+)", r.stdout)
    assert m, (r.stdout, r.stderr)
    pid = int(m.group(1))
    assert f"closewatch: {d}/srv: not watched (statically linked: use --via trap)\n" in r.stderr, r.stderr
    assert re.search(r"watched via preload: 1 process: python3[.\d]*\[\d+\]", r.stderr), r.stderr
    assert pid > 0


def test_run_names_a_top_program_it_cannot_watch(ctx):
    """--via preload forced on a static program: said up front and in the summary."""
    static = prog("cwprog-static")
    r = run_cli(ctx, static, "say", "hi", via="preload")
    assert r.returncode == 0 and r.stdout == "hi\n", r
    line = f"closewatch: {static}: not watched (statically linked: use --via trap)\n"
    # Up front, and again in the summary; no process watched.
    assert r.stderr.count(line) == 2, r.stderr
    assert "watched via preload" not in r.stderr, r.stderr


def test_run_refuses_preload_for_musl(ctx):
    """musl's loader cannot load the glibc-built shim (the program would exit 127):
    refused up front, the program is not started."""
    p = need("cwprog-musl", "musl-gcc (musl-tools)")
    marker = ctx.path("started")
    r = run_cli(ctx, p, "open", marker, via="preload", preload=False)
    assert r.returncode == 125, r
    assert "cannot be watched with LD_PRELOAD (musl loader /lib/ld-musl-" in r.stderr, r.stderr
    assert not os.path.exists(marker)


def test_run_summary_glibc_program(ctx):
    r = run_cli(ctx, prog("cwprog"), "say", "hi")
    assert r.returncode == 0, r
    assert re.search(r"^closewatch: watched via preload: 1 process: cwprog\[\d+\]$", r.stderr, re.M), r.stderr
    assert "not watched" not in r.stderr, r.stderr


def test_run_summary_counts_a_process_that_execs_once(ctx):
    """A process that execs two programs in a row is one process, named with the programs
    it went on to run; a child that runs the same programs is another process."""
    cw = prog("cwprog")
    r = run_cli(ctx, "sh", "-c", f"sh -c 'exec {cw} say a'; exec sh -c 'exec {cw} say b'")
    assert r.returncode == 0 and r.stdout == "a\nb\n", r
    m = re.search(r"^closewatch: watched via preload: (\d+) process(es)?: (.*)$", r.stderr, re.M)
    assert m, r.stderr
    assert m.group(1) == "2", r.stderr
    names = re.findall(r"(\w+)\[(\d+)\]( \(exec'd [^)]*\))?", m.group(3))
    shell = names[0][0]  # sh's real program: dash, bash...
    assert [(n[0], n[2]) for n in names] == [(shell, f" (exec'd {shell}, cwprog)"),
                                             (shell, " (exec'd cwprog)")], r.stderr
    assert names[0][1] != names[1][1], r.stderr


def test_no_status_channel_no_lines(ctx):
    """Under a plain LD_PRELOAD (no run), exec'ing a static program writes nothing anywhere
    and changes nothing the program sees."""
    static = prog("cwprog-static")
    r = subprocess.run(["sh", "-c", f"exec {static} say ok"], env=cwtest.shim_env(),
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", ""), r


def test_run_auto_picks_the_trap(ctx):
    """Without --via, a static, a musl and a Go program are watched through the trap, and
    the summary says so instead of a bare count."""
    for name, what in (("cwprog-static", "gcc -static"), ("cwprog-musl", "musl-gcc (musl-tools)"),
                       ("cwgo-static", "go (golang-go)"), ("cwgo-cgo", "go (golang-go)")):
        p = need(name, what)
        r = run_cli(ctx, p, "say", "hi", preload=False)
        assert r.returncode == 0 and r.stdout == "hi\n", (name, r)
        assert f"closewatch: watched via trap: {p}" in r.stderr, (name, r.stderr)
        assert "not watched" not in r.stderr and "watched via preload" not in r.stderr, r.stderr
