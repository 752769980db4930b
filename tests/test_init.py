"""The shim before its own constructor: another library's constructor closes
a socket (as libfaketime's test_constructors does for time calls)."""
import os
import subprocess

import cwtest as t

FIX = os.path.join(t.ROOT, "tests", "fixtures")


def build_ctor_program(ctx):
    lib = ctx.path("libctorclose.so")
    exe = ctx.path("ctor_main")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, os.path.join(FIX, "ctor_close_lib.c")],
                   check=True)
    subprocess.run(["cc", "-o", exe, os.path.join(FIX, "ctor_close_main.c"), "-L" + ctx.tmp,
                    "-lctorclose", "-Wl,-rpath," + ctx.tmp], check=True)
    return exe


def test_close_in_another_librarys_constructor(ctx):
    exe = build_ctor_program(ctx)
    log = ctx.path("cw.log")
    r = subprocess.run([exe], env=t.shim_env(log=log), stdout=subprocess.PIPE, text=True,
                       timeout=30)
    assert r.returncode == 0, r
    port = int(r.stdout.split()[-1])
    recs = t.read_records(log)
    rec = t.one_record(recs, verdict="rst_unread")
    t.check_fields(rec, call="close", proto="tcp", recvq=100, lost=100,
                   local=f"127.0.0.1:{port}", state="ESTABLISHED")
    # the client side got the reset: closing it afterwards is no_conn (state CLOSE)
    client = t.one_record(recs, state="CLOSE")
    t.check_fields(client, verdict="no_conn", lost=0)
    listener = t.one_record(recs, state="LISTEN")
    t.check_fields(listener, verdict="no_conn", local=f"127.0.0.1:{port}", backlog=0)
