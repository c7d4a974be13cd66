"""A fault-injecting HTTP proxy for the e2e registry: each request is forwarded, or (with the given
rate) answered by a fault instead: the connection reset before an answer, 500, 503, 429 with
Retry-After, or forwarded after a delay. The Host header is kept, so the registry's Location headers
name the proxy and every later request of an upload comes back through it."""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.e2e import infra

FAULTS = ("reset", "500", "503", "429", "slow")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


class FaultProxy:
    """Listens on 127.0.0.1:port and forwards to `upstream` (host:port), injecting faults."""

    def __init__(self, upstream: str, rate: float = 0.2, faults: tuple[str, ...] = FAULTS, seed: int = 7,
                 slow_seconds: float = 1.5) -> None:
        self.upstream, self.rate, self.faults, self.slow_seconds = upstream, rate, faults, slow_seconds
        self.random = random.Random(seed)
        self.injected: Counter = Counter()
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any  # noqa: N815

        self.port = infra.free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _pick(self) -> str:
        with self._lock:
            fault = self.random.choice(self.faults) if self.random.random() < self.rate else ""
            if fault:
                self.injected[fault] += 1
            else:
                self.forwarded += 1
            return fault

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        body = _read_body(req)
        fault = self._pick()
        if fault == "reset":
            req.close_connection = True
            try:
                req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                req.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault in ("500", "503", "429"):
            text = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
            req.send_response(int(fault))
            if fault == "429":
                req.send_header("Retry-After", "1")
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(text)))
            req.end_headers()
            req.wfile.write(text)
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)
        self._forward(req, body)

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> None:
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP}
        if body or req.command in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn.request(req.command, req.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        req.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and (k.lower() != "content-length" or req.command == "HEAD"):
                req.send_header(k, v)
        if req.command != "HEAD":
            req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)
        conn.close()


def _read_body(req: BaseHTTPRequestHandler) -> bytes:
    if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(req.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                req.rfile.readline()
                return b"".join(chunks)
            chunks.append(req.rfile.read(size))
            req.rfile.readline()
    length = int(req.headers.get("Content-Length") or 0)
    return req.rfile.read(length) if length else b""
