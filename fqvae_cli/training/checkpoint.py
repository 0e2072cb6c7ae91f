"""Checkpoints that load without executing pickles.

A checkpoint at step t is two files in <run dir>/checkpoints/:
  step_000000t.safetensors   model weights (safetensors; config and step in its metadata)
  step_000000t.state.pt      optimizer states, RNG states, step, config; plain tensors and containers,
                             loaded with torch.load(weights_only=True)
Both are written atomically (temporary file, fsync, rename) and recorded in the registry with their
size and sha256; loading verifies the hashes first, so a changed byte is refused.

A run keeps its newest few checkpoints. Resuming takes the newest one whose two files are present and
match their recorded hashes (`usable_checkpoint`), saying which newer ones it skipped and why; the
skipped ones are then set aside (files renamed *.set-aside, rows removed) so the run's history stays
one straight line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fqvae_cli.errors import CheckpointError, NotFoundError, StorageError
from fqvae_cli.files import atomic_path, sha256_file

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


@dataclass(frozen=True)
class CheckpointFiles:
    step: int
    weights: Path
    state: Path


def checkpoint_paths(ckpt_dir: Path, step: int) -> CheckpointFiles:
    stem = f"step_{step:08d}"
    return CheckpointFiles(step, ckpt_dir / f"{stem}{WEIGHTS_SUFFIX}", ckpt_dir / f"{stem}{STATE_SUFFIX}")


def save_checkpoint(ckpt_dir: Path, step: int, model: Any, state: dict, config: dict) -> CheckpointFiles:
    """Write weights and state for `step`; returns the paths. Nothing is visible until both are complete.
    A write that fails (disk full, file size limit) removes what it wrote and raises StorageError; the
    earlier checkpoints are untouched."""
    files = checkpoint_paths(ckpt_dir, step)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"step": str(step), "config": json.dumps(config, sort_keys=True), "format": "fqvae-checkpoint-1"}
    existed = files.state.exists()
    try:
        # State first: a weights file is only ever present beside its complete state file.
        with atomic_path(files.state) as tmp:
            torch.save({**state, "step": step, "config": config}, tmp)
        with atomic_path(files.weights) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except (OSError, RuntimeError) as exc:  # torch.save reports a short write as a RuntimeError
        if not existed:
            files.state.unlink(missing_ok=True)
        raise StorageError(f"could not write the checkpoint at iteration {step} in {ckpt_dir} "
                           f"({write_failure(exc)}).") from None
    return files


def write_failure(exc: BaseException) -> str:
    """Why a checkpoint write failed, in words: the system's reason (no space left, permission denied),
    or, for torch's own report of a short write (`enforce fail at inline_container.cc`, the internals of
    its zip writer), that the file was cut short."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "the file could not be written in full; is the disk full?"


@dataclass(frozen=True)
class RecordedCheckpoint:
    """A checkpoint as the registry records it: its step and the artifact rows of its two files."""
    step: int
    weights: Any
    state: Any


def recorded_checkpoints(reg: Registry, run_id: str) -> list[RecordedCheckpoint]:
    """Every checkpoint of a run with both files recorded, newest first."""
    weights = {a.step: a for a in reg.artifacts(run_id, kind="checkpoint")}
    states = {a.step: a for a in reg.artifacts(run_id, kind="checkpoint_state")}
    return [RecordedCheckpoint(s, weights[s], states[s]) for s in sorted(set(weights) & set(states), reverse=True)]


def usable_checkpoint(reg: Registry, run: Any, step: int | None = None, warn: Any = None) -> RecordedCheckpoint:
    """The newest checkpoint of `run` (or the one at `step`) whose files are present and match their
    recorded sha256. Newer ones that do not are skipped, each reported through `warn(sentence)`."""
    found = recorded_checkpoints(reg, run.id)
    if not found:
        raise CheckpointError(f"run {run.short_id} has no checkpoint to resume from.")
    if step is not None:
        chosen = [c for c in found if c.step == step]
        if not chosen:
            raise NotFoundError(f"run {run.short_id} has no checkpoint at iteration {step}; it has: "
                                f"{', '.join(str(c.step) for c in reversed(found))}.")
        found = chosen
    skipped = []
    for ckpt in found:
        try:
            verify(Path(ckpt.state.path), ckpt.state.sha256)
            verify(Path(ckpt.weights.path), ckpt.weights.sha256)
        except CheckpointError as exc:
            skipped.append(f"iteration {ckpt.step}: {exc}")
            if warn is not None and step is None:
                warn(f"skipping the checkpoint at iteration {ckpt.step}: {exc}")
            continue
        return ckpt
    raise CheckpointError(f"run {run.short_id} has no checkpoint that verifies ({'; '.join(skipped)}).")


def set_aside_after(reg: Registry, run_id: str, step: int) -> list[int]:
    """Take the checkpoints newer than `step` out of the run (a resume from `step` rewrites them): their
    files are renamed *.set-aside, never deleted, and their rows removed. Returns their steps."""
    gone = set()
    for kind in ("checkpoint", "checkpoint_state"):
        for art in reg.artifacts(run_id, kind=kind):
            if art.step is not None and art.step > step:
                path = Path(art.path)
                if path.exists():
                    path.replace(path.with_name(path.name + ".set-aside"))
                reg.remove_artifact(art.id)
                gone.add(art.step)
    return sorted(gone)


def verify(path: Path, sha256: str | None) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} is missing.")
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointError(
            f"checkpoint file {path.name} does not match the sha256 recorded in the registry; "
            "it was changed or corrupted, refusing to load it.")


def load_weights(path: Path, model: Any, sha256: str | None = None, device: Any = "cpu") -> dict:
    """Load weights into `model` (strict). Returns the safetensors metadata."""
    verify(path, sha256)
    try:
        tensors = load_file(str(path), device=str(device))
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupted checkpoint
        raise CheckpointError(f"checkpoint {path.name} cannot be read: {exc}") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path.name} does not fit this model (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]}).")
    return meta


def load_state(path: Path, sha256: str | None = None) -> dict:
    verify(path, sha256)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"checkpoint state {path.name} cannot be read: {exc}") from None


def check_readable(weights: Path | None = None, state: Path | None = None) -> None:
    """Parse checkpoint files from elsewhere without building a model: the safetensors header of the
    weights, and the state file the way load_state reads it (weights_only), so a pickle that would run
    code is refused, never run."""
    if weights is not None:
        try:
            with safe_open(str(weights), framework="pt") as fh:
                fh.metadata()
        except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupted checkpoint
            raise CheckpointError(f"checkpoint {weights.name} is not a readable safetensors file ({exc})") from None
    if state is not None:
        try:
            torch.load(state, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any refusal or parse failure means it is not loaded
            # torch's refusal is paragraphs long; the line naming the blocked global is the one that says why.
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
            why = next((ln for ln in lines if "unsupported" in ln.lower()), lines[0]).rstrip(".")
            raise CheckpointError(f"checkpoint state {state.name} holds more than tensors and plain containers, "
                                  f"or is damaged ({why[:200]})") from None
