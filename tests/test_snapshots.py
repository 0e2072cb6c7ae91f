"""Snapshots while a run trains: pictures in the run's folder, codebook health in its history, both
without touching the training; TensorBoard events that TensorBoard's own reader parses."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import SNAPSHOTS, TINY

from fqvae_cli.files import sha256_file
from fqvae_cli.training.snapshots import codebook_health


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


def test_codebook_health_by_hand():
    # latent 0 uses codes 0, 0, 1, 2 of 4: shares 1/2, 1/4, 1/4, entropy 1.5 ln 2, one dead code;
    # latent 1 always code 3: perplexity 1, three dead codes.
    codes = np.array([[0, 3], [0, 3], [1, 3], [2, 3]])
    health = codebook_health(codes, 4)
    assert health["perplexity/z0"] == pytest.approx(2 ** 1.5, rel=1e-12)
    assert health["perplexity/z1"] == 1.0
    assert (health["dead_codes/z0"], health["dead_codes/z1"]) == (1.0, 3.0)
    assert health["perplexity"] == pytest.approx((2 ** 1.5 + 1) / 2, rel=1e-12)
    assert health["dead_codes"] == 2.0
    assert codebook_health(np.arange(8)[:, None] % 8, 8)["perplexity"] == pytest.approx(8.0)


def _curve_and_weights(run_id: str):
    from safetensors.torch import load_file

    reg = _registry()
    run = reg.get_run(run_id)
    curve = sorted((m.step, m.name, m.value) for m in reg.metrics(run.id) if m.name.startswith("loss/"))
    last = max(reg.artifacts(run.id, kind="checkpoint"), key=lambda a: a.step)
    return curve, load_file(last.path)


def test_snapshots_are_recorded_and_change_nothing_of_the_training(cli, small_data, workspace, tmp_path):
    import torch

    # beta-VAE draws a Gaussian sample when it encodes: a snapshot that used the training's random
    # stream would change every later iteration.
    for name, extra in (("sampled", SNAPSHOTS), ("unsampled", ["--set", "train.snapshot_every=0"])):
        res = cli("train", "--model", "betavae", *TINY, *extra, "--name", name)
        assert res.exit_code == 0, res.stderr
    (curve_a, weights_a), (curve_b, weights_b) = _curve_and_weights("sampled"), _curve_and_weights("unsampled")
    assert curve_a == curve_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert len(_registry().artifacts(_registry().get_run("sampled").id, kind="snapshot")) == 6
    assert _registry().artifacts(_registry().get_run("unsampled").id, kind="snapshot") == []

    res = cli("train", "--model", "qvae", *TINY, *SNAPSHOTS, "--name", "pictured")
    assert res.exit_code == 0, res.stderr

    reg = _registry()
    run = reg.get_run("pictured")
    snaps = sorted(reg.artifacts(run.id, kind="snapshot"), key=lambda a: a.step)
    assert [a.step for a in snaps] == [1, 2, 3, 4, 5, 6]  # 6 iterations: about ten per run is one each
    from PIL import Image

    for a in snaps:
        path = Path(a.path)
        assert path == workspace / "runs" / run.id / "snapshots" / f"step_{a.step:08d}.png"
        assert sha256_file(path) == a.sha256 and path.stat().st_size == a.bytes
    with Image.open(snaps[-1].path) as img:
        # 2 rows (test images, reconstructions) + one per latent (12), 8 columns of 32x32 at scale 2
        assert img.size == (96 + 8 * 66 + 2, 14 + 14 * 66 + 2)

    # codebook health beside the losses, at every logged iteration
    health = [m for m in reg.metrics(run.id) if m.name.startswith(("perplexity", "dead_codes"))]
    assert sorted({m.step for m in health}) == [2, 4, 6]
    assert {m.name for m in health} == {"perplexity", "dead_codes"} | {
        f"{k}/z{i}" for k in ("perplexity", "dead_codes") for i in range(12)}
    at6 = {m.name: m.value for m in health if m.step == 6}
    assert all(1.0 <= at6[f"perplexity/z{i}"] <= 64 and 0 <= at6[f"dead_codes/z{i}"] <= 63 for i in range(12))
    assert at6["perplexity"] == pytest.approx(np.mean([at6[f"perplexity/z{i}"] for i in range(12)]))

    res = cli("runs", "show", "pictured")
    assert res.exit_code == 0, res.stderr
    assert "snapshots 6, iterations 1, 2, 3, 4, 5, 6; the latest: " in res.stdout
    out = tmp_path / "health.png"
    res = cli("runs", "plot", "pictured", "--metric", "perplexity,perplexity/*", "--out", out)
    assert res.exit_code == 0, res.stderr
    with Image.open(out) as img:
        assert img.size[1] > 13 * 200  # thirteen panels: the mean and one per latent


def test_a_continuous_model_has_snapshots_and_no_codebook_health(cli, small_data):
    res = cli("train", "--model", "ae", *TINY, "--set", "train.snapshot_every=4", "--name", "ae")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("ae")
    assert sorted(a.step for a in reg.artifacts(run.id, kind="snapshot")) == [4, 6]  # every 4, and the end
    assert not [m for m in reg.metrics(run.id) if m.name.startswith(("perplexity", "dead_codes"))]


def test_tensorboard_events_parse_with_tensorboards_reader(cli, small_data):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                            reason="tensorboard (its reader) is not installed")
    res = cli("train", "--model", "factorqvae", *TINY, *SNAPSHOTS, "--set", "train.tensorboard=true", "--name", "tb")
    assert res.exit_code == 0, res.stderr
    reg = _registry()
    run = reg.get_run("tb")
    folder = Path(reg.artifacts(run.id, kind="checkpoint")[0].path).parents[1] / "tensorboard"
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/recon", "loss/tc", "loss/disc", "lr", "temperature", "perplexity", "dead_codes/z0"} <= set(
        tags["scalars"])
    logged = {m.step: m.value for m in reg.metrics(run.id, name="loss/total")}
    assert {e.step: e.value for e in acc.Scalars("loss/total")} == pytest.approx(logged, rel=1e-6)
    images = acc.Images("snapshot")
    assert [e.step for e in images] == [1, 2, 3, 4, 5, 6]
    from PIL import Image

    snap = max(reg.artifacts(run.id, kind="snapshot"), key=lambda a: a.step).path
    with Image.open(snap) as img:
        assert (images[-1].width, images[-1].height) == img.size
    mse = reg.metrics(run.id, name="mse")[0].value
    assert math.isclose(acc.Scalars("hparam/mse")[-1].value, mse, rel_tol=1e-6)
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")


def test_tensorboard_without_the_extra_is_one_sentence(cli, small_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    res = cli("train", "--model", "ae", *TINY, "--set", "train.tensorboard=true")
    assert res.exit_code == 2, res.stderr
    assert res.stderr.strip().endswith("install it with: pip install 'fqvae[tensorboard]'")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _registry().find_runs() == []  # refused before a run exists


def test_snapshot_and_tensorboard_settings_do_not_split_table_cells():
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.cell_sources import training_setup

    plain = resolve_run_config("qvae", None, "quick", 0, {})
    pictured = resolve_run_config("qvae", None, "quick", 0, {"train": {"snapshot_every": 7, "tensorboard": True}})
    assert training_setup(plain) == training_setup(pictured)
    assert plain.train.snapshot_interval(6000) == 600 and pictured.train.snapshot_interval(6000) == 7
    assert plain.train.snapshot_interval(6) == 1
