"""name -> modules: turns a ModelConfig (its model's spec in specs.ZOO, its component settings) into an
Autoencoder. Nothing here names a bottleneck or a regularizer: a new one is a module of
fqvae_cli.models.bottlenecks (or a regularizer kind in specs.REGULARIZERS) and a line in specs.ZOO."""

from __future__ import annotations

from functools import lru_cache

from fqvae_cli.errors import ConfigError
from fqvae_cli.models import specs
from fqvae_cli.models.autoencoder import Autoencoder
from fqvae_cli.models.bottlenecks import BOTTLENECKS
from fqvae_cli.models.discriminator import TotalCorrelationConfig
from fqvae_cli.models.settings import ModelConfig
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


# The largest model a run may have. 10^9 parameters take 16 GB in float32 for the weights, their
# gradients and Adam's two moments; the paper's largest model has 2.8 x 10^7. A typo such as
# latent_dim=1e9 is refused before a run exists instead of failing (or swapping) at allocation.
MAX_PARAMETERS = 1_000_000_000


@lru_cache(maxsize=256)
def _parameter_count(settings: str) -> int:
    import torch

    cfg = ModelConfig.model_validate_json(settings)
    with torch.device("meta"):  # shapes only: nothing is allocated, however large
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def parameter_count(cfg: ModelConfig) -> int:
    """The number of parameters of the model `cfg` describes, counted without allocating them."""
    return _parameter_count(cfg.model_dump_json())


def check_model_size(cfg: ModelConfig) -> int:
    """The parameter count, refused (one sentence) above MAX_PARAMETERS or when the sizes cannot even
    be laid out. Every command that creates or queues a run calls this before the run exists."""
    sizes = f"latent_dim {cfg.latent_dim}, width {cfg.width or 'default'}, hidden {cfg.hidden}"
    try:
        n = parameter_count(cfg)
    except (RuntimeError, OverflowError, ValueError, TypeError, MemoryError):
        # torch's own message here is a C++ stack; the sizes say what is wrong.
        raise ConfigError(f"model {cfg.name} with {sizes} cannot be built: a layer would be larger than PyTorch "
                          "can index; choose smaller sizes.") from None
    if n > MAX_PARAMETERS:
        raise ConfigError(f"model {cfg.name} with {sizes} would have {n:,} parameters, more than the limit of "
                          f"{MAX_PARAMETERS:,} (16 GB of weights, gradients and Adam moments); choose smaller "
                          "sizes.")
    return n
