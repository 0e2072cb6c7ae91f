"""Trackers: TensorBoard, MLflow and Weights & Biases views of the runs the registry records, live while a
run trains (`train.trackers=[mlflow]`) and for runs already recorded (`fqvae runs sync RUN --to mlflow`).

base.py: the interface every tracker answers and the guard that keeps a failing tracker from costing a
run; mirror.py: the live hook (a run's registry writes, mirrored); sync.py: a recorded run replayed;
links.py: the tracker's run id and page, recorded with the run. Each tracker is one module whose library
is an optional extra, imported only when a run uses it."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

from fqvae_cli.errors import ConfigError

# name -> (module, class); the one list the config, the CLI and the messages read.
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("fqvae_cli.trackers.tensorboard", "TensorBoardTracker"),
    "mlflow": ("fqvae_cli.trackers.mlflow", "MlflowTracker"),
    "wandb": ("fqvae_cli.trackers.wandb", "WandbTracker"),
}
NAMES: tuple[str, ...] = tuple(TRACKERS)
# Trackers that keep a run id of their own, so `runs sync` can find and update a run there.
SYNCABLE: tuple[str, ...] = ("mlflow", "wandb")
LIBRARY = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}


def unknown(name: str) -> ConfigError:
    return ConfigError(f"unknown tracker '{name}'; choose one of: {', '.join(NAMES)}.")


def require(names: Sequence[str]) -> None:
    """One sentence, before a run exists, for a tracker that is not installed or a server that does not
    answer."""
    for name in names:
        if name not in TRACKERS:
            raise unknown(name)
        module = import_module(TRACKERS[name][0])
        try:
            module.check()
        except ImportError:
            raise ConfigError(f"the {name} tracker needs {LIBRARY[name]}, which is not installed; install it with: "
                              f"{module.INSTALL}") from None
        except ConnectionError as exc:
            raise ConfigError(f"{exc}; start it, or point MLFLOW_TRACKING_URI elsewhere, or leave {name} out of "
                              "train.trackers.") from None


def build(name: str):
    """A new tracker of this name (its library is imported when it starts)."""
    if name not in TRACKERS:
        raise unknown(name)
    module, cls = TRACKERS[name]
    return getattr(import_module(module), cls)()
