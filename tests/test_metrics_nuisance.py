"""A dataset with a nuisance factor (SmallNORB's instance, disentanglement_lib's convention): every metric
sees the latent factors only, and the intervention scores draw the images of given latent factors over the
nuisance values from their own random state, in disentanglement_lib's order (SplitDiscreteStateSpace:
latent factors of a batch first, then `randint(10, size=n)` for the instance, batch by batch; BetaVAE: both
batches' factors, then the first's instances, then the second's).

The dataset is prepared from NORB files written in the official layout for a reduced grid: categories 3,
instances 4 (two in each file), elevations 4, azimuths 4, lightings 3: 576 images over 144 latent
combinations, so the tiny protocol's 450 rows are distinct images whose latent factors repeat."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY
from writers import norb_matrix, norb_quadrants

LATENT = [0, 2, 3, 4]  # category, elevation, azimuth, lighting (the instance, column 1, is the nuisance)
SIZES = (3, 4, 4, 4, 3)
LATENT_SIZES = (3, 4, 4, 3)


def write_norb(folder: Path) -> Path:
    """smallnorb-5x{46789,01235}x9x18x6x2x96x96-{training,testing}-{dat,cat,info}.mat.gz of the reduced grid:
    dat (n, 2, 96, 96) uint8 (both cameras), cat (n,) int32, info (n, 4) int32 [instance, elevation,
    azimuth 0..34 in steps of 2, lighting]; rows shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"training": ("smallnorb-5x46789x9x18x6x2x96x96-training", (4, 6)),
             "testing": ("smallnorb-5x01235x9x18x6x2x96x96-testing", (0, 1))}
    ranks = {0: 0, 1: 1, 4: 2, 6: 3}
    for seed, (stem, instances) in enumerate(parts.values()):
        rows = list(itertools.product(range(3), instances, range(4), (0, 2, 4, 6), range(3)))
        rows = [rows[k] for k in np.random.default_rng(seed).permutation(len(rows))]
        dat = np.stack([np.stack([norb_quadrants(c, ranks[i], e, a // 2, lt, cam) for cam in (0, 1)])
                        for c, i, e, a, lt in rows]).astype(np.uint8)
        cat = np.array([r[0] for r in rows], dtype=np.int32)
        info = np.array([r[1:] for r in rows], dtype=np.int32)
        for kind, arr in (("dat", dat), ("cat", cat), ("info", info)):
            (folder / f"{stem}-{kind}.mat.gz").write_bytes(gzip.compress(norb_matrix(arr), compresslevel=1))
    return folder


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    return tmp_path_factory.mktemp("fqvae-home")


@pytest.fixture(scope="module")
def module_state() -> dict:
    return {}


@pytest.fixture(autouse=True)
def workspace(module_home, monkeypatch):
    """These tests share one workspace: the dataset is prepared and the run trained once per module."""
    monkeypatch.setenv("FQVAE_HOME", str(module_home))
    monkeypatch.delenv("FQVAE_DATA", raising=False)
    monkeypatch.delenv("FQVAE_DB", raising=False)
    monkeypatch.setenv("FQVAE_PLAIN_PROGRESS", "1")
    return module_home


@pytest.fixture
def norb(module_home, module_state):
    from fqvae_cli.data.store import open_dataset, prepare

    if "prepared" not in module_state:
        prepare("smallnorb", write_norb(module_home / "norb-files"))
        module_state["prepared"] = True
    return open_dataset("smallnorb")


def _trained(cli, module_state, model: str) -> str:
    if model not in module_state:
        res = cli("train", "--model", model, "--dataset", "smallnorb", *TINY, "--name", f"norb-{model}")
        assert res.exit_code == 0, res.stderr
        module_state[model] = res.stdout.strip().splitlines()[-1]
    return module_state[model]


@pytest.fixture
def run(cli, norb, tiny_protocol, module_state) -> str:
    return _trained(cli, module_state, "factorqvae")


@pytest.fixture
def ae_run(cli, norb, tiny_protocol, module_state) -> str:
    """A continuous run: its codes vary after a few steps, as the unsupervised scores need."""
    return _trained(cli, module_state, "ae")


def reference_rows(latent: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
    """Full rows for latent rows, the instance drawn next from `rs` (sample_all_factors)."""
    full = np.empty((len(latent), 5), dtype=np.int64)
    full[:, LATENT] = latent
    full[:, 1] = rs.randint(4, size=len(latent))
    return full


def reference_latent(n: int, rs: np.random.RandomState) -> np.ndarray:
    """sample_latent_factors: factor by factor, randint(size, size=n)."""
    return np.stack([rs.randint(s, size=n) for s in LATENT_SIZES], axis=1).astype(np.int64)


def test_the_store_and_the_latent_space(norb):
    from fqvae_cli.data.nuisance import latent_space

    assert norb.space.names == ("category", "instance", "elevation", "azimuth", "lighting")
    assert norb.space.sizes == SIZES and len(norb) == 576 and norb.meta["nuisance_factors"] == ["instance"]
    assert latent_space(norb).sizes == LATENT_SIZES
    # index-encoded pixels: 3 + 64 category + 16 instance + 4 elevation + 2 azimuth + lighting
    idx = norb.space.ravel(np.array([[2, 3, 1, 2, 1]]))[0]
    assert norb.images[idx][10, 10, 0] == 3 + 128 + 48 + 4 + 4 + 1


def test_complete_factors_draws_the_instance_from_the_given_state(norb, module_home):
    from fqvae_cli.data.nuisance import complete_factors
    from fqvae_cli.data.store import prepare

    latent = np.array([[0, 1, 2, 0], [2, 3, 3, 2], [1, 0, 0, 1]], dtype=np.int64)
    full = complete_factors(norb, latent, np.random.RandomState(11))
    assert full.tolist() == reference_rows(latent, np.random.RandomState(11)).tolist()
    assert full[:, 1].tolist() == np.random.RandomState(11).randint(4, size=3).tolist()
    # without a nuisance factor the rows come back as given and the state is not advanced
    plain, _ = prepare("smallnorb_disent", write_norb(module_home / "disent-files")
                       / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz")
    assert plain.space.sizes == (3, 2, 4, 4, 3) and plain.meta["nuisance_factors"] == []
    rs = np.random.RandomState(11)
    rows = np.array([[0, 1, 1, 2, 0]], dtype=np.int64)
    assert complete_factors(plain, rows, rs).tolist() == rows.tolist()
    assert rs.randint(1000) == np.random.RandomState(11).randint(1000)
    # the factor codes handed to the metrics: all columns without a nuisance, the latent ones with it, in C
    # order either way (factors.npy's bytes as before for a dataset without one)
    from fqvae_cli.data.nuisance import latent_codes

    idx = np.array([5, 0, 17])
    assert latent_codes(plain, idx).tolist() == plain.codes[idx].tolist()
    assert latent_codes(norb, idx).tolist() == norb.codes[idx][:, LATENT].tolist()
    assert latent_codes(plain, idx).flags.c_contiguous and latent_codes(norb, idx).flags.c_contiguous


class Recorder:
    """A representation function over the prepared grid that records the full rows it is asked and returns
    them as codes (so every latent varies and every vote is cast)."""

    def __init__(self, ds):
        self.ds, self.calls = ds, []

    def observe(self, factors, random_state):
        from fqvae_cli.data.nuisance import complete_factors

        return complete_factors(self.ds, factors, random_state)

    def __call__(self, rows):
        self.calls.append(np.asarray(rows).copy())
        return np.asarray(rows, dtype=np.float64)


def test_factor_vae_draws_the_reference_stream(norb):
    from fqvae_cli.metrics.factor_vae import compute_factor_vae

    rec = Recorder(norb)
    compute_factor_vae(LATENT_SIZES, rec, np.random.RandomState(3), batch_size=4, num_train=5, num_eval=3,
                       num_variance_estimate=10)
    rs = np.random.RandomState(3)
    expected = [reference_rows(reference_latent(10, rs), rs)]  # _compute_variances: sample_observations
    for n_points in (5, 3):
        batches = []
        for _ in range(n_points):  # _generate_training_sample
            k = rs.randint(4)
            factors = reference_latent(4, rs)
            factors[:, k] = factors[0, k]
            batches.append(reference_rows(factors, rs))
        expected.append(np.concatenate(batches))
    assert [c.tolist() for c in rec.calls] == [e.tolist() for e in expected]
    assert all(c.shape[1] == 5 for c in rec.calls)


def test_beta_vae_draws_the_reference_stream(norb):
    from fqvae_cli.metrics.beta_vae import compute_beta_vae

    rec = Recorder(norb)
    compute_beta_vae(LATENT_SIZES, rec, np.random.RandomState(8), batch_size=3, num_train=12, num_eval=4)
    rs = np.random.RandomState(8)
    expected = []
    for n_points in (12, 4):
        pairs = []
        for _ in range(n_points):
            k = rs.randint(4)
            first, second = reference_latent(3, rs), reference_latent(3, rs)
            second[:, k] = first[:, k]
            pairs += [reference_rows(first, rs), reference_rows(second, rs)]  # observation1, then observation2
        expected.append(np.concatenate(pairs))
    assert [c.tolist() for c in rec.calls] == [e.tolist() for e in expected]


def _record(monkeypatch):
    """Record the indices each encode call gets and the arrays handed to score_all."""
    import fqvae_cli.evaluation as evaluation
    import fqvae_cli.metrics.codes as codes

    seen = {"encoded": [], "score_all": []}
    encode = codes.encode_codes

    def recording_encode(model, ds, indices, *args, **kwargs):
        seen["encoded"].append(np.asarray(indices).copy())
        return encode(model, ds, indices, *args, **kwargs)

    score_all = evaluation.score_all

    def recording_score_all(codes_, factors, **kwargs):
        seen["score_all"].append((None if factors is None else np.asarray(factors).copy(),
                                  tuple(kwargs["factor_sizes"])))
        return score_all(codes_, factors, **kwargs)

    monkeypatch.setattr(codes, "encode_codes", recording_encode)
    monkeypatch.setattr(evaluation, "encode_codes", recording_encode)
    monkeypatch.setattr(evaluation, "score_all", recording_score_all)
    return seen


def test_evaluate_encodes_the_drawn_images_and_scores_latent_factors(cli, run, norb, monkeypatch):
    from fqvae_cli.metrics.codes import sample_indices

    seen = _record(monkeypatch)
    res = cli("evaluate", run, "--protocol", "tiny", "--metrics", "dci,infomec,factor_vae,beta_vae", "--json",
              "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    numbers = json.loads(res.stdout)
    assert all(np.isfinite(v) for v in numbers.values()) and 0 <= numbers["dci_d"] <= 1

    # codes of 450 distinct images drawn over the whole grid; their latent factors repeat (144 combinations)
    rows = seen["encoded"][0]
    assert rows.tolist() == sample_indices(norb, 450, 0).tolist() and len(set(rows.tolist())) == 450
    factors, factor_sizes = seen["score_all"][0]
    assert factors.shape == (450, 4) and factor_sizes == LATENT_SIZES
    assert factors.tolist() == norb.space.unravel(rows)[:, LATENT].tolist()
    assert len({tuple(f) for f in factors.tolist()}) <= 144

    # FactorVAE's variance sample (its first batch of images): 200 latent rows, then their instances
    rs = np.random.RandomState(0)
    expected = norb.space.ravel(reference_rows(reference_latent(200, rs), rs))
    assert seen["encoded"][1].tolist() == expected.tolist()
    # BetaVAE's training points, one call (40 points x 2 batches of 8), from its own RandomState(0)
    rs = np.random.RandomState(0)
    pairs = []
    for _ in range(40):
        k = rs.randint(4)
        first, second = reference_latent(8, rs), reference_latent(8, rs)
        second[:, k] = first[:, k]
        pairs += [reference_rows(first, rs), reference_rows(second, rs)]
    beta_first = [i for i, e in enumerate(seen["encoded"]) if len(e) == 640]
    assert beta_first and seen["encoded"][beta_first[0]].tolist() == norb.space.ravel(np.concatenate(pairs)).tolist()
    # every image an intervention score encoded shows the latent factors it asked for
    assert all(np.isin(norb.space.unravel(e)[:, 1], range(4)).all() for e in seen["encoded"])

    # the same seed draws the same images and gives the same numbers; another seed draws others
    first_draw = [e.tolist() for e in seen["encoded"]]
    seen["encoded"].clear()
    again = cli("evaluate", run, "--protocol", "tiny", "--metrics", "dci,infomec,factor_vae,beta_vae", "--json",
                "--device", "cpu")
    assert json.loads(again.stdout) == numbers and [e.tolist() for e in seen["encoded"]] == first_draw
    seen["encoded"].clear()
    other = cli("evaluate", run, "--protocol", "tiny", "--metrics", "factor_vae", "--seed", "5", "--json",
                "--device", "cpu")
    assert other.exit_code == 0, other.stderr
    rs = np.random.RandomState(5)
    assert seen["encoded"][0].tolist() == norb.space.ravel(reference_rows(reference_latent(200, rs), rs)).tolist()
    assert seen["encoded"][0].tolist() != first_draw[1]


def test_every_metric_end_to_end(cli, ae_run):
    res = cli("evaluate", ae_run, "--protocol", "tiny", "--metrics", "all", "--json", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    numbers = json.loads(res.stdout)
    for key in ("dci_d", "infom", "mig", "sap", "modularity", "factor_vae", "beta_vae", "irs",
                "gaussian_total_correlation", "mse"):
        assert np.isfinite(numbers[key]), key


def test_encode_writes_latent_factors_and_refuses_more_rows_than_images(cli, run, norb, tmp_path):
    out = tmp_path / "enc"
    res = cli("encode", run, "--out", out, "--protocol", "tiny", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["factor_names"] == ["category", "elevation", "azimuth", "lighting"]
    assert meta["factor_sizes"] == list(LATENT_SIZES) and meta["nuisance_factors"] == ["instance"]
    indices, factors = np.load(out / "indices.npy"), np.load(out / "factors.npy")
    assert factors.tolist() == norb.space.unravel(indices)[:, LATENT].tolist()
    # 576 distinct images hold 576 rows; 577 is refused in one sentence, nothing written
    assert cli("encode", run, "--out", tmp_path / "all", "--n", "576", "--device", "cpu").exit_code == 0
    assert sorted(np.load(tmp_path / "all" / "indices.npy").tolist()) == list(range(576))
    refused = cli("encode", run, "--out", tmp_path / "more", "--n", "577", "--device", "cpu")
    assert refused.exit_code != 0 and "needs 577 distinct images but the dataset has only 576" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "more" / "codes.npy").exists()
