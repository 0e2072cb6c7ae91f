"""Weights & Biases, an optional extra (`pip install 'fqvae[wandb]'`): the run's settings as its config,
every training row in its history at the run's iteration (W&B's step), snapshots and figures as images,
evaluation rows in its summary named by protocol (and estimator), the fqvae run's
model, dataset and profile as tags, and the run's status at the end.

Where: W&B's own environment (`WANDB_PROJECT`, unset: `fqvae`; `WANDB_ENTITY`; `WANDB_MODE=offline`
works with no account, and `wandb sync` uploads later; `WANDB_DIR`, unset: the fqvae run's folder). The
W&B run id is the fqvae run id, so a resumed run and `runs sync` reopen the same W&B run (resume
"allow"); W&B keeps a step once, so a point below the step the W&B run had reached is not sent again."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fqvae_cli.registry.lifecycle import FINISHED
from fqvae_cli.trackers.base import Link, Tracker, row_key

INSTALL = "pip install 'fqvae[wandb]'"
DEFAULT_PROJECT = "fqvae"


def check() -> None:
    """Raise ImportError without the extra."""
    import wandb  # noqa: F401 - only checking that the optional extra is installed


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self) -> None:
        self.run: Any = None
        self.floor = 0  # W&B refuses steps below the one a reopened run had reached

    def start(self, run: Any, config: dict, *, start: int = 0) -> Link | None:
        import wandb

        from fqvae_cli.registry.store import run_dir

        folder = os.environ.get("WANDB_DIR") or str(run_dir(run))
        Path(folder).mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(console="off", x_disable_stats=True, save_code=False, disable_git=True,
                                  silent=True, x_save_requirements=False)
        self.run = wandb.init(id=run.id, resume="allow", project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                              entity=os.environ.get("WANDB_ENTITY") or None, name=run.name or run.short_id,
                              config=config, tags=[run.model, run.dataset, run.profile], dir=folder,
                              settings=settings, reinit="create_new")
        self.floor = int(self.run.starting_step or 0)
        return Link(self.name, self.run.id, url=self.run.url or None,
                    where=None if self.run.url else str(Path(self.run.dir).parent))

    def log_scalars(self, iteration: int, values: dict[str, float]) -> None:
        if iteration >= self.floor:
            self.run.log(dict(values), step=iteration)

    def log_image(self, iteration: int, name: str, png: Path) -> None:
        if iteration >= self.floor:
            import wandb

            self.run.log({name: wandb.Image(str(png))}, step=iteration)

    def log_metric_rows(self, rows: Sequence[Any]) -> None:
        for r in rows:
            self.run.summary[row_key(r)] = float(r.value)

    def finish(self, status: str) -> None:
        self.run.summary["fqvae_status"] = status
        self.run.finish(exit_code=0 if status == FINISHED else 1)
