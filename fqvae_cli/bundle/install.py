"""Record a verified bundle in this workspace: after read.py's checks, the ones only this workspace can
answer, then the files, then the rows.

- A run whose id this registry already holds is a no-op when the registry holds everything the bundle
  has for it (its identity, metric rows and files), and refused otherwise: nothing is ever overwritten.
- A short id taken here by another run gets the first free 8-digit window of the run's id, said aloud;
  a name shared with a local run is kept, with a note to use the id.
- A prepared dataset of the run's dataset name must have the fingerprint the run recorded; a dataset not
  prepared here is no obstacle (the note says evaluating and drawing need it).
- The free space under the runs folder must hold the files the manifest declares, before any is written.
- Each run's files are written into a hidden folder beside the runs folder (its owner, host:pid, in a
  file there until it is renamed), hashed again as they are written, its checkpoints parsed as safetensors
  and weights_only state (read, never unpickled), then the folders are renamed into place and the rows
  recorded in one transaction; a failure removes the folders. A hidden folder left by an import that was
  killed (its process gone, or a day old where that cannot be asked) is removed by the next import."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import tarfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fqvae_cli import paths
from fqvae_cli.bundle.export import bundle_rel
from fqvae_cli.bundle.read import Bundle, RunPlan
from fqvae_cli.errors import CheckpointError, DataError, UsageError
from fqvae_cli.registry.liveness import holder_id, pid_alive
from fqvae_cli.registry.records import RunRecord, encode_value
from fqvae_cli.registry.store import run_dir

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


@dataclass(frozen=True)
class Installed:
    imported: list[RunPlan]
    present: list[str]  # short ids of runs this registry already holds with everything the bundle has
    notes: list[str] = field(default_factory=list)


def _identity(run: RunRecord) -> str:
    """What makes two rows the same run (JSON text, so NaN in a config compares equal to itself)."""
    keys = ("id", "model", "dataset", "profile", "seed", "config", "dataset_fingerprint")
    return json.dumps({**{k: getattr(run, k) for k in keys}, "created_at": run.created_at.isoformat()},
                      sort_keys=True)


def _metric_key(m: Any) -> tuple:
    return (m.name, encode_value(m.value), m.step, m.split, m.protocol)


def _require_same(reg: Registry, local: RunRecord, plan: RunPlan) -> None:
    """Refuse a bundle run whose id this registry holds unless the registry holds all of it already."""
    if _identity(local) != _identity(plan.run):
        raise UsageError(f"this registry already holds a different run with id {local.id} ({local.model} on "
                         f"{local.dataset}, seed {local.seed}, created {local.created_at:%Y-%m-%d %H:%M}); "
                         "nothing was imported.")
    folder = run_dir(local)
    here = {(a.kind, bundle_rel(folder, Path(a.path), a.id), a.sha256, a.step) for a in reg.artifacts(local.id)}
    theirs = {(a.kind, Path(a.path).relative_to(folder).as_posix(), a.sha256, a.step) for a in plan.artifacts}
    missing_rows = Counter(map(_metric_key, plan.metrics)) - Counter(map(_metric_key, reg.metrics(local.id)))
    if not theirs <= here or missing_rows:
        raise UsageError(f"this registry already holds run {local.short_id}, but the bundle's copy has metric rows "
                         "or files it lacks (more checkpoints, or evaluations and figures made since); nothing was "
                         f"imported. To replace it, delete it here first: fqvae runs delete {local.short_id} --yes.")


def _free_short_id(reg: Registry, run: RunRecord, taken: set[str]) -> str:
    windows = [run.id[i:i + 8] for i in range(len(run.id) - 7)]
    taken = taken | {r.short_id for r in reg.runs_matching(short_ids=windows)}
    for short in windows:
        if short not in taken:
            return short
    raise UsageError(f"every short id of run {run.id} is taken in this registry; nothing was imported.")


def _against_registry(reg: Registry, plans: list[RunPlan]) -> tuple[list[RunPlan], list[str], list[str]]:
    """(runs to import, short ids already here, notes), refusing collisions (see the module docstring)."""
    keys = [p.run.short_id for p in plans] + [p.run.name for p in plans if p.run.name]
    local = reg.runs_matching(ids=[p.run.id for p in plans], short_ids=keys, names=keys)
    by_id = {r.id: r for r in local}
    taken = {r.short_id for r in local}
    todo, present, notes = [], [], []
    for plan in plans:
        run = plan.run
        if run.id in by_id:
            _require_same(reg, by_id[run.id], plan)
            present.append(by_id[run.id].short_id)
            continue
        folder = run_dir(run)
        if folder.exists() or folder.is_symlink():
            raise UsageError(f"{folder} already exists but this registry has no run {run.short_id}; nothing was "
                             "imported (move that folder away first).")
        if run.short_id in taken:
            short = _free_short_id(reg, run, taken)
            notes.append(f"short id {run.short_id} is taken here by another run; run {run.id} is known here as "
                         f"{short}.")
            run = dataclasses.replace(run, short_id=short)
            plan = dataclasses.replace(plan, run=run)
        taken.add(run.short_id)
        for other in local:
            if run.name and other.name == run.name:
                notes.append(f"the name '{run.name}' also names run {other.short_id} here; refer to the imported "
                             f"run by its id {run.short_id}.")
            elif run.name and other.short_id == run.name:
                notes.append(f"the imported run's name '{run.name}' is run {other.short_id}'s short id here, so "
                             f"that name finds run {other.short_id}; use {run.short_id}.")
            elif other.name == run.short_id:
                notes.append(f"run {other.short_id} here is named '{other.name}', the imported run's short id, "
                             f"which now finds the imported run.")
        todo.append(plan)
    return todo, present, notes


def _check_datasets(bundle: Bundle, plans: list[RunPlan]) -> list[str]:
    """Refuse a run whose dataset is prepared here with another fingerprint; note the ones not prepared."""
    from fqvae_cli.data.identity import dataset_fingerprint, fingerprint_differences, fingerprint_text
    from fqvae_cli.data.store import PreparedDataset, dataset_dir, is_prepared

    notes = []
    for plan in plans:
        run, recorded = plan.run, plan.run.dataset_fingerprint
        if not is_prepared(run.dataset):
            what = fingerprint_text(recorded) if recorded else f"'{run.dataset}'"
            grid = str(((recorded or {}).get("source") or {}).get("grid", ""))
            grid = f" --grid {grid}" if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", grid) else ""
            notes.append(f"dataset {what} is not prepared here; evaluating or drawing run {run.short_id} needs it "
                         f"(fqvae data prepare {run.dataset}{grid}).")
            continue
        ds = PreparedDataset(dataset_dir(run.dataset))
        here = dataset_fingerprint(ds)
        if recorded and here != recorded:
            raise bundle.bad(f"run {run.short_id} was trained on {fingerprint_text(recorded)} but the dataset prepared "
                             f"here at {ds.path} differs: {fingerprint_differences(recorded, here)}")
    return notes


def _check_checkpoints(bundle: Bundle, plan: RunPlan, folder: Path) -> None:
    from fqvae_cli.training.checkpoint import check_readable

    home = run_dir(plan.run)
    for a in plan.artifacts:
        if a.kind in ("checkpoint", "checkpoint_state"):
            path = folder / Path(a.path).relative_to(home)
            try:
                check_readable(**{"weights" if a.kind == "checkpoint" else "state": path})
            except CheckpointError as exc:
                raise bundle.bad(f"for run {plan.run.short_id}, {exc}") from None


class _Placed:
    """Run folders this import put in place, and whether it made the runs folder, to take back."""

    def __init__(self, root: Path):
        self.root, self.made_root, self.folders = root, not root.exists(), []

    def undo(self) -> None:
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        if self.made_root:
            try:
                self.root.rmdir()
            except OSError:
                pass


OWNER = ".import-owner"  # host:pid of the import writing a hidden folder
_STAGED = re.compile(r"\.[0-9a-f]{32}\.import-[0-9a-z-]{1,40}")
_STALE_ELSEWHERE_S = 24 * 3600  # another host's import (or an older fqvae's) is given a day
_STALE_S = 7 * 24 * 3600  # whatever a pid says


def _stale(folder: Path, now: float) -> bool:
    """Whether a hidden import folder was left by an import that is no longer running."""
    age = now - folder.lstat().st_mtime
    try:
        host, _, pid = (folder / OWNER).read_text()[:300].strip().rpartition(":")
    except OSError:
        host, pid = "", ""
    if host == socket.gethostname() and pid.isdigit():
        return age > _STALE_S or not pid_alive(int(pid))
    return age > _STALE_ELSEWHERE_S


def sweep_stale_imports(root: Path) -> list[str]:
    """Remove the hidden folders of imports that were killed before renaming them (a note if any)."""
    if not root.is_dir():
        return []
    now, removed = time.time(), 0
    for folder in root.iterdir():
        try:
            if _STAGED.fullmatch(folder.name) and not folder.is_symlink() and folder.is_dir() and _stale(folder, now):
                shutil.rmtree(folder)
                removed += 1
        except OSError:
            continue  # another import removed it first, or it cannot be: left as it is
    if not removed:
        return []
    return [f"removed {removed} unfinished import folder(s) left by an import that was stopped before it "
            f"finished, under {root}."]


def _check_space(bundle: Bundle, plans: list[RunPlan], root: Path) -> None:
    need = sum(p.bytes for p in plans)
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise bundle.bad(f"its files need {need:,} bytes but only {free:,} are free under {root}")


def _place(bundle: Bundle, plans: list[RunPlan]) -> _Placed:
    """Write each run's files into a hidden folder beside its run folder, check them, rename into place."""
    placed = _Placed(paths.runs_root())
    _check_space(bundle, plans, placed.root)
    staged: list[tuple[Path, Path]] = []
    try:
        placed.root.mkdir(parents=True, exist_ok=True)
        for plan in plans:
            tmp = placed.root / f".{plan.run.id}.import-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            staged.append((tmp, run_dir(plan.run)))
            (tmp / OWNER).write_text(holder_id())
            for name, rel in plan.files:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                bundle.copy(name, tmp / rel)
            _check_checkpoints(bundle, plan, tmp)
        while staged:
            tmp, target = staged[0]
            (tmp / OWNER).unlink()
            os.rename(tmp, target)
            placed.folders.append(staged.pop(0)[1])
        return placed
    except BaseException as exc:
        for tmp, _target in staged:
            shutil.rmtree(tmp, ignore_errors=True)
        placed.undo()
        if isinstance(exc, (OSError, tarfile.TarError)):
            raise DataError(f"could not write the imported files under {placed.root} ({exc}); nothing was "
                            "imported.") from None
        raise


def install_bundle(bundle: Bundle, reg: Registry) -> Installed:
    """Import a verified bundle's runs into `reg` and this workspace's runs folder (module docstring)."""
    notes = sweep_stale_imports(paths.runs_root())
    todo, present, more = _against_registry(reg, bundle.runs)
    notes += more + _check_datasets(bundle, todo)
    if todo:
        placed = _place(bundle, todo)
        try:
            reg.import_runs([(p.run, p.metrics, p.artifacts, p.starts) for p in todo])
        except BaseException:
            placed.undo()
            raise
    return Installed(todo, present, notes)
