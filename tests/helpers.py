"""Test helpers shared by the training, evaluation and sweep tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A tiny run: compact trunk, few steps, small batches, one thread (bit-exact across processes).
TINY = ["--steps", "6", "--batch-size", "8", "--set", "train.checkpoint_every=3", "--set", "train.log_every=2",
        "--set", "train.threads=1", "--set", "eval.mse_images=64", "--set", "model.disc_width=32",
        "--device", "cpu"]


def prepare_small_synth(root: Path) -> None:
    """Render the small synth3d grid into `root` (once per test session)."""
    env = {**os.environ, "FQVAE_DATA": str(root), "FQVAE_PLAIN_PROGRESS": "1"}
    subprocess.run([sys.executable, "-m", "fqvae_cli", "data", "prepare", "synth3d", "--grid", "small"],
                   check=True, env=env, capture_output=True)


def fqvae_subprocess(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {}), "FQVAE_PLAIN_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fqvae_cli", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def write_tiny_protocol(path: Path) -> Path:
    """A copy of experiments.yaml with an extra, very small metric protocol `tiny` for fast tests (450
    rows; the intervention scores on batches of 8, 40 training and 20 evaluation points)."""
    import yaml

    from fqvae_cli.experiments import experiments_path

    data = yaml.safe_load(experiments_path().read_text())
    data["protocols"]["tiny"] = {"dci_train": 300, "dci_test": 150, "infomec_n": 300, "mig_n": 300,
                                 "sap_train": 300, "sap_test": 150, "modularity_train": 300, "modularity_test": 150,
                                 "factor_vae_batch": 8, "factor_vae_train": 40, "factor_vae_eval": 20,
                                 "factor_vae_variance": 200, "beta_vae_batch": 8, "beta_vae_train": 40,
                                 "beta_vae_eval": 20}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


# Run the CLI in a child that SIGKILLs itself right after its first complete checkpoint (files and
# registry rows written): a crash at a known point, with no polling race.
_KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
from fqvae_cli.training import recorder
_save = recorder.Recorder.checkpoint
def checkpoint(self, *args, **kwargs):
    _save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
recorder.Recorder.checkpoint = checkpoint
from fqvae_cli.cli.main import main
main(sys.argv[1:])
"""


def fqvae_killed_after_first_checkpoint(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {}), "FQVAE_PLAIN_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-c", _KILL_AFTER_FIRST_CHECKPOINT, *args], env=full_env,
                          capture_output=True, text=True, timeout=600)


def stop_after_checkpoint(monkeypatch, iteration: int) -> None:
    """In this process, a Ctrl-C lands right after the checkpoint at `iteration` is complete: the run
    ends interrupted there, as a user would leave it."""
    from fqvae_cli.training import recorder

    save = recorder.Recorder.checkpoint

    def checkpoint(self, it, model, state):
        save(self, it, model, state)
        if it == iteration:
            raise KeyboardInterrupt

    monkeypatch.setattr(recorder.Recorder, "checkpoint", checkpoint)


def grid_factors(sizes: tuple[int, ...], reps: int, seed: int = 0):
    """Every factor combination `reps` times, shuffled: factors exactly balanced and independent."""
    import numpy as np

    axes = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    grid = np.stack(axes, axis=-1).reshape(-1, len(sizes))
    rows = np.tile(grid, (reps, 1))
    return rows[np.random.default_rng(seed).permutation(len(rows))]
