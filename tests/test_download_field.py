"""Each of the field's datasets downloads through the mirror chain on loopback (the first source gone,
the second right), refuses a file of the wrong digest (nothing prepared), resumes a cut transfer with a
Range request, and prepares what it fetched; companion files (SmallNORB's other five, The Scream) come
the same way. Then a prepared dSprites trains 20 steps end to end."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY
from http_server import FileServer
from PIL import Image
from writers import write_cars3d, write_dsprites, write_falcor, write_smallnorb, zip_folder

from fqvae_cli import paths
from fqvae_cli.data import catalog, fetch
from fqvae_cli.data.store import PreparedDataset, is_prepared


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.01)
    monkeypatch.setattr(fetch, "RETRIES", 0)


def official_files(name: str, tmp: Path) -> dict[str, bytes]:
    """file name in the catalog -> bytes in the official layout (a reduced grid)."""
    if name.endswith("dsprites"):
        files = {catalog.DATASETS[name].download.file: write_dsprites(tmp / "d.hdf5").read_bytes()}
        if name == "scream_dsprites":
            picture = np.random.default_rng(1).integers(0, 256, size=(80, 90, 3), dtype=np.uint8)
            Image.fromarray(picture).save(tmp / "s.jpg", format="JPEG")
            files["scream.jpg"] = (tmp / "s.jpg").read_bytes()
        return files
    if name == "cars3d":
        return {"nips2015-analogy-data.tar.gz": write_cars3d(tmp / "c.tar.gz").read_bytes()}
    if name == "falcor3d":
        return {"Falcor3D_down128.zip": zip_folder(write_falcor(tmp / "Falcor3D_down128"), tmp / "f.zip").read_bytes()}
    parts = ("training", "testing") if name == "smallnorb" else ("training",)
    folder = write_smallnorb(tmp / "norb", parts=parts)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


EXPECTED_SIZES = {"dsprites": (3, 2, 2, 2, 2), "color_dsprites": (3, 2, 2, 2, 2), "noisy_dsprites": (3, 2, 2, 2, 2),
                  "scream_dsprites": (3, 2, 2, 2, 2), "cars3d": (2, 3, 3), "falcor3d": (2, 1, 1, 2, 1, 1, 2),
                  "smallnorb": (2, 4, 2, 2, 1), "smallnorb_disent": (2, 2, 2, 2, 1)}


def serve(monkeypatch, server: FileServer, name: str, files: dict[str, bytes]) -> None:
    """Every file of `name` on a chain of two loopback sources: /gone/ (404), then /m/, pinned to the
    sha256 of the file written."""
    spec = catalog.DATASETS[name]

    def point(src):
        data = files[src.file]
        server.files[f"/m/{src.file}"] = data
        return dataclasses.replace(src, url=server.url(f"/gone/{src.file}"), size=len(data),
                                   hash=hashlib.sha256(data).hexdigest(), algorithm="sha256", hash_enforced=True,
                                   mirrors=(catalog.Mirror(server.url(f"/m/{src.file}"), "a test mirror"),))

    monkeypatch.setitem(catalog.DATASETS, name, dataclasses.replace(
        spec, download=point(spec.download), companions=tuple(point(c) for c in spec.companions)))


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_download_chain_digest_resume_prepare(cli, server, monkeypatch, tmp_path, name):
    files = official_files(name, tmp_path)
    spec = catalog.DATASETS[name]
    assert set(files) == {spec.download.file, *(c.file for c in spec.companions)}
    serve(monkeypatch, server, name, files)
    main = spec.download.file
    good = server.files[f"/m/{main}"]

    # The mirror serves other bytes of the same length: refused, set aside, nothing prepared.
    server.files[f"/m/{main}"] = bytes(b ^ 0xFF for b in good)
    r = cli("data", "download", name)
    assert r.exit_code == 1 and not is_prepared(name)
    said = " ".join(r.stderr.split())  # warnings are wrapped to the console's width
    assert f"source 1/2 failed: {server.url(f'/gone/{main}')} answered HTTP 404 Not Found; trying the next" in said
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: none of the 2 sources of {name} delivered {main}")
    folder = paths.data_root() / "downloads" / name
    assert (folder / f"{main}.rejected").exists()

    # The right file, cut after 100 bytes: the error keeps the partial file; a rerun resumes it.
    server.files[f"/m/{main}"] = good
    server.drop[f"/m/{main}"] = (100, 1)
    r = cli("data", "download", name)
    assert r.exit_code == 1 and (folder / f"{main}.part").read_bytes() == good[:100]
    server.requests.clear()
    r = cli("data", "download", name)
    assert r.exit_code == 0, r.stderr
    assert [q["range"] for q in server.requests if q["path"] == f"/m/{main}"] == ["bytes=100-"]
    ds = PreparedDataset(paths.data_root() / name)
    assert ds.space.sizes == EXPECTED_SIZES[name]
    src = ds.meta["source"]
    assert src["sha256"] == hashlib.sha256(good).hexdigest() and src["url"] == server.url(f"/m/{main}")
    assert [c["name"] for c in src.get("companions", [])] == [c.file for c in spec.companions]
    assert not any(folder.glob("*.part")) and not (folder / main).exists()  # sources deleted once prepared
    r = cli("data", "info", name)
    assert r.exit_code == 0 and f"{len(ds):,} images 64x64" in r.stdout
    text = "".join(r.stdout.split())  # the console wraps long lines, URLs included
    assert all(f in r.stdout for f in spec.factor_names) and f"downloadedfrom{server.url(f'/m/{main}')}" in text


def test_prepared_dsprites_trains_20_steps(cli, server, monkeypatch, tmp_path):
    files = official_files("dsprites", tmp_path)
    serve(monkeypatch, server, "dsprites", files)
    assert cli("data", "download", "dsprites").exit_code == 0
    steps = [a if a != "6" else "20" for a in TINY]
    r = cli("train", "--model", "ae", "--dataset", "dsprites", *steps)
    assert r.exit_code == 0, r.stderr
    from fqvae_cli.registry.store import Registry

    run = Registry().get_run(r.stdout.strip().splitlines()[-1])
    assert run.status == "finished" and run.dataset == "dsprites" and run.config["train"]["steps"] == 20
