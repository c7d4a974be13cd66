"""has_wheel judges a project's wheels as pip on a Debian 12 stand-in would, from the index's JSON page.

A local index serves one project's page: wheels of a platform, Requires-Python, a yanked file; and an
index that serves HTML only, where the answer is yes (the step then downloads and fails as written)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runner.verify import package_index

FILES = [
    {"filename": "kern-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"},  # x86_64 only
    {"filename": "kern-2.0-cp311-cp311-manylinux_2_28_aarch64.whl"},
    {"filename": "kern-2.0-cp311-cp311-manylinux_2_39_x86_64.whl"},  # newer than Debian 12's glibc
    {"filename": "kern-3.0-py3-none-any.whl", "requires-python": ">=3.12"},
    {"filename": "kern-4.0-cp311-cp311-manylinux_2_17_aarch64.whl", "yanked": "broken"},
    {"filename": "kern-5.0.tar.gz"},
]


@pytest.fixture
def index(monkeypatch):
    """A local index whose `kern` page is JSON (`/json/`) or HTML only (`/html/`); its base URL per kind."""
    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            html = self.path.startswith("/html/")
            body = b"<html><a href='x'>kern-1.0.whl</a></html>" if html else json.dumps({"files": FILES}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if html else "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    package_index.has_wheel.cache_clear()

    def use(kind: str) -> None:
        monkeypatch.setenv("UV_DEFAULT_INDEX", f"http://127.0.0.1:{server.server_port}/{kind}/")
        package_index.has_wheel.cache_clear()
    yield use
    server.shutdown()
    package_index.has_wheel.cache_clear()


def test_wheels_are_judged_by_platform_glibc_python_and_yank(index):
    index("json")
    assert package_index.has_wheel("kern==1.0", "linux/amd64", "3.11")
    assert not package_index.has_wheel("kern==1.0", "linux/arm64", "3.11")  # x86_64 wheels only
    assert package_index.has_wheel("kern==2.0", "linux/arm64", "3.11")
    assert not package_index.has_wheel("kern==2.0", "linux/amd64", "3.11")  # manylinux_2_39: not on glibc 2.36
    assert not package_index.has_wheel("kern==2.0", "linux/arm64", "3.12")  # cp311 only
    assert not package_index.has_wheel("kern==3.0", "linux/amd64", "3.11")  # Requires-Python >=3.12
    assert package_index.has_wheel("kern==3.0", "linux/arm64", "3.12")
    assert package_index.has_wheel("kern==4.0", "linux/arm64", "3.11")  # yanked, but pinned exactly: pip takes it
    assert not package_index.has_wheel("kern>=4.0", "linux/arm64", "3.11")  # yanked, and only a range: pip does not
    assert not package_index.has_wheel("kern==5.0", "linux/amd64", "3.11")  # an sdist is no wheel


def test_an_index_that_serves_html_only_is_not_taken_to_lack_the_wheel(index):
    index("html")
    assert package_index.has_wheel("kern==1.0", "linux/arm64", "3.11")
