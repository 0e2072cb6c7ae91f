"""UDR: the relative-strength score and both correlation variants on representations whose answers are
computed by hand, the KL filter, and `fqvae udr` over a registry cell of trained seeds (one sentence for a
cell of one run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY, grid_factors

from fqvae_cli.errors import DataError, UsageError
from fqvae_cli.metrics.udr import compute_udr, relative_strength
from fqvae_cli.registry.store import Registry


def test_relative_strength_by_hand():
    assert relative_strength(np.eye(2)) == 1.0
    # Columns: max 1 over sum 1 -> 1, 1. Rows: 1² / 2 = 0.5, and 0 / 0 counted as 0 -> mean 0.25.
    assert relative_strength(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx((1 + 0.25) / 2, abs=1e-15)


def _codes():
    f = grid_factors((4, 5, 3), 10)
    return f.astype(float) + [0.0, 10.0, -3.0]  # three exactly uncorrelated latents (a balanced grid)


def test_two_models_with_permuted_latents():
    a = _codes()
    b = a[:, [2, 0, 1]] * [2.0, -1.0, 0.5]  # the same information, latents permuted, rescaled, one flipped
    # Spearman: |rho| is a permutation matrix: S = 1 both ways, UDR 1 for each model.
    r = compute_udr([a, b], method="spearman")
    np.testing.assert_allclose(r.scores, [1.0, 1.0], atol=1e-12)
    # Lasso(alpha 0.1) on standardized, uncorrelated inputs: the matching latent's |coefficient| is
    # 1 - 0.1 = 0.9, every other 0: max² / sum = 0.81 / 0.9 = 0.9 per row and column, UDR 0.9.
    r = compute_udr([a, b], method="lasso")
    np.testing.assert_allclose(r.pairwise, [[0.0, 0.9], [0.9, 0.0]], atol=1e-9)
    np.testing.assert_allclose(r.scores, [0.9, 0.9], atol=1e-9)
    # Three models: each score is the median of the two others' pairwise scores.
    r3 = compute_udr([a, b, a[:, [1, 2, 0]]], method="spearman")
    np.testing.assert_allclose(r3.scores, [1.0, 1.0, 1.0], atol=1e-12)


def test_the_kl_filter_drops_collapsed_latents():
    a = _codes()
    noise = np.random.default_rng(0).normal(size=(len(a), 1))
    # Model 1's third latent is noise with KL 0.005 <= 0.01: zeroed and left out, so its lack of agreement
    # costs nothing: over the two kept latents of model 1, the Spearman matrix is [[1, 0], [0, 1], [0, 0]]
    # (rows: model 0's three latents): columns 1, 1; rows 1, 1, 0 -> (1 + 2/3) / 2 = 5/6 for S(0, 1).
    b = np.c_[a[:, :2], noise]
    r = compute_udr([a, b], [None, [1.0, 1.0, 0.005]], method="spearman")
    assert r.pairwise[0, 1] == pytest.approx(5 / 6, abs=1e-12)
    assert r.pairwise[1, 0] == pytest.approx(5 / 6, abs=1e-12)


def test_degenerate_udr_inputs_are_sentences():
    a = _codes()
    with pytest.raises(DataError) as err:
        compute_udr([a])
    assert str(err.value) == ("UDR scores each model by its agreement with the others of its setting, so it needs "
                              "at least two runs; this setting has 1.")
    with pytest.raises(DataError, match="NaN or infinite"):
        compute_udr([a, np.where(a > 5, np.nan, a)])
    with pytest.raises(DataError, match="same images with the same number of latents"):
        compute_udr([a, a[:, :2]])
    with pytest.raises(UsageError, match="unknown UDR method 'pearson'"):
        compute_udr([a, a], method="pearson")
    # A constant latent correlates with nothing (0), never NaN.
    r = compute_udr([np.c_[a, np.ones(len(a))], np.c_[a, np.ones(len(a))]], method="spearman")
    assert np.isfinite(r.scores).all()


@pytest.mark.slow  # trains two runs
def test_udr_over_a_registry_cell(cli, tiny_protocol):
    res = cli("train", "--model", "ae", *TINY, "--seed", "0", "--name", "udr-0")
    assert res.exit_code == 0, res.stderr
    one = cli("udr", "udr-0", "--protocol", tiny_protocol, "--points", "100")
    assert one.exit_code != 0 and one.stderr.strip() == (
        "error: UDR scores a run by its agreement with the other seeds of its setting, and run "
        f"{Registry().get_run('udr-0').short_id}'s setting has 1 finished run; "
        "train another seed first.")
    assert cli("train", "--model", "ae", *TINY, "--seed", "1", "--name", "udr-1").exit_code == 0
    out = cli("udr", "udr-1", "--protocol", tiny_protocol, "--points", "100", "--method", "spearman", "--json")
    assert out.exit_code == 0, out.stderr
    scores = json.loads(out.stdout)
    assert len(scores) == 2 and all(0.0 <= v <= 1.0 for v in scores.values())
    for name in ("udr-0", "udr-1"):
        run = Registry().get_run(name)
        recorded = [m for m in Registry().metrics(run.id) if m.name == "udr_spearman"]
        assert len(recorded) == 1 and recorded[0].protocol == tiny_protocol
        assert recorded[0].value == scores[run.short_id]
