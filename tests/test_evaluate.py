"""`fqvae evaluate` and the figure commands on tiny trained runs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fqvae_cli.experiments import COLUMNS


@pytest.fixture(scope="module")
def module_home(trained_home, tmp_path_factory):
    """A copy of the session's trained workspace (tests/helpers.py build_trained_home), for this module."""
    from helpers import copy_trained_home

    return copy_trained_home(trained_home, tmp_path_factory.mktemp("fqvae-home"))


@pytest.fixture(autouse=True)
def workspace(module_home, monkeypatch):
    """Overrides conftest's per-test workspace: these tests share one registry, whose runs were trained
    once per session."""
    monkeypatch.setenv("FQVAE_HOME", str(module_home["home"]))
    monkeypatch.delenv("FQVAE_DATA", raising=False)
    monkeypatch.delenv("FQVAE_DB", raising=False)
    monkeypatch.setenv("FQVAE_PLAIN_PROGRESS", "1")
    return module_home["home"]


@pytest.fixture
def trained(small_data, tiny_protocol, module_home):
    """model name -> short id of a tiny finished run: the FactorQVAE (evaluated), a QVAE never evaluated,
    and the AE named `ae` (evaluated)."""
    runs = {"factorqvae": module_home["fq"], "qvae": module_home["qvae"], "ae": module_home["report"][("ae", 0)]}
    return runs.__getitem__


def _registry():
    from fqvae_cli.registry.store import Registry

    return Registry()


def test_evaluate_records_all_numbers_and_matrices_deterministically(cli, trained):
    import json

    run = trained("factorqvae")
    first = cli("evaluate", run, "--protocol", "tiny", "--json", "--device", "cpu")
    assert first.exit_code == 0, first.stderr
    a = json.loads(first.stdout)
    for name in COLUMNS:
        assert np.isfinite(a[name]), name
    assert 0 <= a["dci_d"] <= 1 and 0 <= a["infom"] <= 1 and a["mse"] > 0
    second = json.loads(cli("evaluate", run, "--protocol", "tiny", "--json", "--jobs", "1",
                            "--device", "cpu").stdout)
    assert a == second  # same seed -> identical numbers (jobs 2 vs 1 too)
    reg = _registry()
    rid = reg.get_run(run).id
    latest = reg.latest_metrics(rid, "tiny")
    assert {k: latest[k] for k in a} == pytest.approx(a)
    imp = reg.artifacts(rid, kind="matrix_importance")
    nmi = reg.artifacts(rid, kind="matrix_nmi")
    assert imp and nmi
    d = reg.get_run(run).config["model"]["latent_dim"]
    assert np.load(imp[-1].path).shape == (d, 6) and np.load(nmi[-1].path).shape == (6, d)
    shown = cli("runs", "show", run, "--json")
    assert shown.exit_code == 0 and "infom" in shown.stdout


def test_traverse_png_layout_and_discrete_values(cli, trained):
    from fqvae_cli.device import resolve_device
    from fqvae_cli.figures.grid import GridLayout
    from fqvae_cli.figures.traversal import traversal
    from fqvae_cli.runs.evaluation import load_run

    run = trained("qvae")
    res = cli("traverse", run, "--image", "5", "--steps", "6", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    path = res.stdout.strip().splitlines()[-1]
    img = Image.open(path)
    lr = load_run(_registry(), run, resolve_device("cpu"))
    d, size = lr.cfg.model.latent_dim, lr.cfg.model.image_size
    layout = GridLayout(rows=d, cols=1 + 6, tile=2 * size)
    assert img.size == layout.size
    # The first tile is the input image itself, scaled x2 with nearest neighbours.
    x0, y0 = layout.origin(0, 0)
    tile = np.asarray(img.convert("RGB"))[y0:y0 + 2 * size, x0:x0 + 2 * size]
    original = lr.dataset.images_at(np.asarray([5]))[0]
    assert np.array_equal(tile[::2, ::2], original)

    import torch

    from fqvae_cli.data.sampler import to_float

    x = to_float(original[None], torch.device("cpu"))
    _, decoded, values = traversal(lr.model, x, 6)
    book = lr.model.bottleneck.codebook.detach().reshape(-1)
    expected = np.linspace(float(book.min()), float(book.max()), 6)
    z = lr.model.encode_z(x)[0]
    for i in range(d):
        assert np.allclose(values[i, :, 0], expected, atol=1e-6)
        zs = torch.stack([lr.model.apply_traversal(z, i, torch.tensor(values[i, k])) for k in range(6)])
        zs_i = zs.reshape(6, d, -1)[:, i, 0].numpy()
        assert np.array_equal(zs_i, values[i, :, 0].astype(zs_i.dtype))
        with torch.no_grad():
            assert np.allclose(lr.model.decode(zs).numpy(), decoded[i], atol=1e-6)


def test_swap_heatmap_codebook_figures(cli, trained, tmp_path):
    from fqvae_cli.figures.grid import GridLayout

    run = trained("factorqvae")
    figures_before = len(_registry().artifacts(_registry().get_run(run).id, kind="figure"))
    assert cli("evaluate", run, "--protocol", "tiny", "--device", "cpu").exit_code == 0
    res = cli("swap", run, "--pair", "3,9", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    img = Image.open(res.stdout.strip().splitlines()[-1])
    assert img.size == GridLayout(rows=2, cols=1 + 12, tile=64).size
    for matrix in ("nmi", "importance"):
        res = cli("figures", "heatmap", run, "--matrix", matrix)
        assert res.exit_code == 0, res.stderr
        assert Image.open(res.stdout.strip().splitlines()[-1]).format == "PNG"
    res = cli("figures", "codebook", run, "--latents", "0,3", "--images", "200", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    assert Image.open(res.stdout.strip().splitlines()[-1]).format == "PNG"
    for fmt, magic in (("pdf", b"%PDF"), ("svg", b"<?xml")):
        out = tmp_path / f"t.{fmt}"
        res = cli("traverse", run, "--format", fmt, "--out", str(out), "--device", "cpu")
        assert res.exit_code == 0, res.stderr
        assert out.read_bytes().startswith(magic)
    figures = _registry().artifacts(_registry().get_run(run).id, kind="figure")
    assert len(figures) - figures_before == 1 + 2 + 1 + 2


def test_codebook_counts_cover_every_image(tmp_path):
    from fqvae_cli.figures.plots import codebook_usage

    rng = np.random.default_rng(0)
    idx = rng.integers(0, 8, size=(50, 4))
    counts = codebook_usage(idx, [0, 2], 8, tmp_path / "c.png", title="t")
    assert counts.shape == (2, 8) and counts.sum(axis=1).tolist() == [50, 50]
    assert counts[1].tolist() == np.bincount(idx[:, 2], minlength=8).tolist()


def test_bad_input_gets_one_sentence(cli, trained, small_data):
    run = trained("qvae")
    cases = [
        (["evaluate", "nosuchrun"], "no run"),
        (["traverse", run, "--image", "999999999", "--device", "cpu"], "out of range"),
        (["figures", "codebook", run, "--latents", "99", "--device", "cpu"], "out of range"),
        (["figures", "heatmap", run], "fqvae evaluate"),
        (["evaluate", run, "--protocol", "nosuch"], "unknown protocol"),
    ]
    for args, needle in cases:
        res = cli(*args)
        assert res.exit_code != 0, args
        assert needle in res.stderr.lower(), (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_missing_and_tampered_checkpoints_are_refused(cli, trained):
    from pathlib import Path

    reg = _registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0,
                         config=reg.get_run(trained("ae")).config)
    res = cli("evaluate", run.short_id, "--device", "cpu")
    assert res.exit_code != 0 and "no checkpoint" in res.stderr
    rid = reg.get_run(trained("ae")).id
    last = max(reg.artifacts(rid, kind="checkpoint"), key=lambda a: a.step)
    data = bytearray(Path(last.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(last.path).write_bytes(bytes(data))
    res = cli("evaluate", "ae", "--protocol", "tiny", "--device", "cpu")
    assert res.exit_code != 0 and "sha256" in res.stderr and "Traceback" not in res.stderr


def test_held_out_subset_is_a_random_part_of_the_test_split(small_data):
    from fqvae_cli.data.store import open_dataset
    from fqvae_cli.metrics.codes import held_out_subset

    ds = open_dataset("synth3d")
    test = ds.split(seed=1)["test"]
    sub = held_out_subset(ds, 20, seed=0)
    assert len(sub) == 20 and set(sub) <= set(test) and list(sub) == sorted(sub)
    assert np.array_equal(sub, held_out_subset(ds, 20, seed=0))
    # the split is stored in factor order; its first 20 entries see fewer values of the slowest factor
    assert len(set(ds.codes[sub, 0])) == ds.space.sizes[0] > len(set(ds.codes[test[:20], 0]))
    assert np.array_equal(held_out_subset(ds, None), test)


def test_evaluate_all_missing_looks_for_the_asked_metrics(cli, trained):
    import json

    run = trained("factorqvae")
    assert cli("evaluate", run, "--protocol", "tiny", "--device", "cpu").exit_code == 0  # the paper's metrics only
    res = cli("evaluate", "--all", "--model", "factorqvae", "--protocol", "tiny", "--metrics", "mig,sap",
              "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out[run]) == ["mig", "sap", "mse"]
    latest = _registry().latest_metrics(_registry().get_run(run).id, "tiny")
    assert latest["mig"] == out[run]["mig"] and "dci_d" in latest
    res = cli("evaluate", "--all", "--model", "factorqvae", "--protocol", "tiny", "--metrics", "mig,sap",
              "--device", "cpu")
    assert res.exit_code == 0 and "nothing to evaluate" in res.stdout, res.stderr
    res = cli("evaluate", run, "--metrics", "nosuch", "--device", "cpu")
    assert res.exit_code == 2 and "unknown metric 'nosuch'; choose from: dci" in res.stderr
