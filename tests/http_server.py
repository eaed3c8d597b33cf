"""A real HTTP server on 127.0.0.1 for the tests of downloading: it serves files from memory, honours
``Range: bytes=N-`` (switchable off), can cut the connection after some bytes, and records every request.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class State:
    """What the server does (switches) and what it saw (one (path, Range, User-Agent) per request)."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    cut_after: int | None = None  # for the next request only
    delay: float = 0.0  # seconds before each body: a slow server
    content_length: bool = True
    requests: list[tuple[str, str | None, str | None]] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        state: State = self.server.state
        asked = self.headers.get("Range")
        state.requests.append((self.path, asked, self.headers.get("User-Agent")))
        if self.path.startswith("/broken-chunks"):
            # A chunked body whose connection closes after its first 1000 bytes, before its last chunk.
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (1000, state.files.get(self.path, bytes(1000))[:1000]))
            self.close_connection = True
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked and state.ranges else 0
        if start >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if state.content_length:
            self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        time.sleep(state.delay)
        cut, state.cut_after = state.cut_after, None
        if cut is None:
            self.wfile.write(body[start:])
            return
        self.wfile.write(body[start : start + cut])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)  # a FIN after `cut` bytes: the client sees a short body
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[tuple[str, State]]:
    """``(base URL, State)`` of a server of ``files`` (URL path -> content) for the ``with`` block."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = State(files=dict(files))  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
