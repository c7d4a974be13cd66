"""A hostile registry on 127.0.0.1 for the tests of runner's registry client: every answer misbehaves in
one chosen way. drip: a 200 whose body comes one byte a second, forever; flood: an endless body; huge: a
manifest far over any limit, announced by Content-Length; hang: the request is read and never answered;
reset: the connection is dropped; 503: always overloaded; garbage-token: a Bearer challenge whose token
endpoint answers a JSON list."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("drip", "flood", "huge", "hang", "reset", "503", "garbage-token")


class RegistryStub:
    def __init__(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode, self.requests, self.sent = mode, Counter(), 0
        self._stop = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                stub.requests[self.command] += 1
                stub.answer(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> RegistryStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, req: BaseHTTPRequestHandler, data: bytes) -> bool:
        try:
            req.wfile.write(data)
            req.wfile.flush()
            self.sent += len(data)
            return True
        except OSError:
            return False

    def answer(self, req: BaseHTTPRequestHandler) -> None:
        mode = self.mode
        if mode == "hang":
            self._stop.wait(600)
            return
        if mode == "reset":
            req.close_connection = True
            req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return
        if mode == "503":
            req.send_response(503)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if mode == "garbage-token":
            if req.path.startswith("/token"):
                body = b"[1, 2, 3]"
                req.send_response(200)
            else:
                body = b'{"errors": [{"code": "UNAUTHORIZED"}]}'
                req.send_response(401)
                req.send_header("WWW-Authenticate", f'Bearer realm="http://{self.address}/token",service="stub"')
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            self._send(req, body)
            return
        req.send_response(200)
        req.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        req.close_connection = True
        if mode == "huge":
            req.send_header("Content-Length", str(1 << 40))
            req.end_headers()
        else:
            req.end_headers()
        chunk = b"{" if mode == "drip" else b"[" * 65536
        while not self._stop.is_set() and self._send(req, chunk):
            if mode == "drip":
                time.sleep(1)
