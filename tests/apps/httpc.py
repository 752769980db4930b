"""A tiny raw HTTP/1.1 client for the app tests: exact control over who closes first."""

import cwtest
import cwapps


def read_response(s, buf=b""):
    """One response with a Content-Length body. Returns (status, body, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise EOFError(f"EOF inside a response head: {buf[:200]!r}")
        buf += b
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    while len(buf) < length:
        b = s.recv(65536)
        if not b:
            raise EOFError("EOF inside a response body")
        buf += b
    return status, buf[:length], buf[length:]


def get_close(port, path, host=cwapps.H4):
    """GET with Connection: close; the server closes first, we read to its EOF.
    Returns ((status, sha, how the stream ended), our port)."""
    s = cwtest.connect(host, port)
    lport = s.getsockname()[1]
    s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
    status, body, rest = read_response(s)
    n, end = cwtest.read_to_end(s)
    s.close()
    return (status, cwapps.sha(body), len(rest) + n, end), lport


def get_keepalive(port, paths, host=cwapps.H4):
    """Several GETs on one connection; then we close first. Returns (results, our port)."""
    s = cwtest.connect(host, port)
    lport = s.getsockname()[1]
    out, buf = [], b""
    for p in paths:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode())
        status, body, buf = read_response(s, buf)
        out.append((status, cwapps.sha(body)))
    s.close()
    return out, lport
