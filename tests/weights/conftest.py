"""A checkpoint server on 127.0.0.1 (http.server in a thread) and an isolated weights cache.

Nothing in these tests reaches outside the machine: every URL points at this server, and
``CAVKIT_CACHE`` points into the test's temporary directory.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class CheckpointServer:
    """Serves ``files[name] = bytes`` at ``/name`` with ``Range`` / ``If-Range`` support.

    ``drop_after[name] = n``: the next GET of ``name`` announces the full length, sends ``n`` bytes
    and closes the connection (once). ``content_types[name]`` is sent as ``Content-Type`` (none by
    default). ``requests`` records ``(path, Range, If-Range)`` per GET.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.content_types: dict[str, str] = {}
        self.requests: list[tuple[str, str | None, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                server.requests.append((name, rng, if_range))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                start = 0
                if rng and (if_range is None or if_range == etag):
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                if name in server.content_types:
                    self.send_header("Content-Type", server.content_types[name])
                self.end_headers()
                cut = server.drop_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def gets(self, name: str) -> list[tuple[str, str | None, str | None]]:
        return [r for r in self.requests if r[0] == name]


@pytest.fixture
def server():
    srv = CheckpointServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(autouse=True)
def weights_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache; the real user cache is never touched."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CAVKIT_CACHE", str(cache))
    monkeypatch.delenv("CAVKIT_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # timm must never download in these tests
    return cache
