"""How a command was stopped. Ctrl-C (SIGINT) and SIGTERM (`timeout`, a process manager, a scheduler
pre-empting a job) both unwind as KeyboardInterrupt, so every exit path checkpoints and marks runs
interrupted the same way; the exit status then tells them apart: 130 for SIGINT, 143 for SIGTERM
(128 + the signal number, the shell convention)."""

from __future__ import annotations

import signal
from typing import Any

_state = {"sigterm": False}


def _on_sigterm(signum: int, frame: Any) -> None:
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


def note_sigterm() -> None:
    """For code that installs its own SIGTERM handler for a while (the training loop)."""
    _state["sigterm"] = True


def interrupted_exit_code() -> int:
    return 128 + int(signal.SIGTERM) if _state["sigterm"] else 128 + int(signal.SIGINT)
