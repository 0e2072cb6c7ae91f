"""The one place below the CLI that touches rich: a stderr console and progress reporting.

Progress is a rich bar with rate, ETA and a status text on a terminal, and plain periodic lines
otherwise (cluster logs, CI), so long jobs are visible in both. Library code receives a `Progress`
handle (or None) and never knows which one it got."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from fqvae_cli.errors import UsageError
from fqvae_cli.files import fmt_bytes

_console = None
_out_console = None


def console():
    """Console for human-facing messages (stderr, so stdout stays clean for --json)."""
    global _console
    if _console is None:
        _console = Console(stderr=True, highlight=False)
    return _console


def out():
    """Console for results printed on stdout (tables)."""
    global _out_console
    if _out_console is None:
        # Piped or logged output gets a wide page so the tables stay readable.
        _out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    return _out_console


def is_interactive() -> bool:
    if os.environ.get("FQVAE_PLAIN_PROGRESS"):
        return False
    return sys.stderr.isatty()


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _fmt_rate(rate: float, unit: str) -> str:
    """Slow loops (runs of a reproduction) read better per minute than as '0.0 run/s'; bytes (unit 'B')
    in kB/MB/GB per second."""
    if unit == "B":
        return f"{fmt_bytes(rate)}/s"
    return f"{rate * 60:.1f} {unit}/min" if rate < 0.5 else f"{rate:.1f} {unit}/s"


def _fmt_amount(n: int, unit: str) -> str:
    return fmt_bytes(n) if unit == "B" else str(n)


class Progress:
    """A progress handle: advance(n), status(text). Use through `progress()`."""

    def __init__(self, description: str, total: int | None, unit: str = "it", initial: int = 0):
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = initial
        self._initial = initial  # work done before this display started (a resumed run) is not in the rate
        self._status = ""
        self._start = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.completed += n

    def status(self, text: str) -> None:
        self._status = text

    def set_total(self, total: int | None) -> None:
        """For work whose size is learnt once it has started (a download's Content-Length)."""
        self.total = total

    @property
    def rate(self) -> float:
        dt = time.monotonic() - self._start
        return (self.completed - self._initial) / dt if dt > 0 else 0.0


class _PlainProgress(Progress):
    def __init__(self, description: str, total: int | None, unit: str, interval: float, initial: int = 0):
        super().__init__(description, total, unit, initial)
        self._interval = interval
        self._last = 0.0

    def _line(self, final: bool = False) -> None:
        rate = self.rate
        parts = [f"{self.description}:"]
        if self.total:
            pct = 100.0 * self.completed / self.total
            parts.append(f"{_fmt_amount(self.completed, self.unit)}/{_fmt_amount(self.total, self.unit)} "
                         f"({pct:.0f}%)")
            if not final and rate > 0:
                parts.append(f"eta {_fmt_seconds((self.total - self.completed) / rate)}")
        else:
            parts.append(_fmt_amount(self.completed, self.unit))
        parts.append(_fmt_rate(rate, self.unit))
        if self._status:
            parts.append(self._status)
        print(" ".join(parts), file=sys.stderr, flush=True)

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._line()

    def close(self) -> None:
        self._line(final=True)


class _RichProgress(Progress):
    def __init__(self, bar: Any, task: Any, description: str, total: int | None, unit: str, initial: int = 0):
        super().__init__(description, total, unit, initial)
        self._bar = bar
        self._task = task

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        self._bar.update(self._task, advance=n, rate=_fmt_rate(self.rate, self.unit))

    def status(self, text: str) -> None:
        super().status(text)
        self._bar.update(self._task, status=text)

    def set_total(self, total: int | None) -> None:
        super().set_total(total)
        self._bar.update(self._task, total=total)


_live: dict = {"bar": None, "depth": 0}


def log_interval() -> float:
    """Seconds between plain progress lines: $FQVAE_LOG_INTERVAL (a non-negative number), default 10.
    The CLI checks it before any command starts, so a typo never stops a run halfway."""
    raw = os.environ.get("FQVAE_LOG_INTERVAL", "").strip()
    if not raw:
        return 10.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"FQVAE_LOG_INTERVAL must be a non-negative number of seconds, not {raw!r}.")
    return value


@contextmanager
def progress(description: str, total: int | None = None, *, unit: str = "it",
             initial: int = 0) -> Iterator[Progress]:
    """A progress display for a loop of `total` units. Nested calls share one live display: an inner
    task (one run inside a reproduction) appears under the outer one and is removed when it ends."""
    if not is_interactive():
        p = _PlainProgress(description, total, unit, log_interval(), initial)
        yield p  # a closing line only on success: after an error, its one sentence says what happened
        p.close()
        return

    outer = _live["bar"] is None
    if outer:
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn() if unit == "B" else MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        _live["bar"] = RichProgress(*columns, console=console(), refresh_per_second=4)
        _live["bar"].start()
    bar = _live["bar"]
    _live["depth"] += 1
    task = bar.add_task(description, total=total, completed=initial, status="", rate="")
    try:
        yield _RichProgress(bar, task, description, total, unit, initial)
    finally:
        _live["depth"] -= 1
        if outer:
            bar.stop()
            _live["bar"] = None
        else:
            bar.remove_task(task)


def info(message: str) -> None:
    console().print(message)


def warn(message: str) -> None:
    console().print(f"[yellow]warning:[/yellow] {message}")
