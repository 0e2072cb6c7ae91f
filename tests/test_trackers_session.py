"""The run session shows its run in the run's trackers: every status the session gives the run reaches
the trackers' finish (finished, interrupted, failed), a run requeued elsewhere finishes them as queued
without touching the run, a resumed or claimed run starts them again from its checkpoint, and a resume
refuses a tracker that is not installed as a new run does, leaving the run as it was."""

from __future__ import annotations

import subprocess
import sys

from helpers import TINY, stop_after_checkpoint

from fqvae_cli.registry.lifecycle import FAILED, FINISHED, INTERRUPTED, RUNNING
from fqvae_cli.trackers.base import Tracker


def _checkpoint():
    from fqvae_cli.training import recorder

    return recorder.Recorder.checkpoint


CHECKPOINT = _checkpoint()
TRACKED = ["--set", "train.trackers=[tensorboard]", "--set", "train.snapshot_every=0"]


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


class Calls(Tracker):
    """A tracker that writes down the calls it gets: start with its iteration, scalars by iteration, finish."""

    def __init__(self, name: str):
        self.name = name
        self.calls: list[tuple] = []

    def start(self, run, config, *, start=0):
        self.calls.append(("start", start))

    def log_scalars(self, iteration, values):
        self.calls.append(("scalars", iteration))

    def log_image(self, iteration, name, png):
        self.calls.append(("image", iteration))

    def log_metric_rows(self, rows):
        self.calls.append(("rows", len(rows)))

    def finish(self, status):
        self.calls.append(("finish", status))


def _train_on(monkeypatch) -> None:
    """Undo stop_after_checkpoint: checkpoints no longer stop the run."""
    from fqvae_cli.training import recorder

    monkeypatch.setattr(recorder.Recorder, "checkpoint", CHECKPOINT)


def _tracked(monkeypatch) -> list[Calls]:
    from fqvae_cli.trackers import mirror

    made: list[Calls] = []

    def build(name):
        made.append(Calls(name))
        return made[-1]

    monkeypatch.setattr(mirror, "build", build)
    return made


def test_an_interrupted_run_finishes_its_trackers_and_its_resume_starts_them_again(cli, small_data, monkeypatch):
    made = _tracked(monkeypatch)
    stop_after_checkpoint(monkeypatch, 3)
    res = cli("train", "--model", "ae", *TINY, *TRACKED, "--name", "stopped")
    assert res.exit_code != 0
    reg = _registry()
    assert reg.get_run("stopped").status == INTERRUPTED
    assert made[0].calls == [("start", 0), ("scalars", 2), ("finish", INTERRUPTED)]
    _train_on(monkeypatch)
    made = _tracked(monkeypatch)
    res = cli("train", "--resume", "stopped", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    assert reg.get_run("stopped").status == FINISHED
    assert len(made) == 1  # wrapped once for the session
    assert made[0].calls == [("start", 3), ("scalars", 4), ("scalars", 6), ("scalars", 6), ("rows", 1),
                             ("finish", FINISHED)]  # 6: the losses, then images per second; rows: the test MSE


def test_a_failed_run_finishes_its_trackers_as_failed(cli, small_data, monkeypatch):
    made = _tracked(monkeypatch)
    res = cli("train", "--model", "ae", "--steps", "50", "--batch-size", "8", "--set", "train.lr=1e30",
              "--set", "train.lr_min=0", "--set", "train.threads=1", *TRACKED, "--device", "cpu", "--name", "nan")
    assert res.exit_code != 0
    assert _registry().get_run("nan").status == FAILED
    assert made[0].calls[0] == ("start", 0) and made[0].calls[-1] == ("finish", FAILED)
    assert [c for c in made[0].calls if c[0] == "finish"] == [("finish", FAILED)]


def test_a_lost_claim_finishes_the_trackers_as_queued_and_leaves_the_run_alone(cli, small_data, monkeypatch):
    from fqvae_cli.registry.store import Registry

    made = _tracked(monkeypatch)
    monkeypatch.setattr(Registry, "heartbeat", lambda self, run_id: False)  # requeued elsewhere meanwhile
    res = cli("train", "--model", "ae", *TINY, *TRACKED, "--name", "lost")
    assert res.exit_code != 0
    run = _registry().get_run("lost")
    assert "was requeued elsewhere after a stale heartbeat" in " ".join(res.stderr.split())
    assert run.status == RUNNING and run.error is None  # untouched: it is another process's now
    assert made[0].calls == [("start", 0), ("scalars", 2), ("finish", "queued")]


def test_a_resume_refuses_a_tracker_that_is_not_installed_and_leaves_the_run_as_it_was(cli, small_data,
                                                                                          monkeypatch):
    made = _tracked(monkeypatch)
    stop_after_checkpoint(monkeypatch, 3)
    assert cli("train", "--model", "ae", *TINY, "--set", "train.trackers=[wandb]", "--name", "w").exit_code != 0
    assert made[0].calls[-1] == ("finish", INTERRUPTED)
    before = _registry().get_run("w")
    _train_on(monkeypatch)
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    res = cli("train", "--resume", "w", "--device", "cpu")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == ["error: the wandb tracker needs wandb, which is not installed; "
                                               "install it with: pip install 'fqvae[wandb]'"]
    run = _registry().get_run("w")
    assert (run.status, run.worker, run.finished_at) == (INTERRUPTED, before.worker, before.finished_at)


def test_a_worker_shows_its_claimed_run_in_the_runs_trackers(cli, small_data, tiny_protocol, monkeypatch):
    from fqvae_cli.registry.transitions import holder_id

    assert cli("train", "--model", "ae", *TINY, "--name", "ref").exit_code == 0
    reg = _registry()
    ref = reg.get_run("ref")
    config = {**ref.config, "eval": {**ref.config["eval"], "protocol": tiny_protocol},
              "train": {**ref.config["train"], "trackers": ["tensorboard"], "snapshot_every": 0}}
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a holder that has exited: the worker requeues and claims the run
    queued = reg.create_run(model=ref.model, dataset=ref.dataset, profile=ref.profile, seed=ref.seed, config=config,
                            name="claimed", worker=holder_id(proc.pid), dataset_fingerprint=ref.dataset_fingerprint)
    made = _tracked(monkeypatch)
    res = cli("worker", "--device", "cpu", "--once", "--quiet")
    assert res.exit_code == 0, res.stderr
    assert reg.get_run(queued.id).status == FINISHED
    assert made[0].calls == [("start", 0), ("scalars", 2), ("scalars", 4), ("scalars", 6), ("scalars", 6),
                             ("finish", FINISHED)]
