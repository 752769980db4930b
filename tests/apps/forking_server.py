"""socketserver.ForkingTCPServer: each connection handled by a forked child, which
echoes one line. The parent prints "handed" once the child has the connection and the
parent's own copy is closed; it serves N connections, waits for its children, closes
its listener and prints "done".   usage: forking_server.py N"""
import socketserver
import sys


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"echo " + self.rfile.readline())


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True

    def process_request(self, request, client_address):
        super().process_request(request, client_address)  # fork; the parent closes its copy
        print("handed", flush=True)


s = Server(("127.0.0.1", 0), Echo)
print("port", s.server_address[1], flush=True)
for _ in range(int(sys.argv[1])):
    s.handle_request()
s.collect_children(blocking=True)
s.server_close()
print("done", flush=True)
