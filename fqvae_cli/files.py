"""Atomic file writes and hashing. Everything fqvae persists goes through here, so a crash or Ctrl-C
never leaves a half-written file that looks valid."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fqvae_cli.errors import FqvaeError


def make_dirs(folder: Path | str, what: str, error: type[FqvaeError] = FqvaeError, hint: str = "") -> Path:
    """Create `folder` (and its parents) if missing; a folder that cannot be made (a read-only or
    virtual filesystem, a file in the way, no permission) becomes one sentence naming it, `what` it is
    for, and the `hint` (which setting moves it), raised as `error`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"cannot create the folder {folder} for {what} ({reason}){'; ' + hint if hint else ''}.") \
            from None
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _require_replaceable(target: Path) -> None:
    """A rename replaces whatever entry stands at `target`: only ever let it replace a regular file (a
    device node, FIFO, socket, folder or link there is someone else's and stays)."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise FileExistsError(f"refusing to replace {target}: it is not a regular file")


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto `target`.
    On any exception the temporary file is removed and `target` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 (and some writers, safetensors among them, create the file anew): results are
        # meant to be shared like any file the user writes, so the mode the umask allows is set last.
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        _require_replaceable(target)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: Path | str, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(target: Path | str, obj: Any) -> None:
    atomic_write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@contextmanager
def atomic_dir(target: Path | str, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it is renamed onto `target`.
    With replace=True an existing `target` is swapped out only after the new one is complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if target.exists():
            if not replace:
                raise FileExistsError(target)
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fmt_bytes(n: float) -> str:
    """'267.6 MB', '12.7 GB': decimal units, as download pages and disk tools print them."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_free_space(folder: Path | str, needed: int, what: str) -> None:
    """Refuse, before writing anything, when the disk holding `folder` has less than `needed` bytes free."""
    from fqvae_cli.errors import DataError

    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DataError(f"{what} needs {fmt_bytes(needed)} free under {folder} but only {fmt_bytes(free)} is; "
                        f"free some space or choose another --root.")
