#!/usr/bin/env python3
"""closewatch test runner.

Discovers tests/test_*.py, runs every function named test_* with a fresh
Ctx, and ends with the line "N passed, N failed, N skipped".

As root the whole run moves into a private network namespace (unshare -n) so
that packet captures and the kernel's RST counters see only our own traffic.
In CI (CI=true) a test that would skip for lack of root or capture fails
instead: CI has root.

Usage: tests/run.py [-k SUBSTRING]... [-x] [--list]
"""
import importlib.util
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cwtest  # noqa: E402


def enter_private_netns():
    if os.geteuid() != 0 or os.environ.get("CW_IN_NETNS") or os.environ.get("CW_NO_NETNS"):
        return
    env = dict(os.environ, CW_IN_NETNS="1")
    argv = ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    try:
        os.execvpe("unshare", argv, env)
    except OSError as e:
        print(f"run.py: cannot enter a network namespace ({e}); using the host's", file=sys.stderr)


def discover(patterns):
    tests = []
    for name in sorted(os.listdir(HERE)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(HERE, name))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for attr in dir(mod):
            fn = getattr(mod, attr)
            if attr.startswith("test_") and callable(fn):
                full = f"{name[:-3]}.{attr}"
                if not patterns or any(p in full for p in patterns):
                    tests.append((full, fn, getattr(fn, "__code__", None)))
    # keep the order of definition inside each module
    tests.sort(key=lambda t: (t[0].split(".")[0], t[2].co_firstlineno if t[2] else 0))
    return [(n, f) for n, f, _ in tests]


def default_signals():
    """Started from a background job (`cmd &` in a script), we inherit SIGINT
    and SIGQUIT ignored, and so would every program a test starts: tests that
    stop a server or forward a signal would hang. A handler here becomes the
    default disposition in the programs we exec."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


RUNNER_MARK = "CW_TEST_RUNNER"


def kill_strays():
    """Kill every process still carrying this runner's mark in its environment
    (every program a test starts inherits it, grandchildren too, even once
    re-parented to init). A test whose program hangs leaves its descendants
    behind otherwise: a bench child spinning in a broken shim loaded the
    machine for every later test. Returns what was killed."""
    mark = f"{RUNNER_MARK}={os.getpid()}".encode()
    killed = {}
    for _ in range(3):  # again: one may have forked meanwhile
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid() or int(pid) in killed:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                continue
            found = True
            killed[int(pid)] = cmd[:80]
        if not found:
            break
    deadline = time.monotonic() + 1
    for pid in killed:  # ours (a test's Popen left unwaited): no zombie left
        try:
            while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.005)
        except ChildProcessError:
            pass
    return [f"{pid} {cmd}" for pid, cmd in killed.items()]


def main():
    default_signals()
    args = sys.argv[1:]
    patterns, stop_first, list_only = [], False, False
    while args:
        a = args.pop(0)
        if a == "-k" and args:
            patterns.append(args.pop(0))
        elif a == "-x":
            stop_first = True
        elif a == "--list":
            list_only = True
        else:
            patterns.append(a)
    enter_private_netns()
    if os.environ.get("CW_IN_NETNS"):
        cwtest.sh("ip link set lo up")
    tests = discover(patterns)
    if list_only:
        for n, _ in tests:
            print(n)
        return 0
    os.environ[RUNNER_MARK] = str(os.getpid())
    passed = failed = skipped = 0
    failures = []
    t_all = time.monotonic()
    for name, fn in tests:
        ctx = cwtest.Ctx(name)
        t0 = time.monotonic()
        status, detail = "PASS", ""
        try:
            with cwtest.time_limit(getattr(fn, "timeout", 120)):
                fn(ctx)
        except cwtest.Skip as e:
            status, detail = "SKIP", str(e)
        except Exception as e:  # noqa: BLE001 — a test failure of any kind
            status = "FAIL"
            detail = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:]).rstrip()
        finally:
            ctx.cleanup()
            strays = kill_strays()
        dt = time.monotonic() - t0
        print(f"{status} {name} ({dt:.2f}s){': ' + detail if detail and status == 'SKIP' else ''}", flush=True)
        if strays:
            print(f"    note: killed {len(strays)} process(es) the test left running: " + "; ".join(strays), flush=True)
        if status == "PASS":
            passed += 1
        elif status == "SKIP":
            skipped += 1
        else:
            failed += 1
            failures.append(name)
            print("    " + detail.replace("\n", "\n    "), flush=True)
            if stop_first:
                break
    print(f"\n{len(tests)} tests in {time.monotonic() - t_all:.1f}s", flush=True)
    for f in failures:
        print(f"  failed: {f}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
