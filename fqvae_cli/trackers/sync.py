"""A recorded run replayed into a tracker (`fqvae runs sync RUN --to mlflow|wandb`), and an evaluation's
rows sent to the trackers of the run it scored.

The replay sends what the registry holds, mapped as the live mirror maps it (mirror.py): the run's
settings, its training rows by iteration with its snapshots at theirs, its metric rows with their
protocol, its PNG figures at its last iteration, and its status. It is idempotent: the tracker finds
the run it already holds (MLflow by the `fqvae.run_id` tag, W&B by run id) and adds only what it lacks,
so a second sync updates and never duplicates, and a sync after a tracker died mid-run fills the gap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fqvae_cli.errors import FqvaeError, UsageError
from fqvae_cli.registry.lifecycle import ENDED
from fqvae_cli.trackers import SYNCABLE, build, links, require
from fqvae_cli.trackers.base import Link
from fqvae_cli.trackers.mirror import as_rows, tracker_set

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


class SyncError(FqvaeError):
    """A tracker refused or failed a sync."""


def _recorded_png(art: Any) -> bool:
    path = Path(art.path)
    return path.suffix.lower() == ".png" and path.is_file()


def replay(reg: Registry, run: Any, tracker: Any) -> tuple[Link | None, int, int]:
    """Send everything `reg` holds of `run` to `tracker` (not guarded: the caller reports a failure).
    Returns (link, training points, images)."""
    rows = reg.metrics(run.id)
    arts = reg.artifacts(run.id)
    link = tracker.start(run, run.config, start=0)
    scalars: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.protocol is None and r.step is not None:
            scalars.setdefault(r.step, {})[r.name] = r.value
    images: dict[int, list[tuple[str, Path]]] = {}
    for a in arts:
        if a.kind == "snapshot" and _recorded_png(a):
            images.setdefault(a.step or 0, []).append(("snapshot", Path(a.path)))
    last = max([*scalars, *images, 0])
    for a in arts:
        if a.kind == "figure" and _recorded_png(a):
            images.setdefault(last, []).append((f"figure/{Path(a.path).stem}", Path(a.path)))
    for step in sorted(set(scalars) | set(images)):  # in order: W&B's steps only go forward
        if step in scalars:
            tracker.log_scalars(step, scalars[step])
        for name, path in images.get(step, []):
            tracker.log_image(step, name, path)
    evaluated = [r for r in rows if r.protocol is not None]
    if evaluated:
        tracker.log_metric_rows(evaluated)
    tracker.finish(run.status)
    return link, sum(len(v) for v in scalars.values()), sum(len(v) for v in images.values())


def sync_run(reg: Registry, ref: str, to: str) -> tuple[Any, Link | None, int, int]:
    """Replay run `ref` into tracker `to` and record the link. A run still queued or running is refused
    (its history is not complete); so is a tracker without a run id of its own."""
    if to not in SYNCABLE:
        raise UsageError(f"runs sync writes to {' or '.join(SYNCABLE)}, not '{to}'.")
    run = reg.get_run(ref)
    if run.status not in ENDED:
        raise UsageError(f"run {run.short_id} is {run.status}; sync it once it has stopped (finished, failed or "
                         "interrupted).")
    require([to])
    try:
        link, points, images = replay(reg, run, build(to))
    except FqvaeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the tracker's own errors become one sentence
        cause = " ".join(str(exc).split())[:300]
        raise SyncError(f"could not sync run {run.short_id} to {to} ({type(exc).__name__}: {cause}).") from None
    if link is not None:
        links.record(reg, run, link)
    return run, link, points, images


def send_evaluation(reg: Registry, run: Any, names: Sequence[str], rows: Sequence[Any]) -> None:
    """An evaluation's metric rows to the trackers of the run it scored (those with a run of their own),
    guarded: a tracker that fails warns once and the evaluation stands."""
    names = [n for n in names if n in SYNCABLE]
    if not names or not rows:
        return
    run = reg.get_run(run.id)
    trackers = tracker_set(reg, run, names)
    trackers.start(run, run.config, 0)
    trackers.log_metric_rows(as_rows(rows))
    trackers.finish(run.status)
