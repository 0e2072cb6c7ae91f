"""MLflow, read back with MLflow's own client: a run's params, metric histories with their steps, snapshot
images, tags and status, and its evaluation's metric rows, live from a local SQLite store and from a real
`mlflow server` on 127.0.0.1; a server killed mid-run costs the run nothing (one warning) and a later
`runs sync` fills the gap; a second sync updates and never duplicates."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import SNAPSHOTS, TINY

pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'fqvae[mlflow]')")


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


@pytest.fixture(autouse=True)
def quick_http(monkeypatch):
    """MLflow's client gives up at once on a dead server (its default retries for minutes)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def _held(uri: str, run_id: str):
    """The MLflow runs tagged with this fqvae run id (the client, experiment 'fqvae')."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fqvae")
    return client, client.search_runs([exp.experiment_id], filter_string=f"tags.`fqvae.run_id` = '{run_id}'")


def _history(client, tracker_run: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(tracker_run, key)}


def _images(client, tracker_run: str) -> list[str]:
    return [Path(a.path).name for a in client.list_artifacts(tracker_run, "images/snapshot")]


def test_a_run_and_its_evaluation_in_a_local_store(cli, small_data, tiny_protocol, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    res = cli("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--set", "train.trackers=[mlflow]", "--name", "m")
    assert res.exit_code == 0, res.stderr
    assert "warning" not in res.stderr
    assert cli("evaluate", "m", "--protocol", "tiny", "--device", "cpu").exit_code == 0
    reg = _registry()
    run = reg.get_run("m")
    client, held = _held(uri, run.id)
    assert len(held) == 1
    mr = held[0]
    assert mr.info.status == "FINISHED" and mr.info.run_name == "m"
    assert {k: mr.data.tags[k] for k in ("fqvae.short_id", "fqvae.model", "fqvae.dataset", "fqvae.status")} == {
        "fqvae.short_id": run.short_id, "fqvae.model": "factorqvae", "fqvae.dataset": "synth3d",
        "fqvae.status": "finished"}
    params = mr.data.params
    assert (params["train.steps"], params["train.batch_size"], params["seed"]) == ("6", "8", "0")
    assert mr.data.params["train.trackers"] == "['mlflow']"
    for name in ("loss/total", "loss/tc", "lr", "perplexity", "dead_codes/z0"):
        recorded = {m.step: m.value for m in reg.metrics(run.id, name=name)}
        assert sorted(recorded) == [2, 4, 6]
        assert _history(client, mr.info.run_id, name) == pytest.approx(recorded, rel=1e-12)
    assert _images(client, mr.info.run_id) == [f"step_{i:08d}.png" for i in range(1, 7)]
    local = client.download_artifacts(mr.info.run_id, "images/snapshot/step_00000006.png", str(tmp_path))
    snap = [a for a in reg.artifacts(run.id, kind="snapshot") if a.step == 6][0]
    assert Path(local).read_bytes() == Path(snap.path).read_bytes()
    # The evaluation's rows, named by protocol, at the checkpoint they scored; and in full as JSON.
    scored = {m.name: m.value for m in reg.metrics(run.id, protocol="tiny")}
    assert {"dci_d", "dci_i", "infom", "mse"} <= set(scored)
    for name, value in scored.items():
        assert _history(client, mr.info.run_id, f"tiny/{name}") == pytest.approx({6: value}, rel=1e-12)
    final = reg.metrics(run.id, protocol="final", name="mse")[0].value
    assert _history(client, mr.info.run_id, "final/mse") == pytest.approx({6: final}, rel=1e-12)
    rows = json.loads(Path(client.download_artifacts(mr.info.run_id, "metric_rows/tiny_step6.json",
                                                     str(tmp_path))).read_text())
    assert {(r["name"], r["protocol"], r["split"], r["step"]) for r in rows} == {
        (n, "tiny", "test" if n == "mse" else "eval", 6) for n in scored}
    shown = cli("runs", "show", "m")
    assert f"tracker mlflow run {mr.info.run_id} in {uri}" in shown.stdout
    # A figure drawn later reaches the tracker with a sync, under its own name.
    drawn = cli("traverse", "m", "--device", "cpu")
    assert drawn.exit_code == 0, drawn.stderr
    figure = Path(drawn.stdout.strip().splitlines()[-1])
    # A sync of a run the tracker already holds finds it and adds nothing twice.
    for _ in range(2):
        res = cli("runs", "sync", "m", "--to", "mlflow")
        assert res.exit_code == 0, res.stderr
    client, again = _held(uri, run.id)
    assert [r.info.run_id for r in again] == [mr.info.run_id]
    assert [m.step for m in client.get_metric_history(mr.info.run_id, "loss/total")] == [2, 4, 6]
    assert [m.step for m in client.get_metric_history(mr.info.run_id, "tiny/dci_d")] == [6]
    assert _images(client, mr.info.run_id) == [f"step_{i:08d}.png" for i in range(1, 7)]
    (sent,) = client.list_artifacts(mr.info.run_id, f"images/figure/{figure.stem}")
    got = client.download_artifacts(mr.info.run_id, sent.path, str(tmp_path / "figure"))
    assert Path(got).read_bytes() == figure.read_bytes()
    assert len(reg.artifacts(run.id, kind="tracker")) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 with a SQLite store and its own artifact folder."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 300) -> None:
        exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the server's own output, kept for failures
        self.proc = subprocess.Popen(
            [exe, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=log, stderr=log, start_new_session=True, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("mlflow server did not start: " + (self.folder / "server.log").read_text()[-2000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def mlflow_server(tmp_path):
    folder = tmp_path / "mlflow-server"
    folder.mkdir()
    server = Server(folder)
    server.start()
    yield server
    server.kill()


def test_a_server_killed_mid_run_costs_nothing_and_a_sync_fills_it(cli, small_data, mlflow_server, monkeypatch):
    from fqvae_cli.training import recorder

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    save = recorder.Recorder.checkpoint

    def checkpoint(self, iteration, model, state):
        save(self, iteration, model, state)
        if iteration == 3:
            mlflow_server.kill()  # the tracker's server dies after the first checkpoint

    monkeypatch.setattr(recorder.Recorder, "checkpoint", checkpoint)
    res = cli("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--set", "train.trackers=[mlflow]", "--name", "d")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("d")
    # One line says so; nothing else in the output speaks of the tracker, its client or a traceback.
    warned = [line for line in res.stderr.splitlines() if any(w in line.lower() for w in (
        "warning", "mlflow", "retr", "urllib3", "traceback", "error"))]
    assert len(warned) == 1, res.stderr
    assert warned[0].startswith("warning: the mlflow tracker stopped (")
    assert warned[0].endswith(f"); the run goes on without it; fill it in later with `fqvae runs sync "
                              f"{run.short_id} --to mlflow`.")
    # The run is whole: finished, both checkpoints, every snapshot and history row, the test MSE.
    assert run.status == "finished"
    assert sorted(a.step for a in reg.artifacts(run.id, kind="checkpoint")) == [3, 6]
    assert sorted(a.step for a in reg.artifacts(run.id, kind="snapshot")) == [1, 2, 3, 4, 5, 6]
    assert [m.step for m in reg.metrics(run.id, name="loss/total")] == [2, 4, 6]
    assert len(reg.metrics(run.id, protocol="final", name="mse")) == 1

    mlflow_server.start()
    client, held = _held(mlflow_server.url, run.id)
    assert len(held) == 1
    gap = held[0]
    assert gap.info.status == "RUNNING"  # the server died before the run ended
    assert sorted(_history(client, gap.info.run_id, "loss/total")) == [2]
    assert _images(client, gap.info.run_id) == [f"step_{i:08d}.png" for i in range(1, 4)]

    res = cli("runs", "sync", "d", "--to", "mlflow")
    assert res.exit_code == 0, res.stderr
    url = f"{mlflow_server.url}/#/experiments/{gap.info.experiment_id}/runs/{gap.info.run_id}"
    assert res.stderr.strip().endswith(f"-> mlflow run {gap.info.run_id} {url}")
    client, held = _held(mlflow_server.url, run.id)
    assert [r.info.run_id for r in held] == [gap.info.run_id]
    filled = held[0]
    assert filled.info.status == "FINISHED" and filled.data.tags["fqvae.status"] == "finished"
    recorded = {m.step: m.value for m in reg.metrics(run.id, name="loss/total")}
    assert _history(client, gap.info.run_id, "loss/total") == pytest.approx(recorded, rel=1e-12)
    assert _images(client, gap.info.run_id) == [f"step_{i:08d}.png" for i in range(1, 7)]
    final = reg.metrics(run.id, protocol="final", name="mse")[0].value
    assert _history(client, gap.info.run_id, "final/mse") == pytest.approx({6: final}, rel=1e-12)
    assert url in cli("runs", "show", "d").stdout


def test_a_resumed_run_continues_its_mlflow_run(cli, small_data, tmp_path, monkeypatch):
    from fqvae_cli.training import recorder

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    save, stops = recorder.Recorder.checkpoint, [3]

    def checkpoint(self, iteration, model, state):
        save(self, iteration, model, state)
        if stops and iteration == stops.pop():
            raise KeyboardInterrupt  # Ctrl-C right after the first checkpoint, once

    monkeypatch.setattr(recorder.Recorder, "checkpoint", checkpoint)
    first = cli("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--set", "train.trackers=[mlflow]", "--name", "r")
    assert first.exit_code == 130, first.stderr
    run = _registry().get_run("r")
    client, held = _held(uri, run.id)
    assert held[0].info.status == "KILLED" and held[0].data.tags["fqvae.status"] == "interrupted"
    assert sorted(_history(client, held[0].info.run_id, "loss/total")) == [2]
    res = cli("train", "--resume", "r")
    assert res.exit_code == 0, res.stderr
    client, again = _held(uri, run.id)
    assert [r.info.run_id for r in again] == [held[0].info.run_id]  # the same MLflow run, continued
    assert again[0].info.status == "FINISHED"
    recorded = {m.step: m.value for m in _registry().metrics(run.id, name="loss/total")}
    assert sorted(recorded) == [2, 4, 6]
    assert _history(client, held[0].info.run_id, "loss/total") == pytest.approx(recorded, rel=1e-12)
    assert _images(client, held[0].info.run_id) == [f"step_{i:08d}.png" for i in range(1, 7)]
