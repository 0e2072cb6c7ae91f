"""Where a command may write a file the user named with --out: never over the registry, a prepared
dataset or a checkpoint (an atomic replace would silently swap them for a CSV), and never onto a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fqvae_cli import paths
from fqvae_cli.errors import UsageError
from fqvae_cli.registry import migrate

# Files that hold state no export or figure should ever replace.
_PROTECTED_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".safetensors", ".sqlite", ".sqlite3")


def _registry_files(reg: Any) -> list[Path]:
    url = getattr(reg, "url", None) or paths.registry_url()
    try:
        file = migrate.sqlite_path(url)
    except Exception:  # noqa: BLE001 - not a URL this check can read; the registry itself will say so
        return []
    if file is None:
        return []
    return [file] + [file.with_name(file.name + s) for s in ("-wal", "-shm", "-journal")]


def check_output(out: Path | str, reg: Any = None, *, what: str = "--out") -> Path:
    """The resolved output path, or a UsageError naming why it cannot be written."""
    path = Path(out).expanduser().resolve()
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder; give a file name inside it.")
    if path in _registry_files(reg):
        raise UsageError(f"{what} {path} is the results registry; choose another file.")
    data = paths.data_root().resolve()
    if path.is_relative_to(data):
        raise UsageError(f"{what} {path} is inside the datasets folder {data}; choose another file.")
    runs = paths.runs_root().resolve()
    if path.is_relative_to(runs) and "checkpoints" in path.relative_to(runs).parts:
        raise UsageError(f"{what} {path} is among a run's checkpoints; choose another file.")
    if path.exists() and path.name.lower().endswith(_PROTECTED_SUFFIXES):
        raise UsageError(f"{what} {path} is a database or checkpoint file; choose another file.")
    return path
