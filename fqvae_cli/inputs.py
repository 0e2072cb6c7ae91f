"""Values a user gives in several places (options, `--set`, grids, environment settings), checked by one
function per kind of input that every place taking it calls. A bad value is refused with one sentence
(UsageError) before anything is written; a thread count is the exception, lowered with a warning
(device.bounded_by_cores)."""

from __future__ import annotations

import operator
import unicodedata
from typing import Any

from fqvae_cli.errors import UsageError

# Seeds reach numpy's legacy RandomState and scikit-learn's random_state, which take 0 <= seed < 2**32.
SEED_MAX = 2**32 - 1
NAME_LIMIT = 200
# Unicode categories of characters that break a line or a table, or hide what a name says: control
# characters (newline, tab, escape), line and paragraph separators, invisible formatting (bidi overrides).
_HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def check_seed(value: Any, what: str = "--seed") -> int:
    """A seed: an integer from 0 to SEED_MAX."""
    try:
        seed = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        seed = None
    if seed is None or not 0 <= seed <= SEED_MAX:
        raise UsageError(f"{what} must be non-negative and at most {SEED_MAX} (a whole number), not {value!r}.")
    return seed


def run_name(value: Any) -> str | None:
    """A run's name, stripped of surrounding spaces. Refused: empty names, control or invisible characters
    and more than NAME_LIMIT characters. (A name that is another run's id or the start of one is refused
    by the registry, which knows the ids: Registry.create_runs.)"""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"a run name must be text, not {value!r}.")
    name = value.strip()
    if not name:
        raise UsageError("a run name must not be empty or only spaces.")
    hidden = next((c for c in name if unicodedata.category(c) in _HIDDEN), None)
    if hidden is not None:
        raise UsageError(f"a run name must not hold control or invisible characters; {name!r} holds {hidden!r}.")
    if len(name) > NAME_LIMIT:
        raise UsageError(f"a run name has at most {NAME_LIMIT} characters, not {len(name)}.")
    return name
