"""How a command was stopped. Ctrl-C (SIGINT) and SIGTERM (`timeout`, a process manager, a scheduler
pre-empting a job) both unwind as KeyboardInterrupt, so every exit path checkpoints and marks runs
interrupted the same way; the exit status then tells them apart: 130 for SIGINT, 143 for SIGTERM
(128 + the signal number, the shell convention).

`Deferred` is the training loop's variant: a stop signal is noted where it lands and raised only at a
point the loop chooses (the end of an iteration); a second signal is raised at once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_state = {"sigterm": False}


def _on_sigterm(signum: int, frame: Any) -> None:
    _raise(signum)


def _raise(signum: int) -> None:
    """Unwind as KeyboardInterrupt, remembering whether it was SIGTERM (for the exit status)."""
    if signum == signal.SIGTERM:
        _state["sigterm"] = True
    raise KeyboardInterrupt


def install() -> Any:
    """Turn SIGTERM into KeyboardInterrupt in this (main) thread; returns the previous handler."""
    _state["sigterm"] = False
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        return None


def restore(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def stopped_by() -> str:
    """'SIGTERM' or 'Ctrl-C (SIGINT)': what stopped the command, for its last line."""
    return "SIGTERM" if _state["sigterm"] else "Ctrl-C (SIGINT)"


def interrupted_exit_code() -> int:
    return 128 + int(signal.SIGTERM) if _state["sigterm"] else 128 + int(signal.SIGINT)


class Deferred:
    """While `active()` (main thread only): the first SIGINT or SIGTERM is noted and raised by `check()`;
    a second one is raised at once. Either unwinds as KeyboardInterrupt, as elsewhere."""

    def __init__(self) -> None:
        self.pending: int | None = None

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending is not None:
            _raise(signum)
        self.pending = signum
        if signum == signal.SIGINT:  # os.write: safe inside a signal handler, unlike the console
            os.write(2, b"\nstopping after this iteration (Ctrl-C again to stop now)\n")

    def check(self) -> None:
        if self.pending is not None:
            _raise(self.pending)

    @contextmanager
    def active(self) -> Iterator[Deferred]:
        try:
            previous = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals stay with the main thread's handlers
            yield self
            return
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
