"""Bottleneck and regularizer maths on hand-made examples (docs/architecture.md)."""

from __future__ import annotations

import math

import pytest
import torch

from fqvae_cli.models.bottlenecks.base import gumbel_softmax, init_codebook
from fqvae_cli.models.bottlenecks.gaussian import Gaussian
from fqvae_cli.models.bottlenecks.gumbel_categorical import GumbelCategorical
from fqvae_cli.models.bottlenecks.per_latent_codebook import PerLatentCodebook
from fqvae_cli.models.bottlenecks.relaxed_codebook import RelaxedCodebook
from fqvae_cli.models.regularizers import BioPenalties, KLGaussian, KLUniform, QuantizeCommit


def scalar_codebook(values, distance="squared", beta=1.0) -> RelaxedCodebook:
    b = RelaxedCodebook(n_latents=2, n_entries=len(values), value_dim=1, distance=distance,
                        regularizers=[KLUniform(beta=beta)])
    with torch.no_grad():
        b.codebook.copy_(torch.tensor(values).view(-1, 1))
    return b


def test_kl_to_uniform_on_a_two_latent_three_entry_example():
    # codebook (0, 1, 2); latent 1 at z = 1, latent 2 at z = 0.5; squared distances
    b = scalar_codebook([0.0, 1.0, 2.0])
    out = b(torch.tensor([[1.0, 0.5]]), hard=True)
    # latent 1: distances (1, 0, 1) -> q = (a, 1, a) / s with a = e^-1, s = 1 + 2a
    a = math.exp(-1.0)
    s = 1 + 2 * a
    kl1 = 2 * (a / s) * math.log(3 * a / s) + (1 / s) * math.log(3 / s)
    # latent 2: distances (0.25, 0.25, 2.25) -> q = (1, 1, c) / t with c = e^-2, t = 2 + c
    c = math.exp(-2.0)
    t = 2 + c
    kl2 = 2 * (1 / t) * math.log(3 / t) + (c / t) * math.log(3 * c / t)
    expected = (kl1 + kl2) / 2  # averaged over latents, not summed
    assert out.losses["kl"].item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.1683, abs=1e-4)  # (0.12326 + 0.21323) / 2 on paper
    # beta weights it, and the batch is averaged too
    b2 = scalar_codebook([0.0, 1.0, 2.0], beta=0.25)
    out2 = b2(torch.tensor([[1.0, 0.5], [1.0, 0.5]]), hard=True)
    assert out2.losses["kl"].item() == pytest.approx(0.25 * expected, rel=1e-6)


def test_squared_and_absolute_distance_logits():
    h = torch.tensor([[1.5, -1.0]])
    sq = scalar_codebook([0.0, 1.0, 3.0], "squared").logits(h)
    ab = scalar_codebook([0.0, 1.0, 3.0], "absolute").logits(h)
    assert torch.equal(sq, -torch.tensor([[[2.25, 0.25, 2.25], [1.0, 4.0, 16.0]]]))
    assert torch.equal(ab, -torch.tensor([[[1.5, 0.5, 1.5], [1.0, 2.0, 4.0]]]))
    # vectors: squared Euclidean vs Euclidean norm (a 3-4-5 triangle)
    vq = RelaxedCodebook(1, 2, value_dim=2, distance="squared")
    vn = RelaxedCodebook(1, 2, value_dim=2, distance="absolute")
    with torch.no_grad():
        for b in (vq, vn):
            b.codebook.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    h = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(vq.logits(h), -torch.tensor([[[25.0, 0.0]]]))
    assert torch.allclose(vn.logits(h), -torch.tensor([[[5.0, 0.0]]]))


def test_lower_temperature_gives_a_sharper_relaxed_one_hot():
    logits = torch.randn(64, 5, 10, generator=torch.Generator().manual_seed(0))
    samples = {}
    for tau in (1.0, 0.5, 0.1):
        torch.manual_seed(7)  # the same Gumbel noise for every temperature
        samples[tau] = gumbel_softmax(logits, tau)
        assert torch.allclose(samples[tau].sum(-1), torch.ones(64, 5))
    for hi, lo in ((1.0, 0.5), (0.5, 0.1)):
        assert (samples[lo].max(-1).values > samples[hi].max(-1).values).all()
        ent = {t: -(samples[t] * samples[t].clamp_min(1e-30).log()).sum(-1) for t in (hi, lo)}
        assert (ent[lo] < ent[hi]).all()
    # the argmax (the sampled category) does not depend on the temperature
    assert torch.equal(samples[1.0].argmax(-1), samples[0.1].argmax(-1))


def test_training_mixes_the_codebook_and_eval_picks_the_nearest_entry():
    b = scalar_codebook([0.0, 1.0, 2.0])
    h = torch.tensor([[0.9, 1.8]])
    torch.manual_seed(0)
    soft = b(h, temperature=0.5, hard=False)
    w = soft.tc_input.view(1, 2, 3)
    assert torch.allclose(soft.z, (w * torch.tensor([0.0, 1.0, 2.0])).sum(-1))
    assert torch.equal(soft.codes, w.argmax(-1))
    hard = b(h, hard=True)
    assert torch.equal(hard.codes, torch.tensor([[1, 2]]))
    assert torch.equal(hard.z, torch.tensor([[1.0, 2.0]]))
    assert torch.equal(hard.tc_input, torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]]))
    b.eval()  # hard=None follows the module's mode
    assert torch.equal(b(h).z, hard.z)


def test_dvae_uses_encoder_logits_and_their_kl():
    b = GumbelCategorical(n_latents=1, n_entries=3, regularizers=[KLUniform(beta=1.0)])
    h = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    out = b(h, hard=True)
    assert out.codes.tolist() == [[0]]
    expected = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    assert out.losses["kl"].item() == pytest.approx(expected, rel=1e-6)
    assert b.enc_dim == 3 and b.z_dim == 1


def test_gaussian_kl_sample_and_mean():
    b = Gaussian(2, regularizers=[KLGaussian(beta=0.5)], eval_code="mean")
    h = torch.tensor([[1.0, 0.0, 0.0, math.log(2.0)], [0.0, 0.0, 0.0, 0.0]])  # (mu1, mu2, logvar1, logvar2)
    out = b(h, hard=True)
    # row 1: 0.5 (1 + 1 - 1 - 0) + 0.5 (0 + 2 - 1 - ln 2); row 2: 0; summed over latents, batch mean
    expected = 0.5 * (0.5 + 0.5 * (1 - math.log(2.0))) / 2
    assert out.losses["kl"].item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(out.codes, h[:, :2]) and torch.equal(out.z, h[:, :2])
    sampler = Gaussian(2, eval_code="sample")
    torch.manual_seed(3)
    s1 = sampler(h, hard=True).codes
    torch.manual_seed(3)
    eps = torch.randn(2, 2)
    assert torch.allclose(s1, h[:, :2] + eps * torch.exp(0.5 * h[:, 2:]))


def test_qlae_straight_through_and_quantize_commit():
    b = PerLatentCodebook(2, n_values=3, regularizers=[QuantizeCommit(quantize=0.1, commit=0.2)])
    with torch.no_grad():
        b.codebook.copy_(torch.tensor([[-1.0, 0.0, 1.0], [0.0, 2.0, 4.0]]))
    h = torch.tensor([[0.4, 3.2]], requires_grad=True)
    out = b(h, hard=False)
    assert out.codes.tolist() == [[1, 2]]
    assert torch.allclose(out.z, torch.tensor([[0.0, 4.0]]))
    # quantize 0.1 * mean((q - z)^2), commit 0.2 * the same value, here (0.16 + 0.64) / 2
    assert out.losses["quantize"].item() == pytest.approx(0.1 * 0.4, rel=1e-6)
    assert out.losses["commit"].item() == pytest.approx(0.2 * 0.4, rel=1e-6)
    out.z.sum().backward()  # straight-through: d z / d h = 1
    assert torch.equal(h.grad, torch.ones(1, 2))
    assert torch.equal(b(h, hard=True).z, torch.tensor([[0.0, 4.0]]))


def test_bio_penalties():
    out = BioPenalties(nonneg=2.0, activity=0.1)({"z": torch.tensor([[-1.0, 2.0]])})
    assert out["nonneg"].item() == pytest.approx(2.0 * 0.5)
    assert out["activity"].item() == pytest.approx(0.1 * 2.5)


def test_codebook_inits():
    torch.manual_seed(0)
    lin = init_codebook((3, 16), 16, "linspace", entry_dim=1)
    assert torch.equal(lin[2], torch.linspace(-0.5, 0.5, 16))
    assert torch.equal(init_codebook((4, 1), 4, "linspace", entry_dim=0).flatten(), torch.linspace(-0.5, 0.5, 4))
    uni = init_codebook((64, 1), 64, "uniform", entry_dim=0)
    assert uni.abs().max() <= 1 / 64
    normal = init_codebook((4096, 1), 4096, "normal", entry_dim=0)
    assert abs(float(normal.std()) - 1.0) < 0.05
