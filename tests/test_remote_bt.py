"""Backtraces taken from outside (trap/remote_bt.c), as the trap takes them for `bt`:
a child blocked in read() in a known call chain (tests/unit/btchain.c: main → bt_f1 →
bt_f2 → read) is unwound by another process (build/tests/remote_bt_probe) through
/proc/PID/task/TID/syscall (sp, pc), process_vm_readv and libunwind's remote API, and
named from the objects' symbol tables. Every frame is either named from a symbol table
or written as an address: nothing invented."""
import os
import re
import subprocess

import cwtest
from cwtest import ProcKw, prog

FRAME_RE = re.compile(r"^(?:(?P<sym>\S+)\+0x[0-9a-f]+|0x[0-9a-f]+) \((?P<obj>[^()]+)\)$")


def blocked(ctx, name):
    """btchain started with a pipe on stdin, once it is blocked in read()."""
    p = ProcKw([prog(name)], env=cwtest.plain_env(), stdin=subprocess.PIPE)
    ctx.procs.append(p)
    p.expect("ready")

    def in_read():
        with open(f"/proc/{p.p.pid}/syscall") as f:
            return f.read().startswith("0 ")
    cwtest.wait_for(in_read, what="btchain blocked in read()")
    return p


def unwind(pid, max_frames=16):
    r = subprocess.run([prog("remote_bt_probe"), str(pid), str(pid), str(max_frames)], text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    frames = r.stdout.splitlines()
    for f in frames:
        assert FRAME_RE.match(f), f"not a frame: {f!r} in {frames}"
    return frames


def syms(frames):
    return [FRAME_RE.match(f).group("sym") for f in frames]


def test_glibc_dynamic_chain(ctx):
    p = blocked(ctx, "btchain")
    frames = unwind(p.p.pid)
    s = syms(frames)
    exe = os.path.realpath(prog("btchain"))
    # The system call's wrapper in libc, then the program's own chain, in order.
    assert s[0] in ("read", "__read", "__libc_read"), frames
    assert "libc.so" in frames[0], frames
    assert s[1:4] == ["bt_f2", "bt_f1", "main"], frames
    for f in frames[1:4]:
        assert f.endswith(f"({exe})"), frames
    p.p.stdin.close()
    assert p.p.wait(10) == 0


def test_max_frames(ctx):
    p = blocked(ctx, "btchain")
    assert syms(unwind(p.p.pid, 2))[1] == "bt_f2"
    assert len(unwind(p.p.pid, 2)) == 2
    p.p.stdin.close()
    p.p.wait(10)


def test_not_in_a_syscall_gives_nothing(ctx):
    """A thread that is running (not blocked in a system call): no frames, no guess."""
    busy = ProcKw(["python3", "-c", "print('ready', flush=True)\nwhile True: pass"],
                  env=cwtest.plain_env())
    ctx.procs.append(busy)
    busy.expect("ready")
    r = subprocess.run([prog("remote_bt_probe"), str(busy.p.pid)], stdout=subprocess.PIPE,
                       text=True, timeout=30)
    assert r.returncode == 1 and r.stdout == "", r


def test_static_glibc_chain(ctx):
    """A static glibc program has .eh_frame but no .eh_frame_hdr: the search table is
    built from the file; the same chain, every frame in the program itself."""
    p = blocked(ctx, "btchain-static")
    frames = unwind(p.p.pid)
    s = syms(frames)
    assert s[0] in ("read", "__read", "__libc_read"), frames
    assert s[1:4] == ["bt_f2", "bt_f1", "main"], frames
    exe = os.path.realpath(prog("btchain-static"))
    assert all(f.endswith(f"({exe})") for f in frames), frames
    p.p.stdin.close()
    assert p.p.wait(10) == 0


def go_reader_tid(pid):
    """The thread of a Go program blocked in read(0, ...)."""
    def find():
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    words = f.read().split()
            except OSError:
                continue
            if words[:2] == ["0", "0x0"]:
                return int(tid)
        return None
    return cwtest.wait_for(find, what="a Go thread blocked in read(0)")


def test_go_chain(ctx):
    """Go has no .eh_frame: its (compressed) .debug_frame is rewritten into .eh_frame form
    and served to libunwind; the whole goroutine stack down to main.main is named."""
    for name in ("cwgo-static", "cwgo-cgo"):
        if not os.path.exists(prog(name)):
            cwtest.skip(f"{name}: go (golang-go) missing")
        p = ProcKw([prog(name), "say", "ready", "wait"], env=cwtest.plain_env(),
                   stdin=subprocess.PIPE)
        ctx.procs.append(p)
        p.expect("ready")
        tid = go_reader_tid(p.p.pid)
        r = subprocess.run([prog("remote_bt_probe"), str(p.p.pid), str(tid), "16"], text=True,
                           stdout=subprocess.PIPE, timeout=30)
        frames = r.stdout.splitlines()
        assert r.returncode == 0 and all(FRAME_RE.match(f) for f in frames), frames
        s = syms(frames)
        assert s[0] == "runtime/internal/syscall.Syscall6" or s[0].startswith("syscall."), frames
        assert "syscall.read" in s and "os.(*File).Read" in s, frames
        # Callers come after callees: read, then os.File.Read, then main.main.
        assert s.index("syscall.read") < s.index("os.(*File).Read") < s.index("main.main"), frames
        p.p.stdin.close()
        p.p.wait(10)


def test_musl_stops_where_it_cannot_unwind(ctx):
    """musl's libc carries no call frame information for its system call path: the frame
    where the call was made is given (named or as an offset in libc), nothing beyond it is
    guessed."""
    if not os.path.exists(prog("cwprog-musl")):
        cwtest.skip("cwprog-musl: musl-gcc (musl-tools) missing")
    p = ProcKw([prog("cwprog-musl"), "say", "ready", "wait"], env=cwtest.plain_env(),
               stdin=subprocess.PIPE)
    ctx.procs.append(p)
    p.expect("ready")
    cwtest.wait_for(lambda: open(f"/proc/{p.p.pid}/syscall").read().startswith("0 "),
                    what="blocked in read")
    frames = unwind(p.p.pid)
    assert frames and "musl" in frames[0], frames
    p.p.stdin.close()
    p.p.wait(10)
