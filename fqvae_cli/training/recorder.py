"""What a run leaves behind while it trains: registry rows, checkpoints, snapshots, optional TensorBoard
events, the heartbeat, and how it stops.

The loop calls `log`, `checkpoint` and `advance`; `recording()` wraps the loop: progress, stop signals,
and on Ctrl-C or SIGTERM a checkpoint of the last finished iteration (unless its loss was not finite).
What each way out means for the run's status is the run session's to say (session.py); a lost claim
(the run was requeued after a stale heartbeat) is raised as TakenOver, so it stops without touching it.

Snapshots, codebook health and TensorBoard are side jobs: the first failure of one (a folder that cannot
be written, a full disk) is one warning naming its cause, that job is off for the rest of the run, and
training goes on. Only the run's own state (checkpoints, registry rows) stops a run.

A stop signal during the loop is noted, not raised where it lands: the loop stops at the end of the
iteration in progress (`stop_if_asked`), so a stop never cuts through an optimizer update, a checkpoint
being written or a registry transaction. A second signal stops at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fqvae_cli import console, signals
from fqvae_cli.errors import FqvaeError
from fqvae_cli.files import sha256_file
from fqvae_cli.registry.records import MetricRow
from fqvae_cli.training.checkpoint import save_checkpoint
from fqvae_cli.training.snapshots import write_png

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

T = TypeVar("T")


class TakenOver(Exception):
    """The registry no longer lists this run as running here (requeued after a stale heartbeat)."""


def side_job_failure(exc: BaseException) -> str:
    """Why a side job failed, in words: the system's own reason (permission denied, not a directory, no
    space left) with the path it names, or the error's message."""
    if isinstance(exc, FqvaeError):
        return str(exc).rstrip(".")
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


class Recorder:
    """Registry rows, checkpoints, snapshots and progress of one run. `state()` (an argument of
    `session`) returns the checkpoint state of the last finished iteration (optimizers, RNG, iteration);
    `model` is saved beside it. `views` measures the model's pictures and codebook health
    (snapshots.Snapshots); `board`, when given, receives the same as TensorBoard events (board.Board)."""

    def __init__(self, reg: Registry, run: Any, folder: Path, config: dict, *, keep: int, views: Any = None,
                 board: Any = None, provenance: dict | None = None):
        self.reg = reg
        self.provenance = provenance  # what computes the rows it logs
        self.run = run
        self.folder = folder
        self.ckpt_dir = folder / "checkpoints"
        self.config = config
        self.keep = keep
        self.views = views
        self.board = board
        self.model: Any = None
        self.last_checkpoint = 0
        self.done = 0
        self.bar: console.Progress | None = None
        self.stops = signals.Deferred()
        self.off: set[str] = set()  # side jobs that failed once and are not tried again

    def side(self, job: str, iteration: int, fn: Callable[[], T]) -> T | None:
        """fn() for side job `job`; its first failure warns once and turns the job off (returns None)."""
        if job in self.off:
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - a side job never costs the run
            self.off.add(job)
            console.warn(f"run {self.run.short_id}: {job} stopped at iteration {iteration} "
                         f"({side_job_failure(exc)}); training goes on without {job}.")
            return None

    # ------------------------------------------------------------------ during the loop

    def log(self, iteration: int, parts: dict[str, float], lr: float, tau: float) -> None:
        """The losses, learning rate and temperature, and the codebook health of a discrete model
        (measured on held-out images, so of split 'test'), as history rows at `iteration`."""
        train = {f"loss/{k}": v for k, v in parts.items()} | {"lr": lr, "temperature": tau}
        health = (self.side("codebook health", iteration, lambda: self.views.health(self.model))
                  if self.views is not None else None) or {}
        rows = [MetricRow(k, v, iteration, "train") for k, v in train.items()]
        rows += [MetricRow(k, v, iteration, "test") for k, v in health.items()]
        self.reg.log_metrics(self.run.id, rows, provenance=self.provenance)
        if self.board is not None:
            self.side("TensorBoard events", iteration, lambda: self.board.scalars(iteration, train | health))
        if not self.reg.heartbeat(self.run.id):
            raise TakenOver()
        if self.bar:
            self.bar.status(" ".join(f"{k} {v:.4g}" for k, v in list(parts.items())[:5]))

    def checkpoint(self, iteration: int, model: Any, state: dict) -> None:
        files = save_checkpoint(self.ckpt_dir, iteration, model, {**state, "iteration": iteration},
                                self.config)
        for kind, path in (("checkpoint_state", files.state), ("checkpoint", files.weights)):
            self.reg.add_artifact(self.run.id, kind=kind, path=str(path), bytes=path.stat().st_size,
                                  sha256=sha256_file(path), step=iteration)
        self.last_checkpoint = iteration
        self._prune()

    def snapshot(self, iteration: int) -> None:
        """The model's picture at `iteration`, written into the run's snapshots folder and recorded (a
        resumed run that passes the same iteration again replaces it); a side job."""
        img = self.side("snapshots", iteration, lambda: self._write_snapshot(iteration))
        if img is not None and self.board is not None:
            self.side("TensorBoard events", iteration, lambda: self.board.image("snapshot", iteration, img))

    def _write_snapshot(self, iteration: int) -> Any:
        img = self.views.picture(self.model, iteration)
        if img is None:
            return None
        path = self.folder / "snapshots" / f"step_{iteration:08d}.png"
        write_png(img, path)
        for old in self.reg.artifacts(self.run.id, kind="snapshot"):
            if old.step == iteration:
                self.reg.remove_artifact(old.id)
        self.reg.add_artifact(self.run.id, kind="snapshot", path=str(path), bytes=path.stat().st_size,
                              sha256=sha256_file(path), step=iteration)
        return img

    def wrap_up(self, metrics: dict[str, float]) -> None:
        """After the loop: the run's settings and final metrics into TensorBoard, and its events closed."""
        if self.board is not None:
            self.side("TensorBoard events", self.done, lambda: self.board.hparams(self.config, metrics, self.done))
            self.side("TensorBoard events", self.done, self.board.close)

    def stop_if_asked(self) -> None:
        """Called at the end of each iteration: raise the stop signal noted during it, if any."""
        self.stops.check()

    def advance(self, iteration: int) -> None:
        self.done = iteration
        if self.bar:
            self.bar.advance(1)

    def _prune(self) -> None:
        """Keep the newest `keep` checkpoints (rows and files)."""
        arts = self.reg.artifacts(self.run.id, kind="checkpoint")
        arts += self.reg.artifacts(self.run.id, kind="checkpoint_state")
        steps = sorted({a.step for a in arts})
        for old in steps[:-self.keep] if len(steps) > self.keep else []:
            for a in arts:
                if a.step == old:
                    Path(a.path).unlink(missing_ok=True)
                    self.reg.remove_artifact(a.id)

    # ------------------------------------------------------------------ around the loop

    @contextmanager
    def recording(self, description: str, total: int, start: int, model: Any,
                  state: Callable[[], dict], healthy: Callable[[], bool],
                  show_progress: bool = True) -> Iterator[Recorder]:
        """The loop's context: progress display and stop signals; a stop (Ctrl-C, SIGTERM) checkpoints the
        last finished iteration first when `healthy()` says its loss was finite, then goes on up."""
        self.done = self.last_checkpoint = start
        self.model = model
        try:
            with self.stops.active(), self._progress(description, total, start, show_progress):
                yield self
        except KeyboardInterrupt:
            if self.done > self.last_checkpoint and healthy():
                self.checkpoint(self.done, model, state())
            raise
        finally:
            if self.board is not None:
                self.side("TensorBoard events", self.done, self.board.flush)

    @contextmanager
    def _progress(self, description: str, total: int, start: int, show: bool) -> Iterator[None]:
        if not show:
            yield
            return
        with console.progress(description, total=total, unit="step", initial=start) as bar:
            self.bar = bar
            try:
                yield
            finally:
                self.bar = None
