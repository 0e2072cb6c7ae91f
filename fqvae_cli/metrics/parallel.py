"""Independent per-factor fits run in worker processes (joblib), with the serial numbers.

A metric that fits one classifier per factor (DCI, SAP, Explicitness) hands `run_tasks` a list of
(key, args) and gets {key: result} back. Every task's randomness must come from its own arguments (for
example a seed derived from the factor index), never from the order in which workers pick tasks up: then
`jobs` changes the time and not one bit of the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fqvae_cli.errors import UsageError


def resolve_jobs(jobs: int, n_tasks: int) -> int:
    """Worker processes for `n_tasks` tasks: `jobs` (-1: all cores), never more than there are tasks."""
    from joblib import effective_n_jobs

    if jobs == 0 or jobs < -1:
        raise UsageError(f"jobs must be a positive number of processes or -1 for all cores, got {jobs}.")
    if jobs == -1:
        jobs = effective_n_jobs(-1)
    return max(1, min(jobs, max(n_tasks, 1)))


def task_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed from (seed, keys...) alone, never from the order in which tasks run."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple[Any, tuple]], *, jobs: int = 1,
              progress: Any = None, threads: bool = False) -> dict[Any, Any]:
    """{key: fn(*args)} for each (key, args) in `tasks`, in `jobs` processes (or threads, for work that
    releases the GIL: no process start-up, no copies of the arrays); `progress` (or None) is advanced
    once per finished task. Tasks start in the order given: put the longest first."""
    n_jobs = resolve_jobs(jobs, len(tasks))
    if n_jobs == 1:
        results = {}
        for key, args in tasks:
            results[key] = fn(*args)
            if progress is not None:
                progress.advance()
        return results
    from joblib import Parallel, delayed

    results = {}
    backend = "threading" if threads else None
    for key, value in Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered")(
            delayed(_keyed)(fn, key, args) for key, args in tasks):
        results[key] = value
        if progress is not None:
            progress.advance()
    return results


def _keyed(fn: Callable[..., Any], key: Any, args: tuple) -> tuple[Any, Any]:
    return key, fn(*args)
