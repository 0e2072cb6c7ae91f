"""`fqvae score` through the real entry point: the analytic cases from the command line, the saved
matrices, and one sentence with a non-zero exit for every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

SMALL = ["--dci-train", "600", "--dci-test", "300", "--infomec-n", "900"]


def grid_factors(sizes: tuple[int, ...], reps: int, seed: int = 0) -> np.ndarray:
    """Every factor combination `reps` times, shuffled: balanced, independent factors."""
    axes = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    grid = np.stack(axes, axis=-1).reshape(-1, len(sizes))
    rows = np.tile(grid, (reps, 1))
    return rows[np.random.default_rng(seed).permutation(len(rows))]


@pytest.fixture
def arrays(tmp_path):
    """save(codes, factors) -> (codes path, factors path) in this test's folder."""

    def save(codes, factors, codes_name="codes.npy", factors_name="factors.npy"):
        cp, fp = tmp_path / codes_name, tmp_path / factors_name
        np.save(cp, codes)
        np.save(fp, factors)
        return cp, fp

    return save


def run_json(cli, cp, fp, *extra):
    res = cli("score", "--codes", cp, "--factors", fp, *SMALL, "--json", *extra)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_identity_codes_score_one(cli, arrays):
    f = grid_factors((3, 4), 75)  # 900 rows
    out = run_json(cli, *arrays(f, f))
    assert set(out) == {"dci_d", "dci_i", "dci_i_train", "dci_c", "infom", "infoe", "infoc", "active_latents"}
    for key in ("dci_d", "dci_c", "infom", "infoc"):
        assert out[key] == pytest.approx(1.0, abs=1e-6), key
    assert out["dci_i"] == 1.0 and out["dci_i_train"] == 1.0
    assert out["active_latents"] == 2


def test_duplicated_factors(cli, arrays):
    f = grid_factors((3, 4), 75)
    out = run_json(cli, *arrays(np.concatenate([f, f], axis=1), f))
    d = 4
    assert out["dci_d"] == pytest.approx(1.0, abs=1e-6)
    assert out["infom"] == pytest.approx(1.0, abs=1e-9)
    assert out["infoc"] == pytest.approx((1 / 2 - 1 / d) / (1 - 1 / d), abs=1e-9)  # = 1/3
    assert out["active_latents"] == 4


def test_continuous_codes_are_inferred_and_reported(cli, arrays):
    f = grid_factors((3, 4), 75)
    z = f + np.random.default_rng(0).normal(0.0, 0.01, f.shape)
    cp, fp = arrays(z, f)
    res = cli("score", "--codes", cp, "--factors", fp, *SMALL)
    assert res.exit_code == 0, res.stderr
    assert "codes are not integer-valued: scored as continuous" in " ".join(res.stderr.split())
    assert "continuous codes" in res.stdout and "InfoM" in res.stdout
    out = run_json(cli, cp, fp)
    assert out["dci_d"] == pytest.approx(1.0, abs=1e-6) and out["dci_i"] == 1.0
    assert out["infom"] > 0.9 and out["infoc"] > 0.9


def test_integer_codes_are_inferred_discrete_and_can_be_overridden(cli, arrays):
    f = grid_factors((3, 4), 75)
    cp, fp = arrays(f.astype(np.float32), f)  # whole numbers saved as float are still indices
    res = cli("score", "--codes", cp, "--factors", fp, *SMALL)
    assert res.exit_code == 0, res.stderr
    assert "codes are integer-valued: scored as discrete" in " ".join(res.stderr.split())
    assert "discrete codes" in res.stdout and "2 of 2" in res.stdout
    res = cli("score", "--codes", cp, "--factors", fp, *SMALL, "--continuous")
    assert res.exit_code == 0, res.stderr
    assert "codes scored as continuous (as asked)" in " ".join(res.stderr.split())


def test_save_matrices(cli, arrays, tmp_path):
    f = grid_factors((3, 4), 75)
    z = np.stack([f[:, 0], np.full(len(f), 3), f[:, 1]], axis=1)
    cp, fp = arrays(z, f)
    out_dir = tmp_path / "matrices"
    out = run_json(cli, cp, fp, "--save-matrices", out_dir)
    assert out["active_latents"] == 2
    importance = np.load(out_dir / "importance.npy", allow_pickle=False)
    nmi = np.load(out_dir / "nmi.npy", allow_pickle=False)
    assert importance.shape == (3, 2) and nmi.shape == (2, 3)
    np.testing.assert_allclose(nmi, [[1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(importance[[0, 2]], np.eye(2), atol=1e-9)
    np.testing.assert_array_equal(importance[1], [0.0, 0.0])
    for png in ("importance.png", "nmi.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out_dir.iterdir()) == ["importance.npy", "importance.png", "nmi.npy", "nmi.png"]


ALL_SMALL = ["--metrics", "all", "--size", "mig_n=900", "--size", "sap_train=600", "--size", "sap_test=300",
             "--size", "modularity_train=600", "--size", "modularity_test=300"]


def test_every_metric_of_codes_in_one_json(cli, arrays):
    f = grid_factors((3, 4), 75)
    out = run_json(cli, *arrays(f, f), *ALL_SMALL)
    assert list(out) == ["dci_d", "dci_i", "dci_i_train", "dci_c", "infom", "infoe", "infoc", "active_latents",
                         "mig", "sap", "modularity", "explicitness", "explicitness_train", "irs", "irs_active",
                         "gaussian_total_correlation", "gaussian_wasserstein_correlation",
                         "gaussian_wasserstein_correlation_norm", "mutual_info_score"]
    assert out["mig"] == pytest.approx(1.0, abs=1e-12)  # each latent holds all of its factor's entropy
    # and next to nothing of the other's: the first 600 rows are not an exact grid (plug-in MI ~1e-3 nats)
    assert out["modularity"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < out["sap"] <= 1.0 and 0.9 < out["explicitness"] <= 1.0


def test_metrics_table_and_the_note_on_intervention_scores(cli, arrays):
    f = grid_factors((3, 4), 75)
    cp, fp = arrays(f, f)
    res = cli("score", "--codes", cp, "--factors", fp, *SMALL, *ALL_SMALL)
    assert res.exit_code == 0, res.stderr
    for label in ("MIG", "SAP", "Modularity", "Explicitness (test ROC-AUC)", "DCI completeness (C)"):
        assert label in res.stdout, label
    assert "factor_vae, beta_vae need the model" in " ".join(res.stderr.split())
    res = cli("score", "--codes", cp, "--factors", fp, "--metrics", "mig", "--size", "mig_n=900", "--json")
    assert res.exit_code == 0, res.stderr
    assert list(json.loads(res.stdout)) == ["mig"]  # DCI's 15,000 default rows are not required for MIG alone


def _bad_cases(tmp_path):
    """(name, codes, factors, extra args, expected fragment): each must fail with one sentence."""
    f = grid_factors((3, 4), 75)
    nan_codes = f.astype(float)
    nan_codes[5, 1] = np.nan
    inf_codes = f.astype(float)
    inf_codes[7, 0] = np.inf
    half = f.astype(float)
    half[3, 1] = 0.5
    single = f.copy()
    single[:, 1] = 2
    (tmp_path / "file").write_text("x")
    return [
        ("mismatched rows", f, f[:-1], [], "has 900 rows but factors.npy has 899"),
        ("fewer rows than DCI asks", f, f, ["--dci-train", "800"], "has 900 rows but DCI needs 1100"),
        ("fewer rows than the default", f, f, ["--dci-train", "10000", "--dci-test", "5000"],
         "has 900 rows but DCI needs 15000"),
        ("fewer rows than InfoMEC asks", f, f, ["--infomec-n", "1000"], "InfoMEC needs 1000"),
        ("NaN codes", nan_codes, f, [], "NaN or infinite values (the first at row 5, column 1)"),
        ("infinite codes", inf_codes, f, [], "NaN or infinite"),
        ("non-integer factors", f, half, [], "integer factor codes"),
        ("negative factors", f, f - 1, [], "non-negative"),
        ("single-valued factor", f, single, [], "factor 1 of factors.npy takes a single value (2)"),
        ("1-D codes", f[:, 0], f, [], "2-D array"),
        ("3-D factors", f, f[:, :, None], [], "2-D array"),
        ("text codes", f.astype(str), f, [], "must hold numbers"),
        ("object codes", np.array([[1, "a"]] * 900, dtype=object), f, [], "not a readable .npy"),
        ("empty codes", np.zeros((0, 3)), f, [], "empty"),
        ("zero rows asked", f, f, ["--dci-train", "0"], "--dci-train must be at least 1"),
        ("zero jobs", f, f, ["--jobs", "0"], "--jobs must be"),
        ("negative seed", f, f, ["--seed", "-1"], "--seed must be non-negative"),
        ("matrices folder is a file", f, f, ["--save-matrices", tmp_path / "file"], "is a file"),
        ("unknown metric", f, f, ["--metrics", "dci,mgi"],
         "unknown metric 'mgi'; choose from: dci, infomec, mig, sap, modularity, factor_vae, beta_vae, irs, "
         "unsupervised, or all"),
        ("intervention score from saved codes", f, f, ["--metrics", "factor_vae"], "fqvae evaluate RUN --metrics"),
        ("fewer rows than SAP asks", f, f, ["--metrics", "sap", "--size", "sap_train=800"],
         "has 900 rows but SAP needs 5800 (sap_train 800 + sap_test 5000)"),
        ("fewer rows than MIG's default", f, f, ["--metrics", "mig"], "has 900 rows but MIG needs 10000 (mig_n 10000)"),
        ("a single sample", f[:1], f[:1], ["--metrics", "mig", "--size", "mig_n=1"], "takes a single value"),
        ("unknown size", f, f, ["--size", "sap_tran=5"], "--size takes NAME=N with NAME one of: dci_train"),
        ("size not a number", f, f, ["--size", "sap_train=many"], "--size sap_train needs a whole number"),
        ("zero size", f, f, ["--metrics", "sap", "--size", "sap_train=0"], "sap_train must be at least 1"),
        ("unknown protocol", f, f, ["--protocol", "nosuch"], "unknown protocol 'nosuch'"),
    ]


def test_bad_inputs_fail_with_one_sentence(cli, arrays, tmp_path):
    for name, codes, factors, extra, fragment in _bad_cases(tmp_path):
        cp, fp = arrays(codes, factors)
        args = ["score", "--codes", cp, "--factors", fp, "--dci-train", "600", "--dci-test", "300",
                "--infomec-n", "900", *extra]
        res = cli(*args)
        assert res.exit_code != 0, name
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.stderr)
        assert fragment in lines[0], (name, lines[0])
        assert "Traceback" not in res.stderr and res.stdout == "", name


def test_unreadable_files_fail_with_one_sentence(cli, arrays, tmp_path):
    f = grid_factors((3, 4), 75)
    cp, fp = arrays(f, f)
    text = tmp_path / "codes.txt"
    text.write_text("1 2 3\n4 5 6\n")
    npz = tmp_path / "codes.npz"
    np.savez(npz, a=f)
    cases = [
        (tmp_path / "missing.npy", "does not exist"),
        (text, "not a readable .npy array"),
        (npz, "is an .npz archive"),
        (tmp_path, "is a folder"),
    ]
    for path, fragment in cases:
        res = cli("score", "--codes", path, "--factors", fp, *SMALL)
        assert res.exit_code != 0, path
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (path, res.stderr)
        assert "Traceback" not in res.stderr


def test_dci_estimator_from_the_command_line(cli, arrays):
    f = grid_factors((3, 4), 75)
    cp, fp = arrays(f.astype(float), f)
    out = run_json(cli, cp, fp, "--metrics", "dci", "--dci-estimator", "lasso", *SMALL)
    assert list(out) == ["dci_lasso_d", "dci_lasso_i", "dci_lasso_i_train", "dci_lasso_c"]
    assert out["dci_lasso_d"] == pytest.approx(1.0, abs=1e-9)
    res = cli("score", "--codes", cp, "--factors", fp, "--dci-estimator", "trees", *SMALL)
    assert res.exit_code != 0 and res.stderr.strip() == ("error: unknown DCI estimator 'trees'; choose from: gbt, "
                                                         "rf, lasso.")
    res = cli("score", "--codes", cp, "--factors", fp, "--metrics", ",", *SMALL)
    assert res.exit_code != 0 and "--metrics ',' names no metric" in res.stderr
