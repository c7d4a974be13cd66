"""A local source mirror for rehearsals: the declared git repositories (rebuilt from the releases'
sdists, runner.verify.upstream) served over git's smart HTTP protocol, so the recipes' real
`git clone --depth 1 --branch TAG` lines run against the real tags, and a static file area for
declared downloads. Every request is recorded with its answer, so a caller can report "not fetchable
here: <exact URL>" for what the mirror could not serve.

    mirror = SourceMirror()
    obtained = mirror.prepare(wanted_refs(plan.stages))   # sdists -> tagged repositories (cached)
    with mirror:                                         # serves on 127.0.0.1, a free port
        env = {"RUNNER_MIRRORS": mirror.mirrors_env()}   # the mirror map, as compose.mirrors reads it
        ...                                              # builds clone and download through it
    mirror.requests, mirror.not_fetchable()

`git http-backend` answers the git requests (as CGI): the dumb protocol cannot clone a tag shallowly.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from runner.compose import sources
from runner.verify.upstream import REPOS, Obtained, Upstreams, sources_dir

GIT = "/git/"
FILES = "/files/"
MISSED = "/_missed"  # what a step asked for and got 404 on, since a time (runner rehearse reads it)


@dataclass(frozen=True)
class Request:
    """One request the mirror answered: what was asked (as the script named it) and the status."""

    method: str
    path: str
    url: str  # the upstream URL the request stands for
    status: int
    at: float = 0.0  # when it was answered (a rehearsal step asks for the 404s since it started)


def _host_prefix(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


class SourceMirror:
    """The repositories and files of a cache root, served on 127.0.0.1 while started."""

    def __init__(self, root: Path | None = None, upstreams: Upstreams | None = None) -> None:
        self.root = root or sources_dir()
        self.upstreams = upstreams or Upstreams(self.root)
        self.files = self.root / "files"  # files/<host>/<path>: what a Download's URL names
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def prepare(self, wanted: dict[str, dict[str, list[str]]]) -> list[Obtained]:
        """Every wanted repository at every ref: made from the index's sdists, or why not."""
        return [self.upstreams.obtain(url, ref) for url, refs in sorted(wanted.items()) for ref in sorted(refs)]

    # serving

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns the base URL."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, name="source-mirror", daemon=True)
            self._thread.start()
        return self.base

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SourceMirror:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base(self) -> str:
        if self._server is None:
            raise RuntimeError("the source mirror is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def mirror_map(self, repositories: list[str] | None = None, downloads: list[str] | None = None) -> dict[str, str]:
        """URL prefix -> mirror URL: every declared repository (the `git clone` URL) and the host of
        every declared download (defaults: all the process declared)."""
        repos = sorted(sources.declared_repositories()) if repositories is None else repositories
        hosts = sorted({_host_prefix(u) for u in (sources.declared_download_urls() if downloads is None else downloads)})
        found = {h: f"{self.base}{FILES}{urlsplit(h).netloc}/" for h in hosts}
        found.update({u: f"{self.base}{GIT}{re.sub(r'^[a-z]+://', '', u)}" for u in repos})
        return found

    def mirrors_env(self, **kw) -> str:
        """The mirror map as $RUNNER_MIRRORS reads it ("FROM=TO FROM2=TO2")."""
        return " ".join(f"{k}={v}" for k, v in sorted(self.mirror_map(**kw).items()))

    def not_fetchable(self, since: float = 0.0) -> list[str]:
        """Upstream URLs whose requests the mirror answered with 404 (since a time), each once, in order."""
        return list(dict.fromkeys(r.url for r in self.requests if r.status == 404 and r.at >= since))

    def _record(self, method: str, path: str, status: int) -> None:
        # as the script wrote it: percent-encoded again (MindIE's "MindIE%20{version}" folder), so that
        # the URL stays one word in the rehearsal's list of what was not fetchable
        path = quote(path, safe="/:@!$&'()*+,;=")
        kind, _, rest = path.lstrip("/").partition("/")
        url = f"https://{rest}" if kind in ("git", "files") else path
        if kind == "git":  # the repository's URL, not the protocol's file in it
            url = re.sub(r"(\.git)?/(info/refs|git-upload-pack|HEAD|objects/.*)(\?.*)?$", r"\1", url)
        with self._lock:
            self.requests.append(Request(method, path, url, status, time.time()))


def _handler(mirror: SourceMirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: the CGI answer has no length

        def log_message(self, *args) -> None:  # the request log is mirror.requests
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_POST(self) -> None:
            self._serve()

        def _serve(self, body: bool = True) -> None:
            path = unquote(urlsplit(self.path).path)
            if path == MISSED:
                return self._missed()
            if ".." in path.split("/"):
                return self._status(404, path)
            if path.startswith(GIT):
                return self._git(path)
            if path.startswith(FILES) and self.command != "POST":
                return self._file(mirror.files / path[len(FILES):], path, body)
            self._status(404, path)

        def _missed(self) -> None:
            """The 404s since ?since=<date +%s.%N> (whole seconds: from the second before)."""
            given = re.match(r"\d+(\.\d+)?", parse_qs(urlsplit(self.path).query).get("since", ["0"])[0]) or re.match("0", "0")
            body = "".join(f"{u}\n" for u in mirror.not_fetchable(float(given[0]) - (0 if given[1] else 1))).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, code: int, path: str) -> None:
            mirror._record(self.command, path, code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _file(self, file: Path, path: str, body: bool) -> None:
            if not file.is_file():
                return self._status(404, path)
            mirror._record(self.command, path, 200)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(file.stat().st_size))
            self.end_headers()
            if body:
                with file.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        self.wfile.write(chunk)

        def _body(self) -> bytes:
            """The request's body; git sends a large one in chunks (past its http.postBuffer)."""
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()  # the empty line after the last chunk
            return b"".join(parts)

        def _git(self, path: str) -> None:
            rest = path[len(GIT):]
            repo = re.match(r"(.+?\.git)(/.*)?$", rest)
            if not repo or not (mirror.upstreams.root / REPOS / repo[1] / "HEAD").exists():
                return self._status(404, path)
            data = self._body()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(mirror.upstreams.root / REPOS),
                   "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": "/" + rest,
                   "QUERY_STRING": urlsplit(self.path).query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(data)), "REMOTE_ADDR": self.client_address[0],
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "SERVER_PROTOCOL": "HTTP/1.0"}
            if self.headers.get("Content-Encoding") == "gzip":
                env["HTTP_CONTENT_ENCODING"] = "gzip"
            done = subprocess.run(["git", "http-backend"], input=data, capture_output=True, env=env)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = done.stdout.partition(b"\n\n")
            headers = [line.split(":", 1) for line in head.decode("latin-1").splitlines() if ":" in line]
            status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
            if done.returncode != 0 and not head:
                status = 500
            mirror._record(self.command, path, status)
            self.send_response(status)
            for k, v in headers:
                if k.lower() != "status":
                    self.send_header(k, v.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
