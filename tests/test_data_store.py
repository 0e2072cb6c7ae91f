"""The prepared store (atomic writes, reopening, --force, damage), splits and the batch sampler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from fqvae_cli import paths
from fqvae_cli.data import store, synthetic
from fqvae_cli.data.sampler import BatchSampler, to_float
from fqvae_cli.data.store import PreparedDataset, open_dataset, prepare
from fqvae_cli.errors import ConfigError, DataError, NotFoundError, UsageError


@pytest.fixture
def small():
    ds, _ = prepare("synth3d", grid="small")
    return ds


def test_layout_on_disk_and_reopen(small):
    root = paths.data_root()
    assert small.path == root / "synth3d"
    assert sorted(p.name for p in small.path.iterdir()) == ["codes.npy", "images.npy", "meta.json"]
    meta = json.loads((small.path / "meta.json").read_text())
    assert meta["factor_sizes"] == [3, 3, 3, 2, 4, 3] and meta["image_size"] == 32
    assert meta["format_version"] == store.FORMAT_VERSION and meta["n_images"] == 648
    for key in ("name", "factor_names", "factor_values", "source", "created"):
        assert key in meta
    again = open_dataset("synth3d", build=False)
    assert isinstance(again.images, np.memmap) and again.images.mode == "r"
    assert again.images.shape == (648, 32, 32, 3) and again.codes.shape == (648, 6)
    assert np.array_equal(again.codes, again.space.all_codes())
    assert np.array_equal(again.images[100], synthetic.render(again.space, 32, [100])[0])


def test_data_root_from_environment_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv("FQVAE_DATA", str(tmp_path / "env-root"))
    ds, _ = prepare("synth3d", grid="small")
    assert ds.path == tmp_path / "env-root" / "synth3d"
    other, _ = prepare("synth3d", grid="small", root=tmp_path / "explicit")
    assert other.path == tmp_path / "explicit" / "synth3d"


def test_split_is_deterministic_80_10_10(small):
    s = small.split()
    assert {k: v.size for k, v in s.items()} == {"train": 518, "val": 65, "test": 65}
    allidx = np.concatenate(list(s.values()))
    assert np.array_equal(np.sort(allidx), np.arange(648))
    assert all(np.array_equal(s[k], small.split(1)[k]) for k in s)
    perm = np.random.default_rng(1).permutation(648)
    assert np.array_equal(s["test"], np.sort(perm[583:]))
    assert not np.array_equal(s["test"], small.split(2)["test"])


def test_images_at_returns_the_requested_order(small):
    idx = np.array([600, 3, 3, 250])
    got = small.images_at(idx)
    assert all(np.array_equal(got[k], small.images[i]) for k, i in enumerate(idx))
    with pytest.raises(UsageError):
        small.images_at([648])


def test_to_float_values_and_layout():
    x = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    x[0, 0, 1] = (0, 51, 255)
    t = to_float(x, "cpu")
    assert t.shape == (1, 3, 2, 2) and t.dtype == torch.float32
    assert t[0, :, 0, 1].tolist() == pytest.approx([-0.5, -0.3, 0.5])
    assert t[0, :, 1, 1].tolist() == [-0.5, -0.5, -0.5]
    assert torch.equal(to_float(torch.from_numpy(x)), t)
    with pytest.raises(UsageError):
        to_float(x.astype(np.float32))


def test_sampler_batches_are_a_pure_function_of_seed_and_step(small):
    train = small.split()["train"]
    a = BatchSampler(small, train, 100, seed=5)
    b = BatchSampler(small, train, 100, seed=5)
    # Asked in a different order (a resumed run), the same steps give the same batches.
    for step in (7, 0, 3):
        assert np.array_equal(a.indices_for(step), b.indices_for(step))
    steps = [a.indices_for(k) for k in range(11)]
    assert all(np.array_equal(steps[k], b.indices_for(k)) for k in (9, 2, 5))
    # The first epoch (518 = 5 full batches + 18) visits every train index exactly once.
    stream = np.concatenate(steps)
    assert np.array_equal(np.sort(stream[:518]), train)
    assert np.array_equal(np.sort(stream[518:1036]), train)
    assert not np.array_equal(stream[:518], stream[518:1036])  # a new permutation per epoch
    assert not np.array_equal(a.indices_for(0), BatchSampler(small, train, 100, seed=6).indices_for(0))
    batch = a.batch(7)
    assert batch.shape == (100, 3, 32, 32)
    assert torch.equal(batch, to_float(small.images_at(a.indices_for(7))))


def test_sampler_on_device_matches_host_and_large_batches(small):
    test = small.split()["test"]
    host = BatchSampler(small, test, 16, seed=0)
    dev = BatchSampler(small, test, 16, seed=0, on_device=True)
    for step in (0, 4, 11):
        assert torch.equal(host.batch(step), dev.batch(step))
    big = BatchSampler(small, test, 150, seed=0)  # more than one epoch per batch
    idx = big.indices_for(0)
    assert idx.size == 150 and np.array_equal(np.sort(idx[:65]), test)


def test_existing_dataset_needs_force(tmp_path, small):
    h5 = tmp_path / "a.h5"
    synthetic.write_h5(h5, image_size=32, grid="small")
    first, written = prepare("shapes3d", h5)
    assert written
    same, written = prepare("shapes3d", h5)
    assert not written and same.meta["created"] == first.meta["created"]
    h5b = tmp_path / "b.h5"
    h5b.write_bytes(h5.read_bytes())
    before = (first.path / "images.npy").read_bytes()
    with pytest.raises(UsageError, match=r"already prepared at .* \(from a.h5\); pass --force"):
        prepare("shapes3d", h5b)
    assert (first.path / "images.npy").read_bytes() == before
    replaced, written = prepare("shapes3d", h5b, force=True)
    assert written and replaced.meta["source"]["name"] == "b.h5"
    with pytest.raises(UsageError, match=r"already prepared at .* \(from synth3d renderer, small grid\)"):
        prepare("synth3d", grid="official")


def test_interrupted_prepare_leaves_nothing(tmp_path, monkeypatch, small):
    before = (small.path / "images.npy").read_bytes()
    calls = {"n": 0}
    real = synthetic._Composer.compose

    def flaky(self, f, w):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, f, w)

    monkeypatch.setattr(synthetic._Composer, "compose", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare("synth3d", grid="small", force=True)
    root = paths.data_root()
    assert sorted(p.name for p in root.iterdir()) == [".synth3d.lock", "synth3d"]
    assert (small.path / "images.npy").read_bytes() == before  # the old one is untouched
    h5 = tmp_path / "x.h5"
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_h5(h5, image_size=32, grid="small")
    assert not [p for p in tmp_path.iterdir() if p.name != "fqvae-home"]


def test_killed_prepare_leaves_only_a_hidden_partial_that_is_cleaned(tmp_path):
    root = paths.data_root()
    proc = subprocess.Popen([sys.executable, "-m", "fqvae_cli", "data", "prepare", "synth3d"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(root.glob(".synth3d.*.partial")):
        time.sleep(0.05)
    assert proc.poll() is None, "the official build finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(root.glob(".synth3d.*.partial"))
    assert not (root / "synth3d").exists()
    with pytest.raises(NotFoundError, match=r"run `fqvae data prepare synth3d`"):
        open_dataset("synth3d", build=False)
    assert not [r for r in store.list_datasets() if r["prepared"]]
    prepare("synth3d", grid="small")
    assert not list(root.glob(".synth3d.*.partial"))


def test_concurrent_builders_build_once():
    results = []

    def build():
        results.append(prepare("synth3d", grid="small", existing="use"))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w for _, w in results) == [False, False, True]


def test_open_errors_name_the_fix(small):
    with pytest.raises(NotFoundError, match=r"dataset 'shapes3d' is not prepared under .*; run `fqvae data "
                                            r"download shapes3d` \(267.6 MB download\), or `fqvae data prepare "
                                            r"shapes3d --source PATH` with PATH the 3dshapes.h5"):
        open_dataset("shapes3d")
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'; choose one of: synth3d, shapes3d"):
        open_dataset("cifar")
    with pytest.raises(UsageError, match="'synth3d' is built in and takes no --source"):
        prepare("synth3d", "x.h5")
    with pytest.raises(UsageError, match="--grid applies to the built-in dataset only"):
        prepare("shapes3d", "x.h5", grid="small")


def test_damaged_store_is_refused(small):
    images = small.path / "images.npy"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataError, match="is damaged"):
        PreparedDataset(small.path)
    (small.path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable meta.json"):
        PreparedDataset(small.path)
    rows = {r["name"]: r for r in store.list_datasets()}
    assert "unreadable" in rows["synth3d"]["error"]
