"""A tiny real HTTP/1.1 server for the fault proxy's own tests.

It records every request it *processed* (so a test can tell whether a faulted request
reached the server) and answers a few fixed routes: echo, chunked, 204, HEAD, slow.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.read(2)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        server: UpstreamServer = self.server.owner  # type: ignore[attr-defined]
        with server.lock:
            server.seen.append((self.command, self.path, body))
        if self.path.startswith("/empty"):
            self._reply(204, b"")
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/big"):
            self._reply(200, b"x" * 100_000, {"Content-Type": "application/octet-stream"})
        else:
            self._reply(200, b"echo:" + self.command.encode() + b":" + self.path.encode() + b":" + body,
                        {"Content-Type": "text/plain", "X-Upstream": "yes"})

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class UpstreamServer:
    """``with UpstreamServer() as up: up.port; up.seen`` — requests processed so far."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> UpstreamServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, path_prefix: str = "") -> int:
        with self.lock:
            return sum(1 for _, p, _ in self.seen if p.startswith(path_prefix))
