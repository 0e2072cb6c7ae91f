"""TensorBoard events of a run (`train.trackers=[tensorboard]`, formerly `train.tensorboard=true`), written
with tensorboardX, an optional extra.

Into `<run folder>/tensorboard/`: the scalars the registry logs (losses, learning rate, temperature,
codebook health), every snapshot as an image, and at the end of a finished run its settings as
hyperparameters with its final metrics, so `tensorboard --logdir <workspace>/runs` shows every run side
by side. A resumed run writes a new event file that starts at its checkpoint: TensorBoard drops the first
file's events from that iteration on (purge_step), so a curve never doubles back. It has no run id of its
own and no sync: the events sit in the run's folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fqvae_cli.registry.lifecycle import FINISHED
from fqvae_cli.trackers.base import Link, Tracker, flat_settings

INSTALL = "pip install 'fqvae[tensorboard]'"
# Training rows shown beside the final metrics in TensorBoard's hyperparameter view.
HPARAM_SCALARS = ("train_images_per_s",)


def check() -> None:
    """Raise ImportError when the writer is missing (trackers.require words it)."""
    import tensorboardX  # noqa: F401 - only checking that the optional extra is installed


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self) -> None:
        self.writer: Any = None
        self.config: dict = {}
        self.final: dict[str, float] = {}
        self.last = 0  # the newest iteration logged

    def start(self, run: Any, config: dict, *, start: int = 0) -> Link | None:
        from tensorboardX import SummaryWriter  # optional extra: only a run that asks for it imports it

        from fqvae_cli.registry.store import run_dir

        self.config = config
        self.writer = SummaryWriter(logdir=str(run_dir(run) / "tensorboard"), purge_step=start or None,
                                    flush_secs=30)
        return None

    def log_scalars(self, iteration: int, values: dict[str, float]) -> None:
        self.last = max(self.last, iteration)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, iteration)
            if tag in HPARAM_SCALARS:
                self.final[tag] = value

    def log_image(self, iteration: int, name: str, png: Path) -> None:
        from PIL import Image

        with Image.open(png) as img:
            self.writer.add_image(name, np.asarray(img.convert("RGB")), iteration, dataformats="HWC")

    def log_metric_rows(self, rows: Sequence[Any]) -> None:
        for row in rows:
            self.final[row.name] = float(row.value)

    def finish(self, status: str) -> None:
        """A finished run's settings beside its final metrics, in this run's own event file (TensorBoard's
        hyperparameter view then links them to its curves); the events closed."""
        if status == FINISHED and self.final:
            from tensorboardX.summary import hparams  # optional extra, as above

            tagged = {f"hparam/{k}": v for k, v in self.final.items()}
            for summary in hparams(flat_settings(self.config), tagged):
                self.writer.file_writer.add_summary(summary)
            for tag, value in tagged.items():
                self.writer.add_scalar(tag, value, self.last)
        self.writer.close()
