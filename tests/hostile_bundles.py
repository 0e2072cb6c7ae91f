"""Hostile run bundles, each built from one small honest bundle, for every change to `fqvae runs import`
to be run against (tests/test_bundle_hostile.py).

The honest bundle is made without training: a finished `ae` run with a real resolved config, a real
safetensors checkpoint and weights_only state, a DCI importance matrix, a snapshot and config.json,
exported by `export_bundle`. Each hostile case edits the manifest or members and returns the sentence
part its refusal must contain. None of them writes or reads more than a few kilobytes: the members that
declare gigabytes are headers only (a sparse map with nothing behind it), refused before any content
is read."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

GIB = 1 << 30


@contextmanager
def _home(home: Path):
    old = os.environ.get("FQVAE_HOME")
    os.environ["FQVAE_HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FQVAE_HOME", None)
        else:
            os.environ["FQVAE_HOME"] = old


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buf, format="PNG")
    return buf.getvalue()


def honest_bundle(root: Path) -> Path:
    """`root/honest.tar`: one finished run (id in the manifest) with a checkpoint pair at step 4, a matrix,
    a snapshot and config.json; built in a workspace of its own under `root`."""
    import torch
    from safetensors.torch import save_file

    from fqvae_cli.bundle import export_bundle
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.registry.store import Registry

    home, target = root / "honest-home", root / "honest.tar"
    with _home(home), Registry() as reg:
        config = resolve_run_config("ae", "synth3d", "quick", 0, {}).model_dump(mode="json")
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config=config, name="honest")
        folder = home / "runs" / run.id
        (folder / "checkpoints").mkdir(parents=True)
        save_file({"w": torch.arange(4, dtype=torch.float32)}, str(folder / "checkpoints/step_00000004.safetensors"))
        torch.save({"iteration": 4, "rng": torch.zeros(3)}, folder / "checkpoints/step_00000004.state.pt")
        (folder / "matrices/tiny").mkdir(parents=True)
        np.save(folder / "matrices/tiny/importance_step4.npy", np.eye(3))
        (folder / "snapshots").mkdir()
        (folder / "snapshots/step_00000004.png").write_bytes(_png())
        (folder / "config.json").write_text(json.dumps(config))
        for kind, rel in (("checkpoint", "checkpoints/step_00000004.safetensors"),
                          ("checkpoint_state", "checkpoints/step_00000004.state.pt"),
                          ("matrix_importance", "matrices/tiny/importance_step4.npy"),
                          ("snapshot", "snapshots/step_00000004.png")):
            data = (folder / rel).read_bytes()
            reg.add_artifact(run.id, kind=kind, path=folder / rel, bytes=len(data),
                             sha256=hashlib.sha256(data).hexdigest(), step=4)
        reg.log_metrics(run.id, [("dci_d", 0.5, 4, "eval", "tiny")])
        reg.transition(run.id, "finished")
        export_bundle(reg, [reg.get_run(run.id)], target)
    return target


def members(path: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {member name: bytes}) of a bundle."""
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    return json.loads(files.pop("manifest.json")), files


def rebuild(src: Path, dst: Path, edit: Callable | None = None, extra: tuple = (), manifest_text: bytes | None = None
            ) -> Path:
    """A copy of bundle `src` with edit(manifest, files) applied, then `extra` raw tar blocks appended
    (headers built by hand); `manifest_text` replaces the manifest's bytes outright."""
    manifest, files = members(src)
    if edit is not None:
        edit(manifest, files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        text = manifest_text if manifest_text is not None else json.dumps(manifest).encode()
        for name, data in [("manifest.json", text), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        end = tar.offset  # where the end-of-archive blocks start
    dst.write_bytes(buf.getvalue()[:end] + b"".join(extra) + b"\0" * 1024)
    return dst


def run_id(manifest: dict) -> str:
    return manifest["runs"][0]["run"]["id"]


def _spec(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _add_file(rel: str, data: bytes, kind: str | None = None, step: int | None = 4):
    """An edit adding runs/<id>/<rel> with a matching hash; with `kind`, an artifact row for it too."""
    def edit(manifest: dict, files: dict) -> None:
        name = f"runs/{run_id(manifest)}/{rel}"
        files[name] = data
        manifest["files"][name] = _spec(data)
        if kind is not None:
            manifest["runs"][0]["artifacts"].append({"kind": kind, "path": rel, **_spec(data), "step": step,
                                                     "created_at": "2026-01-01T00:00:00+00:00"})
    return edit


def _replace_kind(kind: str, data: bytes):
    """An edit replacing the file of the artifact row of `kind` by `data`, hashes to match."""
    def edit(manifest: dict, files: dict) -> None:
        (row,) = [a for a in manifest["runs"][0]["artifacts"] if a["kind"] == kind]
        name = f"runs/{run_id(manifest)}/{row['path']}"
        files[name] = data
        manifest["files"][name] = _spec(data)
        row.update(_spec(data))
    return edit


def _gnu_sparse_block(name: str, realsize: int) -> bytes:
    """An old-GNU sparse member header (type 'S') with no data: its map says one zero-length chunk, its
    real size `realsize`. Extracting it would write `realsize` bytes of zeros from 512 bytes of tar."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 0
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    block[386:398] = b"%011o\0" % (realsize - 1)  # one chunk at the end: offset
    block[398:410] = b"%011o\0" % 0  # and length
    block[483:495] = b"%011o\0" % realsize
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    return bytes(block[:512])


def _pax_sparse_blocks(name: str, realsize: int) -> bytes:
    """A PAX sparse member (GNU.sparse 0.1 headers) with no data, declaring `realsize` bytes."""
    info = tarfile.TarInfo(name)
    info.size = 0
    info.pax_headers = {"GNU.sparse.map": f"{realsize - 1},0", "GNU.sparse.size": str(realsize)}
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _declare(rel: str, size: int):
    """An edit listing runs/<id>/<rel> in the manifest at `size` bytes (a hash no one computes)."""
    def edit(manifest: dict, files: dict) -> None:
        manifest["files"][f"runs/{run_id(manifest)}/{rel}"] = {"sha256": "0" * 64, "bytes": size}
    return edit


def _pickle_state() -> bytes:
    """A torch file whose unpickling would call os.system (it is never unpickled)."""
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch /tmp/fqvae-hostile-pwned",))

    import torch

    buf = io.BytesIO()
    torch.save({"iteration": 200, "payload": Payload()}, buf)
    return buf.getvalue()


def _object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _metric_step(step: int):
    def edit(manifest: dict, files: dict) -> None:
        manifest["runs"][0]["metrics"][0]["step"] = step
    return edit


def _run_field(key: str, value):
    def edit(manifest: dict, files: dict) -> None:
        manifest["runs"][0]["run"][key] = value
    return edit


def _artifact_size(size: int):
    """An edit declaring the matrix at `size` bytes, in its row and in the file list alike."""
    def edit(manifest: dict, files: dict) -> None:
        (row,) = [a for a in manifest["runs"][0]["artifacts"] if a["kind"] == "matrix_importance"]
        row["bytes"] = size
        manifest["files"][f"runs/{run_id(manifest)}/{row['path']}"]["bytes"] = size
    return edit


def _set(key: str, value):
    def edit(manifest: dict, files: dict) -> None:
        manifest[key] = value
    return edit


def _sparse(block: Callable[[str, int], bytes]):
    def make(src: Path, dst: Path) -> Path:
        manifest, _ = members(src)
        name = f"runs/{run_id(manifest)}/big.bin"
        return rebuild(src, dst, _declare("big.bin", 2 * GIB), extra=(block(name, 2 * GIB),))
    return make


def _edit(edit: Callable) -> Callable[[Path, Path], Path]:
    return lambda src, dst: rebuild(src, dst, edit)


# case -> (build(honest bundle, destination) -> hostile bundle, what its refusal says)
HOSTILE: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "gnu sparse member of 2 GiB": (_sparse(_gnu_sparse_block), "is a sparse file"),
    "pax sparse member of 2 GiB": (_sparse(_pax_sparse_blocks), "is a sparse file"),
    "file with no artifact row": (_edit(_add_file("big.bin", b"\0" * 4096)),
                                  "big.bin, which no artifact row of its run names"),
    "unlisted pickled state": (_edit(_add_file("checkpoints/step_00000200.state.pt", _pickle_state())),
                               "step_00000200.state.pt, which no artifact row of its run names"),
    "pickled state in a row": (_edit(_add_file("checkpoints/step_00000200.state.pt", _pickle_state(),
                                               "checkpoint_state", 200)),
                               "holds more than tensors and plain containers"),
    "object-array matrix": (_edit(_replace_kind("matrix_importance", _object_npy())),
                            "importance_step4.npy is not a plain numeric .npy array"),
    "snapshot that is no PNG": (_edit(_replace_kind("snapshot", b"#!/bin/sh\nrm -rf ~\n")),
                                "step_00000004.png is not a PNG image"),
    "weights that are no safetensors": (_edit(_replace_kind("checkpoint", b"\xff" * 64)),
                                        "is not a readable safetensors file"),
    "unknown artifact kind": (_edit(_add_file("figures/x.png", _png(), "<evil>/../x")),
                              "artifact kind '<evil>/../x' is not one of"),
    "manifest nested 200,000 deep": (lambda src, dst: rebuild(src, dst, manifest_text=b"[" * 200_000 + b"]" * 200_000),
                                     "nests too deeply"),
    "metric step 2**70": (_edit(_metric_step(2 ** 70)), "metric step must be an integer between"),
    "run seed 2**70": (_edit(_run_field("seed", 2 ** 70)), "malformed run row (its seed must be non-negative"),
    "artifact size 2**70": (_edit(_artifact_size(2 ** 70)), "artifact size must be an integer between"),
    "format nope": (_edit(_set("format", "nope")), "its manifest.json does not describe an fqvae bundle"),
}
