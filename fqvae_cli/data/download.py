"""`fqvae data download NAME`: fetch a dataset's official file, check it, then prepare it.

Under the data root, per dataset:
  downloads/<name>/<file>.part      the bytes received so far; a rerun resumes with an HTTP Range request
  downloads/<name>/<file>           the verified file (kept with --keep-source or --no-prepare)
  downloads/<name>/<file>.rejected  a file of the wrong size or hash: set aside, never prepared
  downloads/<name>/state.json       where the bytes came from (URL, ETag) and, once verified, their hashes:
                                    a partial file from another URL or another version is never resumed
  downloads/<name>/.lock            held (flock) while a download runs; names its holder
Downloads do not live inside `<root>/<name>/`: that folder is the prepared dataset, which the store writes
and replaces whole (fqvae_cli.data.store), and would take a partial download or a kept source with it.

The bytes come through fqvae_cli.data.fetch (HTTP with Range and retries; Google Drive via gdown). A
hash from the catalog or --sha256 is checked before anything is prepared; where none is published, the
sha256 of the file is printed and recorded in the dataset's meta.json."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fqvae_cli import paths
from fqvae_cli.console import info, progress, warn
from fqvae_cli.data import store
from fqvae_cli.data.catalog import drive_id, get_dataset_spec
from fqvae_cli.data.fetch import CHUNK, SourceFailed, Target, drive_download, fetch_http
from fqvae_cli.errors import DataError, DownloadError, Interrupted, UsageError
from fqvae_cli.files import atomic_write_json, check_free_space, fmt_bytes, make_dirs

STATE_FILE = "state.json"
# A file of unknown exact size may be this much larger than the catalog's approximate size (the
# approximations are of uncompressed arrays; a compressed copy is smaller).
CAP_MARGIN = 1.25
LOCK_FILE = ".lock"


@dataclass
class Result:
    name: str
    already_prepared: bool = False
    dataset: Any = None  # the PreparedDataset, when prepared
    file: Path | None = None  # the verified file, while it is kept
    url: str = ""
    hashes: dict[str, str] | None = None
    check: str = ""  # what the file was checked against, for the summary
    reused: bool = False  # a verified file from an earlier run was used, nothing fetched


def target_for(name: str, url: str | Sequence[str] | None = None, sha256: str | None = None,
               max_bytes: int | None = None) -> Target:
    """The catalog's sources of `name` (its official URL, then its mirrors), or --url replacements, one or
    several, tried in order (which also drop the catalog's size and hash: they describe the catalog's
    file, not another one; --sha256 pins one for every URL). Nothing past `max_bytes` is read:
    --max-bytes, else the file's exact size, else CAP_MARGIN times the catalog's approximate size."""
    spec = get_dataset_spec(name)
    if spec.built_in:
        raise UsageError(f"'{name}' is built in and has nothing to download; `fqvae data prepare {name}` "
                         f"renders it.")
    src = spec.download
    if src is None:
        raise UsageError(f"'{name}' has no download source; prepare it with `fqvae data prepare {name} "
                         f"--source PATH`.")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise UsageError(f"--sha256 takes 64 hexadecimal digits, not '{sha256}'.")
    urls = [url] if isinstance(url, str) else list(url or [])
    for u in urls:
        if not u.lower().startswith(("http://", "https://")):
            raise UsageError(f"--url must start with http:// or https://, not '{u}'.")
    url = urls[0] if urls else None
    if max_bytes is not None and max_bytes < 1:
        raise UsageError(f"--max-bytes must be a positive number of bytes, not {max_bytes}.")
    if url is None and sha256 is None:
        target = Target(name, src.url, src.file, src.size, src.approx_bytes, src.algorithm if src.hash else None,
                        src.hash, src.hash_enforced, "the catalog", src.note)
    else:
        target = Target(name, url or src.url, src.file, None, None if url else src.approx_bytes,
                        "sha256" if sha256 else None, sha256, True, "--sha256")
    if max_bytes is not None:
        cap, why = max_bytes, "--max-bytes"
    elif target.size is not None:
        cap, why = target.size, "the file's size, from the catalog"
    else:
        cap = int(CAP_MARGIN * src.approx_bytes)
        why = f"{CAP_MARGIN:g} x the catalog's approximate size, {fmt_bytes(src.approx_bytes)}"
    return dataclasses.replace(target, max_bytes=cap, cap_reason=why, sources=tuple(urls) or src.urls)


def download(name: str, *, root: Path | str | None = None, url: str | Sequence[str] | None = None,
             sha256: str | None = None, prepare: bool = True, keep_source: bool = False, force: bool = False,
             max_bytes: int | None = None) -> Result:
    """Download `name`'s file, verify it, and (unless prepare=False) prepare it, deleting the file after
    unless keep_source. An already prepared dataset is left alone (nothing fetched) unless force."""
    target = target_for(name, url, sha256, max_bytes)
    if store.is_prepared(name, root) and not force:
        return Result(name, already_prepared=True, dataset=store.PreparedDataset(store.dataset_dir(name, root)))
    folder = make_dirs(paths.data_root(root) / "downloads" / name, f"the download of {name}", DownloadError,
                       "point --root or FQVAE_DATA at a writable folder")
    with _holding_lock(folder, name):
        result = _fetch_chain(target, folder, extra_space=_prepared_estimate(target) if prepare else 0)
        companions = [_fetch_chain(t, folder, 0) for t in companion_targets(name)]
        if not prepare:
            return result
        assert result.file is not None and result.hashes is not None
        record: dict[str, Any] = {"url": result.url, **result.hashes}
        if companions:
            record["companions"] = [{"name": c.file.name, "url": c.url, **(c.hashes or {})} for c in companions]
        if target.expected:
            record["expected"] = {"algorithm": target.algorithm, "hash": target.expected, "from": target.origin,
                                  "matched": result.hashes.get(target.algorithm or "") == target.expected}
        result.dataset, _ = store.prepare(name, result.file, root=root, force=force, source_record=record)
        if not keep_source:
            result.file.unlink()
            (folder / STATE_FILE).unlink(missing_ok=True)
            for c, t in zip(companions, companion_targets(name), strict=True):
                c.file.unlink(missing_ok=True)
                (folder / t.state_file).unlink(missing_ok=True)
            result.file = None
        return result


def companion_targets(name: str) -> list[Target]:
    """The files downloaded beside a dataset's main file (SmallNORB's other five, The Scream), each from
    its catalog sources with its own digest and its own state file."""
    out = []
    for src in get_dataset_spec(name).companions:
        target = Target(name, src.url, src.file, src.size, src.approx_bytes, src.algorithm if src.hash else None,
                        src.hash, src.hash_enforced, "the catalog", src.note, sources=src.urls,
                        state_file=f".{src.file}.state.json")
        cap = src.size or int(CAP_MARGIN * src.approx_bytes)
        out.append(dataclasses.replace(target, max_bytes=cap, cap_reason="the file's size, from the catalog"
                                       if src.size else f"{CAP_MARGIN:g} x the catalog's approximate size"))
    return out


def download_rows(root: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per downloadable dataset, for `fqvae data download --list`: its size, digest status
    (pinned: a different file is refused; recorded: none is pinned but the copy prepared here has its
    sha256 in meta.json; none), its sources in the order tried, and whether it is prepared here."""
    from fqvae_cli.data.catalog import DATASETS

    rows = []
    for name, spec in DATASETS.items():
        src = spec.download
        if src is None:
            continue
        prepared = store.is_prepared(name, root)
        recorded = None
        if prepared:
            try:
                recorded = (store.PreparedDataset(store.dataset_dir(name, root)).meta.get("source") or {}).get("sha256")
            except (DataError, OSError):
                recorded = None
        pinned = all(f.pinned for f in spec.download_files)
        digest = "pinned" if pinned else "recorded" if recorded else "none"
        algorithm = src.algorithm if pinned else "sha256" if recorded else None
        rows.append({"name": name, "size": spec.download_size_text(), "files": len(spec.download_files),
                     "bytes": sum(f.size or f.approx_bytes for f in spec.download_files),
                     "exact": all(f.size is not None for f in spec.download_files), "digest": digest,
                     "algorithm": algorithm, "hash": src.hash if pinned else recorded,
                     "sources": list(src.urls), "companions": {c.file: list(c.urls) for c in spec.companions},
                     "prepared": prepared, "note": src.note})
    return rows


def _prepared_estimate(target: Target) -> int:
    # The catalog's file is the official grid; another file's grid is known only once it is read (the
    # store checks the space again then).
    return get_dataset_spec(target.name).prepared_bytes if target.origin == "the catalog" else 0


def _fetch_chain(target: Target, folder: Path, extra_space: int) -> Result:
    """Try each source in turn until one delivers the file with the expected size and digest. A failed
    source (unreachable, HTTP error, stalled, over the cap, the wrong digest) is one warning line and the
    next is tried; a local failure (disk full, Ctrl-C) stops the chain. The source a partial file came
    from is tried first, so a rerun resumes it."""
    sources = list(target.sources or (target.url,))
    state = _read_state(folder, target.state_file)
    if state.get("url") in sources:
        sources.insert(0, sources.pop(sources.index(state["url"])))
    if len(sources) == 1:
        return _fetch_verified(dataclasses.replace(target, url=sources[0]), folder, extra_space)
    failed = []
    for i, url in enumerate(sources, 1):
        try:
            return _fetch_verified(dataclasses.replace(target, url=url), folder, extra_space)
        except (SourceFailed, _Rejected) as exc:
            failed.append(url)
            then = "trying the next" if i < len(sources) else "no source is left"
            warn(f"source {i}/{len(sources)} failed: {getattr(exc, 'short', str(exc).rstrip('.'))}; {then}.")
    raise DownloadError(f"none of the {len(sources)} sources of {target.name} delivered {target.file} (each is "
                        f"named above); rerun to try them again (a partial file is resumed), pass --url with "
                        f"another mirror, or fetch it another way and run `fqvae data prepare {target.name} "
                        f"--source FILE`.")


class _Rejected(DataError):
    """A file of the wrong size or digest: set aside, never prepared; a mirror chain tries the next."""


def _fetch_verified(target: Target, folder: Path, extra_space: int) -> Result:
    final = folder / target.file
    part = folder / f"{target.file}.part"
    state = _read_state(folder, target.state_file)
    if final.is_file() and _same_file(state, target, final):
        info(f"using {final}, verified on an earlier download")
        return Result(target.name, file=final, url=state["url"], hashes=state["hashes"], reused=True,
                      check=_check_text(target, state["hashes"]))
    if final.exists():
        final.unlink()
    if state.get("url") != target.url and (part.exists() or state):
        if part.exists() and target.expected and target.enforced:
            # A pinned digest makes every source's file the same: continue it (validators are per host, so
            # no If-Range; the digest catches a splice).
            info(f"continuing the partial download from {state.get('url', 'another source')} (same pinned digest)")
            state = {"validator": None}
        else:
            if part.exists():
                info(f"discarding a partial download from {state.get('url', 'another source')}")
            part.unlink(missing_ok=True)
            state = {}
    state.update(url=target.url, file=target.file, status="partial")
    atomic_write_json(folder / target.state_file, state)
    have = part.stat().st_size if part.exists() else 0
    known = target.size or target.approx_bytes
    if known:
        check_free_space(folder, max(0, known - have) + extra_space, f"downloading {target.name}")
    try:
        file_id = drive_id(target.url)
        if file_id is not None:
            with progress(f"downloading {target.file}", None, unit="B") as bar:
                drive_download(file_id, part, bar, target)
        else:
            fetch_http(target, part, state, _OnHeaders(target, folder, state, None if known else extra_space))
    except KeyboardInterrupt:
        # gdown keeps its own partial file beside ours (`<file>.part<random>.part`)
        have = max((p.stat().st_size for p in folder.glob(f"{part.name}*")), default=0)
        raise Interrupted(f"the download of {target.name} stopped at {fmt_bytes(have)}; the partial file is kept "
                          f"in {folder}: rerun the same command to resume.") from None
    hashes = _verify(target, part, folder)
    part.replace(final)
    atomic_write_json(folder / target.state_file, {**state, "status": "verified", "size": final.stat().st_size,
                                            "hashes": hashes})
    return Result(target.name, file=final, url=target.url, hashes=hashes, check=_check_text(target, hashes))


class _OnHeaders:
    """Run after each response's headers: persist a new validator (ETag or Last-Modified: a rerun resumes
    only the same version) and,
    once, check the free space when the file's size was not known before the first response."""

    def __init__(self, target: Target, folder: Path, state: dict[str, Any], extra_space: int | None):
        self.target, self.folder, self.state = target, folder, state
        self.saved = state.get("validator")
        self.extra_space = extra_space

    def __call__(self, total: int | None, start: int) -> None:
        if self.state.get("validator") != self.saved:
            atomic_write_json(self.folder / self.target.state_file, self.state)
            self.saved = self.state.get("validator")
        if self.extra_space is not None and total is not None:
            check_free_space(self.folder, total - start + self.extra_space, f"downloading {self.target.name}")
            self.extra_space = None


def _same_file(state: dict[str, Any], target: Target, final: Path) -> bool:
    """Is the verified file of an earlier run the one asked for now? The same URL with no pinned hash, or
    a pinned hash it matches; and its size unchanged since it was verified."""
    hashes = state.get("hashes") or {}
    if state.get("status") != "verified" or state.get("size") != final.stat().st_size:
        return False
    if target.expected and target.enforced:
        return hashes.get(target.algorithm) == target.expected
    return state.get("url") == target.url


def _check_text(target: Target, hashes: dict[str, str]) -> str:
    if not target.expected:
        return "no published hash to check; recorded in meta.json when prepared, --sha256 pins it next time"
    got = hashes.get(target.algorithm or "")
    if got == target.expected:
        return f"{target.algorithm} matches {target.origin}"
    return f"{target.algorithm} differs from {target.origin}'s {target.expected} ({target.note}); accepted"


# ---- checks, state, lock ------------------------------------------------------------------------

def _verify(target: Target, part: Path, folder: Path) -> dict[str, str]:
    """Size and hash against what is expected; a mismatch sets the file aside as .rejected and raises."""
    size = part.stat().st_size
    rejected = folder / f"{target.file}.rejected"
    if target.size is not None and size != target.size:
        part.replace(rejected)
        raise _Rejected(f"{target.file} from {target.url} is {size:,} bytes, expected {target.size:,} "
                        f"({target.origin}); it was set aside as {rejected} and nothing was prepared.")
    algorithms = ["sha256"] + ([target.algorithm] if target.algorithm and target.algorithm != "sha256" else [])
    hashes = _hash_file(part, algorithms, f"verifying {target.file}")
    got = hashes.get(target.algorithm or "")
    if target.expected and got != target.expected:
        if target.enforced:
            part.replace(rejected)
            raise _Rejected(f"{target.file} from {target.url} has {target.algorithm} {got}, expected "
                            f"{target.expected} ({target.origin}); it was set aside as {rejected} and nothing "
                            f"was prepared.")
        warn(f"{target.file} has {target.algorithm} {got}, not {target.expected}: {target.note}.")
    info(f"sha256 {hashes['sha256']}")
    return hashes


def _hash_file(path: Path, algorithms: list[str], what: str) -> dict[str, str]:
    digests = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh, progress(what, path.stat().st_size, unit="B") as bar:
        while block := fh.read(CHUNK * 8):
            for d in digests.values():
                d.update(block)
            bar.advance(len(block))
    return {a: d.hexdigest() for a, d in digests.items()}


def _read_state(folder: Path, name: str = STATE_FILE) -> dict[str, Any]:
    try:
        state = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


@contextmanager
def _holding_lock(folder: Path, name: str) -> Iterator[None]:
    """One download per dataset at a time. An flock dies with its process, so a killed download never
    blocks the next; the file's text names the holder for the refusal."""
    from fqvae_cli.registry.liveness import holder_id

    with open(folder / LOCK_FILE, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            yield
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise DownloadError(f"another download of '{name}' is running ({holder}); wait for it to finish or "
                                f"stop it, then rerun.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{holder_id()}, since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

