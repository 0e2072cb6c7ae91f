"""name -> modules: turns a ModelSpec (specs.py, the zoo as data) and a ModelConfig into an Autoencoder.

Adding a model is a bottleneck kind (bottlenecks.py), a regularizer kind (regularizers.py) if it needs
one, and a line in specs.ZOO; nothing here or in the training loop, metrics or figures changes."""

from __future__ import annotations

from collections.abc import Callable

from fqvae_cli.config import ModelConfig
from fqvae_cli.errors import ConfigError
from fqvae_cli.models import specs
from fqvae_cli.models.autoencoder import Autoencoder
from fqvae_cli.models.bottlenecks import (
    Bottleneck,
    Gaussian,
    GumbelCategorical,
    Identity,
    PerLatentCodebook,
    Regularizer,
    RelaxedCodebook,
)
from fqvae_cli.models.discriminator import Discriminator, TotalCorrelation
from fqvae_cli.models.regularizers import BioPenalties, KLGaussian, KLUniform, QuantizeCommit
from fqvae_cli.models.trunks import build_trunk

BOTTLENECKS: dict[str, Callable[[ModelConfig, int, list[Regularizer]], Bottleneck]] = {
    specs.IDENTITY: lambda cfg, d, regs: Identity(d, regs),
    specs.GAUSSIAN: lambda cfg, d, regs: Gaussian(d, regs, eval_code=cfg.eval_code),
    specs.RELAXED_CODEBOOK: lambda cfg, d, regs: RelaxedCodebook(
        d, cfg.codebook_size, cfg.codebook_dim, cfg.distance, cfg.codebook_init, regs),
    specs.GUMBEL_CATEGORICAL: lambda cfg, d, regs: GumbelCategorical(
        d, cfg.codebook_size, cfg.codebook_dim, cfg.codebook_init, regs),
    specs.PER_LATENT_CODEBOOK: lambda cfg, d, regs: PerLatentCodebook(d, cfg.n_values, cfg.codebook_init, regs),
}

# Regularizers that act on the bottleneck's own statistics; total correlation is attached separately.
REGULARIZERS: dict[str, Callable[[ModelConfig], Regularizer]] = {
    specs.KL_UNIFORM: lambda cfg: KLUniform(cfg.beta),
    specs.KL_GAUSSIAN: lambda cfg: KLGaussian(cfg.beta),
    specs.BIO: lambda cfg: BioPenalties(cfg.nonneg, cfg.activity),
    specs.QUANTIZE_COMMIT: lambda cfg: QuantizeCommit(cfg.quantize, cfg.commit),
}


def build_model(cfg: ModelConfig) -> Autoencoder:
    """The model named cfg.name with cfg's trunk, sizes and loss weights, on the CPU (move it after)."""
    spec = specs.get_model_spec(cfg.name)
    d = cfg.latent_dim
    if d is None:
        raise ConfigError("model.latent_dim is not set; it defaults to 2 x the dataset's number of factors.")
    regs = [REGULARIZERS[r](cfg) for r in spec.regularizers if r != specs.TOTAL_CORRELATION]
    bottleneck = BOTTLENECKS[spec.bottleneck](cfg, d, regs)
    encoder, decoder = build_trunk(cfg, bottleneck.enc_dim, bottleneck.z_dim)
    tc = None
    if spec.factor:
        disc = Discriminator(d * bottleneck.tc_group, cfg.disc_width, cfg.disc_layers)
        tc = TotalCorrelation(cfg.gamma, disc, d)
    return Autoencoder(cfg, spec, encoder, bottleneck, decoder, tc)
