"""A file server on loopback for the download tests: real HTTP/1.1 on 127.0.0.1 at a free port, with
Range requests (206, 416, If-Range on an ETag), and faults a test switches on per path:
- `drop[path] = (n, times)`: send only the first n bytes of the body, then close the connection
  (`times` responses in a row);
- `stall[path] = n`: send n bytes of the body, then hang until the server stops (a process to interrupt);
- `status[path] = code`: answer with that status and no body (404, 503, ...);
- `endless[path] = block`: a 200 with no Content-Length whose body repeats `block` until the client leaves;
- `trickle[path] = seconds`: send the body one byte every `seconds` (with `drop`, the first n bytes
  slowly, then close: a source that is slow, then cut);
- `redirect[path] = location`: a 302 to `location` (any scheme, a loop, another server);
- `headers[path] = {name: value}`: send these header values instead (a `Content-Length: abc`);
- `next_version[path] = bytes`: after one response, the path serves these bytes (a file replaced on the
  server between a dropped transfer and its resume);
- `honour_if_range = False`: answer a Range request 206 even when If-Range names an older version (a
  broken cache or mirror), the case where only the client's own check prevents a spliced file;
- `validator = "etag" | "last-modified" | "none"`: which validator the responses carry.
A wrong file is simply other bytes under the path. Every request is recorded (path, Range, If-Range).
tests/hostile_servers.py names every hostile case a download must survive."""

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
        self.endless: dict[str, bytes] = {}
        self.trickle: dict[str, float] = {}
        self.redirect: dict[str, str] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.next_version: dict[str, bytes] = {}
        self.honour_if_range = True
        self.validator = "etag"
        self.bytes_sent: dict[str, int] = {}
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


def last_modified(data: bytes) -> str:
    """A distinct HTTP date per content, so a replaced file has another Last-Modified."""
    from email.utils import formatdate

    return formatdate(1_700_000_000 + int.from_bytes(hashlib.sha256(data).digest()[:3], "big"), usegmt=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        srv: FileServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path
        srv.requests.append({"path": path, "range": self.headers.get("Range"),
                             "if_range": self.headers.get("If-Range")})
        if path in srv.redirect:
            self._empty(302, {"Location": srv.redirect[path]})
            return
        if path in srv.endless:
            self._endless(path, srv.endless[path])
            return
        if path in srv.status or path not in srv.files:
            self._empty(srv.status.get(path, 404))
            return
        data = srv.files[path]
        validator = {"etag": etag(data), "last-modified": last_modified(data)}.get(srv.validator)
        start = 0
        wanted = self.headers.get("Range")
        if wanted and srv.honour_if_range and self.headers.get("If-Range") not in (None, validator):
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
        headers = {"Content-Length": str(len(body)), "Accept-Ranges": "bytes"}
        if srv.validator == "etag":
            headers["ETag"] = validator
        elif srv.validator == "last-modified":
            headers["Last-Modified"] = validator
        headers.update(srv.headers.get(path, {}))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if path in srv.next_version:
            srv.files[path] = srv.next_version.pop(path)
        if path in srv.drop and srv.drop[path][1] > 0:
            n, times = srv.drop[path]
            srv.drop[path] = (n, times - 1)
            if path in srv.trickle:  # slow, then cut
                self._trickle(body[:n], srv.trickle[path], srv)
                self._cut(b"")
            else:
                self._cut(body[:n])
        elif path in srv.stall:
            self.wfile.write(body[: srv.stall[path]])
            self.wfile.flush()
            srv._release.wait()
            self._cut(b"")
        elif path in srv.trickle:
            self._trickle(body, srv.trickle[path], srv)
        else:
            self.wfile.write(body)

    def _endless(self, path: str, block: bytes) -> None:
        srv: FileServer = self.server.owner  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            while not srv._release.is_set():
                self.wfile.write(block)
                srv.bytes_sent[path] = srv.bytes_sent.get(path, 0) + len(block)
        except OSError:  # the client hung up: what a capped download does
            pass

    def _trickle(self, body: bytes, seconds: float, srv: FileServer) -> None:
        try:
            for i in range(len(body)):
                if srv._release.wait(seconds):
                    break
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

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
