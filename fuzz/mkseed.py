#!/usr/bin/env python3
"""Build a seed for fuzz_wire from a real closewatch log and a pcap capture.

    fuzz/mkseed.py LOG PCAP OUT [--skew-ms N] [--max-packets N] [--snap N]

OUT holds: the log, a NUL byte, the skew (10 ms units), then every frame as
    u8 link-type selector | u16le ms after (first record's ts - 1 s) | u16le caplen | bytes
(the format fuzz/fuzz_wire.c reads). Frames are cut to --snap bytes (default
96, headers only, as a capture with a small snaplen: payload lengths come from
the IP header). Only classic pcap files are read."""
import datetime
import json
import struct
import sys

# fuzz_wire.c's selector table: index -> DLT
DLTS = [1, 0, 108, 113, 276, 12, 101, 228, 229]


def first_ts(log):
    for line in log.splitlines():
        line = line.strip()
        ts = None
        if line.startswith(b"{"):
            ts = json.loads(line).get("ts")
        elif b" ts=" in line:
            ts = line.split(b" ts=", 1)[1].split()[0].decode()
        if ts:
            t = datetime.datetime.strptime(ts.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
            return t.replace(tzinfo=datetime.timezone.utc).timestamp()
    raise SystemExit("mkseed: no record with a ts in the log")


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit("mkseed: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        yield linktype, sec + frac / (1e9 if nano else 1e6), data[off:off + incl]
        off += incl


def main():
    args = sys.argv[1:]
    skew_ms, maxp, snap = 50, 400, 96
    if "--skew-ms" in args:
        i = args.index("--skew-ms")
        skew_ms = int(args[i + 1])
        del args[i:i + 2]
    if "--max-packets" in args:
        i = args.index("--max-packets")
        maxp = int(args[i + 1])
        del args[i:i + 2]
    if "--snap" in args:
        i = args.index("--snap")
        snap = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        raise SystemExit(__doc__)
    log_path, pcap_path, out = args
    with open(log_path, "rb") as f:
        log = f.read().replace(b"\0", b"")
    base = first_ts(log) - 1.0
    buf = bytearray(log + b"\0" + bytes([min(255, skew_ms // 10)]))
    for n, (lt, ts, frame) in enumerate(frames(pcap_path)):
        if n >= maxp:
            break
        sel = DLTS.index(lt) if lt in DLTS else lt & 0xFF
        ms = max(0, min(0xFFFF, round((ts - base) * 1000)))
        frame = frame[:min(snap, 0xFFFF)]
        buf += struct.pack("<BHH", sel, ms, len(frame)) + frame
    with open(out, "wb") as f:
        f.write(buf)


if __name__ == "__main__":
    main()
