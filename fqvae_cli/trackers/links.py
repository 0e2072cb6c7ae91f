"""The registry's side of the link: where each tracker holds a run, recorded as a small JSON file in the
run's folder (`trackers/<tracker>.json`: the tracker's run id and page) and an artifact row of kind
`tracker` naming it, so `runs show` and the report print the link and a bundle carries it. No schema
change: the artifact table already records a run's files with their sha256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fqvae_cli.files import atomic_write_json, sha256_file
from fqvae_cli.trackers.base import Link

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry

KIND = "tracker"
LIMIT = 16_000  # bytes; a link file is about two hundred


def record(reg: Registry, run: Any, link: Link) -> None:
    """Write (or replace) the link file of `link.tracker` and its artifact row."""
    from fqvae_cli.registry.store import run_dir

    path = run_dir(run) / "trackers" / f"{link.tracker}.json"
    atomic_write_json(path, link.to_json())
    for old in reg.artifacts(run.id, kind=KIND):
        if Path(old.path) == path:
            reg.remove_artifact(old.id)
    reg.add_artifact(run.id, kind=KIND, path=str(path), bytes=path.stat().st_size, sha256=sha256_file(path))


def read(reg: Registry, run_id: str) -> list[Link]:
    """The links recorded for a run, newest row of each tracker; a file that is missing, too large or not
    a link is left out."""
    found: dict[str, Link] = {}
    for art in reg.artifacts(run_id, kind=KIND):
        path = Path(art.path)
        try:
            if not path.is_file() or path.stat().st_size > LIMIT:
                continue
            data = json.loads(path.read_text())
            link = Link(tracker=str(data["tracker"]), run_id=str(data["run_id"]),
                        url=None if data.get("url") is None else str(data["url"]),
                        where=None if data.get("where") is None else str(data["where"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found[link.tracker] = link
    return list(found.values())
