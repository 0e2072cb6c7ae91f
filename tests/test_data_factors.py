"""FactorSpace: index <-> codes in row-major order, values <-> codes robust to float noise, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fqvae_cli.data.factors import FactorSpace, unique_values
from fqvae_cli.errors import DataError, UsageError

sizes_st = st.lists(st.integers(1, 6), min_size=1, max_size=5)


def space_of(sizes):
    return FactorSpace([f"f{j}" for j in range(len(sizes))], sizes)


def test_row_major_last_factor_fastest():
    space = FactorSpace(["a", "b", "c"], [2, 3, 4])
    assert space.size == 24 and space.n_factors == 3
    # Hand-computed: index = (a * 3 + b) * 4 + c.
    assert space.ravel(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 2, 3]])).tolist() == [1, 4, 12, 23]
    assert space.unravel(np.array([0, 1, 5, 23])).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 2, 3]]
    assert space.unravel(7).tolist() == [[0, 1, 3]]
    assert space.ravel(np.array([1, 2, 3])).tolist() == [23]


@settings(max_examples=60, deadline=None)
@given(sizes=sizes_st, data=st.data())
def test_ravel_unravel_round_trip(sizes, data):
    space = space_of(sizes)
    idx = np.array(data.draw(st.lists(st.integers(0, space.size - 1), min_size=1, max_size=20)))
    codes = space.unravel(idx)
    assert codes.shape == (len(idx), len(sizes))
    assert np.array_equal(space.ravel(codes), idx)
    assert np.array_equal(space.ravel(codes), np.ravel_multi_index(tuple(codes.T), sizes))


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st)
def test_all_codes_is_the_row_major_grid(sizes):
    space = space_of(sizes)
    codes = space.all_codes()
    assert np.array_equal(codes, np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"),
                                          axis=-1).reshape(-1, len(sizes)))
    assert space.first_out_of_order(codes) is None


@settings(max_examples=60, deadline=None)
@given(sizes=sizes_st, seed=st.integers(0, 2**31 - 1), noise=st.floats(-1e-9, 1e-9))
def test_values_to_codes_round_trip_under_float_noise(sizes, seed, noise):
    rng = np.random.default_rng(seed)
    values = [np.sort(rng.choice(np.linspace(-3, 3, 61), size=s, replace=False)) for s in sizes]
    space = FactorSpace([f"f{j}" for j in range(len(sizes))], sizes, values)
    codes = space.sample(30, rng)
    vals = space.codes_to_values(codes) + noise
    assert np.array_equal(space.values_to_codes(vals), codes)


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st, seed=st.integers(0, 2**31 - 1))
def test_from_labels_recovers_grid_and_codes(sizes, seed):
    rng = np.random.default_rng(seed)
    values = [np.sort(rng.uniform(0, 1, size=s)) + np.arange(s) for s in sizes]  # strictly increasing
    truth = FactorSpace([f"f{j}" for j in range(len(sizes))], sizes, values)
    labels = truth.codes_to_values(truth.all_codes())
    space, codes = FactorSpace.from_labels(labels * (1 + 1e-12), truth.names)
    assert space.sizes == truth.sizes
    assert np.array_equal(codes, truth.all_codes())
    for a, b in zip(space.values, truth.values, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_unique_values_merges_float_noise_instead_of_truncating():
    # 0.1 * 3 = 0.30000000000000004; int(v * 10) would put 0.7 (0.7000000000000001 / 0.6999999999999999)
    # in bucket 6 or 7 depending on noise. The tolerant unique does not.
    col = np.array([0.0, 0.1 * 3, 0.3, 0.7, 0.1 * 7, 0.7 - 1e-15, 0.9])
    values, inverse = unique_values(col)
    np.testing.assert_allclose(values, [0.0, 0.3, 0.7, 0.9])
    assert inverse.tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert int(0.7 * 10 - 1e-15 * 10) == 6  # the truncation bug this avoids


def test_values_far_from_the_grid_are_refused_not_rounded():
    space = FactorSpace(["hue"], [3], [[0.0, 0.5, 1.0]])
    assert space.values_to_codes(np.array([[0.5], [1.0]])).tolist() == [[1], [2]]
    with pytest.raises(DataError, match=r"row 1: value 0\.26"):
        space.values_to_codes(np.array([[0.0], [0.26]]))


def test_sample_is_seeded_uniform_and_in_range():
    space = FactorSpace(["a", "b"], [3, 5])
    a = space.sample(60_000, 7)
    assert np.array_equal(a, space.sample(60_000, 7))
    assert not np.array_equal(a, space.sample(60_000, 8))
    assert a.min() == 0 and a[:, 0].max() == 2 and a[:, 1].max() == 4
    # Every one of the 15 combinations is drawn ~4000 times (binomial sd ~ 61).
    counts = np.bincount(space.ravel(a), minlength=15)
    assert np.all(np.abs(counts - 4000) < 300)


def test_grid_check_names_the_out_of_order_row():
    space = FactorSpace(["a", "b"], [2, 3])
    codes = space.all_codes()
    codes[[2, 4]] = codes[[4, 2]]
    assert space.first_out_of_order(codes) == 2
    with pytest.raises(DataError, match=r"row 2 is out of row-major order: it holds factor codes \(1, 1\) "
                                        r"where \(0, 2\) belongs"):
        space.check_grid(codes)
    with pytest.raises(DataError, match="5 rows but .* 2x3 = 6 combinations"):
        space.check_grid(codes[:5])


def test_bad_spaces_and_codes_are_usage_errors():
    with pytest.raises(UsageError):
        FactorSpace(["a"], [2, 3])
    with pytest.raises(UsageError):
        FactorSpace(["a"], [2], [[1.0, 0.0]])
    space = FactorSpace(["a", "b"], [2, 3])
    with pytest.raises(UsageError):
        space.ravel(np.array([[0, 3]]))
    with pytest.raises(UsageError):
        space.unravel(np.array([6]))


def test_dict_round_trip_and_subgrid():
    space = FactorSpace(["h", "s"], [3, 2], [[0.0, 0.5, 0.9], [1.0, 2.0]])
    assert FactorSpace.from_dict(space.to_dict()) == space
    sub = space.subgrid([[0, 2], [1]])
    assert sub.sizes == (2, 1)
    assert sub.values[0].tolist() == [0.0, 0.9] and sub.values[1].tolist() == [2.0]
