"""Total correlation: the per-latent permutation, the two losses, and which parameters each step moves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fqvae_cli.models.regularizers import Discriminator, TotalCorrelation, permute_latents
from fqvae_cli.models.zoo import ModelConfig, build_model

B, D, K = 512, 3, 4


def plugin_mi(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    joint = torch.bincount(a * k + b, minlength=k * k).float().view(k, k) / a.numel()
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / (pa @ pb)[nz]).log()).sum())


def correlated_batch() -> torch.Tensor:
    """Relaxed one-hots of 3 latents whose categories are fully dependent: c, c, (c + 1) mod K."""
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, K, (B,), generator=g)
    cats = torch.stack([c, c, (c + 1) % K], dim=1)
    logits = 4.0 * F.one_hot(cats, K).float() + 0.5 * torch.randn(B, D, K, generator=g)
    return F.softmax(logits, -1).reshape(B, D * K)


def test_permutation_permutes_each_latent_and_breaks_dependence():
    t = correlated_batch()
    torch.manual_seed(11)
    p = permute_latents(t, D)
    groups, pgroups = t.view(B, D, K), p.view(B, D, K)
    sources = []
    for j in range(D):
        same = (pgroups[:, j, None, :] == groups[None, :, j, :]).all(-1)  # (permuted row, original row)
        assert torch.equal(same.sum(1), torch.ones(B, dtype=torch.long))  # every row is an original row, intact
        src = same.float().argmax(1)
        assert torch.equal(src.sort().values, torch.arange(B))  # ... and each is used exactly once
        sources.append(src)
    assert not torch.equal(sources[0], sources[1])  # independent permutations per latent

    before = groups.argmax(-1)
    after = pgroups.argmax(-1)
    assert float((before[:, 0] == before[:, 1]).float().mean()) == 1.0
    assert plugin_mi(before[:, 0], before[:, 2], K) > 1.3  # ln 4 = 1.386: fully dependent
    assert float((after[:, 0] == after[:, 1]).float().mean()) < 0.35  # chance is 1/K
    assert plugin_mi(after[:, 0], after[:, 1], K) < 0.05
    assert plugin_mi(after[:, 0], after[:, 2], K) < 0.05

    torch.manual_seed(11)  # the global RNG drives it: a restored state replays the same permutation
    assert torch.equal(permute_latents(t, D), p)


def test_permutation_of_scalar_latents_keeps_every_column():
    z = torch.randn(64, 5)
    p = permute_latents(z, 5)
    assert torch.equal(p.sort(0).values, z.sort(0).values)
    assert not torch.equal(p, z)


def test_tc_terms_match_their_definitions():
    torch.manual_seed(0)
    disc = Discriminator(D * K, width=8, layers=3)
    assert [m.out_features for m in disc.net if isinstance(m, torch.nn.Linear)] == [8, 8, 2]
    tc = TotalCorrelation(0.3, disc, D)
    t = correlated_batch()[:32].requires_grad_(True)
    logits = disc(t)
    expected = 0.3 * (logits[:, 0] - logits[:, 1]).mean()
    term = tc.vae_term(t)
    assert term.item() == pytest.approx(expected.item(), rel=1e-6)
    term.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())

    other = correlated_batch()[32:64]
    torch.manual_seed(4)
    loss = tc.discriminator_loss(t, other)
    torch.manual_seed(4)
    perm = permute_latents(other, D)
    zeros, ones = torch.zeros(32, dtype=torch.long), torch.ones(32, dtype=torch.long)
    manual = 0.5 * (F.cross_entropy(disc(t), zeros) + F.cross_entropy(disc(perm), ones))
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["factorqvae", "factorvae"])
def test_each_step_moves_only_its_own_parameters(name):
    torch.manual_seed(0)
    cfg = ModelConfig.from_flat(name=name, latent_dim=D, width=4, hidden=8, codebook_size=K, beta=0.1, gamma=0.5,
                      disc_width=16)
    model = build_model(cfg).train()
    vae_opt = torch.optim.Adam(model.vae_parameters(), lr=1e-2)
    disc_opt = torch.optim.Adam(model.discriminator_parameters(), lr=1e-2)
    n_all = len(list(model.parameters()))
    assert len(model.vae_parameters()) + len(model.discriminator_parameters()) == n_all
    x = torch.rand(8, 3, 32, 32) - 0.5

    def snapshot(params):
        return [p.detach().clone() for p in params]

    d_before = snapshot(model.discriminator_parameters())
    v_before = snapshot(model.vae_parameters())
    total, _, tc_input = model.training_step_losses(x[:4], 0.8)
    vae_opt.zero_grad(set_to_none=True)
    total.backward()
    vae_opt.step()
    assert all(torch.equal(a, p) for a, p in zip(d_before, model.discriminator_parameters(), strict=True))
    assert all(not torch.equal(a, p) for a, p in zip(v_before, model.vae_parameters(), strict=True))

    v_after = snapshot(model.vae_parameters())
    vae_opt.zero_grad(set_to_none=True)
    d_loss = model.discriminator_loss(tc_input, x[4:], 0.8)
    disc_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    assert all(p.grad is None for p in model.vae_parameters())
    disc_opt.step()
    assert all(torch.equal(a, p) for a, p in zip(v_after, model.vae_parameters(), strict=True))
    # every weight matrix moves (the output bias's gradient 0.5 (mean p_0 + mean p'_0 - 1) can vanish at init)
    moved = [not torch.equal(a, p) for a, p in zip(d_before, model.discriminator_parameters(), strict=True)]
    weights = [p.dim() == 2 for p in model.discriminator_parameters()]
    assert all(m for m, w in zip(moved, weights, strict=True) if w)
