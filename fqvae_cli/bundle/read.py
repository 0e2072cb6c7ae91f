"""Open a bundle without trusting it. Member headers are checked before any content is read: plain
relative names (no absolute path, no `..`) of regular files only (links, devices and FIFOs are refused).
Sparse members are refused there too (a few hundred bytes of header could declare gigabytes of zeros).
Then the manifest: an fqvae bundle, of a format version and registry schema revision this code reads,
whose runs are stopped and whose configs this code validates, and whose files are only those the format
defines: each run's artifact rows (of the kinds fqvae writes) and its config.json. Then the files: exactly
those the manifest lists, each of its size and sha256, hashed from the tar, then checked by its kind
(validate.py), before anything is written anywhere."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fqvae_cli.bundle.validate import CONFIG, content_problem, kind_problem
from fqvae_cli.errors import DataError, FqvaeError, UsageError
from fqvae_cli.inputs import check_seed
from fqvae_cli.registry.lifecycle import ENDED
from fqvae_cli.registry.records import ArtifactRow, MetricRow, RunRecord, StartRow, provenance_key
from fqvae_cli.registry.schema import HEAD, REVISIONS
from fqvae_cli.registry.store import run_dir

FORMAT = "fqvae-bundle"
# 2 added provenance: the manifest's `provenance` records, named by hash from metric rows and starts.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 256 << 20
CHECKPOINT_KINDS = ("checkpoint", "checkpoint_state")
_TIMES = ("created_at", "started_at", "finished_at", "heartbeat_at")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RunPlan:
    """One run of a bundle as it will be recorded here: the row, its metric and artifact rows (paths in this
    workspace), its files as (member name, path relative to the run folder), and the starts of its training
    (none in a bundle written before provenance was recorded)."""

    run: RunRecord
    metrics: list[MetricRow]
    artifacts: list[ArtifactRow]
    files: list[tuple[str, str]]
    bytes: int
    starts: list[StartRow] = dataclasses.field(default_factory=list)


def name_problem(name: str) -> str | None:
    """Why a member name could land outside the bundle's folder (or None): absolute, `..`, odd parts."""
    if not name or any(ord(c) < 32 or c == "\x7f" for c in name):
        return "has an empty name or control characters in it"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
        return "is an absolute path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "climbs out of the bundle with '..'"
    if any(p in ("", ".") for p in parts):
        return "is not a plain relative path"
    return None


def _member_kind(m: tarfile.TarInfo) -> str | None:
    for test, kind in ((m.issym, "a symbolic link"), (m.islnk, "a hard link"), (m.ischr, "a device file"),
                       (m.isblk, "a device file"), (m.isfifo, "a FIFO"), (m.issparse, "a sparse file")):
        if test():
            return kind
    return None if (m.isreg() or m.isdir()) else "not a regular file"


def _bad(bundle: Path, why: str) -> DataError:
    return DataError(f"refusing bundle {bundle.name}: {why}; nothing was imported.")


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _plan(entry: Any, files: dict, bundle: Path, records: dict[str, dict]) -> RunPlan:
    """One manifest run entry, checked, as it would be recorded here (`records`: the manifest's provenance
    records, which its rows name by hash)."""
    from fqvae_cli.config import build_run_config

    keys = {f.name for f in dataclasses.fields(RunRecord)}
    if not (isinstance(entry, dict) and isinstance(entry.get("run"), dict) and set(entry["run"]) == keys
            and isinstance(entry.get("metrics"), list) and isinstance(entry.get("artifacts"), list)):
        raise _bad(bundle, "its manifest has a malformed run entry")
    row = entry["run"]
    try:
        run = RunRecord(**{**row, **{k: _time(row[k]) for k in _TIMES}})
        folder = run_dir(run)
        check_seed(run.seed, "its seed")
    except (TypeError, ValueError, FqvaeError) as exc:
        raise _bad(bundle, f"its manifest has a malformed run row ({exc})") from None
    if not (isinstance(run.short_id, str) and re.fullmatch(r"[0-9a-f]{8}", run.short_id)
            and (run.name is None or isinstance(run.name, str))):
        raise _bad(bundle, "its manifest has a malformed run row (short id or name)")
    if run.status not in ENDED:
        raise _bad(bundle, f"run {run.short_id} is '{run.status}'; only stopped runs travel")
    try:
        cfg = build_run_config(run.config)
    except FqvaeError as exc:
        raise _bad(bundle, f"run {run.short_id}'s config does not fit this fqvae ({exc})") from None
    if run.dataset_fingerprint is not None:
        from fqvae_cli.data.identity import fingerprint_text

        try:
            fingerprint_text(run.dataset_fingerprint)
        except (AttributeError, TypeError, ValueError):
            raise _bad(bundle, f"run {run.short_id}'s dataset fingerprint is malformed") from None
    if (cfg.model.name, cfg.dataset) != (run.model, run.dataset):
        raise _bad(bundle, f"run {run.short_id}'s row and config name different models or datasets")
    prefix = f"runs/{run.id}/"

    def origin(digest: Any) -> dict | None:
        if digest is not None and digest not in records:
            raise ValueError(f"provenance {digest!r} is not among its records")
        return None if digest is None else records[digest]

    try:
        metrics = [MetricRow(m["name"], m["value"], m["step"], m["split"], m["protocol"], origin(m.get("provenance")))
                   for m in entry["metrics"]]
        starts = [StartRow(origin(s["provenance"]) or {}, s["step"], s["host"], _time(s["started_at"]))
                  for s in entry.get("starts", [])]
        artifacts = []
        for a in entry["artifacts"]:
            problem = kind_problem(a["kind"], str(a["path"]))
            if problem:
                raise ValueError(problem)
            if prefix + str(a["path"]) not in files or files[prefix + a["path"]] != {"sha256": a["sha256"],
                                                                                      "bytes": a["bytes"]}:
                raise ValueError(f"artifact {a['path']!r} is not among its files, with that hash and size")
            artifacts.append(ArtifactRow(a["kind"], str(folder / a["path"]), a["bytes"], a["sha256"], a["step"],
                                         _time(a["created_at"])))
    except (KeyError, TypeError, ValueError, FqvaeError) as exc:
        raise _bad(bundle, f"its manifest has malformed rows for run {run.short_id} ({exc})") from None
    own = sorted((name, name[len(prefix):]) for name in files if name.startswith(prefix))
    defined = {prefix + CONFIG} | {prefix + str(a["path"]) for a in entry["artifacts"]}
    for name, _rel in own:
        if name not in defined:
            raise _bad(bundle, f"its manifest lists {name}, which no artifact row of its run names (a bundle "
                               f"carries only its runs' recorded files and {CONFIG})")
    return RunPlan(run, metrics, artifacts, own, sum(files[name]["bytes"] for name, _ in own), starts)


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], bundle: Path) -> dict:
    m = members.get(MANIFEST)
    if m is None:
        raise _bad(bundle, f"it has no {MANIFEST}, so it is not an fqvae bundle")
    if m.size > MAX_MANIFEST_BYTES:
        raise _bad(bundle, f"its {MANIFEST} is {m.size:,} bytes, more than any bundle needs")
    try:
        manifest = json.loads(tar.extractfile(m).read())  # type: ignore[union-attr]
    except ValueError as exc:
        raise _bad(bundle, f"its {MANIFEST} is not JSON ({exc})") from None
    except RecursionError:
        raise _bad(bundle, f"its {MANIFEST} nests too deeply to be an fqvae manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(bundle, f"its {MANIFEST} does not describe an fqvae bundle")
    version, revision = manifest.get("format_version"), manifest.get("schema_revision")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(bundle, f"its format version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise _bad(bundle, f"it has format version {version}, newer than this fqvae reads ({FORMAT_VERSION}); "
                           "upgrade fqvae to import it")
    if revision not in REVISIONS:
        raise _bad(bundle, f"it was written at registry schema revision {revision!r}, which this fqvae does not "
                           f"know (it knows up to {HEAD}); upgrade fqvae to import it")
    files, runs = manifest.get("files"), manifest.get("runs")
    if not (isinstance(files, dict) and isinstance(runs, list) and runs and all(
            isinstance(s, dict) and set(s) == {"sha256", "bytes"} and isinstance(s["sha256"], str)
            and re.fullmatch(r"[0-9a-f]{64}", s["sha256"]) and isinstance(s["bytes"], int) and s["bytes"] >= 0
            for s in files.values())):
        raise _bad(bundle, f"its {MANIFEST} lacks runs or has a malformed file list")
    records = manifest.setdefault("provenance", {})  # none before format 2
    try:
        if not isinstance(records, dict) or any(provenance_key(d)[1] != h for h, d in records.items()):
            raise ValueError("a record does not match its hash")
    except (UsageError, ValueError):
        raise _bad(bundle, f"its {MANIFEST} has provenance records that are malformed or do not match their "
                           "hashes") from None
    return manifest


class Bundle:
    """A bundle whose members, manifest, file list, sizes and hashes have been checked (see open_bundle)."""

    def __init__(self, path: Path, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], manifest: dict):
        self.path, self.tar, self.members, self.manifest = path, tar, members, manifest
        self.files: dict[str, dict] = manifest["files"]
        self.runs = [_plan(entry, self.files, path, manifest["provenance"]) for entry in manifest["runs"]]
        ids = [p.run.id for p in self.runs]
        if len(set(ids)) != len(ids):
            raise _bad(path, "its manifest lists a run twice")
        owned = {name for p in self.runs for name, _ in p.files}
        for name in sorted(self.files):
            if name not in owned:
                raise _bad(path, f"its manifest lists {name}, which belongs to none of its runs")
            if name not in members:
                raise _bad(path, f"its manifest lists {name}, which it does not hold")
        for name in sorted(self.files):
            self.copy(name, None)
        for plan in self.runs:
            self._check_kinds(plan)

    def _check_kinds(self, plan: RunPlan) -> None:
        """Each file of a run read by its kind (validate.py), from the tar: nothing is written yet."""
        prefix = f"runs/{plan.run.id}/"
        home = run_dir(plan.run)
        kinds = {prefix + Path(a.path).relative_to(home).as_posix(): a.kind for a in plan.artifacts}
        for name, rel in plan.files:
            kind = kinds.get(name, CONFIG)
            problem = content_problem(kind, rel, self.members[name].size,
                                      lambda n=name: self.tar.extractfile(self.members[n]))
            if problem:
                what = f"checkpoint state {Path(rel).name}" if kind == "checkpoint_state" else rel
                raise self.bad(f"for run {plan.run.short_id}, {what} {problem}")

    def bad(self, why: str) -> DataError:
        return _bad(self.path, why)

    def copy(self, name: str, dest: Path | None) -> None:
        """Stream one member to a new file `dest` (None: only hash it), checking its size and sha256."""
        spec, member = self.files[name], self.members[name]
        if member.size != spec["bytes"]:
            raise self.bad(f"{name} is {member.size} bytes where its manifest says {spec['bytes']} (it was "
                           "changed or damaged)")
        sha = hashlib.sha256()
        src = self.tar.extractfile(member)
        if src is None:  # pragma: no cover - members are checked to be regular files
            raise self.bad(f"{name} is not a regular file")
        with src, (open(dest, "xb") if dest is not None else nullcontext()) as out:
            while block := src.read(_CHUNK):
                sha.update(block)
                if out is not None:
                    out.write(block)
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
        if sha.hexdigest() != spec["sha256"]:
            raise self.bad(f"{name} does not match its sha256 in the manifest (it was changed or damaged)")


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The bundle's regular files by name, after checking every member header."""
    members: dict[str, tarfile.TarInfo] = {}
    for m in tar.getmembers():
        problem = _member_kind(m)
        if problem:
            raise _bad(path, f"member {m.name!r} is {problem}; a bundle holds only regular files")
        problem = name_problem(m.name)
        if problem:
            raise _bad(path, f"member {m.name!r} {problem}")
        if m.isreg():
            if m.name in members:
                raise _bad(path, f"member {m.name!r} appears twice")
            members[m.name] = m
    return members


@contextmanager
def open_bundle(path: Path | str) -> Iterator[Bundle]:
    """Open and verify a bundle (see the module docstring); nothing is written anywhere."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"no bundle at {path}.")
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file; give a bundle written by `fqvae runs export --bundle`.")
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"cannot read bundle {path.name} ({exc}); it is not an uncompressed tar file.") from None
    with tar:
        try:
            members = _members(tar, path)
            manifest = _read_manifest(tar, members, path)
            extra = sorted(set(members) - set(manifest["files"]) - {MANIFEST})
            if extra:
                raise _bad(path, f"it holds {extra[0]}, which its manifest does not list")
            bundle = Bundle(path, tar, members, manifest)
        except (tarfile.TarError, OSError) as exc:
            raise DataError(f"cannot read bundle {path.name} ({exc}); it is damaged or truncated.") from None
        yield bundle
