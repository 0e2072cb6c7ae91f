"""Trackers never cost a run: a tracker that raises is warned about once (one line naming it and the
cause) and left out while the run trains on; a tracker that is missing, unknown or whose server does not
answer is one sentence before a run exists; the tracker settings read old and new shapes."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from helpers import SNAPSHOTS, TINY

from fqvae_cli.registry.records import MetricRow
from fqvae_cli.trackers.base import Link, Tracker, TrackerSet, metric_key


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


class Recording(Tracker):
    """A tracker that writes down what it is sent, and raises in `fail_in` from call `fail_at` on."""

    def __init__(self, name: str = "recording", fail_in: str = "", fail_at: int = 1):
        self.name, self.fail_in, self.fail_at = name, fail_in, fail_at
        self.calls: list[tuple] = []

    def _note(self, what: str, *args) -> None:
        self.calls.append((what, *args))
        if what == self.fail_in and sum(c[0] == what for c in self.calls) >= self.fail_at:
            raise ConnectionError(f"{self.name} lost its server\n[Errno 111] Connection refused")

    def start(self, run, config, *, start=0):
        self._note("start", run.id, start)
        return Link(self.name, "t-" + run.short_id, url=None, where="here")

    def log_scalars(self, iteration, values):
        self._note("scalars", iteration, dict(values))

    def log_image(self, iteration, name, png):
        self._note("image", iteration, name, Path(png).name)

    def log_metric_rows(self, rows):
        self._note("rows", [(r.name, r.protocol, r.step) for r in rows])

    def finish(self, status):
        self._note("finish", status)


def test_a_failing_tracker_is_warned_about_once_and_the_others_go_on():
    warnings: list[str] = []
    bad, good = Recording("bad", fail_in="scalars", fail_at=2), Recording("good")
    guard = TrackerSet([bad, good], run_ref="abc12345", warn=warnings.append)
    run = type("R", (), {"id": "x" * 32, "short_id": "abc12345"})()
    guard.start(run, {}, 0)
    for it in (2, 4, 6):
        guard.log_scalars(it, {"loss/total": float(it)})
    guard.finish("finished")
    assert [c[1] for c in bad.calls if c[0] == "scalars"] == [2, 4]  # the call that failed, none after it
    assert [c[1] for c in good.calls if c[0] == "scalars"] == [2, 4, 6]
    assert ("finish", "finished") in good.calls and ("finish", "finished") not in bad.calls
    assert warnings == ["the bad tracker stopped (ConnectionError: bad lost its server [Errno 111] Connection "
                        "refused); the run goes on without it; fill it in later with `fqvae runs sync abc12345 "
                        "--to bad`."]


def test_metric_names_in_a_tracker():
    assert metric_key("loss/recon") == "loss/recon"
    assert metric_key("dci_d", "paper") == "paper/dci_d"
    assert metric_key("dci_d", "paper", "gbt") == "paper/dci_d.gbt"
    assert metric_key("a@b[c]", "p q") == "p q/a_b_c_"


def test_a_tracker_that_fails_mid_run_costs_nothing(cli, small_data, monkeypatch, capsys):
    from fqvae_cli.trackers import mirror

    made: list[Recording] = []

    def build(name):
        made.append(Recording(name, fail_in="image", fail_at=3))  # the third snapshot fails
        return made[-1]

    monkeypatch.setattr(mirror, "build", build)
    res = cli("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--set", "train.trackers=[tensorboard]",
              "--name", "t")
    assert res.exit_code == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if "tracker" in line]
    assert warned == ["warning: the tensorboard tracker stopped (ConnectionError: tensorboard lost its server "
                      "[Errno 111] Connection refused); the run goes on without it."]
    reg = _registry()
    run = reg.get_run("t")
    assert run.status == "finished"
    assert sorted({a.step for a in reg.artifacts(run.id, kind="checkpoint")}) == [3, 6]
    assert sorted(a.step for a in reg.artifacts(run.id, kind="snapshot")) == [1, 2, 3, 4, 5, 6]
    assert [m.step for m in reg.metrics(run.id, name="loss/total")] == [2, 4, 6]
    calls = made[0].calls
    assert calls[0] == ("start", run.id, 0)
    # Until it failed: the first two snapshots and the losses at 2, each at its iteration, as recorded.
    assert [c[1:] for c in calls if c[0] == "image"] == [(1, "snapshot", "step_00000001.png"),
                                                         (2, "snapshot", "step_00000002.png"),
                                                         (3, "snapshot", "step_00000003.png")]
    logged = {m.name: m.value for m in reg.metrics(run.id) if m.step == 2 and m.protocol is None}
    assert [c for c in calls if c[0] == "scalars"] == [("scalars", 2, logged)]
    assert not [c for c in calls if c[0] in ("rows", "finish")]


def test_the_link_is_recorded_and_shown(cli, small_data, monkeypatch):
    from fqvae_cli.trackers import links, mirror

    monkeypatch.setattr(mirror, "build", lambda name: Recording(name))
    res = cli("train", "--model", "ae", *TINY, "--set", "train.trackers=[tensorboard]",
              "--set", "train.snapshot_every=0", "--name", "linked")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("linked")
    assert links.read(reg, run.id) == [Link("tensorboard", "t-" + run.short_id, None, "here")]
    shown = cli("runs", "show", "linked")
    assert f"tracker tensorboard run t-{run.short_id} in here" in shown.stdout


def test_stored_and_given_tracker_settings():
    from fqvae_cli.config import build_run_config
    from fqvae_cli.experiments import parse_overrides, resolve_run_config
    from fqvae_cli.runs.cell_sources import training_setup

    old = resolve_run_config("qvae", None, "quick", 0, {}).model_dump(mode="json")
    old["train"].pop("trackers")  # a run stored before trackers existed, with TensorBoard on
    old["train"]["tensorboard"] = True
    assert build_run_config(old).train.tracker_names() == ["tensorboard"]
    given = resolve_run_config("qvae", None, "quick", 0, parse_overrides(["train.trackers=[mlflow, wandb,mlflow]"]))
    assert given.train.trackers == ["mlflow", "wandb"]
    assert training_setup(given) == training_setup(build_run_config(old))  # trackers never split a table cell


def test_an_unknown_tracker_is_one_sentence(cli, small_data):
    res = cli("train", "--model", "ae", *TINY, "--set", "train.trackers=[neptune]")
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: invalid value for 'train.trackers': unknown tracker 'neptune'; choose one of: tensorboard, mlflow, "
        "wandb."]


@pytest.mark.parametrize("name,extra", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_tracker_not_installed_is_one_sentence_before_a_run_exists(cli, small_data, monkeypatch, name, extra):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    res = cli("train", "--model", "ae", *TINY, "--set", f"train.trackers=[{name}]")
    assert res.exit_code == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: the {name} tracker needs {name}, which is not installed; install it with: pip install "
        f"'fqvae[{extra}]'"]
    assert _registry().find_runs() == []


def test_an_mlflow_server_that_does_not_answer_is_one_sentence(cli, small_data, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    res = cli("train", "--model", "ae", *TINY, "--set", "train.trackers=[mlflow]")
    assert res.exit_code == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith(f"error: the MLflow tracking server at http://127.0.0.1:{port} does not answer (")
    assert lines[0].endswith("start it, or point MLFLOW_TRACKING_URI elsewhere, or leave mlflow out of "
                             "train.trackers.")
    assert _registry().find_runs() == []


def test_sync_refuses_what_it_cannot_do(cli, small_data):
    reg = _registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="q")
    res = cli("runs", "sync", "q", "--to", "tensorboard")
    assert res.exit_code == 2 and res.stderr.strip() == "error: runs sync writes to mlflow or wandb, not 'tensorboard'."
    res = cli("runs", "sync", "q", "--to", "mlflow")
    assert res.exit_code == 2
    assert run.status == "running"  # recorded, not stopped: its history is not complete
    assert res.stderr.strip() == (f"error: run {run.short_id} is running; sync it once it has stopped (finished, "
                                  "failed or interrupted).")


def test_metric_rows_as_a_tracker_gets_them():
    from fqvae_cli.trackers.mirror import as_rows, send_rows

    sent = Recording()
    guard = TrackerSet([sent], warn=pytest.fail)
    rows = as_rows([("loss/total", 0.5, 2, "train"), ("perplexity", 3.0, 2, "test"), ("lr", 1e-3, 4, "train"),
                    MetricRow("dci_d", 0.25, 6, "eval", "paper")])
    send_rows(guard, rows)
    assert sent.calls == [("scalars", 2, {"loss/total": 0.5, "perplexity": 3.0}), ("scalars", 4, {"lr": 1e-3}),
                          ("rows", [("dci_d", "paper", 6)])]


def test_a_sweep_asks_each_tracker_set_once(cli, monkeypatch):
    """A grid of four runs with MLflow checks MLflow once, not once per queued run."""
    import fqvae_cli.training.session as session

    asked = []
    monkeypatch.setattr(session, "require_trackers", lambda names: asked.append(tuple(names)))
    res = cli("sweep", "--grid", "model=ae seed=0..3 set.train.trackers=mlflow")
    assert res.exit_code == 0, res.stderr
    assert asked == [("mlflow",)]
    from fqvae_cli.registry.store import Registry

    assert len(Registry().find_runs(model="ae")) == 4
