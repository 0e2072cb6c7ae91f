"""TensorBoard events of a run (`train.tensorboard: true`), written with tensorboardX, an optional extra.

Into `<run folder>/tensorboard/`: the scalars the registry logs (losses, learning rate, temperature,
codebook health), every snapshot as an image, and at the end the run's settings as hyperparameters with
its final metrics, so `tensorboard --logdir <workspace>/runs` shows every run side by side. A resumed run
writes a new event file that starts at its checkpoint: TensorBoard drops the first file's events from that
iteration on (purge_step), so a curve never doubles back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli.errors import ConfigError

INSTALL = "pip install 'fqvae[tensorboard]'"


def require_tensorboard() -> None:
    """One sentence naming the install command when the writer is missing."""
    try:
        import tensorboardX  # noqa: F401 - only checking that the optional extra is installed
    except ImportError:
        raise ConfigError(f"train.tensorboard=true needs the TensorBoard writer, which is not installed; "
                          f"install it with: {INSTALL}") from None


def flat_settings(config: dict, prefix: str = "") -> dict[str, bool | str | float | int]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}; values TensorBoard cannot show become text."""
    out: dict[str, bool | str | float | int] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_settings(value, name + "."))
        elif isinstance(value, (bool, str, int, float)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class Board:
    def __init__(self, folder: Path, start: int):
        require_tensorboard()
        from tensorboardX import SummaryWriter  # optional extra: only a run that asks for it imports it

        self.writer = SummaryWriter(logdir=str(folder), purge_step=start or None, flush_secs=30)

    def scalars(self, iteration: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, iteration)

    def image(self, tag: str, iteration: int, img: Any) -> None:
        self.writer.add_image(tag, np.asarray(img.convert("RGB")), iteration, dataformats="HWC")

    def hparams(self, config: dict, metrics: dict[str, float], iteration: int) -> None:
        """The run's settings beside its final metrics, in this run's own event file (TensorBoard's
        hyperparameter view then links them to its curves)."""
        from tensorboardX.summary import hparams  # optional extra, as above

        for summary in hparams(flat_settings(config), {f"hparam/{k}": v for k, v in metrics.items()}):
            self.writer.file_writer.add_summary(summary)
        self.scalars(iteration, {f"hparam/{k}": v for k, v in metrics.items()})

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
