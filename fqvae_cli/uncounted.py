"""The runs a table cell leaves out, and why, so that no run vanishes from a table unsaid.

A cell averages the newest scored run of each seed among the finished runs of its training setup
(tables.py). The other runs of that setup are named beside the cell: failed runs (a non-finite loss, a
crash), interrupted ones (resume them to count them), finished runs not evaluated with the table's
protocol, and older runs of a seed that a newer run replaces. Runs left out by `--kernel-family` are
counted in the footer (origins.py)."""

from __future__ import annotations

from typing import Any

from fqvae_cli.registry.lifecycle import FAILED, INTERRUPTED

UNSCORED, OLDER = "not evaluated", "older"
REASONS = (FAILED, INTERRUPTED, UNSCORED, OLDER)


def left_out(setup: list[Any], scored: list[Any], kept: list[Any], stopped: list[Any]) -> dict[str, list[str]]:
    """reason -> short ids of a cell's runs that its numbers leave out: `stopped` runs of its setup by
    status, finished runs of its `setup` not `scored` with the protocol, and runs `kept` (scored, in the
    kernel family) that are not the newest of their seed (runs come oldest first)."""
    scored_ids, counted_ids = {r.id for r in scored}, {r.id for r in {r.seed: r for r in kept}.values()}
    out = {FAILED: [r.short_id for r in stopped if r.status == FAILED],
           INTERRUPTED: [r.short_id for r in stopped if r.status == INTERRUPTED],
           UNSCORED: [r.short_id for r in setup if r.id not in scored_ids],
           OLDER: [r.short_id for r in kept if r.id not in counted_ids]}
    return {k: v for k, v in out.items() if v}


def sentences(reasons: dict[str, list[str]], protocol: str) -> list[str]:
    """['1 failed run not counted: b78c82b1', ...] for one cell."""
    words = {FAILED: ("failed run", ""), INTERRUPTED: ("interrupted run", " (resume it to count it)"),
             UNSCORED: ("finished run", f" (not evaluated with protocol {protocol})"),
             OLDER: ("older run", " (a newer run of its seed counts)")}
    out = []
    for reason in REASONS:
        ids = reasons.get(reason, [])
        if ids:
            label, why = words[reason]
            out.append(f"{len(ids)} {label}{'s' if len(ids) != 1 else ''} not counted{why}: {', '.join(ids)}")
    return out


def note(reasons: dict[str, list[str]], protocol: str) -> str:
    """The runs one cell leaves out, as one line ('' when it leaves none out)."""
    return "; ".join(sentences(reasons, protocol))


def uncounted_lines(t: Any) -> list[str]:
    """One line per cell that leaves runs out: 'synth3d / FactorQVAE: 1 failed run not counted: b78c82b1'."""
    labels = dict(t.rows)
    return [f"{MARK} {ds} / {labels[key]}: {note(t.cells[(ds, key)].uncounted, t.protocol)}" for ds in t.datasets
            for key, _ in t.rows if t.cells[(ds, key)].uncounted]


MARK = "†"  # beside a cell's seed count when the cell leaves runs out


def seeds_text(cell: Any) -> str:
    """A cell's seed count, marked when the cell leaves runs out (the lines below the table say which)."""
    return f"{cell.n}{MARK}" if cell.uncounted else str(cell.n)
