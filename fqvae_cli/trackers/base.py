"""What every tracker answers, and the guard that keeps a tracker from ever costing a run.

A tracker (TensorBoard, MLflow, Weights & Biases) mirrors what the registry records of one run: the
run's settings when it starts, every training row (losses, learning rate, temperature, codebook health)
as a scalar at its iteration, snapshots and figures as images, the metric rows of an evaluation (with
their protocol) and the status it ends with. It never decides anything: the registry is the record, a
tracker is a view of it that `fqvae runs sync` can always rebuild.

`TrackerSet` holds the trackers of one run. Any exception from a tracker is caught, said once (one line
naming the tracker and the cause) and that tracker is left out for the rest of the run: only the run's
own state (weights, optimizer, registry rows) may stop a run, never its dashboard."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fqvae_cli.errors import side_job_failure


@dataclass(frozen=True)
class Link:
    """Where a run lives in a tracker: its run id there and, when it has one, the address of its page
    (`where` says which store or folder holds it when there is no page: a local MLflow store, an
    offline W&B run)."""

    tracker: str
    run_id: str
    url: str | None = None
    where: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        place = self.url or (f"in {self.where}" if self.where else "")
        return f"{self.tracker} run {self.run_id} {place}".rstrip()


def metric_key(name: str, protocol: str | None = None, estimator: str | None = None) -> str:
    """The name a metric row has in a tracker: a training row keeps its own name (`loss/recon`,
    `perplexity/z3`); an evaluation row is prefixed with its protocol (`paper/dci_d`, `final/mse`), and a
    score computed with a named estimator says which (`paper/dci_d.gbt`). Characters a tracker refuses in
    a name become `_`."""
    key = f"{protocol}/{name}" if protocol else name
    if estimator:
        key = f"{key}.{estimator}"
    return re.sub(r"[^\w./\- ]", "_", key)


def row_key(row: Any) -> str:
    """metric_key of a metric row or record (an `estimator` attribute is used where rows carry one)."""
    return metric_key(row.name, row.protocol, getattr(row, "estimator", None))


def row_json(row: Any) -> dict[str, Any]:
    """A metric row as the tracker stores it in full: protocol, split, name, value, step (and estimator)."""
    out = {"name": row.name, "value": float(row.value), "step": row.step, "split": row.split,
           "protocol": row.protocol}
    if getattr(row, "estimator", None):
        out["estimator"] = row.estimator
    return out


def flat_settings(config: dict, prefix: str = "") -> dict[str, bool | str | float | int]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}; values a tracker cannot show become text."""
    out: dict[str, bool | str | float | int] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_settings(value, name + "."))
        elif isinstance(value, (bool, str, int, float)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class Tracker:
    """One tracker of one run. `start` opens (or, for a run it already holds, reopens) the tracker's run
    and returns where it is; the others log; `finish` closes it with the run's status."""

    name = "tracker"

    def start(self, run: Any, config: dict, *, start: int = 0) -> Link | None:
        raise NotImplementedError

    def log_scalars(self, iteration: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def log_image(self, iteration: int, name: str, png: Path) -> None:
        raise NotImplementedError

    def log_metric_rows(self, rows: Sequence[Any]) -> None:
        raise NotImplementedError

    def finish(self, status: str) -> None:
        raise NotImplementedError


def _cause(exc: BaseException) -> str:
    """An exception as a short clause on one line (tracker errors can span pages): the system's own reason
    for a failed file operation (as every side job says it), else the error's type and message."""
    text = " ".join(side_job_failure(exc).split()) or type(exc).__name__
    return f"{text[:200]}{'...' if len(text) > 200 else ''}"


class TrackerSet:
    """The trackers of one run behind one guard: a tracker that raises is warned about once and dropped;
    the others, and the run, go on. `on_link` receives each tracker's Link after it starts (the registry
    records it; a failure there is the tracker's failure too)."""

    def __init__(self, trackers: Sequence[Tracker], *, run_ref: str = "RUN",
                 warn: Callable[[str], None] | None = None, on_link: Callable[[Link], None] | None = None):
        self.live = list(trackers)
        self.dropped: dict[str, str] = {}
        self.run_ref = run_ref
        self.warn = warn or _warn
        self.on_link = on_link

    def __bool__(self) -> bool:
        return bool(self.live)

    def _each(self, act: Callable[[Tracker], Any]) -> None:
        for tracker in list(self.live):
            try:
                act(tracker)
            except Exception as exc:  # noqa: BLE001 - a side job never costs a run
                self.live.remove(tracker)
                self.dropped[tracker.name] = _cause(exc)
                sync = "" if tracker.name == "tensorboard" else \
                    f"; fill it in later with `fqvae runs sync {self.run_ref} --to {tracker.name}`"
                self.warn(f"the {tracker.name} tracker stopped ({self.dropped[tracker.name]}); the run goes on "
                          f"without it{sync}.")

    def start(self, run: Any, config: dict, start: int = 0) -> None:
        def act(tracker: Tracker) -> None:
            link = tracker.start(run, config, start=start)
            if link is not None and self.on_link is not None:
                self.on_link(link)

        self._each(act)

    def log_scalars(self, iteration: int, values: dict[str, float]) -> None:
        if values:
            self._each(lambda t: t.log_scalars(iteration, values))

    def log_image(self, iteration: int, name: str, png: Path) -> None:
        self._each(lambda t: t.log_image(iteration, name, png))

    def log_metric_rows(self, rows: Sequence[Any]) -> None:
        if rows:
            self._each(lambda t: t.log_metric_rows(rows))

    def finish(self, status: str) -> None:
        self._each(lambda t: t.finish(status))
        self.live = []


def _warn(message: str) -> None:
    from fqvae_cli.console import console

    # markup off: a cause such as "[Errno 111]" is text, not a style
    console().print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
