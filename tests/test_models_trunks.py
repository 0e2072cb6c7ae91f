"""The paper trunk against Appendix A.3 (docs/architecture.md) and the compact trunk's shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fqvae_cli.errors import ConfigError
from fqvae_cli.models.trunks import _ResBlock, build_trunk, count_parameters
from fqvae_cli.models.zoo import ModelConfig, build_model


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def enc_block(c_in: int, c_out: int) -> int:
    h = c_out // 4
    ident = conv(c_in, c_out, 1) if c_in != c_out else 0
    return ident + conv(c_in, h, 3) + 2 * conv(h, h, 3) + conv(h, c_out, 1)


def dec_block(c_in: int, c_out: int) -> int:
    h = c_out // 4
    ident = conv(c_in, c_out, 1) if c_in != c_out else 0
    return ident + conv(c_in, h, 1) + 2 * conv(h, h, 3) + conv(h, c_out, 3)


def appendix_a3_counts(d: int, n: int = 128, m: int = 128) -> tuple[int, int]:
    """Encoder and decoder parameters of Appendix A.3 at 64x64 for an encoder output of width d."""
    enc = conv(3, n, 3)
    enc += 2 * enc_block(n, n) + enc_block(n, 2 * n) + enc_block(2 * n, 2 * n)
    enc += enc_block(2 * n, 4 * n) + enc_block(4 * n, 4 * n)
    enc += linear(4 * n * 16 * 16, m) + linear(m, m) + linear(m, d)
    dec = linear(d, 64 * 16 * 16)
    dec += dec_block(64, 4 * n) + dec_block(4 * n, 4 * n) + dec_block(4 * n, 2 * n) + dec_block(2 * n, 2 * n)
    dec += dec_block(2 * n, n) + dec_block(n, n) + conv(n, 3, 1)
    return enc, dec


def test_paper_trunk_parameter_count_and_one_step_at_64():
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_flat(name="ae", trunk="paper", image_size=64, latent_dim=12))
    enc, dec = appendix_a3_counts(12)
    assert (enc, dec) == (19_092_556, 2_871_619)  # docs/architecture.md: 19.09M + 2.87M
    assert abs((enc + dec) - 22e6) / 22e6 < 0.02
    assert count_parameters(model.encoder) == enc
    assert count_parameters(model.decoder) == dec

    x = torch.rand(2, 3, 64, 64) - 0.5
    total, parts, _ = model.training_step_losses(x, 1.0)
    total.backward()
    assert torch.isfinite(total)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_paper_trunk_init_gain_and_output_widths():
    torch.manual_seed(0)
    cfg = ModelConfig.from_flat(name="ae", trunk="paper", image_size=32, latent_dim=5, width=16, hidden=8)
    enc, dec = build_trunk(cfg, 7, 3)
    layers = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(not m.bias.detach().any() for m in layers)
    weights = torch.cat([m.weight.detach().flatten() for m in layers])
    assert abs(float(weights.std()) - 0.02) < 0.001 and abs(float(weights.mean())) < 0.001
    blocks = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, _ResBlock)]
    assert len(blocks) == 12 and all(b.gain == 1 / 36 for b in blocks)
    # no normalization layers anywhere, and no activation after the last conv
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) for m in dec.modules())
    assert isinstance(list(dec.features)[-1], nn.Conv2d)
    assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert dec(torch.zeros(2, 3)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("size,stages", [(32, 3), (64, 4)])
def test_compact_trunk_downsamples_to_4x4(size, stages):
    cfg = ModelConfig.from_flat(name="ae", trunk="compact", image_size=size, latent_dim=4, width=8, hidden=16)
    enc, dec = build_trunk(cfg, 6, 4)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == stages and all(c.stride == (2, 2) for c in convs)
    assert enc.head[1].in_features == 16 * 16  # 2w channels x 4 x 4
    assert enc(torch.zeros(3, 3, size, size)).shape == (3, 6)
    assert dec(torch.zeros(3, 4)).shape == (3, 3, size, size)


@pytest.mark.parametrize("trunk,size", [("compact", 48), ("paper", 30)])
def test_unsupported_image_size_is_one_sentence(trunk, size):
    cfg = ModelConfig.from_flat(name="ae", trunk=trunk, image_size=size, latent_dim=4)
    with pytest.raises(ConfigError, match="image size"):
        build_model(cfg)
