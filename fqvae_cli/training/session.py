"""The run session: one run held by this process, from its preparation to its status at the end.

`fqvae train` and a worker both train through `run_session`, which
- prepares the run: a new one (its model size, optional extras and data checked, then recorded as
  running here), a stopped one resumed (its data, holder and checkpoint checked, then claimed), or one a
  worker has claimed (its data checked, or learned when it first starts); what refuses a new run or a
  resume is checked before the run is recorded or claimed, so a refusal leaves the registry as it was;
- opens the run's dataset once and checks its image size once;
- continues from the newest checkpoint that verifies, or from iteration 0 when the run stopped before
  its first checkpoint (nothing was lost but time; `restarted` says so);
- maps every way out to the run's status: the end of training to finished; a stop (Ctrl-C, SIGTERM) to
  interrupted (the loop has checkpointed the last finished iteration), raised as RunStopped with what
  became of the run; a checkpoint that cannot be written (StorageError) to interrupted with the reason (its
  earlier checkpoints are intact); a lost claim (requeued after a stale heartbeat) to nothing at all; any
  other error to failed with its message. Each end is a transition that moves the run only while this
  process still holds it;
- shows the run in its trackers (train.trackers): once it holds the run, the session's registry is the
  registry mirrored to them (trackers/mirror.py), so the move to running starts them, what the run records
  reaches them, and every status the session sets, the endings above included, finishes them; a lost
  claim finishes them as queued, without touching the run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fqvae_cli import console
from fqvae_cli.config import RunConfig, build_run_config
from fqvae_cli.data.identity import dataset_fingerprint, require_image_size, require_same_dataset
from fqvae_cli.data.store import open_dataset
from fqvae_cli.errors import CheckpointError, StorageError, TrainingError
from fqvae_cli.models.zoo import check_model_size
from fqvae_cli.registry.lifecycle import FAILED, FINISHED, INTERRUPTED, QUEUED, RUNNING
from fqvae_cli.registry.transitions import holder_id
from fqvae_cli.trackers import require as require_trackers
from fqvae_cli.trackers.mirror import mirror, release
from fqvae_cli.training.checkpoint import RecordedCheckpoint, recorded_checkpoints, usable_checkpoint
from fqvae_cli.training.loop import TrainResult, train_run
from fqvae_cli.training.recorder import TakenOver
from fqvae_cli.training.snapshots import Draw

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


def check_startable(cfg: RunConfig, checked: set[tuple[str, ...]] | None = None) -> None:
    """What refuses a run of `cfg` before it exists, for `train` and for a sweep that queues it alike:
    a model too large, a tracker it asks for that is not installed or whose server does not answer.
    `checked`: tracker sets already found ready by this caller (a sweep checks each set once, not once per
    queued run, so a grid asks an MLflow server one question)."""
    check_model_size(cfg.model)
    names = tuple(cfg.train.tracker_names())
    if checked is None or names not in checked:
        require_trackers(list(names))
        if checked is not None:
            checked.add(names)


@dataclass(frozen=True)
class NewRun:
    cfg: RunConfig
    name: str | None = None


@dataclass(frozen=True)
class Resume:
    ref: str
    step: int | None = None  # the checkpoint to continue from; default the newest that verifies


@dataclass(frozen=True)
class Claimed:
    run: Any  # a RunRecord a worker has claimed (registry.claim_next_queued)


class RunStopped(KeyboardInterrupt):
    """A stop (Ctrl-C, SIGTERM) while the session held its run. `outcome` says what became of the run, read
    back from the registry; `resumable` whether it can continue. A KeyboardInterrupt, so every handler of
    a stop still sees one."""

    def __init__(self, outcome: str, resumable: bool):
        super().__init__(outcome)
        self.outcome = outcome
        self.resumable = resumable


class RunSession:
    """The run this process holds (`run`), its settings (`cfg`), its data (`ds`, opened once) and where
    training continues from (`start`: a checkpoint, or None for iteration 0; `restarted`: a stopped run
    without a checkpoint starts again from 0). A claimed run's settings and data are read when it trains,
    inside the session, so a run that cannot be read fails rather than staying claimed. `reg` is the
    registry mirrored to the run's trackers (trackers/mirror.py; the registry itself without trackers)."""

    def __init__(self, reg: Registry, run: Any, cfg: RunConfig | None = None, ds: Any = None,
                 start: RecordedCheckpoint | None = None, restarted: bool = False):
        self.reg = reg if cfg is None else mirror(reg, run, cfg.train.tracker_names())
        self.run = run
        self.cfg = cfg
        self.ds = ds
        self.start = start
        self.restarted = restarted

    def train(self, device: Any, *, draw: Draw | None = None, show_progress: bool = True,
              test_mse: bool = True) -> TrainResult:
        """Train the run to its end and mark it finished (train_run; test_mse=False leaves the test MSE to
        the evaluation that follows)."""
        if self.ds is None:
            self._open_claimed()
        result = train_run(self.cfg, self.reg, self.run, self.ds, device, resume_from=self.start, draw=draw,
                           show_progress=show_progress, test_mse=test_mse)
        self.reg.transition(self.run.id, FINISHED, only_from=(RUNNING,), holder=holder_id())
        return result

    def _open_claimed(self) -> None:
        """A claimed run's settings and data: the data's identity learned when it first starts, checked
        afterwards; it continues from its newest checkpoint that verifies, if it has one."""
        self.cfg = build_run_config(self.run.config)
        require_trackers(self.cfg.train.tracker_names())
        self.reg = mirror(self.reg, self.run, self.cfg.train.tracker_names())
        ds = _open(self.cfg)
        if self.run.dataset_fingerprint is None:
            self.reg.set_dataset_fingerprint(self.run.id, dataset_fingerprint(ds))
        else:
            require_same_dataset(self.run, ds, "resume")
        self.start, self.restarted = _start_of(self.reg, self.run, None)
        if self.restarted:
            console.info(f"run {self.run.short_id} stopped before its first checkpoint; it starts again from "
                         "iteration 0 with its settings")
        self.ds = ds


@contextmanager
def run_session(reg: Registry, start: NewRun | Resume | Claimed) -> Iterator[RunSession]:
    """The run `start` names, prepared and held by this process (see the module's docstring); on the way
    out, its status says how it ended."""
    session = _prepare(reg, start)
    run = session.run
    try:
        yield session
    except KeyboardInterrupt:
        _settle(session.reg, run.id, INTERRUPTED)
        stopped = _outcome(reg, run)
        raise stopped from None
    except StorageError as exc:
        _settle(session.reg, run.id, INTERRUPTED, str(exc))
        raise
    except TakenOver:
        _release(session.reg, QUEUED)
        raise TrainingError(f"run {run.short_id} was requeued elsewhere after a stale heartbeat; "
                            "this process stops without touching it.") from None
    except TrainingError as exc:
        _settle(session.reg, run.id, FAILED, str(exc))
        raise
    except BaseException as exc:
        _settle(session.reg, run.id, FAILED, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _release(session.reg)  # trackers an end did not finish (the run no longer held here)


def _prepare(reg: Registry, start: NewRun | Resume | Claimed) -> RunSession:
    if isinstance(start, Claimed):
        # Already held: what could fail here (its settings, its data) is inside the session, and fails the run.
        return RunSession(reg, start.run)
    if isinstance(start, NewRun):
        cfg = start.cfg
        check_startable(cfg)
        ds = _open(cfg)
        run = reg.create_run(model=cfg.model.name, dataset=cfg.dataset, profile=cfg.profile, seed=cfg.seed,
                             config=cfg.model_dump(mode="json"), name=start.name, worker=holder_id(),
                             dataset_fingerprint=dataset_fingerprint(ds))
        return RunSession(reg, run, cfg, ds)
    run = reg.get_run(start.ref)
    cfg = build_run_config(run.config)
    ds = _open(cfg)
    require_same_dataset(run, ds, "resume")
    require_trackers(cfg.train.tracker_names())
    reg.require_resumable(run)
    begin, restarted = _start_of(reg, run, start.step)
    run = reg.claim_for_resume(run.id)
    return RunSession(reg, run, cfg, ds, begin, restarted)


def _open(cfg: RunConfig) -> Any:
    """The run's dataset, opened and its image size checked: once per session."""
    ds = open_dataset(cfg.dataset)
    require_image_size(ds, cfg.model.image_size, cfg.dataset)
    return ds


def _start_of(reg: Registry, run: Any, step: int | None) -> tuple[RecordedCheckpoint | None, bool]:
    """(the checkpoint a run continues from, or None for iteration 0; whether it trained before, so that it
    starts again). A run stopped before its first checkpoint starts again from 0; one whose checkpoints all
    fail to verify is refused (usable_checkpoint says why)."""
    if recorded_checkpoints(reg, run.id):
        return usable_checkpoint(reg, run, step=step, warn=console.warn), False
    if step is not None:
        raise CheckpointError(f"run {run.short_id} has no checkpoint yet; without --checkpoint it starts again "
                              "from iteration 0.")
    return None, bool(reg.starts([run.id]))  # a start is recorded when training begins


def _settle(reg: Registry, run_id: str, status: str, error: str | None = None) -> None:
    """Move a run this process still holds (and that is still running) to `status`. Best effort: it is
    called while another error is already on its way out, which it must never hide."""
    try:
        reg.transition(run_id, status, error=error, only_from=(RUNNING,), holder=holder_id())
    except Exception:  # noqa: BLE001 - never hide the error being handled
        pass


def _release(reg: Registry, status: str | None = None) -> None:
    """Finish the run's trackers still open (mirror.release); best effort, as _settle."""
    try:
        release(reg, status)
    except Exception:  # noqa: BLE001 - never hide the error being handled
        pass


def _outcome(reg: Registry, run: Any) -> RunStopped:
    """What a stop left of `run`, read back from the registry rather than assumed."""
    try:
        status = reg.get_run(run.id).status
        found = recorded_checkpoints(reg, run.id) if status == INTERRUPTED else []
    except Exception:  # noqa: BLE001 - the stop is being reported; a registry error must not hide it
        return RunStopped(f"the state of run {run.short_id} could not be read back", False)
    if status == INTERRUPTED:
        saved = (f"its last checkpoint is at iteration {found[0].step}" if found
                 else "it had no checkpoint yet and starts again from iteration 0")
        return RunStopped(f"run {run.short_id} was marked interrupted; {saved}", True)
    if status == FINISHED:
        return RunStopped(f"run {run.short_id} had finished training and stays finished; its evaluation was "
                          f"stopped, so evaluate it with `fqvae evaluate {run.short_id}`", False)
    return RunStopped(f"run {run.short_id} is {status}", False)
