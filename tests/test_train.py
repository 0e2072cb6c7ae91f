"""`fqvae train`: every model finishes and is recorded; exact resume after SIGKILL; NaN handling;
checkpoint tampering is refused."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from helpers import TINY, fqvae_killed_after_first_checkpoint, fqvae_subprocess

from fqvae_cli.models.zoo import ZOO


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


@pytest.mark.parametrize("model", ["qvae", "factorqvae"])
def test_plain_and_factor_model_train_and_are_recorded(cli, small_data, model):
    """One plain and one Factor model through the CLI; every zoo model's step is in test_models_zoo."""
    res = cli("train", "--model", model, *TINY)
    assert res.exit_code == 0, res.stderr
    run_id = res.stdout.strip().splitlines()[-1]
    reg = _registry()
    run = reg.get_run(run_id)
    assert run.status == "finished"
    assert run.model == model and run.dataset == "synth3d" and run.profile == "quick"
    assert run.config["train"]["steps"] == 6 and run.config["model"]["name"] == model
    names = {m.name for m in reg.metrics(run.id)}
    assert "loss/total" in names and "loss/recon" in names
    if ZOO[model].total_correlation:
        assert "loss/tc" in names and "loss/disc" in names
    mse = [m for m in reg.metrics(run.id, name="mse") if m.split == "test"]
    assert len(mse) == 1 and 0 < mse[0].value < 1
    ckpts = reg.artifacts(run.id, kind="checkpoint")
    assert sorted(a.step for a in ckpts) == [3, 6]
    for a in ckpts + reg.artifacts(run.id, kind="checkpoint_state"):
        assert Path(a.path).stat().st_size == a.bytes
    saved = json.loads((Path(ckpts[0].path).parents[1] / "config.json").read_text())
    assert saved == run.config


def _final_weights(run_id: str) -> dict:
    from safetensors.torch import load_file

    reg = _registry()
    run = reg.get_run(run_id)
    last = max(reg.artifacts(run.id, kind="checkpoint"), key=lambda a: a.step)
    return load_file(last.path)


def _loss_curve(run_id: str) -> list[tuple[int, float]]:
    reg = _registry()
    run = reg.get_run(run_id)
    return sorted((m.step, m.value) for m in reg.metrics(run.id, name="loss/total"))


def test_resume_after_sigkill_is_bit_exact(small_data, workspace):
    """With channels-last, the split held as one tensor and bf16 autocast all on."""
    import torch

    fast = ["--set", "train.data_on_device=always", "--set", "train.channels_last=true", "--set", "train.bf16=true"]
    args = ["train", "--model", "factorqvae", "--steps", "30", "--batch-size", "16", "--seed", "3", *fast,
            "--set", "train.checkpoint_every=10", "--set", "train.log_every=10", "--set", "train.threads=1",
            "--set", "eval.mse_images=64", "--set", "model.disc_width=64", "--device", "cpu"]
    env = {"FQVAE_DATA": str(small_data), "FQVAE_HOME": str(workspace)}
    full = fqvae_subprocess(*args, "--name", "full", env=env)
    out, err = full.communicate(timeout=600)
    assert full.returncode == 0, err

    victim = fqvae_killed_after_first_checkpoint(*args, "--name", "victim", env=env)
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    run = _registry().get_run("victim")
    assert run.status == "running"
    assert [a.step for a in _registry().artifacts(run.id, kind="checkpoint")] == [10]

    resumed = fqvae_subprocess("train", "--resume", "victim", "--device", "cpu", env=env)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert _registry().get_run("victim").status == "finished"
    a, b = _final_weights("full"), _final_weights("victim")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _loss_curve("full") == _loss_curve("victim")
    # Snapshots are on (about ten per run): the resumed run pictured the same model at the same iterations.
    snaps = {name: {a.step: a.sha256 for a in _registry().artifacts(_registry().get_run(name).id, kind="snapshot")}
             for name in ("full", "victim")}
    assert sorted(snaps["full"]) == list(range(3, 31, 3))
    assert snaps["full"] == snaps["victim"]


def test_nonfinite_loss_fails_the_run_and_keeps_last_good_checkpoint(cli, small_data):
    from fqvae_cli.files import sha256_file

    res = cli("train", "--model", "ae", "--steps", "50", "--batch-size", "8", "--set", "train.lr=1e30",
              "--set", "train.lr_min=0", "--set", "train.checkpoint_every=1", "--set", "train.threads=1",
              "--device", "cpu", "--name", "nan")
    assert res.exit_code != 0
    assert "non-finite loss at iteration" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) >= 1
    reg = _registry()
    run = reg.get_run("nan")
    assert run.status == "failed" and "non-finite loss" in run.error
    ckpts = reg.artifacts(run.id, kind="checkpoint")
    assert ckpts, "the last good checkpoint must be kept"
    for a in ckpts:
        assert sha256_file(a.path) == a.sha256


def test_bad_config_gets_one_sentence(cli, small_data):
    for args, needle in [
        (["--model", "nosuch"], "unknown model 'nosuch'; choose one of: ae,"),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--set", "train.lr=-1"], "train.lr"),
        (["--batch-size", "0"], "train.batch_size"),
        (["--set", "nosuch=1"], "unknown setting 'nosuch'"),
        (["--profile", "nosuch"], "unknown profile 'nosuch'"),
    ]:
        res = cli("train", *args, "--steps", "1")
        assert res.exit_code == 2, (args, res.stderr)
        assert needle in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_data_prepared_at_another_image_size_is_refused_before_a_run_exists(cli, small_data):
    """small_data is 32x32; a model asked for 64x64 images would fail deep inside the first matmul."""
    res = cli("train", "--model", "ae", *TINY, "--set", "model.image_size=64")
    assert res.exit_code != 0
    assert "prepared at 32x32 but the model takes 64x64 images" in res.stderr and "Traceback" not in res.stderr
    assert _registry().find_runs() == []


@pytest.mark.parametrize("signum, signals_sent, stopped_at, exit_code", [
    (signal.SIGTERM, 1, 5, 143), (signal.SIGTERM, 2, 4, 143), (signal.SIGINT, 1, 5, 130), (signal.SIGINT, 2, 4, 130)])
def test_a_stop_signal_ends_the_iteration_in_progress_and_a_second_stops_at_once(
        cli, small_data, monkeypatch, signum, signals_sent, stopped_at, exit_code):
    """The signal lands in the middle of iteration 5 (before its update). One signal: the update finishes,
    iteration 5 is checkpointed and the run is interrupted (exit 143 for SIGTERM, 130 for Ctrl-C). Two:
    it stops at once, and the checkpoint is iteration 4, the last finished one."""
    import os

    from fqvae_cli.training.step import TrainStep

    real = TrainStep.__call__
    calls = []

    def step(self, x, lr, tau):
        calls.append(1)
        if len(calls) == 5:
            for _ in range(signals_sent):
                os.kill(os.getpid(), signum)
        return real(self, x, lr, tau)

    monkeypatch.setattr(TrainStep, "__call__", step)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    res = cli("train", "--model", "factorqvae", *TINY[2:], "--steps", "9", "--name", "stopped")
    assert res.exit_code == exit_code, res.stderr
    reg = _registry()
    run = reg.get_run("stopped")
    assert run.status == "interrupted"
    assert len(calls) == 5
    assert [a.step for a in reg.artifacts(run.id, kind="checkpoint")] == [3, stopped_at]
    from fqvae_cli.training.checkpoint import load_state

    state = max(reg.artifacts(run.id, kind="checkpoint_state"), key=lambda a: a.step)
    assert load_state(Path(state.path), state.sha256)["iteration"] == stopped_at
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # restored
