"""An HTTP server that answers early: it reads the request head of ONE request, waits
until the upload's marker b"END!" is in its receive queue (MSG_PEEK, nothing consumed),
answers 413 with a big body (as much as the socket takes without blocking) and closes
with the upload unread: the kernel resets, the rest of the answer is lost.

usage: early_answer.py ANSWER_BYTES [wait]
  wait: after "unread", answer only once a line comes on stdin (the client is ready)
prints: "port N", "unread N" (FIONREAD just before close), "closed"."""
import array
import fcntl
import socket
import sys
import termios
import time

answer = int(sys.argv[1])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(4)
print("port", ls.getsockname()[1], flush=True)
c, _ = ls.accept()
ls.close()
c.settimeout(15)
# Consume exactly the request head.
while True:
    head = c.recv(1 << 20, socket.MSG_PEEK)
    if not head:
        sys.exit("eof before the request head")
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        c.recv(end + 4)
        break
# Wait for the marker, without reading (the upload must fit in the receive window).
deadline = time.monotonic() + 10
while b"END!" not in c.recv(1 << 20, socket.MSG_PEEK):
    if time.monotonic() > deadline:
        sys.exit("no END! marker within 10 s")
    time.sleep(0.005)
n = array.array("i", [0])
fcntl.ioctl(c.fileno(), termios.FIONREAD, n, True)
print("unread", n[0], flush=True)
if sys.argv[2:] == ["wait"]:
    sys.stdin.readline()
msg = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/octet-stream\r\n"
       b"Content-Length: %d\r\nConnection: close\r\n\r\n" % answer + b"x" * answer)
# As much of the answer as the socket takes now (the client is not reading), then close.
c.setblocking(False)
sent = 0
try:
    while sent < len(msg):
        sent += c.send(msg[sent:])
except BlockingIOError:
    pass
c.close()
print("closed", flush=True)
