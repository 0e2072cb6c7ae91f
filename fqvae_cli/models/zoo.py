"""name -> modules: turns a ModelConfig (its model's spec in specs.ZOO, its component settings) into an
Autoencoder. Nothing here names a bottleneck or a regularizer: a new one is a module of
fqvae_cli.models.bottlenecks (or a regularizer kind in specs.REGULARIZERS) and a line in specs.ZOO."""

from __future__ import annotations

from fqvae_cli.config import ModelConfig
from fqvae_cli.errors import ConfigError
from fqvae_cli.models import specs
from fqvae_cli.models.autoencoder import Autoencoder
from fqvae_cli.models.bottlenecks import BOTTLENECKS
from fqvae_cli.models.discriminator import TotalCorrelationConfig
from fqvae_cli.models.trunks import build_trunk


def build_model(cfg: ModelConfig) -> Autoencoder:
    """The model named cfg.name with cfg's trunk, sizes and loss weights, on the CPU (move it after)."""
    spec = specs.get_model_spec(cfg.name)
    d = cfg.latent_dim
    if d is None:
        raise ConfigError("model.latent_dim is not set; it defaults to 2 x the dataset's number of factors.")
    # Regularizers that act on the bottleneck's own statistics; total correlation is attached separately.
    regs = [r for r in cfg.regularizers if not isinstance(r, TotalCorrelationConfig)]
    bottleneck = BOTTLENECKS[spec.bottleneck].from_config(d, cfg.bottleneck, regs)
    encoder, decoder = build_trunk(cfg, bottleneck.enc_dim, bottleneck.z_dim)
    tc_cfg = cfg.regularizer(specs.TOTAL_CORRELATION)
    tc = tc_cfg.build(d, bottleneck.tc_group) if tc_cfg is not None else None
    return Autoencoder(cfg, spec, encoder, bottleneck, decoder, tc)
