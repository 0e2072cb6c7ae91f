"""FSQ (finite scalar quantization): levels on hand-made inputs, a few training steps, discrete scoring
and traversals, and a run through `fqvae train` and `fqvae evaluate`."""

from __future__ import annotations

import json

import pytest
import torch

from fqvae_cli.models.bottlenecks.fsq import FSQ
from fqvae_cli.models.zoo import ZOO, ModelConfig, build_model

D = 3


def tiny_fsq(levels: int = 5) -> torch.nn.Module:
    return build_model(ModelConfig.from_flat(name="fsq", latent_dim=D, width=4, hidden=8, levels=levels))


@pytest.mark.parametrize(("levels", "lowest"), [(5, -2), (8, -4)])
def test_levels_codes_and_their_inverse(levels, lowest):
    b = FSQ(n_latents=3, levels=levels)
    h = torch.tensor([[-50.0, 0.0, 50.0]])
    out = b(h, hard=True)
    half = levels // 2
    # the bound saturates at the outermost levels; h = 0 is level 0 for odd and even L alike
    assert out.codes.tolist() == [[0, half, levels - 1]]
    assert out.codes.dtype == torch.long
    assert torch.equal(out.z, torch.tensor([[lowest / half, 0.0, (lowest + levels - 1) / half]]))
    assert torch.equal(b.z_from_codes(out.codes), out.z)
    assert out.losses == {}  # no codebook, no codebook loss
    # every level is reachable: a sweep of h hits exactly L distinct codes
    sweep = b(torch.linspace(-6, 6, 999).view(333, 3), hard=True).codes
    assert sorted(sweep.unique().tolist()) == list(range(levels))


def test_straight_through_gradient_and_training_values():
    b = FSQ(n_latents=2, levels=5)
    h = torch.tensor([[0.3, -0.8]], requires_grad=True)
    soft = b(h, hard=False)
    assert torch.allclose(soft.z, b(h.detach(), hard=True).z)  # the same levels in training
    soft.z.sum().backward()
    # d z / d h = d bound / d h / (L // 2) = (1 - tanh^2(h)) * half / 2
    half = (5 - 1) * (1 - 1e-3) / 2
    assert torch.allclose(h.grad, (1 - torch.tanh(h.detach()) ** 2) * half / 2)


def test_fsq_trains_a_few_steps_with_finite_gradients():
    torch.manual_seed(0)
    model = tiny_fsq().train()
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) - 0.5
    opt = torch.optim.Adam(model.vae_parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        total, parts, _ = model.training_step_losses(x, 1.0)
        total.backward()
        for p in model.vae_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert next(model.encoder.parameters()).grad.abs().sum() > 0  # through the rounding
        opt.step()
        losses.append(float(total.detach()))
    assert set(parts) == {"recon", "total"}
    assert losses[-1] < losses[0]


def test_fsq_is_discrete_and_traverses_its_levels():
    spec = ZOO["fsq"]
    assert spec.title == "FSQ" and spec.discrete and not spec.global_codebook and not spec.total_correlation
    model = tiny_fsq(levels=5).eval()
    assert model.bottleneck.discrete
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)) - 0.5
    codes = model.encode_codes(x)
    assert codes.dtype == torch.long and int(codes.min()) >= 0 and int(codes.max()) < 5
    z = model.encode_z(x)
    assert torch.equal(model.z_from_codes(codes), z)
    levels = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]).unsqueeze(1)
    for i in range(D):
        assert torch.equal(model.traversal_values(i, z[0], steps=5), levels)
    assert torch.equal(model.traversal_values(0, z[0], steps=3), levels[[0, 2, 4]])
    rows = model.apply_traversal(z[0], 1, levels)
    assert torch.equal(rows[:, 1], levels[:, 0]) and model.decode(rows).shape == (5, 3, 32, 32)


def test_fsq_trains_and_is_scored_as_discrete_through_the_cli(cli, small_data, tiny_protocol, monkeypatch):
    import fqvae_cli.metrics.infomec as infomec

    res = cli("train", "--model", "fsq", "--steps", "3", "--batch-size", "8", "--set", "train.checkpoint_every=3",
              "--set", "train.threads=1", "--set", "eval.mse_images=64", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    run_id = res.stdout.strip().splitlines()[-1]

    seen = []
    original = infomec.compute_infomec

    def spy(codes, factors, discrete, **kw):
        seen.append((codes.dtype, discrete))
        return original(codes, factors, discrete=discrete, **kw)

    monkeypatch.setattr(infomec, "compute_infomec", spy)
    res = cli("evaluate", run_id, "--protocol", tiny_protocol, "--json", "--jobs", "1", "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    numbers = json.loads(res.stdout)
    assert 0 <= numbers["infom"] <= 1 and 0 < numbers["mse"] < 1
    assert len(seen) == 1 and seen[0][1] is True and seen[0][0].kind == "i"  # integer codes, discrete estimator
