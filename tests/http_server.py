"""A file server on loopback for the download tests: real HTTP/1.1 on 127.0.0.1 at a free port, with
Range requests (206, 416, If-Range on an ETag), and faults a test switches on per path:
- `drop[path] = (n, times)`: send only the first n bytes of the body, then close the connection
  (`times` responses in a row);
- `stall[path] = n`: send n bytes of the body, then hang until the server stops (a process to interrupt);
- `status[path] = code`: answer with that status and no body (404, 503, ...).
A wrong file is simply other bytes under the path. Every request is recorded (path, Range, If-Range)."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop: dict[str, tuple[int, int]] = {}
        self.stall: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def ranges(self, path: str) -> list[str | None]:
        return [r["range"] for r in self.requests if r["path"] == path]

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        srv: FileServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path
        srv.requests.append({"path": path, "range": self.headers.get("Range"),
                             "if_range": self.headers.get("If-Range")})
        if path in srv.status or path not in srv.files:
            self._empty(srv.status.get(path, 404))
            return
        data = srv.files[path]
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") not in (None, etag(data)):
            wanted = None  # the file changed since the client's partial copy: send it whole
        if wanted:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])
            if start >= len(data):
                self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag(data))
        self.end_headers()
        if path in srv.drop and srv.drop[path][1] > 0:
            n, times = srv.drop[path]
            srv.drop[path] = (n, times - 1)
            self._cut(body[:n])
        elif path in srv.stall:
            self.wfile.write(body[: srv.stall[path]])
            self.wfile.flush()
            srv._release.wait()
            self._cut(b"")
        else:
            self.wfile.write(body)

    def _empty(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _cut(self, sent: bytes) -> None:
        self.wfile.write(sent)
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
