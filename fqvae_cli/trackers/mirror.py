"""The live hook: a run's registry writes, mirrored to its trackers.

`mirror(reg, run, names)` returns a stand-in for the registry that the training code uses as it used
the registry: every call goes to the registry first, and what concerns this run then goes to its
trackers, behind the guard of base.TrackerSet:

- the transition to running starts them (with the run's stored settings and the iteration it starts
  from), and records where each tracker holds the run (links.py);
- metric rows without a protocol (losses, learning rate, temperature, codebook health, images per
  second) become scalars at their iteration; rows with a protocol (the final test MSE, an evaluation's
  scores) go as metric rows;
- a PNG recorded as a snapshot or a figure goes as an image;
- the transition to an end (finished, failed, interrupted) finishes them with that status; a move that
  did not happen (the run no longer held here) is not mirrored, and `release` finishes what is still open
  when the run session lets go of the run (a lost claim finishes them as queued).

The run session (training/session.py) wraps its registry once, when it holds the run, so every status
change it makes, the endings included, goes through here.

So a tracker shows exactly what the registry holds, the same mapping `runs sync` replays (sync.py), and
the training code needs one line to have trackers. A registry write that fails raises as before and is
never mirrored; a tracker that fails is dropped with one warning."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fqvae_cli.registry.lifecycle import ENDED, INTERRUPTED, RUNNING
from fqvae_cli.registry.records import MetricRow
from fqvae_cli.trackers import build, links
from fqvae_cli.trackers.base import TrackerSet

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

IMAGE_KINDS = ("snapshot", "figure")


def tracker_set(reg: Registry, run: Any, names: Sequence[str]) -> TrackerSet:
    """The guarded trackers `names` of `run`; each link they report is recorded in `reg`."""
    return TrackerSet([build(n) for n in names], run_ref=run.short_id,
                      on_link=lambda link: links.record(reg, run, link))


def as_rows(rows: Sequence[Any]) -> list[Any]:
    return [r if not isinstance(r, tuple) else MetricRow(*r) for r in rows]


def send_rows(trackers: TrackerSet, rows: Sequence[Any]) -> None:
    """Metric rows to trackers: training rows as scalars by iteration, protocol rows as metric rows."""
    by_step: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.protocol is None and r.step is not None:
            by_step.setdefault(r.step, {})[r.name] = float(r.value)
    for step in sorted(by_step):
        trackers.log_scalars(step, by_step[step])
    trackers.log_metric_rows([r for r in rows if r.protocol is not None])


class Mirrored:
    """The registry, with this run's writes also sent to its trackers (everything else passes through)."""

    def __init__(self, reg: Registry, run: Any, trackers: TrackerSet):
        self._reg, self._run, self.trackers = reg, run, trackers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reg, name)

    def transition(self, run_id: str, new: str, **kw: Any) -> Any:
        moved = self._reg.transition(run_id, new, **kw)
        if not moved or run_id != self._run.id:
            return moved
        if new == RUNNING:
            run = self._reg.get_run(run_id)
            self.trackers.start(run, run.config, kw.get("step") or 0)
        elif new in ENDED:
            self.trackers.finish(new)
        return moved

    def log_metrics(self, run_id: str, rows: Sequence[Any], *args: Any, **kw: Any) -> Any:
        stored = self._reg.log_metrics(run_id, rows, *args, **kw)
        if run_id == self._run.id:
            send_rows(self.trackers, as_rows(rows))
        return stored

    def add_artifact(self, run_id: str, *, kind: str, path: Any, **kw: Any) -> Any:
        record = self._reg.add_artifact(run_id, kind=kind, path=path, **kw)
        if run_id == self._run.id and kind in IMAGE_KINDS and str(path).lower().endswith(".png"):
            self.trackers.log_image(kw.get("step") or 0, kind if kind == "snapshot" else f"figure/{Path(path).stem}",
                                    Path(path))
        return record


    def release(self, status: str | None = None) -> None:
        """Finish the trackers still open when the session lets go of the run without an end of its own
        (a lost claim: `status` queued; an end that did not move the run: the registry's status)."""
        if not self.trackers:
            return
        if status is None:
            try:
                status = self._reg.get_run(self._run.id).status
            except Exception:  # noqa: BLE001 - the session is already on its way out
                status = INTERRUPTED
            if status not in ENDED:
                status = INTERRUPTED
        self.trackers.finish(status)


def release(reg: Registry, status: str | None = None) -> None:
    """Finish the trackers of a mirrored registry that are still open (nothing for a plain registry)."""
    if isinstance(reg, Mirrored):
        reg.release(status)


def mirror(reg: Registry, run: Any, names: Sequence[str]) -> Any:
    """`reg` itself when the run has no trackers; else the registry with this run's writes mirrored."""
    if not names:
        return reg
    return Mirrored(reg, run, tracker_set(reg, run, names))
