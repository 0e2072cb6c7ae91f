"""Tripod (Hsu et al. 2024): its fixed-grid quantizer, the KDE latent multiinformation on three points and
the finite-difference Hessian penalties on a quadratic decoder, each against answers computed by hand; its
ablations; and a tiny run on synth3d that stops, resumes bit-exactly, evaluates and traverses. Agreement
with the authors' own functions: benchmarks/reference_tripod.py."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TINY, stop_after_checkpoint

from fqvae_cli.models.bottlenecks.fixed_grid import FixedGrid
from fqvae_cli.models.tripod import TripodTerms, hessian_penalties, latent_multiinformation, silverman_factor
from fqvae_cli.models.zoo import ZOO, ModelConfig, build_model


def test_the_grid_has_twelve_levels_and_rounds_half_to_even():
    grid = FixedGrid(4).eval()
    h = torch.tensor([[0.0, 20.0, -20.0, math.atanh(-0.5)]])
    out = grid(h)
    # tanh 0 = 0 -> 5.5 -> 6 (half to even); +-1 -> 11, 0; tanh = -0.5 -> 2.75 -> 3
    assert out.codes.tolist() == [[6, 11, 0, 3]]
    assert torch.allclose(out.z, torch.tensor([[1 / 11, 1.0, -1.0, -5 / 11]]), atol=1e-7)
    assert torch.equal(grid.z_from_codes(out.codes), out.z)  # evaluation: the levels bit for bit
    assert grid.codes_per_latent == 12 and ZOO["tripod"].discrete and ZOO["tripod"].encoder_output == "d"
    levels = grid.traversal_values(2, out.z[0], steps=12).squeeze(1)
    assert torch.allclose(levels, torch.arange(12) * 2 / 11 - 1, atol=1e-7)


def test_training_rounds_with_a_straight_through_gradient():
    grid = FixedGrid(2).train()
    h = torch.tensor([[0.0, math.atanh(-0.5)]], requires_grad=True)
    out = grid(h)
    assert torch.allclose(out.z, torch.tensor([[1 / 11, -5 / 11]]), atol=1e-7)
    out.z.sum().backward()
    # d z / d h = 2 / (L - 1) * (L - 1) / 2 * (1 - tanh^2 h): 1 at 0, 0.75 where tanh h = -0.5
    assert torch.allclose(h.grad, torch.tensor([[1.0, 0.75]]), atol=1e-6)


class _NoDecoder(torch.nn.Module):
    def forward(self, z):  # pragma: no cover - the test fails if it is called
        raise AssertionError("the decoder was called with the Hessian terms off")


def _normal(x: float, var: float) -> float:
    return math.exp(-x * x / (2 * var)) / math.sqrt(2 * math.pi * var)


def test_kde_multiinformation_of_three_points_by_hand():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    s = silverman_factor(2, 3)
    assert s == pytest.approx(3 ** (-1 / 3), rel=1e-12)  # ((4 / 4)^(1/6) 3^(-1/6))^2
    # joint kernels N(0, s I) in 2-d: exp(-|dz|^2 / 2s) / (2 pi s); marginals N(0, 1)
    joint = [(1 + 2 * math.exp(-1 / s)) / 3, (1 + math.exp(-1 / s) + math.exp(-2 / s)) / 3]
    joint = [j / (2 * math.pi * s) for j in joint]
    m_first = [(_normal(0, 1) + 2 * _normal(1, 1)) / 3, (2 * _normal(0, 1) + _normal(1, 1)) / 3]
    m_second = [(_normal(0, 1) + 2 * _normal(1, 1)) / 3, (_normal(0, 1) + _normal(1, 1) + _normal(2, 1)) / 3]
    want = [math.log(joint[0]) - math.log(m_first[0] * m_second[0]),
            math.log(joint[1]) - math.log(m_first[1] * m_second[1])]
    got = latent_multiinformation(z, torch.ones(2, dtype=torch.float64))
    assert got.tolist() == pytest.approx([want[0], want[1], want[1]], rel=1e-12)
    # the term: bandwidths from the batch standard deviation of z_c (here exactly 1), weighted, batch mean
    a = math.sqrt(1.5)
    z_c = torch.tensor([[-a, -a], [a, a], [0.0, 0.0]], dtype=torch.float64)
    term = TripodTerms(lambda_multiinformation=0.5, lambda_hessian=0.0)
    parts = term({"z": z, "z_c": z_c, "decoder": _NoDecoder()})
    assert parts["multiinformation"].item() == pytest.approx(0.5 * (want[0] + 2 * want[1]) / 3, rel=1e-5)
    assert term({"z": z, "z_c": z_c}) == {}  # no decoder given: evaluation, where no loss is used


def _quadratic(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """f(z) = z1 z2 + z1^2 (H = [[2, 1], [1, 0]]) and g(z) = 3 z1 z2 (H = [[0, 3], [3, 0]])."""
    z1, z2 = z[:, 0:1], z[:, 1:2]
    return {"f": z1 * z2 + z1 * z1, "g": 3 * z1 * z2}


def test_finite_difference_hessian_penalties_on_a_quadratic_decoder():
    z = torch.tensor([[0.3, -0.2], [1.0, 2.0]], dtype=torch.float64)
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    # k = 2 draws per sample: sample 0 gets r1 r2 = +1 then -1, sample 1 the same sign twice
    rademacher = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, -1.0], [-1.0, -1.0]]], dtype=torch.float64)
    gaussian = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    hp, nhp = hessian_penalties(_quadratic, z, sigma, rademacher, gaussian, 0.1)
    # a quadratic's central difference along v is v^T H v exactly; v = eps r sigma, divided by eps^2:
    # Rademacher: 2 H11 s1^2 + 2 H12 s1 s2 r1 r2 + H22 s2^2 terms; its variance over {+1, -1} is
    # (2 H12 s1 s2)^2 = 16 (f) and 144 (g); over {+1, +1} it is 0.
    # Gaussian (1, 0) then (0, 1): H11 s1^2 and H22 s2^2, variance (H11 s1^2 - H22 s2^2)^2 / 4 = 1 (f), 0 (g)
    assert hp.tolist() == pytest.approx([16 + 144, 0.0], abs=1e-6)
    assert nhp.tolist() == pytest.approx([16 / (1 + 1e-10) + 144 / 1e-10, 0.0], rel=1e-6)
    # the centre given (as the reference passes f(z)) changes nothing
    hp2, nhp2 = hessian_penalties(_quadratic, z, sigma, rademacher, gaussian, 0.1, f_z=_quadratic(z))
    assert torch.allclose(hp, hp2) and torch.allclose(nhp, nhp2)


def test_each_term_can_be_turned_off():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0]])
    parts = TripodTerms(lambda_multiinformation=0.0, lambda_hessian=0.0)({"z": z, "decoder": _NoDecoder()})
    assert parts == {"multiinformation": torch.tensor(0.0), "hessian": torch.tensor(0.0)}
    # the naive combination's plain Hessian penalty is a setting of its own
    torch.manual_seed(0)
    lin = torch.nn.Linear(2, 3)
    with torch.no_grad():
        parts = TripodTerms(lambda_hessian_unnormalized=1.0, hessian_on="output")({"z": z, "decoder": lin})
    assert parts["hessian_unnormalized"].abs().item() < 1e-6  # a linear decoder has no curvature
    cfg = ModelConfig.from_flat(name="tripod", latent_dim=3, lambda_hessian=0.0, grid_levels=5)
    assert (cfg.bottleneck.grid_levels, cfg.regularizers[0].lambda_hessian) == (5, 0.0)
    assert cfg.reconstruction == "bernoulli_mean"
    # without the quantization leg: the raw encoder output, its own batch deviation as bandwidths
    assert ZOO["tripod_continuous"].parts == ("identity", ("tripod",)) and not ZOO["tripod_continuous"].discrete


def test_the_per_pixel_bernoulli_reconstruction():
    model = build_model(ModelConfig.from_flat(name="tripod", latent_dim=3, width=4, hidden=8))
    x = torch.rand(2, 3, 32, 32) - 0.5
    # logits 0: log 2 per pixel whatever the target, averaged over pixels, channels and the batch
    assert model.reconstruction_loss(torch.zeros(2, 3, 32, 32), x).item() == pytest.approx(math.log(2), rel=1e-6)


def test_the_finite_differences_stay_in_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    decoder = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8), torch.nn.ReLU())
    z = torch.rand(5, 3) * 2 - 1
    term = TripodTerms(lambda_multiinformation=0.0, lambda_hessian=1.0, lambda_hessian_unnormalized=1.0,
                       hessian_on="output")
    results = []
    for autocast in (False, True):
        torch.manual_seed(1)  # the same perturbations
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            results.append(term({"z": z, "decoder": decoder}))
    assert results[0]["hessian"].item() > 0
    assert torch.equal(results[0]["hessian"], results[1]["hessian"])
    assert torch.equal(results[0]["hessian_unnormalized"], results[1]["hessian_unnormalized"])


def _weights(name: str) -> dict:
    from safetensors.torch import load_file

    from fqvae_cli.registry.store import Registry

    with Registry() as reg:
        run = reg.get_run(name)
        last = max(reg.artifacts(run.id, kind="checkpoint"), key=lambda a: a.step)
        return load_file(last.path)


def test_tripod_trains_resumes_bit_exactly_evaluates_and_traverses(cli, small_data, tiny_protocol, monkeypatch,
                                                                    tmp_path):
    assert cli("train", "--model", "tripod", *TINY, "--seed", "3", "--name", "straight").exit_code == 0
    with monkeypatch.context() as m:
        stop_after_checkpoint(m, 3)
        res = cli("train", "--model", "tripod", *TINY, "--seed", "3", "--name", "resumed")
    assert res.exit_code == 130, res.stderr
    assert cli("train", "--resume", "resumed", "--device", "cpu").exit_code == 0
    a, b = _weights("straight"), _weights("resumed")
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a)
    res = cli("evaluate", "resumed", "--protocol", "tiny", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "traverse.png"
    res = cli("traverse", "resumed", "--steps", "12", "--out", str(out), "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
