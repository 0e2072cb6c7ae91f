"""Bottlenecks, one module each (settings, kind record and nn.Module); BOTTLENECKS maps kind names to
their classes. Every module of this package defines one bottleneck as its `BOTTLENECK`, so adding one
is adding a module: nothing here changes."""

from __future__ import annotations

import importlib
import pkgutil

from fqvae_cli.models.bottlenecks.base import (
    Bottleneck,
    BottleneckConfig,
    BottleneckKind,
    BottleneckOutput,
    Regularizer,
)


def _collect() -> dict[str, type[Bottleneck]]:
    found: dict[str, type[Bottleneck]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        cls = importlib.import_module(f"{__name__}.{info.name}").BOTTLENECK
        found[cls.kind.name] = cls
    return found


BOTTLENECKS: dict[str, type[Bottleneck]] = _collect()

__all__ = ["BOTTLENECKS", "Bottleneck", "BottleneckConfig", "BottleneckKind", "BottleneckOutput", "Regularizer"]
