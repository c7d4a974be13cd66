"""The rehearsal's source mirror on 127.0.0.1: every declared Download and Git URL of the recipes is
pointed here (through the mirror map the engines already apply), files that can be had here are
served from a folder, and every other request is answered 404 and remembered with its original URL,
so a step can say exactly which URL it asked for and could not get ("not fetchable here")."""

from __future__ import annotations

import http.server
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from runner.compose.mirrors import Mirrors
from runner.compose.sources import declared_prefixes


@dataclass
class Request:
    url: str  # as the script asked for it, before the mirror map
    status: int
    at: float


@dataclass
class SourceMirror:
    """Serves `root/<host>/<path>` for `https://<host>/<path>`; records every request."""

    root: Path
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> SourceMirror:
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the server's own name
                mirror._answer(self)

            do_HEAD = do_GET

            def log_message(self, *args) -> None:
                pass  # the report lists what matters

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mirrors(self) -> Mirrors:
        """Every declared source's scheme and host, pointed here."""
        return Mirrors.of({prefix: f"{self.url}/{prefix.split('://', 1)[1]}" for prefix in declared_prefixes()})

    def missed(self, since: float = 0.0) -> list[str]:
        return list(dict.fromkeys(r.url for r in self.requests if r.status == 404 and r.at >= since))

    def _answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        if parts.path == "/_missed":
            # date +%s.%N; a date without %N gives whole seconds (and a trailing N): then keep the edge second
            given = re.match(r"\d+(\.\d+)?", parse_qs(parts.query).get("since", ["0"])[0]) or re.match("0", "0")
            since = float(given[0]) - (0 if given[1] else 1)
            body = "".join(f"{u}\n" for u in self.missed(since)).encode()
            return self._send(h, 200, body)
        original = "https://" + parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        file = (self.root / parts.path.lstrip("/")).resolve()
        if file.is_file() and self.root.resolve() in file.parents:
            self.requests.append(Request(original, 200, time.time()))
            return self._send(h, 200, file.read_bytes())
        self.requests.append(Request(original, 404, time.time()))
        self._send(h, 404, b"not fetchable here\n")

    @staticmethod
    def _send(h: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
