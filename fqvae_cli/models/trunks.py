"""Encoder/decoder trunks shared by every model; only their input/output widths differ per bottleneck.

`paper`: the DALL-E style residual trunk of the paper's Appendix A.3 (docs/architecture.md).
`compact`: a small strided-conv trunk that trains at CPU speed (32x32 and 64x64), with the paper's
dense head (Dense_m then Linear_o), so every bottleneck sees the same kind of encoder output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor, nn

from fqvae_cli.errors import ConfigError


class TrunkSettings(Protocol):
    """The fields of fqvae_cli.config.ModelConfig a trunk reads (a protocol: models do not import config)."""

    trunk: str
    image_size: int
    width: int | None
    hidden: int


PAPER_WIDTH = 128
COMPACT_WIDTH = 32
PAPER_DECODER_CHANNELS = 64  # the decoder's first linear layer emits 64 x (s/4) x (s/4)


def init_paper_weights(module: nn.Module) -> None:
    """Every conv and linear weight ~ N(0, 0.02), bias 0 (the authors' init; codebooks keep their own)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def dense_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Dense_m -> Linear_o: ReLU-Linear(m)-ReLU-Linear(m)-ReLU-Linear(o)."""
    return nn.Sequential(
        nn.ReLU(), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


class _ResBlock(nn.Module):
    """identity (1x1 conv when widths differ) + gain * residual path; no normalization."""

    def __init__(self, c_in: int, c_out: int, gain: float, decoder: bool):
        super().__init__()
        h = c_out // 4
        self.id_path = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        if decoder:  # conv1x1 in -> h, then three 3x3 convs, the last to out
            convs = [nn.Conv2d(c_in, h, 1), nn.Conv2d(h, h, 3, padding=1), nn.Conv2d(h, h, 3, padding=1),
                     nn.Conv2d(h, c_out, 3, padding=1)]
        else:  # three 3x3 convs, then conv1x1 h -> out
            convs = [nn.Conv2d(c_in, h, 3, padding=1), nn.Conv2d(h, h, 3, padding=1),
                     nn.Conv2d(h, h, 3, padding=1), nn.Conv2d(h, c_out, 1)]
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [nn.ReLU(), conv]
        self.res_path = nn.Sequential(*layers)
        self.gain = gain

    def forward(self, x: Tensor) -> Tensor:
        return self.id_path(x) + self.gain * self.res_path(x)


# 3 groups x 2 blocks: DALL-E scales each residual path by 1 / (number of blocks)^2.
_GROUPS, _BLOCKS = 3, 2
_GAIN = 1.0 / (_GROUPS * _BLOCKS) ** 2


class PaperEncoder(nn.Module):
    """conv3x3 3->n; [n, n] maxpool [2n, 2n] maxpool [4n, 4n]; flatten; Dense_m; Linear_o."""

    def __init__(self, image_size: int, out_dim: int, width: int = PAPER_WIDTH, hidden: int = 128):
        super().__init__()
        n = width
        layers: list[nn.Module] = [nn.Conv2d(3, n, 3, padding=1)]
        c = n
        for g in range(_GROUPS):
            c_out = n * 2**g
            layers += [_ResBlock(c, c_out, _GAIN, decoder=False), _ResBlock(c_out, c_out, _GAIN, decoder=False)]
            c = c_out
            if g < _GROUPS - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = image_size // 4
        self.head = dense_head(c * side * side, hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class PaperDecoder(nn.Module):
    """Linear(in -> 64 (s/4)^2); [4n, 4n] up [2n, 2n] up [n, n]; ReLU; conv1x1 n->3. No output activation."""

    def __init__(self, image_size: int, in_dim: int, width: int = PAPER_WIDTH):
        super().__init__()
        n = width
        self.side = image_size // 4
        self.project = nn.Linear(in_dim, PAPER_DECODER_CHANNELS * self.side * self.side)
        layers: list[nn.Module] = []
        c = PAPER_DECODER_CHANNELS
        for g in reversed(range(_GROUPS)):
            c_out = n * 2**g
            layers += [_ResBlock(c, c_out, _GAIN, decoder=True), _ResBlock(c_out, c_out, _GAIN, decoder=True)]
            c = c_out
            if g > 0:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.ReLU(), nn.Conv2d(c, 3, 1)]
        self.features = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(z.shape[0], PAPER_DECODER_CHANNELS, self.side, self.side)
        return self.features(h)


def _compact_channels(image_size: int, width: int) -> list[int]:
    """Stride-2 stages down to 4x4: 32x32 -> (w, w, 2w), 64x64 -> (w, w, 2w, 2w)."""
    stages = (image_size // 4).bit_length() - 1
    return [width] * (stages - stages // 2) + [2 * width] * (stages // 2)


class CompactEncoder(nn.Module):
    """4x4 stride-2 convs (the disentanglement literature's standard conv encoder) + the paper's dense head."""

    def __init__(self, image_size: int, out_dim: int, width: int = COMPACT_WIDTH, hidden: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for c_out in _compact_channels(image_size, width):
            layers += [nn.Conv2d(c, c_out, 4, stride=2, padding=1), nn.ReLU()]
            c = c_out
        self.features = nn.Sequential(*layers[:-1])  # dense_head starts with its own ReLU
        self.head = dense_head(c * 16, hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class CompactDecoder(nn.Module):
    """Linear-ReLU-Linear to c x 4 x 4, transposed 4x4 stride-2 convs up to the image; no output activation."""

    def __init__(self, image_size: int, in_dim: int, width: int = COMPACT_WIDTH, hidden: int = 128):
        super().__init__()
        chans = list(reversed(_compact_channels(image_size, width)))
        self.c0 = chans[0]
        self.project = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.c0 * 16), nn.ReLU())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans, chans[1:] + [3], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers[:-1])

    def forward(self, z: Tensor) -> Tensor:
        return self.features(self.project(z).view(z.shape[0], self.c0, 4, 4))


def _paper(cfg: TrunkSettings, enc_out: int, dec_in: int) -> tuple[nn.Module, nn.Module]:
    if cfg.image_size % 4 or cfg.image_size < 4:
        raise ConfigError(f"the paper trunk needs an image size divisible by 4, got {cfg.image_size}.")
    width = cfg.width or PAPER_WIDTH
    enc = PaperEncoder(cfg.image_size, enc_out, width, cfg.hidden)
    dec = PaperDecoder(cfg.image_size, dec_in, width)
    init_paper_weights(enc)
    init_paper_weights(dec)
    return enc, dec


def _compact(cfg: TrunkSettings, enc_out: int, dec_in: int) -> tuple[nn.Module, nn.Module]:
    s = cfg.image_size
    if s < 8 or s & (s - 1):
        raise ConfigError(f"the compact trunk needs a power-of-two image size of at least 8, got {s}.")
    width = cfg.width or COMPACT_WIDTH
    # PyTorch's default (Kaiming-uniform) init: this plain ReLU stack has no residual gain to lean on.
    return CompactEncoder(s, enc_out, width, cfg.hidden), CompactDecoder(s, dec_in, width, cfg.hidden)


TRUNKS: dict[str, Callable[[TrunkSettings, int, int], tuple[nn.Module, nn.Module]]] = {
    "paper": _paper,
    "compact": _compact,
}


def build_trunk(cfg: TrunkSettings, enc_out: int, dec_in: int) -> tuple[nn.Module, nn.Module]:
    """(encoder: images (B,3,s,s) -> (B, enc_out), decoder: (B, dec_in) -> images (B,3,s,s))."""
    try:
        make = TRUNKS[cfg.trunk]
    except KeyError:
        raise ConfigError(f"unknown trunk '{cfg.trunk}'; choose one of: {', '.join(TRUNKS)}.") from None
    return make(cfg, enc_out, dec_in)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

