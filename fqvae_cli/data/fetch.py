"""Bytes from a URL into a file: HTTP with resume and retries on the standard library, and Google Drive
through the optional gdown package. What to fetch and what to do with it is fqvae_cli.data.download's.

HTTP: a partial file is continued with `Range: bytes=N-` and `If-Range: <validator>` (the ETag, else the
Last-Modified date): a file that changed on the server is then sent whole and fetched again, and a 206
whose validator differs from the partial file's (a server or cache that ignores If-Range) is discarded
and the file fetched again from byte 0, so two versions are never spliced. A dropped connection, a
stalled transfer (no byte for STALL_S seconds, or under SLOW_BYTES in STALL_S) or HTTP 5xx/429 is
retried with exponential backoff; a refused connection or a failed name lookup on the first try, and
HTTP 4xx, are reported at once. Nothing is read past `Target.max_bytes` (the file's size, a margin over
the catalog's approximate size, or --max-bytes). Redirects are followed to http and https only, and an
error names the URL that failed. Drive: its confirmation page for large files, cookies and quotas are
gdown's business, called in one place (`drive_download`). Every failure is one sentence naming the URL
and the manual route (`fqvae data prepare NAME --source FILE`)."""

from __future__ import annotations

import errno
import http.client
import socket
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.error import HTTPError, URLError

from fqvae_cli import __version__
from fqvae_cli.console import Progress, info, progress
from fqvae_cli.errors import DownloadError
from fqvae_cli.files import fmt_bytes

RETRIES = 5  # after a transient failure (dropped connection, stall, HTTP 5xx/429)
BACKOFF_S = 2.0  # the first wait; doubled after each failure
STALL_S = 60.0  # no byte for this long (also the connect timeout), or
SLOW_BYTES = 64 << 10  # fewer bytes than this in STALL_S: the transfer is stalled
CHUNK = 1 << 20
MAX_REDIRECTS = 10


@dataclass(frozen=True)
class Target:
    """What one download fetches and what the file must be."""

    name: str
    url: str
    file: str
    size: int | None  # exact size to enforce
    approx_bytes: int | None  # for the free-space check when no exact size is known
    algorithm: str | None  # of `expected`
    expected: str | None
    enforced: bool  # a different digest is refused (else reported)
    origin: str  # where the expected hash and size come from: 'the catalog' or '--sha256'
    note: str = ""
    max_bytes: int | None = None  # never read more than this
    sources: tuple[str, ...] = ()  # every URL of the file, tried in order (url is the one being tried)
    state_file: str = "state.json"  # where this file's download state is kept, in the download folder
    cap_reason: str = ""  # where max_bytes comes from, for the refusal

    def manual(self) -> str:
        return f"fetch {self.url} another way and run `fqvae data prepare {self.name} --source FILE`"


class SourceFailed(DownloadError):
    """One source could not deliver the file (unreachable, HTTP error, stalled, over the cap, a bad
    redirect or header, the wrong size): a mirror chain tries the next. `short` is the failure without
    the advice, for the chain's one line per source."""

    def __init__(self, message: str, short: str | None = None):
        super().__init__(message)
        self.short = short or message.rstrip(".")


class _Dropped(Exception):
    """The connection ended before the promised bytes arrived (or stalled): retried."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects only, and remembers where the request went, so a failure names the URL
    that failed rather than the one asked for."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, url: str):
        self.first = self.current = url

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        from urllib.parse import urlsplit

        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise SourceFailed(f"{self.current} redirects to {newurl}; only http and https are followed, so "
                               f"nothing was fetched from it.")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            self.current = new.full_url
        return new

    def where(self) -> str:
        return self.current if self.current == self.first else f"{self.current} (redirected from {self.first})"


def validator(headers: Any) -> str | None:
    """What identifies this version of the file: a strong ETag, else the Last-Modified date."""
    tag = headers.get("ETag")
    if tag and not tag.startswith("W/"):
        return tag
    return headers.get("Last-Modified") or None


def fetch_http(target: Target, part: Path, state: dict[str, Any],
               on_headers: Callable[[int | None, int], None]) -> None:
    """Fill `part` with the file at target.url, resuming from its current size. `state["validator"]` is
    kept up to date (the caller persists it); on_headers(total size or None, first byte sent) runs on
    every response before its body is read, and may raise to stop."""
    failures = 0
    if "validator" not in state and state.get("etag"):  # a partial file recorded before Last-Modified was used
        state["validator"] = state["etag"]
    with ExitStack() as stack:
        bar: Progress | None = None
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if target.size is not None and offset == target.size:
                return
            if target.size is not None and offset > target.size:
                info(f"{part.name} is longer than the file ({offset:,} > {target.size:,} bytes); starting over")
                part.unlink()
                offset = 0
            headers = {"User-Agent": f"fqvae/{__version__}"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if state.get("validator"):
                    headers["If-Range"] = state["validator"]
            redirects = _Redirects(target.url)
            opener = urllib.request.build_opener(redirects)
            try:
                with opener.open(urllib.request.Request(target.url, headers=headers), timeout=STALL_S) as resp:
                    start, total = _span(resp, offset, redirects.where())
                    if target.size is not None and total is not None and total != target.size:
                        raise SourceFailed(f"{redirects.where()} serves {total:,} bytes, but {target.file} is "
                                           f"{target.size:,} bytes ({target.origin}); nothing more was downloaded.")
                    if target.max_bytes is not None and total is not None and total > target.max_bytes:
                        raise SourceFailed(f"{redirects.where()} announces {total:,} bytes, more than the "
                                           f"{target.max_bytes:,} allowed ({target.cap_reason}); nothing was "
                                           f"downloaded: pass --max-bytes if the file really is that large.",
                                           f"{redirects.where()} announces {total:,} bytes, over the cap")
                    now = validator(resp.headers)
                    if start and offset and state.get("validator") and now != state["validator"]:
                        # A 206 of another version (If-Range ignored on the way): its tail would splice two files.
                        info(f"the file changed on the server since the partial download ({state['validator']}, "
                             f"now {now or 'none'}); starting over")
                        part.unlink()
                        state["validator"] = None
                        continue
                    state["validator"] = now
                    on_headers(total, start)
                    if bar is None:
                        bar = stack.enter_context(progress(f"downloading {target.file}", total, unit="B",
                                                           initial=start))
                    if start not in (0, offset):
                        part.unlink()  # not the rest of what we have: the next try starts from byte 0
                        raise _Dropped(f"the server resumed at byte {start:,}, not {offset:,}")
                    if start == 0 and offset:
                        info("the server sent the whole file rather than the rest; starting over")
                    with open(part, "ab" if start else "wb") as fh:
                        got = _copy(resp, fh, bar, part, target, start, redirects.where())
                    if total is not None and start + got < total:
                        raise _Dropped(f"the connection closed after {fmt_bytes(start + got)} of {fmt_bytes(total)}")
                    return
            except HTTPError as exc:
                if exc.code == 416 and _complete_416(exc, offset):
                    return
                if exc.code == 416:
                    part.unlink(missing_ok=True)  # the partial file does not fit the file served: start over
                    reason = "the server refused to resume (HTTP 416)"
                elif 300 <= exc.code < 400:
                    short = (f"{target.url} redirects in a loop or more than {MAX_REDIRECTS} times (last to "
                             f"{redirects.current})")
                    raise SourceFailed(f"{short}; check the URL, or {target.manual()}.", short) from None
                elif exc.code in (408, 425, 429) or exc.code >= 500:
                    reason = f"HTTP {exc.code} {exc.reason}"
                else:
                    short = f"{redirects.where()} answered HTTP {exc.code} {exc.reason}"
                    raise SourceFailed(f"{short}; check the URL, or {target.manual()}.", short) from None
            except URLError as exc:
                if failures == 0 and _unreachable(exc.reason):
                    short = f"cannot reach {redirects.where()} ({_reason(exc.reason)})"
                    raise SourceFailed(f"{short}; check the network, or {target.manual()}.", short) from None
                reason = _reason(exc.reason)
            except (_Dropped, OSError, http.client.HTTPException) as exc:  # resets, timeouts, TLS errors
                reason = _reason(exc)
            failures += 1
            have = part.stat().st_size if part.exists() else 0
            if failures > RETRIES:
                tries = f"{failures} attempts" if failures > 1 else "1 attempt"
                raise SourceFailed(f"downloading {target.url} failed after {tries} (last: {reason}); "
                                   f"{fmt_bytes(have)} are kept in {part}: rerun to resume, or "
                                   f"{target.manual()}.", f"{target.url} failed after {tries} (last: {reason})")
            delay = BACKOFF_S * 2 ** (failures - 1)
            info(f"{reason}; retrying in {delay:g}s ({failures}/{RETRIES}), resuming at {fmt_bytes(have)}")
            time.sleep(delay)


def _span(resp: Any, offset: int, where: str) -> tuple[int, int | None]:
    """(first byte sent, total file size or None) of a 200 or 206 response."""
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        # Content-Range: bytes START-END/TOTAL
        try:
            first, _, total = resp.headers["Content-Range"].split(" ", 1)[1].partition("/")
            start = int(first.split("-")[0])
            return start, None if total == "*" else int(total)
        except (KeyError, ValueError, IndexError):
            raise _Dropped("a partial response without a readable Content-Range") from None
    if length is None:
        return 0, None
    if not length.strip().isdigit():
        raise SourceFailed(f"{where} sent an unreadable Content-Length ({length!r}); it is not a file server "
                           f"fqvae can trust, so nothing was downloaded.")
    return 0, int(length)


def _complete_416(exc: HTTPError, offset: int) -> bool:
    """HTTP 416 with `Content-Range: bytes */TOTAL` and TOTAL == what we have: the file is complete."""
    value = exc.headers.get("Content-Range", "") if exc.headers else ""
    return value.startswith("bytes */") and value[len("bytes */"):].isdigit() and int(value[8:]) == offset


def _write(fh: IO[bytes], data: bytes) -> None:
    fh.write(data)


def _copy(resp: Any, fh: IO[bytes], bar: Progress, part: Path, target: Target, start: int, where: str) -> int:
    """Copy the body into fh as it arrives; stop at target.max_bytes, and call a transfer stalled when no
    byte comes for STALL_S (the socket's timeout) or fewer than SLOW_BYTES come in STALL_S."""
    got = 0
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            block = resp.read1(CHUNK)
        except TimeoutError:
            raise _Dropped(f"the transfer stalled: no byte for {STALL_S:g}s") from None
        if not block:
            return got
        if target.max_bytes is not None and start + got + len(block) > target.max_bytes:
            fh.close()
            part.unlink(missing_ok=True)
            raise SourceFailed(f"{where} sent more than {target.max_bytes:,} bytes ({target.cap_reason}); the "
                               f"download was stopped and its partial file removed: pass --max-bytes if the "
                               f"file really is larger.", f"{where} sent more than {target.max_bytes:,} bytes")
        try:
            _write(fh, block)
            fh.flush()
        except OSError as exc:  # the disk, not the network: no retry
            fh.close()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DownloadError(f"the disk holding {part.parent} is full after {fmt_bytes(part.stat().st_size)}; "
                                    f"the partial file {part} is kept: free some space and rerun to resume.") from None
            raise DownloadError(f"cannot write {part} ({exc.strerror or exc}).") from None
        got += len(block)
        bar.advance(len(block))
        window_bytes += len(block)
        elapsed = time.monotonic() - window_start
        if elapsed >= STALL_S:
            if window_bytes < SLOW_BYTES:
                raise _Dropped(f"the transfer stalled: {window_bytes:,} bytes in {elapsed:.1f}s, under "
                               f"{SLOW_BYTES:,} bytes in {STALL_S:g}s")
            window_start, window_bytes = time.monotonic(), 0


def _unreachable(reason: object) -> bool:
    """No network, no such host, nothing listening: retrying in a few seconds will not help."""
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror)) or (
        isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH))


def _reason(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name lookup failed: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


def drive_download(file_id: str, output: Path, bar: Progress, target: Target) -> None:
    """The one call into gdown (`pip install 'fqvae[drive]'`). gdown resumes its own partial file beside
    `output`. Every failure becomes one DownloadError that gives the manual route."""
    try:
        import gdown
    except ImportError:
        raise SourceFailed(f"{target.name} is on Google Drive, which needs the optional package gdown "
                            f"(pip install 'fqvae[drive]'); or {target.manual()}.") from None
    import inspect

    options: dict[str, Any] = {"id": file_id, "output": str(output), "quiet": True, "resume": True}
    if "progress" in inspect.signature(gdown.download).parameters:
        def report(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.set_total(total)
            bar.advance(done - bar.completed)

        options["progress"] = report
    else:
        options["quiet"] = False  # an older gdown prints its own bar
    try:
        result = gdown.download(**options)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - gdown raises its own errors and requests'; all mean the same here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceFailed(f"Google Drive did not hand over {target.file} ({first}); Drive limits how often a "
                            f"large file is downloaded: try again later, or download {target.url} in a browser "
                            f"and run `fqvae data prepare {target.name} --source FILE`.") from None
    if not result or not output.is_file():
        raise SourceFailed(f"Google Drive did not hand over {target.file}; download {target.url} in a browser "
                            f"and run `fqvae data prepare {target.name} --source FILE`.")
