"""The one check for every path a user names as an output (`--out`, `--save-matrices`, `--bundle`, ...).

An atomic write renames a new file onto the path, so whatever stood there is replaced: the registry, a
prepared dataset, a run's checkpoint or config, or, as root, a device node such as /dev/null. So a
user-named output must be a new path or an existing regular file outside fqvae's own state:
- `-` or `/dev/stdout` means standard output (`check_output` returns None);
- a symbolic link is refused (renaming over it would silently replace the link, writing through it would
  change its target);
- a folder, a device, a FIFO or a socket is refused: fqvae writes only regular files;
- the registry (and its -wal/-shm/-journal files), anything inside the datasets folder, anything inside
  the runs folder (checkpoints, config copies, matrices, figures that runs record) are refused.

`writing(target)` then yields a temporary file that is published atomically, or streamed to standard
output when the target is None. A command that writes a whole folder (`fqvae report`) checks it with
`check_output_folder`: a new folder, or one fqvae wrote, never inside or around fqvae's own state."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fqvae_cli import paths
from fqvae_cli.errors import StorageError, UsageError
from fqvae_cli.files import atomic_path

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

STDOUT_NAMES = ("-", "/dev/stdout")

# Files that hold state no export or figure should ever replace, wherever they are.
_PROTECTED_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".safetensors", ".sqlite", ".sqlite3")

_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO (named pipe)"),
          (stat.S_ISSOCK, "socket"))


def _registry_files(reg: Registry) -> list[Path]:
    url = getattr(reg, "url", None) or paths.registry_url()
    try:
        file = paths.sqlite_path(url)
    except Exception:  # noqa: BLE001 - not a URL this check can read; the registry itself will say so
        return []
    if file is None:
        return []
    file = Path(os.path.realpath(file))
    return [file] + [file.with_name(file.name + s) for s in ("-wal", "-shm", "-journal")]


def _real(path: Path) -> Path:
    """The path with its folders' links resolved but not its last part (which may not exist yet)."""
    return Path(os.path.realpath(path.parent)) / path.name


def check_output(out: Path | str, reg: Registry = None, *, what: str = "--out",
                 data_root: Path | str | None = None, stdout_ok: bool = True) -> Path | None:
    """The absolute output path (None for standard output), or a UsageError saying why it cannot be
    written. `data_root` adds a datasets folder given by a command's --root to the protected places."""
    text = str(out)
    if text in STDOUT_NAMES:
        if not stdout_ok:
            raise UsageError(f"{what} must name a file here, not standard output.")
        return None
    if not text.strip():
        raise UsageError(f"{what} is empty; give a file name.")
    path = Path(os.path.abspath(Path(text).expanduser()))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be checked ({exc.strerror or exc}).") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise UsageError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); name the file itself.")
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{what} {path} is a folder; give a file name inside it.")
        for test, kind in _KINDS:
            if test(st.st_mode):
                raise UsageError(f"{what} {path} is a {kind}, not a regular file; fqvae writes only regular files "
                                 "(use --out - for standard output).")
    real = _real(path)
    if real in _registry_files(reg):
        raise UsageError(f"{what} {path} is the results registry; choose another file.")
    roots = [paths.data_root()] + ([Path(data_root).expanduser()] if data_root else [])
    for root in roots:
        root = Path(os.path.realpath(root))
        if real.is_relative_to(root):
            raise UsageError(f"{what} {path} is inside the datasets folder {root}; choose another file.")
    runs = Path(os.path.realpath(paths.runs_root()))
    if real.is_relative_to(runs):
        raise UsageError(f"{what} {path} is inside the runs folder {runs}, whose files the registry records; "
                         "choose a file elsewhere.")
    if st is not None and path.name.lower().endswith(_PROTECTED_SUFFIXES):
        raise UsageError(f"{what} {path} is a database or checkpoint file; choose another file.")
    return path


def check_output_folder(out: Path | str, reg: Registry = None, *, what: str = "--out", marker: str) -> Path:
    """The absolute path of a folder fqvae writes whole (and replaces whole when it writes it again), or a
    UsageError saying why not: it must be new, or a folder fqvae wrote before (it holds the file `marker`),
    and it may neither lie inside nor hold the registry, the datasets folder or the runs folder."""
    text = str(out)
    if text in STDOUT_NAMES or not text.strip():
        raise UsageError(f"{what} must name a folder.")
    path = Path(os.path.abspath(Path(text).expanduser()))
    if path.is_symlink():
        raise UsageError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); name the folder itself.")
    real = Path(os.path.realpath(path))
    if real in _registry_files(reg):
        raise UsageError(f"{what} {path} is the results registry; choose a new folder.")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; choose a new folder.")
    places = [(Path(os.path.realpath(paths.data_root())), "the datasets folder", ""),
              (Path(os.path.realpath(paths.runs_root())), "the runs folder", ", whose files the registry records")]
    for root, name, why in places:
        if real.is_relative_to(root):
            raise UsageError(f"{what} {path} is inside {name} {root}{why}; choose a folder elsewhere.")
    for held, name, _why in places + [(f, "the results registry", "") for f in _registry_files(reg)[:1]]:
        if held.is_relative_to(real):
            raise UsageError(f"{what} {path} holds {name} ({held}); choose a new folder.")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).is_file():
        raise UsageError(f"{what} {path} is a folder with other files in it; choose a new folder (fqvae replaces "
                         "only a folder it wrote itself).")
    return path


@contextmanager
def writing(target: Path | None) -> Iterator[Path]:
    """A temporary file to write the output into: renamed onto `target` when the block ends without an
    error, or copied to standard output when `target` is None. A failed write (disk full, a folder that
    cannot be created) is one sentence, and `target` is untouched."""
    try:
        if target is None:
            with tempfile.TemporaryDirectory(prefix="fqvae-out-") as tmpdir:
                tmp = Path(tmpdir) / "out"
                yield tmp
                with open(tmp, "rb") as fh:
                    sys.stdout.flush()
                    shutil.copyfileobj(fh, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
        else:
            with atomic_path(target) as tmp:
                yield tmp
    except OSError as exc:
        where = "standard output" if target is None else str(target)
        raise StorageError(f"cannot write {where}: {exc.strerror or exc}.") from None


def write_bytes(target: Path | None, data: bytes) -> None:
    with writing(target) as tmp:
        tmp.write_bytes(data)


def shown(target: Path | None) -> str:
    """How to name an output in a message."""
    return "standard output" if target is None else str(target)
