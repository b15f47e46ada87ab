"""An HTTP CONNECT proxy on 127.0.0.1, what a kubeconfig's `proxy-url` names: it tunnels to loopback
addresses only and remembers each target, so a test sees that a client went through it."""

from __future__ import annotations

import selectors
import socket
import socketserver
import threading


class ConnectProxy:
    def __init__(self) -> None:
        self.targets: list[str] = []
        targets = self.targets

        class Tunnel(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                method, target, _ = self.rfile.readline().decode().split()
                while self.rfile.readline() not in (b"\r\n", b""):  # the rest of the request's head
                    pass
                host, port = target.rsplit(":", 1)
                if method != "CONNECT" or host != "127.0.0.1":
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                    return
                targets.append(target)
                with socket.create_connection((host, int(port))) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    relay(self.connection, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tunnel)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def relay(a: socket.socket, b: socket.socket) -> None:
    """Bytes both ways until either side closes."""
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
