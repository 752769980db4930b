"""Fuzz corpora replayed (issue 9): every input in fuzz/corpus/NAME/ goes once through the
harness fuzz/fuzz_NAME.c, built without libFuzzer (fuzz/replay_main.c) into
$(BUILD)/fuzz/NAME-replay by `make test-build` (with the sanitizers under make check). A crash
input the fuzzer found stays in the corpus once fixed, as a regression test.

`make fuzz` (clang, libFuzzer) is what grows the corpora; this only replays them."""
import os
import subprocess

import cwtest

HARNESSES = ("config", "logparse", "wire", "record")
CORPUS = os.path.join(cwtest.ROOT, "fuzz", "corpus")


def replay(name):
    exe = os.path.join(cwtest.BUILD, "fuzz", f"{name}-replay")
    corpus = os.path.join(CORPUS, name)
    assert os.path.exists(exe), f"{exe} not built (make test-build builds it)"
    files = [f for f in os.listdir(corpus) if not f.startswith(".")]
    assert files, f"empty corpus {corpus}"
    r = subprocess.run([exe, corpus], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    last = [l for l in r.stderr.splitlines() if l.startswith("replay: ")][-1:]
    assert r.returncode == 0, (f"{name}: status {r.returncode} on {last}\n"
                               + "\n".join(r.stderr.splitlines()[-30:]))
    assert r.stdout.strip() == f"replayed {len(files)} inputs", r.stdout


def test_replay_config(ctx):
    replay("config")


def test_replay_logparse(ctx):
    replay("logparse")


def test_replay_wire(ctx):
    replay("wire")


def test_replay_record(ctx):
    replay("record")


def test_every_harness_has_a_test(ctx):
    harnesses = sorted(f[5:-2] for f in os.listdir(os.path.join(cwtest.ROOT, "fuzz"))
                       if f.startswith("fuzz_") and f.endswith(".c"))
    assert harnesses == sorted(HARNESSES), harnesses
