"""Every hostile server a download must survive, as data: each case sets up tests/http_server.py's
FileServer and names the one sentence the download must end with, and how many bytes it may leave on
disk. tests/test_download_hostile.py runs `fqvae data download` against all of them, so a change to the
download code meets every case found so far; add a case here when a new one is found.

The timings are shrunk for the tests: the stall limit is STALL_S seconds and the slow-transfer floor
SLOW_BYTES per STALL_S (fqvae_cli.data.fetch), with no retries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from http_server import FileServer

MAX_BYTES = 64 * 1024  # --max-bytes given to every case
STALL_S = 0.4
SLOW_BYTES = 1024


@dataclass(frozen=True)
class Hostile:
    name: str
    setup: Callable[[FileServer], str]  # configures the server; returns the URL to download
    says: Callable[[FileServer], tuple[str, ...]]  # fragments of the one error sentence
    keeps_at_most: int  # bytes left in the partial file afterwards


def _endless(srv: FileServer) -> str:
    srv.endless["/endless"] = b"\0" * 65536
    return srv.url("/endless")


def _huge_length(srv: FileServer) -> str:
    srv.files["/huge"] = b"x" * (MAX_BYTES + 1)
    return srv.url("/huge")


def _silent(srv: FileServer) -> str:
    srv.files["/silent"] = b"abcdef"
    srv.trickle["/silent"] = 5.0  # one byte every 5 s: nothing within the stall limit
    return srv.url("/silent")


def _slow(srv: FileServer) -> str:
    srv.files["/slow"] = bytes(range(200))
    srv.trickle["/slow"] = 0.05  # bytes keep coming, far below the floor
    return srv.url("/slow")


def _ftp(srv: FileServer) -> str:
    srv.redirect["/ftp"] = "ftp://127.0.0.1:1/x"
    return srv.url("/ftp")


def _loop(srv: FileServer) -> str:
    srv.redirect["/a"] = srv.url("/b")
    srv.redirect["/b"] = srv.url("/a")
    return srv.url("/a")


def _redirect_to_404(srv: FileServer) -> str:
    srv.redirect["/moved"] = srv.url("/gone")
    return srv.url("/moved")


def _bad_length(srv: FileServer) -> str:
    srv.files["/abc"] = b"0123456789"
    srv.headers["/abc"] = {"Content-Length": "abc"}
    return srv.url("/abc")


def _bad_range(srv: FileServer) -> str:
    srv.files["/range"] = b"0123456789"
    srv.headers["/range"] = {"Content-Length": "-5"}
    return srv.url("/range")


CASES: list[Hostile] = [
    Hostile("endless body, no Content-Length", _endless,
            lambda s: (f"{s.url('/endless')} sent more than 65,536 bytes (--max-bytes)",
                       "the download was stopped and its partial file removed"), 0),
    Hostile("Content-Length over the cap", _huge_length,
            lambda s: (f"{s.url('/huge')} announces 65,537 bytes, more than the 65,536 allowed (--max-bytes)",
                       "nothing was downloaded"), 0),
    Hostile("no byte within the stall limit", _silent,
            lambda s: (f"downloading {s.url('/silent')} failed after 1 attempt (last: the transfer stalled: no "
                       f"byte for {STALL_S:g}s)", "rerun to resume"), 0),
    Hostile("a byte at a time, under the floor", _slow,
            lambda s: (f"downloading {s.url('/slow')} failed after 1 attempt (last: the transfer stalled: ",
                       f"under {SLOW_BYTES:,} bytes in {STALL_S:g}s)", "rerun to resume"), 200),
    Hostile("redirect to ftp", _ftp,
            lambda s: (f"{s.url('/ftp')} redirects to ftp://127.0.0.1:1/x; only http and https are followed",),
            0),
    Hostile("redirect loop", _loop,
            lambda s: (f"{s.url('/a')} redirects in a loop or more than 10 times (last to {s.url('/b')})",), 0),
    Hostile("redirect to a 404", _redirect_to_404,
            lambda s: (f"{s.url('/gone')} (redirected from {s.url('/moved')}) answered HTTP 404 Not Found",), 0),
    Hostile("Content-Length: abc", _bad_length,
            lambda s: (f"{s.url('/abc')} sent an unreadable Content-Length ('abc')",), 0),
    Hostile("Content-Length: -5", _bad_range,
            lambda s: (f"{s.url('/range')} sent an unreadable Content-Length ('-5')",), 0),
]
