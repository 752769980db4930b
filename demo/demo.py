#!/usr/bin/env python3
"""closewatch demo: why close() can lose data, and how closewatch shows and fixes it.

Three acts with the same unmodified server (demo/server.c) and client (demo/client.c), and a
fourth with the same server written in Go (demo/server.go).
The client uploads 8 MiB; the server reads the request head, answers
"413 Payload Too Large" with a 1 MiB page, and closes without reading the rest.

  (a) plain              the client gets "connection reset by peer"; most of the answer is lost
  (b) closewatch run     the same failure, plus the log record (rst_unread, unread bytes, the
      --json --pcap      backtrace into server.c), the `report` summary and the `wire` check
  (c) closewatch run     the same server, unchanged, now does a lingering close: the client
      --mode drain       gets the whole answer, the wire shows FIN and no RST
  (d) Go                 the same story told by a Go server, which LD_PRELOAD cannot reach:
                         plain (reset), then under `closewatch run --mode drain`, which
                         watches it through the trap (seccomp) and makes the lingering close
                         itself (the whole answer). Skipped, saying why, without Go.

Ends with a summary table. Exit status 0 only if all acts behaved as described.

Packet capture needs root (or CAP_NET_RAW). Without it the acts still run, but without
--pcap: the wire check is skipped and the FIN/RST column shows what the client saw
(EOF = FIN, reset = RST).

usage: demo/demo.py [--build DIR] [--no-capture] [--keep] [--json FILE]
  BUILD (environment) or --build: the build directory (default build), as in make.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
UPLOAD = 8 << 20        # what the client tries to send
ERROR_PAGE = 1 << 20    # the 413 page: big enough that part of it is always still queued
STEP_TIMEOUT = 40       # seconds any one program may take
TTY = sys.stdout.isatty()


def bold(s):
    return f"\033[1m{s}\033[0m" if TTY else s


def heading(title, sub=""):
    line = "=" * 78
    print(f"\n{line}\n{bold(title)}")
    if sub:
        print(sub)
    print(line, flush=True)


def step(text):
    print(f"\n--- {text}", flush=True)


def show(text, indent="    "):
    for line in text.strip("\n").split("\n"):
        print((indent + line).rstrip())
    sys.stdout.flush()


def num(n):
    return f"{n:,}"


class Failed(Exception):
    pass


# ---------------------------------------------------------------- processes

class Background:
    """A program whose stdout/stderr are collected line by line in threads."""

    def __init__(self, argv, env=None, cwd=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._pump, args=(f, l), daemon=True)
                        for f, l in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _pump(self, f, lines):
        for raw in iter(f.readline, b""):
            with self.cond:
                lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, timeout=10):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.out:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(t.is_alive() for t in self.threads)):
                    raise Failed(f"{os.path.basename(self.argv[0])}: no line matching {pattern!r} "
                                 f"(stdout {self.out[-5:]}, stderr {self.err[-5:]})")
                self.cond.wait(min(left, 0.2))

    def wait(self, timeout=STEP_TIMEOUT):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failed(f"{' '.join(self.argv[:3])}…: still running after {timeout}s")
        for t in self.threads:
            t.join(5)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class Capture:
    """cw-pcap capture on lo, all TCP, until stopped."""

    def __init__(self, tool, path):
        self.tool, self.path = tool, path
        self.bg = Background([tool, "capture", "--iface", "lo", "--filter", "tcp", "--out", path])
        self.bg.wait_line(r"^ready", timeout=10)

    def stop(self):
        if self.bg.p.poll() is None:
            time.sleep(0.3)  # the last packets of a close
            self.bg.p.send_signal(signal.SIGINT)
        self.bg.wait(10)


def capture_works(tool, workdir):
    """Can we capture packets here? (root or CAP_NET_RAW)"""
    if not os.access(tool, os.X_OK):
        return False, f"{tool} is missing"
    try:
        c = Capture(tool, os.path.join(workdir, "probe.pcap"))
        c.stop()
        return True, ""
    except Failed:
        return False, "capture cannot open the loopback interface"


def packets(tool, path, port):
    """Packets of the connection to the server's port: (server->client, client->server)."""
    r = subprocess.run([tool, "dump", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=STEP_TIMEOUT)
    if r.returncode != 0:
        raise Failed(f"cw-pcap dump {path}: {r.stderr.strip()}")
    pk = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    s2c = [p for p in pk if p["sport"] == port]
    c2s = [p for p in pk if p["dport"] == port]
    return s2c, c2s


def payload_sent(pkts):
    """Distinct payload bytes in pkts (one direction), as sequence-space coverage:
    a retransmitted segment counts once."""
    data = [p for p in pkts if p["len"] > 0]
    if not data:
        return 0
    syn = next((p for p in pkts if "S" in p["flags"]), None)
    base = syn["seq"] + 1 if syn else min(p["seq"] for p in data)
    return max((p["seq"] - base) % (1 << 32) + p["len"] for p in data)


def wire_facts(tool, path, port):
    s2c, c2s = packets(tool, path, port)
    return {
        "server_fin": sum("F" in p["flags"] for p in s2c),
        "server_rst": sum("R" in p["flags"] for p in s2c),
        "client_fin": sum("F" in p["flags"] for p in c2s),
        "client_rst": sum("R" in p["flags"] for p in c2s),
        "server_payload": payload_sent(s2c),
        "packets": len(s2c) + len(c2s),
    }


# ---------------------------------------------------------------- the acts

class Demo:
    def __init__(self, build, capture, workdir):
        self.build = build
        self.cli = os.path.join(build, "closewatch")
        self.server = os.path.join(build, "demo", "server")
        self.client = os.path.join(build, "demo", "client")
        self.pcaptool = os.path.join(build, "cw-pcap")
        self.capture = capture
        self.work = workdir
        self.results = []
        self.env = dict(os.environ)

    def rel(self, path):
        return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path

    def start_server(self, wrapper, server=None):
        argv = wrapper + [server or self.server, "-n", "1", "-e", str(ERROR_PAGE)]
        print("$ " + " ".join(self.rel(a) for a in argv), flush=True)
        srv = Background(argv, env=self.env, cwd=self.work)
        try:
            port = int(srv.wait_line(r"listening on \S+:(\d+)").group(1))
        except Failed:
            srv.kill()
            raise
        return srv, port

    def run_client(self, port):
        argv = [self.client, "-s", str(UPLOAD), "-t", "20", HOST, str(port)]
        print("$ " + " ".join(self.rel(a) for a in argv), flush=True)
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=STEP_TIMEOUT, env=self.env)
        except subprocess.TimeoutExpired:
            raise Failed("the client did not finish")
        show(r.stdout + r.stderr)
        m = re.search(r"^result: (.*)$", r.stdout, re.M)
        if not m:
            raise Failed(f"client printed no result line (exit {r.returncode})")
        res = {}
        for kv in m.group(1).split():
            k, _, v = kv.partition("=")
            res[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
        res["rc"] = r.returncode
        return res

    def finish_server(self, srv):
        rc = srv.wait()
        show("\n".join(srv.out + srv.err))
        answered = None
        for line in srv.out:
            m = re.search(r"answered 413 \((\d+) bytes\)", line)
            if m:
                answered = int(m.group(1))
        return rc, answered

    def records(self, log):
        recs = []
        if os.path.exists(log):
            with open(log) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        try:
                            recs.append(json.loads(line))
                        except ValueError:
                            pass
        return recs

    def cli_step(self, title, args, ok_codes=(0,)):
        step(title)
        argv = [self.cli] + args
        print("$ closewatch " + " ".join(self.rel(a) for a in args), flush=True)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=STEP_TIMEOUT, cwd=self.work)
        show(r.stdout + r.stderr)
        return r

    def where(self, frame):
        """'handle_upload+0x273 (/…/server)' -> 'demo/server.c:151' with addr2line, if it can."""
        m = re.match(r"(\S+)\+0x([0-9a-f]+) \((.+)\)$", frame)
        if not m or not shutil.which("nm") or not shutil.which("addr2line"):
            return None
        sym, off, obj = m.group(1), int(m.group(2), 16), m.group(3)
        try:
            nm = subprocess.run(["nm", obj], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, timeout=10).stdout
            base = next(int(l.split()[0], 16) for l in nm.splitlines()
                        if l.split()[-1:] == [sym] and len(l.split()) == 3)
            a2l = subprocess.run(["addr2line", "-e", obj, hex(base + off - 1)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 timeout=10).stdout.strip()
        except (StopIteration, ValueError, OSError, subprocess.SubprocessError):
            return None
        fm = re.match(r"(.+):(\d+)", a2l)
        if not fm or fm.group(1) == "??":
            return None
        path, line = fm.group(1), int(fm.group(2))
        src = ""
        try:
            with open(path) as f:
                src = f.read().split("\n")[line - 1].strip()
        except (OSError, IndexError):
            pass
        return f"{self.rel(path)}:{line}" + (f":  {src}" if src else "")

    def serve_under_cli(self, act, flags, server=None):
        """Acts (b) and (c): the server under `closewatch run FLAGS --json --log …` (and
        --pcap when capturing), one client. Returns (log, pcap, port, client result,
        answered bytes, wire facts or None)."""
        log = os.path.join(self.work, f"{act}.log")
        pcap = os.path.join(self.work, f"{act}.pcap")
        wrap = [self.cli, "run"] + flags + ["--json", "--log", log]
        if self.capture:
            wrap += ["--pcap", pcap, "--iface", "lo"]
        srv, port = self.start_server(wrap + ["--"], server)
        try:
            cl = self.run_client(port)
            _, answered = self.finish_server(srv)
        finally:
            srv.kill()
        wire = wire_facts(self.pcaptool, pcap, port) if self.capture else None
        return log, pcap, port, cl, answered, wire

    # -------------------------------------------------------------- (a)

    def serve_plain(self, act, server=None):
        """The server alone (no closewatch), one client, a capture when capturing.
        Returns (port, client result, answered bytes, wire facts or None)."""
        cap = Capture(self.pcaptool, os.path.join(self.work, f"{act}.pcap")) if self.capture else None
        try:
            srv, port = self.start_server([], server)
            try:
                cl = self.run_client(port)
                rc, answered = self.finish_server(srv)
            finally:
                srv.kill()
        finally:
            if cap:
                cap.stop()
        wire = wire_facts(self.pcaptool, cap.path, port) if cap else None
        return port, cl, answered, wire

    def act_a(self):
        heading("Act (a) of 4: plain -- no closewatch",
                "The client uploads 8 MiB. The server reads the request head, answers\n"
                "\"413 Payload Too Large\" (a 1 MiB page) and closes the connection without\n"
                "reading the rest of the upload.")
        port, cl, answered, wire = self.serve_plain("a")
        r = self.judge("a", cl, answered, wire, want_full=False)
        if wire:
            print(f"\nOn the wire: the server sent {num(wire['server_payload'])} of "
                  f"{num(r['answer_bytes'])} answer bytes, then {self.finrst(wire)}.")
        return self.conclude(r, [])

    # -------------------------------------------------------------- (b)

    def act_b(self):
        heading("Act (b) of 4: the same, under `closewatch run --json --pcap` (observe mode)",
                "Nothing changes for the programs: closewatch only watches and logs.")
        log, pcap, port, cl, answered, wire = self.serve_under_cli("b", ["--backtrace", "8"])
        r = self.judge("b", cl, answered, wire, want_full=False)
        problems = []

        step("the log record of the server's close (one JSON line, shown folded)")
        recs = self.records(log)
        mine = [x for x in recs if x.get("call") == "close" and x.get("local") == f"{HOST}:{port}"
                and x.get("state") != "LISTEN"]
        rec = mine[0] if mine else None
        if not rec:
            problems.append("no close record for the connection in the log")
            show(open(log).read() if os.path.exists(log) else "(no log)")
        else:
            show(json.dumps(rec, indent=2))
            print()
            print(f"    verdict {rec['verdict']}: {num(rec['recvq'])} bytes of the upload had "
                  f"arrived and were never read (recvq),")
            print(f"    so close() sends RST and drops the send queue: {num(rec['sendq'])} bytes "
                  f"of the answer ({num(rec['unsent'])} not yet sent).")
            if wire and answered is not None:
                exact = answered - rec["unsent"] == wire["server_payload"]
                print(f"    On the wire the server sent {num(wire['server_payload'])} answer bytes = "
                      f"{num(answered)} answered - {num(rec['unsent'])} unsent"
                      + (": the record's numbers are exact." if exact else
                         f" (differs by {num(answered - rec['unsent'] - wire['server_payload'])})."))
            if r.get("lost") is not None:
                # What the client missed is the part never sent; what was in flight arrived.
                flight = rec["sendq"] - rec["unsent"]
                print(f"    The client lost {num(r['lost'])} answer bytes" +
                      (f": exactly the {num(rec['unsent'])} never sent; the {num(flight)} in "
                       f"flight at the reset reached it." if r["lost"] == rec["unsent"] else
                       f"; the record says {num(rec['unsent'])} were never sent."))
            bt = rec.get("bt") or []
            top = next((f for f in bt if "/demo/server" in f), None)
            if top:
                src = self.where(top)
                print(f"    Who closed: {top}" + (f"\n            = {src}" if src else ""))
            if rec.get("verdict") != "rst_unread":
                problems.append(f"verdict is {rec.get('verdict')}, expected rst_unread")
            if not rec.get("recvq", 0) > 0 or rec.get("lost", 0) < rec.get("recvq", 0):
                problems.append("recvq/lost do not show unread bytes")
            if not any("handle_upload" in f for f in bt):
                problems.append("the backtrace does not show handle_upload in the server")
        r["record"] = rec

        rep = self.cli_step("closewatch report: what the log says, in totals",
                            ["report", log])
        if rep.returncode != 0 or "rst_unread" not in rep.stdout:
            problems.append(f"report failed (exit {rep.returncode})")
        if self.capture:
            w = self.cli_step("closewatch wire: the predictions checked against the capture",
                              ["wire", log, pcap])
            wj = subprocess.run([self.cli, "wire", "--json", log, pcap], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, timeout=STEP_TIMEOUT)
            r["wire_rc"] = w.returncode
            try:
                closes = json.loads(wj.stdout).get("closes", [])
            except ValueError:
                closes = []
            c = next((x for x in closes if x.get("local") == f"{HOST}:{port}"
                      and x.get("verdict") == "rst_unread"), None)
            if w.returncode != 0:
                problems.append(f"wire found wrong predictions (exit {w.returncode})")
            if not c or c.get("observed") != "RST":
                problems.append("wire did not confirm the RST of the server's close")
        else:
            step("closewatch wire: skipped (no packet capture without root)")
        return self.conclude(r, problems)

    # -------------------------------------------------------------- (c)

    def act_c(self):
        heading("Act (c) of 4: the same server, unchanged, under `closewatch run --mode drain`",
                "closewatch turns the server's close() into a lingering close: read and discard\n"
                "the rest of the upload, send the queued answer and a FIN, close when the client\n"
                "has closed.")
        log, pcap, port, cl, answered, wire = self.serve_under_cli("c", ["--mode", "drain"])
        r = self.judge("c", cl, answered, wire, want_full=True)
        problems = []
        step("the log records of the server's close and of its drain")
        recs = [x for x in self.records(log) if x.get("local") == f"{HOST}:{port}"
                and x.get("state") != "LISTEN"]
        show("\n".join(json.dumps(x) for x in recs) or "(none)")
        close = next((x for x in recs if x.get("call") == "close"), None)
        drain = next((x for x in recs if x.get("call") == "drain"), None)
        if not close or close.get("action") != "drained":
            problems.append("no close record with action drained")
        if not drain or drain.get("result") != "delivered":
            problems.append("no drain record with result delivered")
        else:
            print(f"\n    drain: {drain['result']} after {num(drain.get('waited_ms', 0))} ms, "
                  f"{num(drain.get('discarded', 0))} upload bytes read and discarded")
        if self.capture:
            w = self.cli_step("closewatch wire: the predictions checked against the capture",
                              ["wire", log, pcap])
            r["wire_rc"] = w.returncode
            if w.returncode != 0:
                problems.append(f"wire found wrong predictions (exit {w.returncode})")
            print(f"\nOn the wire: the server sent {num(wire['server_payload'])} of "
                  f"{num(r['answer_bytes'])} answer bytes, then {self.finrst(wire)}; the client "
                  f"sent {wire['client_fin']} FIN, {wire['client_rst']} RST.")
        return self.conclude(r, problems)

    # -------------------------------------------------------------- (d)

    def act_d(self):
        heading("Act (d) of 4: the same story told by a Go server (demo/server.go)",
                "Go makes its system calls itself: LD_PRELOAD cannot reach it. `closewatch run`\n"
                "sees that and watches it through the trap (seccomp); in drain mode closewatch\n"
                "itself keeps the socket and makes the lingering close, nothing in the program.")
        go = os.path.join(self.build, "demo", "server-go")
        if not os.path.exists(go):
            why = ("Go is not installed (Debian: golang-go); install it and run make demo again"
                   if not shutil.which("go") else
                   f"{self.rel(go)} is not built (make demo builds it when Go is installed)")
            print(bold(f"\n=> act (d) skipped: {why}"))
            return {"act": "d", "ok": True, "skipped": why, "problems": [],
                    "verdict_text": f"skipped: {why}", "rows": []}
        step("the Go server alone: no closewatch")
        port, cl, answered, wire = self.serve_plain("d-plain", go)
        plain = self.judge("d", cl, answered, wire, want_full=False)
        print(bold(f"\n=> plain: {plain['verdict_text']}"))
        step("the same Go server under `closewatch run --mode drain` (through the trap)")
        log, pcap, port, cl, answered, wire = self.serve_under_cli("d-drain", ["--mode", "drain"], go)
        drained = self.judge("d", cl, answered, wire, want_full=True)
        problems = []
        recs = [x for x in self.records(log) if x.get("local") == f"{HOST}:{port}"
                and x.get("state") != "LISTEN"]
        step("the log records of the Go server's close and of the drain closewatch made")
        show("\n".join(json.dumps(x) for x in recs) or "(none)")
        close = next((x for x in recs if x.get("call") == "close"), None)
        drain = next((x for x in recs if x.get("call") == "drain"), None)
        if not close or close.get("action") != "drained":
            problems.append("no close record with action drained")
        if not drain or drain.get("result") != "delivered":
            problems.append("no drain record with result delivered")
        else:
            print(f"\n    drain (made by closewatch, outside the program): {drain['result']} after "
                  f"{num(drain.get('waited_ms', 0))} ms, {num(drain.get('discarded', 0))} upload "
                  f"bytes read and discarded")
        drained = self.conclude(drained, problems)
        r = {"act": "d", "ok": plain["ok"] and drained["ok"], "plain": plain, "drain": drained,
             "problems": plain["problems"] + drained["problems"], "rows": [plain, drained]}
        r["verdict_text"] = ("as described: reset without closewatch, the whole answer under "
                             "closewatch run --mode drain" if r["ok"] else
                             "NOT as described: " + "; ".join(r["problems"]))
        return r

    @staticmethod
    def conclude(r, problems):
        """The act's verdict with what the CLI steps found added, printed."""
        if problems:
            r["ok"] = False
            r["problems"] += problems
            r["verdict_text"] = "NOT as described: " + "; ".join(r["problems"])
        print(bold(f"\n=> {r['verdict_text']}"))
        return r

    # -------------------------------------------------------------- judging

    @staticmethod
    def finrst(wire):
        """What the server's close put on the wire (and any RST from the client)."""
        srv = ("FIN and RST" if wire["server_fin"] and wire["server_rst"] else
               "RST" if wire["server_rst"] else "FIN" if wire["server_fin"] else "neither FIN nor RST")
        if wire["client_rst"]:
            return srv + ", client RST"
        return srv + (", no RST" if srv == "FIN" else "")

    def judge(self, act, cl, answered, wire, want_full):
        head = cl["answer"] - cl["body"] if cl.get("expected", -1) >= 0 else 0
        answer_bytes = answered if answered else (cl["expected"] + head if cl.get("expected", -1) >= 0 else 0)
        lost = max(answer_bytes - cl["answer"], 0)
        r = {"act": act, "client_end": cl["end"], "status": cl["status"], "received": cl["answer"],
             "answer_bytes": answer_bytes, "lost": lost, "body": cl["body"],
             "expected": cl["expected"], "upload_sent": cl["sent"], "wire": wire,
             "capture": wire is not None, "problems": []}
        if wire:
            r["fin_rst"] = self.finrst(wire)
        else:
            r["fin_rst"] = {"reset": "RST", "eof": "FIN"}.get(cl["end"], "?") + " (client)"
        if cl["end"] == "reset":
            res = "connection reset by peer"
        elif cl["end"] == "eof":
            res = "EOF"
        else:
            res = cl["end"]
        if cl["status"]:
            res = f"{cl['status']}, {num(cl['body'])} of {num(max(cl['expected'], 0))} B, {res}"
        else:
            res = f"no answer, {res}"
        r["client_result"] = res
        p = r["problems"]
        if want_full:
            if cl["end"] != "eof":
                p.append(f"client ended with {cl['end']}, expected EOF")
            if lost or cl["body"] != cl["expected"] or cl["status"] != 413:
                p.append(f"client got {num(cl['answer'])} of {num(answer_bytes)} answer bytes")
            if wire and (wire["server_rst"] or wire["client_rst"] or not wire["server_fin"]):
                p.append(f"wire shows {self.finrst(wire)} (client RST {wire['client_rst']})")
        else:
            if cl["end"] != "reset":
                p.append(f"client ended with {cl['end']}, expected a reset")
            if not lost:
                p.append("client got the whole answer: nothing was lost this time")
            if wire and not wire["server_rst"]:
                p.append("no RST from the server on the wire")
        r["ok"] = not p
        if p:
            r["verdict_text"] = "NOT as described: " + "; ".join(p)
        elif want_full:
            r["verdict_text"] = (f"as described: the client got the whole answer ({num(answer_bytes)} "
                                 f"bytes) and a clean EOF; the program was not changed.")
        else:
            r["verdict_text"] = (f"as described: the client got \"connection reset by peer\"; "
                                 f"{num(lost)} of {num(answer_bytes)} answer bytes never arrived.")
        return r


def table(results):
    rows = [("act", "client result", "FIN/RST", "bytes lost", "as described")]
    names = {"a": "(a) plain", "b": "(b) closewatch run (observe)", "c": "(c) closewatch run --mode drain"}
    for r in results:
        if r["act"] == "d":
            if r.get("skipped"):
                rows.append(("(d) Go", "skipped: " + r["skipped"].split(";")[0], "-", "-", "-"))
            for name, x in zip(("(d) Go, plain", "(d) Go, closewatch run --mode drain"), r.get("rows", [])):
                rows.append((name, x.get("client_result", "?"), x.get("fin_rst", "?"),
                             num(x["lost"]) if "lost" in x else "?", "yes" if x.get("ok") else "NO"))
            continue
        rows.append((names[r["act"]], r.get("client_result", "?"), r.get("fin_rst", "?"),
                     num(r["lost"]) if "lost" in r else "?", "yes" if r.get("ok") else "NO"))
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(("  " + "  ".join(c.ljust(w[i]) if i != 3 else c.rjust(w[i]) for i, c in enumerate(row))).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * x for x in w))


def clean_environment():
    """The acts start from a clean slate: no closewatch settings and no closewatch
    already preloaded (other preloads, e.g. a sanitizer runtime, stay)."""
    for k in [k for k in os.environ if k.startswith("CLOSEWATCH_")]:
        del os.environ[k]
    keep = [e for e in re.split(r"[: ]", os.environ.pop("LD_PRELOAD", ""))
            if e and "libclosewatch" not in os.path.basename(e)]
    if keep:
        os.environ["LD_PRELOAD"] = ":".join(keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD") or "build")
    ap.add_argument("--no-capture", action="store_true", help="do not capture packets")
    ap.add_argument("--keep", action="store_true", help="keep logs and captures")
    ap.add_argument("--json", metavar="FILE", help="write the outcome of each act to FILE")
    args = ap.parse_args()
    build = args.build if os.path.isabs(args.build) else os.path.join(ROOT, args.build)
    clean_environment()

    missing = [p for p in ("closewatch", "libclosewatch.so", "demo/server", "demo/client")
               if not os.path.exists(os.path.join(build, p))]
    if missing:
        print(f"demo: not built in {build}: {', '.join(missing)} (run make)", file=sys.stderr)
        return 2
    demo_dir = tempfile.mkdtemp(prefix="closewatch-demo-")

    capture, why = (False, "--no-capture") if args.no_capture else capture_works(
        os.path.join(build, "cw-pcap"), demo_dir)
    print(bold("closewatch demo: what close() does to an upload that is refused early"))
    if not capture:
        who = "you are not root" if os.geteuid() != 0 else why
        print(f"\nNOTE: no packet capture ({who}). Capturing needs root or CAP_NET_RAW, so the\n"
              "acts run without --pcap, the `closewatch wire` check is skipped, and the FIN/RST\n"
              "column shows what the client saw (EOF = FIN, reset = RST), marked (client).\n"
              "For the whole demo: sudo make demo")

    d = Demo(build, capture, demo_dir)
    results = []
    t0 = time.monotonic()
    for act in (d.act_a, d.act_b, d.act_c, d.act_d):
        name = act.__name__[-1]
        try:
            results.append(act())
        except (Failed, OSError, subprocess.SubprocessError) as e:
            print(bold(f"\n=> act ({name}) could not run: {e}"))
            results.append({"act": name, "ok": False, "problems": [str(e)], "verdict_text": str(e)})

    heading("Summary")
    table(results)
    ok = all(r.get("ok") for r in results)
    print()
    if not capture:
        print("(client) = inferred from what the client saw; no capture was taken.")
    print(f"bytes lost = answer bytes the server wrote that never reached the client. "
          f"{time.monotonic() - t0:.1f}s")
    if ok:
        print(bold("All acts behaved as described" +
                   (" (act (d) skipped: no Go)." if any(r.get("skipped") for r in results) else ".")))
    else:
        for r in results:
            if not r.get("ok"):
                print(f"act ({r['act']}): {r.get('verdict_text')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ok": ok, "capture": capture, "acts": results}, f, indent=1, default=str)
    if args.keep:
        print(f"logs and captures kept in {demo_dir}")
    else:
        shutil.rmtree(demo_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
