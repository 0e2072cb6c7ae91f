"""What a converter hands the store (fqvae_cli.data.store): a SourcePlan, checked before anything is
written. Converters import this, never the store, so the store can import every converter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli.console import Progress
from fqvae_cli.data.factors import FactorSpace


@dataclass
class SourcePlan:
    """What a converter found in a source, checked before anything is written.

    `fill(images, progress)` streams every image, in dataset order, into the (N, S, S, 3) uint8
    array it is given and advances the progress handle by images written."""

    space: FactorSpace
    image_size: int
    fill: Callable[[np.ndarray, Progress], None]
    source: dict[str, Any]
    source_path: Path | None = None  # hashed into source.sha256 while preparing
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)



