"""The log never stops or kills the program, and lost records are said.

Where records go can be hostile: a FIFO nobody opened for reading, a FIFO or a stderr pipe
whose reader never reads, a stderr pipe whose reader is gone, a device that refuses every
write (/dev/full). In every case the program runs to its end exactly as without the shim
(same output, same exit status, no SIGPIPE left behind), never blocked indefinitely; records
that could not be written give one warning line on stderr (naming the target and the error)
and are counted in `closewatch run`'s summary.

Every run is bounded by a timeout: a hang fails the test instead of stalling the suite."""
import fcntl
import json
import os
import subprocess

import cwtest
from cwtest import CLI, plain_env, prog, read_records, shim_env

SAN = os.environ.get("CW_SANITIZER", "") or ("on" if cwtest.PRELOAD_PREFIX else "")
TIMEOUT = 60

# Many records (every close logged): more than one page of pipe.
MANY = ["threads", 2, 40 if SAN else 100, "pair", "say", "end"]
# A risky close (rst_unread): logged with the default CLOSEWATCH_EVENTS=risky too.
RISKY = ["socketpair", "write", 3, "use", "pair", "close", "say", "end"]


def run(argv, env, stderr, timeout=TIMEOUT):
    """Run to the end with the given stderr: (status, stdout lines)."""
    p = subprocess.Popen([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=stderr)
    if isinstance(stderr, int) and stderr >= 0:
        os.close(stderr)  # the program holds the only write end now
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"{argv[0]} {argv[1:4]} still running after {timeout}s: "
                             "blocked by the log")
    return p.returncode, out.decode(errors="replace").splitlines()


def drain(fd):
    """What can be read from a non-blocking fd now."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def warnings(text):
    """The shim's human lines (records are JSON here: they start with '{')."""
    return [l for l in text.splitlines() if l.startswith("closewatch:")]


def one_page_pipe(fd):
    """Make the pipe behind fd one page: a few records fill it."""
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)


def whole_records(data):
    """Every complete line is a whole JSON record (a record is written whole or not at all)."""
    lines = data.decode(errors="replace").split("\n")
    assert lines[-1] == "", f"a record cut short at the end: {lines[-1][:200]!r}"
    return [json.loads(l) for l in lines[:-1] if l]


# ---------------------------------------------------------------- opening the log

@cwtest.timeout(120)
def test_log_fifo_without_reader_does_not_block(ctx):
    """CLOSEWATCH_LOG names a FIFO that nobody reads: opening it used to block the program
    before main. Now: one warning naming it and the error, records on stderr (as for any
    log that cannot be opened), the program's output and status unchanged."""
    fifo = ctx.path("log.fifo")
    os.mkfifo(fifo)
    argv = [prog("cwprog")] + RISKY
    rc0, plain = run(argv, plain_env(), subprocess.DEVNULL)
    err = ctx.path("stderr")
    with open(err, "wb") as f:
        rc, out = run(argv, shim_env(log=fifo, events="risky"), f)
    with open(err) as f:
        text = f.read()
    assert (rc, out) == (rc0, plain) == (0, plain), (rc, out, plain, text)
    w = warnings(text)
    assert len(w) == 1 and fifo in w[0] and "No such device or address" in w[0], text
    recs = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
    assert [r["verdict"] for r in recs] == ["rst_unread"], text


# ---------------------------------------------------------------- a reader that is gone

def _stderr_reader_gone(argv, env):
    r, w = os.pipe()
    os.close(r)
    return run(argv, env, w)


@cwtest.timeout(120)
def test_stderr_pipe_reader_gone_no_sigpipe(ctx):
    """Records go to stderr, a pipe whose reader has gone (`prog 2>&1 | head -1` after head
    ended): the record write meets EPIPE. The shim used to kill the program with SIGPIPE
    (141) on the first risky close; now it runs to its end with the status it has without
    the shim. With SIGPIPE blocked the program finds no SIGPIPE pending that it did not
    raise itself, and one it raised itself is still pending after the close."""
    for mode in ("default", "block", "block-pending"):
        argv = [prog("logw_sigpipe"), mode]
        rc0, plain = _stderr_reader_gone(argv, plain_env())
        rc, out = _stderr_reader_gone(argv, shim_env(events="risky"))
        assert rc0 == 0 and plain[-1] == "cmp end", (mode, rc0, plain)
        assert (rc, out) == (rc0, plain), f"{mode}: shim {rc} {out}, plain {rc0} {plain}"
    # The same with cwprog and every close logged, JSON and text.
    argv = [prog("cwprog")] + MANY
    rc0, plain = _stderr_reader_gone(argv, plain_env())
    for fmt in ("json", "text"):
        rc, out = _stderr_reader_gone(argv, shim_env(fmt=fmt, events="all"))
        assert (rc, out) == (rc0, plain), f"{fmt}: shim {rc} {out[-3:]}, plain {rc0} {plain[-3:]}"


@cwtest.timeout(120)
def test_run_with_stderr_reader_gone(ctx):
    """`closewatch run ... 2>&1 | head -1` after head ended: run's own lines (warnings, the
    summary) meet EPIPE. run used to die of SIGPIPE (status 141 for a program that ended 0;
    under the trap a supervisor that dies leaves every trapped call failing with ENOSYS).
    Both ways in, warn mode, every close logged: run ends with the program's status and the
    program's output is whole. SIGPIPE is blocked in run, not ignored, so the program keeps
    the default: one that writes to that stderr itself still dies of it, as without us."""
    import test_trap
    test_trap.have_trap()
    for via, name in (("preload", "cwprog"), ("trap", test_trap.STATIC)):
        argv = [prog(name)] + MANY
        rc0, plain = _stderr_reader_gone(argv, plain_env())
        # (make check: through the trap nothing is preloaded, and sh is not built with
        # the sanitizer, whose runtime preloaded alone crashes it)
        env = _cli_env() if via == "preload" else plain_env()
        env.update(CLOSEWATCH_MODE="warn", CLOSEWATCH_EVENTS="all")
        rc, out = _stderr_reader_gone([CLI, "run", "--via", via, "--"] + argv, env)
        assert (rc, out) == (rc0, plain), f"{via}: run {rc} {out[-3:]}, plain {rc0} {plain[-3:]}"
        sh = ["sh", "-c", "echo to-stderr >&2; echo survived"]
        rc0, plain = _stderr_reader_gone(sh, plain_env())
        assert rc0 == -13 and plain == [], (rc0, plain)  # killed by SIGPIPE
        rc, out = _stderr_reader_gone([CLI, "run", "--via", via, "--"] + sh, env)
        assert (rc, out) == (128 + 13, []), f"{via}: run {rc} {out}"


# ---------------------------------------------------------------- a reader that never reads

@cwtest.timeout(120)
def test_full_fifo_log_does_not_block(ctx):
    """The log is a FIFO whose reader never reads: once its page is full, the writes used to
    block the program forever. Now: a bounded wait, then records are dropped and counted;
    the program runs to its end; what reached the FIFO is whole records; one warning."""
    fifo = ctx.path("log.fifo")
    os.mkfifo(fifo)
    rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        one_page_pipe(rd)
        argv = [prog("cwprog")] + MANY
        rc0, plain = run(argv, plain_env(), subprocess.DEVNULL)
        err = ctx.path("stderr")
        with open(err, "wb") as f:
            rc, out = run(argv, shim_env(log=fifo, events="all"), f)
        got = drain(rd)
    finally:
        os.close(rd)
    with open(err) as f:
        text = f.read()
    assert (rc, out) == (rc0, plain) == (0, plain), (rc, out[-3:], text[-2000:])
    recs = whole_records(got)
    assert 0 < len(recs) < 200, f"{len(recs)} records in a one-page FIFO?"
    w = warnings(text)
    assert len(w) == 1 and fifo in w[0] and "Resource temporarily unavailable" in w[0], text
    assert not [l for l in text.splitlines() if l.startswith("{")], "records spilled into stderr"


@cwtest.timeout(120)
def test_full_stderr_pipe_does_not_block(ctx):
    """Records go to stderr, a pipe whose reader never reads (a parent that reads stderr
    only at the end): the program does not write to stderr itself, so without the shim it
    never blocks; with it, it must not either. stderr's flags stay the program's: the
    program still sees a blocking stderr."""
    r, w = os.pipe()
    try:
        one_page_pipe(r)
        os.set_blocking(r, False)
        argv = [prog("cwprog")] + MANY
        rc0, plain = run(argv, plain_env(), subprocess.DEVNULL)
        rc, out = run(argv, shim_env(events="all"), os.dup(w))
        got = drain(r)
        # The program's description (we hold it too): still blocking.
        blocking = os.get_blocking(w)
    finally:
        os.close(r)
        os.close(w)
    assert (rc, out) == (rc0, plain) == (0, plain), (rc, out[-3:])
    assert blocking, "the shim made the program's stderr non-blocking"
    # What reached the pipe: whole records, and at most one warning (it may not fit).
    lines = got.decode(errors="replace").split("\n")
    assert lines[-1] == "", f"cut short: {lines[-1][:200]!r}"
    recs = [json.loads(l) for l in lines[:-1] if l.startswith("{")]
    assert recs and len(recs) + len(warnings(got.decode())) == len(lines) - 1, lines[:5]


# ---------------------------------------------------------------- lost records are said

@cwtest.timeout(120)
def test_dev_full_one_warning(ctx):
    """CLOSEWATCH_LOG=/dev/full: every record write fails with ENOSPC. Records used to vanish
    without a word; now exactly one warning line names /dev/full and the error, however many
    records are lost, and nothing else lands on stderr."""
    argv = [prog("cwprog")] + MANY
    rc0, plain = run(argv, plain_env(), subprocess.DEVNULL)
    err = ctx.path("stderr")
    with open(err, "wb") as f:
        rc, out = run(argv, shim_env(log="/dev/full", events="all"), f)
    with open(err) as f:
        text = f.read()
    assert (rc, out) == (rc0, plain), (rc, out[-3:], text)
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one warning line, got {len(lines)}: {text[:2000]}"
    assert lines[0].startswith("closewatch:") and "/dev/full" in lines[0] \
        and "No space left on device" in lines[0], lines[0]


def _cli_env():
    env = plain_env()
    env["TMPDIR"] = os.environ.get("TMPDIR", "/tmp")
    if cwtest.PRELOAD_PREFIX:
        env["LD_PRELOAD"] = cwtest.PRELOAD_PREFIX
    return env


@cwtest.timeout(180)
def test_run_summary_counts_lost_records(ctx):
    """`closewatch run --log /dev/full`: the summary says how many records could not be
    written, summed over every process of the run (here a parent and a child that closes
    a shared socket and leaves with _exit), and the count is the number of records the same
    run writes to a file. The status file is gone afterwards."""
    _summary_counts_lost_records(ctx, "preload", "cwprog")


def test_run_summary_counts_lost_records_through_the_trap(ctx):
    """The same through the trap, whose supervisor writes every record (a static program)."""
    import test_trap
    test_trap.have_trap()
    _summary_counts_lost_records(ctx, "trap", test_trap.STATIC)


def _summary_counts_lost_records(ctx, via, name):
    acts = ["socketpair", "write", 3, "fork-close", "use", "pair", "close",
            "socket", "tcp4", "close", "say", "end"]
    argv = [prog(name)] + [str(a) for a in acts]
    tmp = ctx.path("tmp")
    os.mkdir(tmp)
    env = _cli_env()
    env["TMPDIR"] = tmp
    log = ctx.path("cw.log")
    r = subprocess.run([CLI, "run", "--via", via, "--events", "all", "--json", "--log", log,
                        "--"] + argv, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    recs = read_records(log)
    assert len({x["pid"] for x in recs}) == 2 and len(recs) >= 3, recs
    assert "could not be written" not in r.stderr, r.stderr
    try:
        r = subprocess.run([CLI, "run", "--via", via, "--events", "all", "--json", "--log",
                            "/dev/full", "--"] + argv, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError("closewatch run --log /dev/full did not end")
    assert r.returncode == 0, r.stderr
    want = f"closewatch: {len(recs)} records could not be written to /dev/full " \
           "(No space left on device)"
    assert want in r.stderr.splitlines(), f"expected {want!r} in:\n{r.stderr}"
    assert os.listdir(tmp) == [], os.listdir(tmp)


@cwtest.timeout(60)
def test_run_status_file_gets_a_line_only_for_losses(ctx):
    """The internal CLOSEWATCH_RUN_STATUS names a file the shim appends to: only an
    existing file (never created), only with something to report."""
    status = ctx.path("status")
    argv = [prog("cwprog")] + RISKY
    env = shim_env(log=ctx.path("cw.log"), events="risky",
                   extra={"CLOSEWATCH_RUN_STATUS": status})
    rc, _ = run(argv, env, subprocess.DEVNULL)
    assert rc == 0 and not os.path.exists(status), "the status file was created"
    open(status, "w").close()
    rc, _ = run(argv, env, subprocess.DEVNULL)
    # (every process also announces itself there: "watched pid=N via=preload exe=...")
    with open(status) as f:
        assert rc == 0 and [x for x in f.read().splitlines() if not x.startswith("watched ")] == [], \
            "a line with nothing lost"
    open(status, "w").close()
    env["CLOSEWATCH_LOG"] = "/dev/full"
    rc, _ = run(argv, env, subprocess.DEVNULL)
    with open(status) as f:
        lines = [x for x in f.read().splitlines() if not x.startswith("watched ")]
    assert rc == 0 and len(lines) == 1, lines
    assert lines[0].startswith("lost pid=") and " records=1 target=/dev/full " \
        "error=No space left on device" in lines[0], lines[0]
