"""Write a bundle: each run's rows, its last (or every) complete checkpoint, matrices, figures and
config.json, every file checked against the size and sha256 its registry row records before it goes in,
and hashed again while it is copied, so a file changed meanwhile fails the export instead of shipping a
bundle that would be refused on import."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fqvae_cli import __version__
from fqvae_cli.bundle.read import CHECKPOINT_KINDS, FORMAT, FORMAT_VERSION, MANIFEST
from fqvae_cli.bundle.validate import kind_problem
from fqvae_cli.errors import CheckpointError, DataError, UsageError
from fqvae_cli.files import atomic_path, sha256_file
from fqvae_cli.registry.lifecycle import ENDED
from fqvae_cli.registry.records import RunRecord
from fqvae_cli.registry.schema import HEAD
from fqvae_cli.registry.store import run_dir

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


@dataclass(frozen=True)
class Exported:
    path: Path
    runs: list[str]  # short ids
    files: int
    bytes: int
    notes: list[str]  # what was left out, and why


def bundle_rel(folder: Path, path: Path, artifact_id: int) -> str:
    """Where an artifact's file goes in the bundle: its place in the run folder, or
    external/<artifact id>-<name> for a file written elsewhere (a figure drawn with --out)."""
    for a, b in ((path, folder), (path.resolve(), folder.resolve())):
        if a.is_relative_to(b) and a != b:
            return a.relative_to(b).as_posix()
    return f"external/{artifact_id}-{re.sub(r'[^A-Za-z0-9._-]', '_', path.name)}"


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _run_entry(reg: Registry, run: RunRecord, all_checkpoints: bool) -> tuple[dict, dict[str, tuple[Path, str]], list]:
    """A run's manifest entry, its files {member name: (source, sha256)}, and notes on what was left out.
    Its metric rows and training starts name their provenance by hash (the records go in the manifest)."""
    if run.status not in ENDED:
        raise UsageError(f"run {run.short_id} is {run.status}; only a stopped run (finished, failed or "
                         "interrupted) can be bundled.")
    folder = run_dir(run)
    arts = reg.artifacts(run.id)
    complete = ({a.step for a in arts if a.kind == "checkpoint"}
                & {a.step for a in arts if a.kind == "checkpoint_state"})
    wanted = set(sorted(complete) if all_checkpoints else sorted(complete)[-1:])
    entries, files, notes = [], {}, []
    for a in arts:
        if a.kind in CHECKPOINT_KINDS and a.step not in wanted:
            continue
        path = Path(a.path)
        rel = bundle_rel(folder, path, a.id)
        problem = kind_problem(a.kind, rel)
        if problem:  # import would refuse the whole bundle for it
            notes.append(f"left out {path}: {problem}.")
            continue
        if not (_plain_file(path) and path.stat().st_size == a.bytes and sha256_file(path) == a.sha256):
            if a.kind in CHECKPOINT_KINDS:
                raise CheckpointError(f"run {run.short_id}'s checkpoint file {path} is missing or does not match "
                                      "the sha256 recorded in the registry; refusing to bundle it.")
            notes.append(f"left out {a.kind} {path}: the file is missing or was replaced since it was recorded.")
            continue
        entries.append({"kind": a.kind, "path": rel, "bytes": a.bytes, "sha256": a.sha256, "step": a.step,
                        "created_at": a.created_at.isoformat()})
        files[f"runs/{run.id}/{rel}"] = (path, a.sha256)
    config = folder / "config.json"
    if _plain_file(config):
        files[f"runs/{run.id}/config.json"] = (config, sha256_file(config))
    metrics = [{"name": m.name, "value": m.value, "step": m.step, "split": m.split, "protocol": m.protocol,
                "provenance": m.provenance} for m in reg.metrics(run.id)]
    starts = [{"step": s.step, "host": s.host, "started_at": s.started_at.isoformat(), "provenance": s.provenance}
              for s in reg.starts([run.id])]
    return {"run": run.to_json(), "metrics": metrics, "starts": starts, "artifacts": entries}, files, notes


class _Hashing:
    """A file object that hashes what is read through it (tarfile copies a member with read(n))."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.sha = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        block = self.fh.read(n)
        self.sha.update(block)
        return block


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, mtime
    return info


def export_bundle(reg: Registry, runs: Sequence[RunRecord], target: Path, *, all_checkpoints: bool = False) -> Exported:
    """Write `runs` as one bundle at `target` (a path already checked as an output), atomically."""
    runs = list({r.id: r for r in runs}.values())
    if not runs:
        raise UsageError("no runs to bundle.")
    entries, files, notes = [], {}, []
    for run in runs:
        entry, run_files, run_notes = _run_entry(reg, run, all_checkpoints)
        entries.append(entry)
        files.update(run_files)
        notes += run_notes
    sizes = {name: src.stat().st_size for name, (src, _sha) in files.items()}
    now = datetime.now(timezone.utc)
    used = [row["provenance"] for e in entries for row in e["metrics"] + e["starts"] if row["provenance"]]
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_revision": HEAD,
                "fqvae_version": __version__, "created_at": now.isoformat(),
                "checkpoints": "all" if all_checkpoints else "last", "runs": entries,
                "provenance": reg.provenance(used),
                "files": {name: {"sha256": sha, "bytes": sizes[name]} for name, (_src, sha) in sorted(files.items())}}
    text = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    mtime = int(now.timestamp())
    with atomic_path(target) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(MANIFEST, len(text), mtime), io.BytesIO(text))
        for name, (src, sha) in sorted(files.items()):
            with open(src, "rb") as fh:
                reader = _Hashing(fh)
                try:
                    tar.addfile(_member(name, sizes[name], mtime), reader)
                except OSError as exc:
                    raise DataError(f"{src} changed while it was being bundled ({exc}); export again.") from None
            if reader.sha.hexdigest() != sha:
                raise DataError(f"{src} changed while it was being bundled; export again.")
    return Exported(target, [r.short_id for r in runs], len(files), sum(sizes.values()), notes)
