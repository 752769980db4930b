"""Backtraces taken from outside (trap/remote_bt.c), as the trap takes them for `bt`:
a child blocked in read() in a known call chain (tests/progs/btchain.c: main → bt_f1 →
bt_f2 → read) is unwound by another process (build/tests/remote_bt_probe) through
/proc/PID/task/TID/syscall (sp, pc), process_vm_readv and libunwind's remote API, and
named from the objects' symbol tables. Every frame is either named from a symbol table
or written as an address: nothing invented."""
import os
import re
import subprocess

import cwtest
from cwtest import ProcKw, prog

FRAME_RE = re.compile(r"^(?:(?P<sym>[A-Za-z_.$@][\w.$@]*)\+0x[0-9a-f]+|0x[0-9a-f]+) \((?P<obj>[^()]+)\)$")


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
