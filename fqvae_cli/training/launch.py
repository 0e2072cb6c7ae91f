"""Starting a run's training from a command: a new run (checked, its data opened, then recorded) or a
stopped one resumed (its holder and checkpoint checked, then claimed), and `train_to_end`, which makes
sure the run leaves every way out interrupted or failed and says truthfully what was saved. `fqvae train`
parses, calls these and prints; workers claim their runs through the registry and call train_run."""

from __future__ import annotations

import os
from typing import Any

from fqvae_cli import console
from fqvae_cli.config import RunConfig, build_run_config
from fqvae_cli.data.identity import dataset_fingerprint, require_image_size, require_same_dataset
from fqvae_cli.data.store import open_dataset
from fqvae_cli.errors import Interrupted
from fqvae_cli.models.zoo import check_model_size
from fqvae_cli.registry.lifecycle import FAILED, INTERRUPTED
from fqvae_cli.registry.liveness import holder_id, settle_run
from fqvae_cli.trackers import require as require_trackers
from fqvae_cli.training.checkpoint import RecordedCheckpoint, recorded_checkpoints, usable_checkpoint
from fqvae_cli.training.loop import TrainResult, train_run


def create(reg: Any, cfg: RunConfig, name: str | None) -> Any:
    """Record a new run of `cfg`, held by this process. The model's size and the data come first: a
    model too large or a dataset that is missing (or a Ctrl-C while it renders) leaves no run behind."""
    check_model_size(cfg.model)
    require_trackers(cfg.train.tracker_names())
    ds = open_dataset(cfg.dataset)
    require_image_size(ds, cfg.model.image_size, cfg.dataset)
    return reg.create_run(model=cfg.model.name, dataset=cfg.dataset, profile=cfg.profile, seed=cfg.seed,
                          config=cfg.model_dump(mode="json"), name=name, worker=holder_id(),
                          dataset_fingerprint=dataset_fingerprint(ds))


def claim_to_resume(reg: Any, ref: str, step: int | None = None) -> tuple[Any, RunConfig, RecordedCheckpoint]:
    """(run, its config, the checkpoint it continues from) of a stopped run, now held by this process.
    Everything that could refuse the resume (other data, a finished run, a live holder, no checkpoint
    that verifies) is checked before the claim, so a refused resume leaves the run as it was."""
    run = reg.get_run(ref)
    cfg = build_run_config(run.config)
    require_same_dataset(run, open_dataset(cfg.dataset), "resume")
    require_trackers(cfg.train.tracker_names())
    reg.require_resumable(run)
    start = usable_checkpoint(reg, run, step=step, warn=console.warn)
    return reg.claim_for_resume(run.id, pid=os.getpid()), cfg, start


def train_to_end(reg: Any, cfg: RunConfig, run: Any, device: Any, *,
                 resume_from: RecordedCheckpoint | None = None) -> TrainResult:
    """train_run, with the run settled on every way out (the loop settles it inside; this covers the steps
    around it): a stop says where the run can continue from."""
    try:
        return train_run(cfg, reg, run, device, resume_from=resume_from)
    except KeyboardInterrupt:
        settle_run(reg, run.id, INTERRUPTED)
        found = recorded_checkpoints(reg, run.id)
        saved = (f"its last checkpoint is at iteration {found[0].step}" if found
                 else "it had no checkpoint yet and starts from the beginning")
        raise Interrupted(f"interrupted; run {run.short_id} is marked interrupted and {saved}; continue it "
                          f"with `fqvae train --resume {run.short_id}`.") from None
    except BaseException as exc:
        settle_run(reg, run.id, FAILED, f"{type(exc).__name__}: {exc}")
        raise
