"""`fqvae data download` against a real HTTP server on loopback (tests/http_server.py) serving small files
in the official layouts: the production download code, with only the URL pointed at the server.
Resume with Range after a dropped connection, a Ctrl-C or a full disk; refusal of a wrong file; one
sentence for every failure; the concurrent-download guard; the Google Drive path up to gdown."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest
from helpers import TINY, error_sentence
from http_server import closed_port, etag
from writers import write_isaac, write_shapes3d, zip_folder

from fqvae_cli import paths
from fqvae_cli.data import catalog, download, fetch
from fqvae_cli.data.store import PreparedDataset, is_prepared

H5 = "/3dshapes.h5"


def one_sentence(result, *fragments: str) -> None:
    """The error line is all that was printed."""
    error_sentence(result, *fragments)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.01)


@pytest.fixture(scope="module")
def shapes_bytes(tmp_path_factory) -> bytes:
    """A reduced grid (48 images, 4x4) in the exact layout of 3dshapes.h5."""
    return write_shapes3d(tmp_path_factory.mktemp("src") / "3dshapes.h5").read_bytes()


def blob(n: int) -> bytes:
    """n bytes that differ everywhere, so an offset error changes the hash."""
    return hashlib.shake_256(b"fqvae").digest(n)


def downloads(name: str):
    return paths.data_root() / "downloads" / name


def point_catalog(monkeypatch, name: str, **changes) -> None:
    """The catalog entry of `name` with its URL (and any other field) replaced, as a mirror would be."""
    spec = catalog.DATASETS[name]
    monkeypatch.setitem(catalog.DATASETS, name, dataclasses.replace(
        spec, download=dataclasses.replace(spec.download, **changes)))


# ---- the whole path ------------------------------------------------------------------------------

def test_download_then_train(cli, server, tmp_path):
    """The README's promise: download (verified against a pinned sha256), prepare, then train."""
    from fqvae_cli.data.synthetic import write_h5

    data = write_h5(tmp_path / "3dshapes.h5", image_size=64, grid="small").read_bytes()
    server.files[H5] = data
    r = cli("data", "download", "shapes3d", "--url", server.url(H5), "--sha256", sha(data))
    assert r.exit_code == 0, r.stderr
    assert f"sha256 {sha(data)}: sha256 matches --sha256" in r.stdout
    assert "prepared shapes3d: 648 images 64x64" in r.stdout
    assert "downloading 3dshapes.h5:" in r.stderr and "(100%)" in r.stderr  # plain progress off a terminal
    ds = PreparedDataset(paths.data_root() / "shapes3d")
    src = ds.meta["source"]
    assert src["url"] == server.url(H5) and src["sha256"] == sha(data) and src["size"] == len(data)
    assert src["expected"] == {"algorithm": "sha256", "hash": sha(data), "from": "--sha256", "matched": True}
    assert not (downloads("shapes3d") / "3dshapes.h5").exists()  # the source is deleted once prepared
    assert server.ranges(H5) == [None]

    steps = [a if a != "6" else "20" for a in TINY]
    r = cli("train", "--model", "ae", "--dataset", "shapes3d", *steps)
    assert r.exit_code == 0, r.stderr
    from fqvae_cli.registry.store import Registry

    run = Registry().get_run(r.stdout.strip().splitlines()[-1])
    assert run.status == "finished" and run.dataset == "shapes3d" and run.config["train"]["steps"] == 20


def test_catalog_source_is_checked_against_its_size_and_sha256(cli, server, monkeypatch, shapes_bytes):
    server.files[H5] = shapes_bytes
    point_catalog(monkeypatch, "shapes3d", url=server.url(H5), size=len(shapes_bytes), hash=sha(shapes_bytes))
    r = cli("data", "download", "shapes3d", "--keep-source")
    assert r.exit_code == 0, r.stderr
    assert "sha256 matches the catalog" in r.stdout
    kept = downloads("shapes3d") / "3dshapes.h5"
    assert kept.read_bytes() == shapes_bytes and f"kept {kept}" in r.stdout
    assert PreparedDataset(paths.data_root() / "shapes3d").meta["source"]["expected"]["from"] == "the catalog"
    assert f"downloaded from {server.url(H5)}" in cli("data", "info", "shapes3d").stdout

    # Prepared already: nothing is fetched, unless --force (which reuses the verified kept file).
    r = cli("data", "download", "shapes3d")
    assert r.exit_code == 0 and "already prepared" in r.stdout and "nothing downloaded" in r.stdout
    assert len(server.requests) == 1
    r = cli("data", "download", "shapes3d", "--force")
    assert r.exit_code == 0, r.stderr
    assert "using the file downloaded earlier" in r.stdout and len(server.requests) == 1
    assert not kept.exists()


# ---- resuming ------------------------------------------------------------------------------------

def test_dropped_connection_is_resumed_with_range(cli, server, shapes_bytes):
    server.files[H5] = shapes_bytes
    server.drop[H5] = (5000, 1)
    r = cli("data", "download", "shapes3d", "--url", server.url(H5), "--sha256", sha(shapes_bytes))
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())  # info lines are wrapped to the console's width
    assert "the connection closed after 5.0 kB of 6.7 kB; retrying" in said and "resuming at 5.0 kB" in said
    assert server.ranges(H5) == [None, "bytes=5000-"]
    assert server.requests[1]["if_range"] == etag(shapes_bytes)
    assert PreparedDataset(paths.data_root() / "shapes3d").meta["source"]["sha256"] == sha(shapes_bytes)


def test_rerun_resumes_from_the_partial_byte_count(cli, server, monkeypatch, shapes_bytes):
    monkeypatch.setattr(fetch, "RETRIES", 0)
    server.files[H5] = shapes_bytes
    server.drop[H5] = (4321, 1)
    args = ("data", "download", "shapes3d", "--url", server.url(H5), "--sha256", sha(shapes_bytes))
    r = cli(*args)
    error_sentence(r, f"downloading {server.url(H5)} failed after 1 attempt", "4.3 kB are kept in",
                   "rerun to resume", "`fqvae data prepare shapes3d --source FILE`")
    part = downloads("shapes3d") / "3dshapes.h5.part"
    assert part.read_bytes() == shapes_bytes[:4321] and not is_prepared("shapes3d")
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    assert server.ranges(H5) == [None, "bytes=4321-"]
    assert PreparedDataset(paths.data_root() / "shapes3d").meta["source"]["sha256"] == sha(shapes_bytes)


def test_ctrl_c_keeps_the_partial_file_and_a_rerun_resumes(cli, server, workspace):
    data = blob(3 * fetch.CHUNK + 123)
    server.files["/big.bin"] = data
    server.stall["/big.bin"] = 2 * fetch.CHUNK + 10  # the child has written two chunks, then hangs
    args = ["data", "download", "mpi3d_toy", "--url", server.url("/big.bin"), "--sha256", sha(data), "--no-prepare"]
    env = {**os.environ, "FQVAE_HOME": str(workspace), "FQVAE_PLAIN_PROGRESS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "fqvae_cli", *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    part = downloads("mpi3d_toy") / "mpi3d_toy.npz.part"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size >= 2 * fetch.CHUNK):
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert f"the download of mpi3d_toy stopped at 2.1 MB; the partial file is kept in {part.parent}: rerun" in err
    have = part.stat().st_size  # every byte received is kept (blocks are written as they arrive)
    assert have >= 2 * fetch.CHUNK and part.read_bytes() == data[:have]

    del server.stall["/big.bin"]
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    assert server.ranges("/big.bin") == [None, f"bytes={have}-"]
    kept = downloads("mpi3d_toy") / "mpi3d_toy.npz"
    assert kept.read_bytes() == data and f"fqvae data prepare mpi3d_toy --source {kept}" in r.stdout


def test_disk_full_keeps_the_partial_file(cli, server, monkeypatch):
    data = blob(2 * fetch.CHUNK + 5)
    server.files["/f.npz"] = data
    written = []

    def write(fh, block):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(block))
        fh.write(block)

    monkeypatch.setattr(fetch, "_write", write)
    args = ("data", "download", "mpi3d_toy", "--url", server.url("/f.npz"), "--no-prepare")
    from fqvae_cli.files import fmt_bytes

    r = cli(*args)  # blocks are written as they arrive: the first one is kept, whatever its size
    error_sentence(r, f"is full after {fmt_bytes(written[0])}; the partial file", "is kept: free some space and rerun")
    part = downloads("mpi3d_toy") / "mpi3d_toy.npz.part"
    assert part.read_bytes() == data[: written[0]]
    monkeypatch.setattr(fetch, "_write", lambda fh, block: fh.write(block))  # space freed
    assert cli(*args).exit_code == 0
    assert server.ranges("/f.npz") == [None, f"bytes={written[0]}-"]
    assert (downloads("mpi3d_toy") / "mpi3d_toy.npz").read_bytes() == data


def test_free_space_is_checked_before_anything_is_fetched(cli, server, monkeypatch, shapes_bytes):
    import shutil

    server.files[H5] = shapes_bytes
    point_catalog(monkeypatch, "shapes3d", url=server.url(H5))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    # 267.6 MB file + the prepared 480,000 images (5.9 GB)
    one_sentence(cli("data", "download", "shapes3d"), "downloading shapes3d needs 6.2 GB free under",
                   "but only 1.0 MB is")
    assert server.requests == []


# ---- refusals: one sentence, nothing lost, nothing prepared -----------------------------------------

def test_wrong_sha256_is_refused_and_set_aside(cli, server, shapes_bytes):
    wrong = shapes_bytes[:-1] + bytes([shapes_bytes[-1] ^ 1])
    server.files[H5] = wrong
    r = cli("data", "download", "shapes3d", "--url", server.url(H5), "--sha256", sha(shapes_bytes))
    error_sentence(r, f"has sha256 {sha(wrong)}, expected {sha(shapes_bytes)} (--sha256)", "set aside as",
                   "nothing was prepared")
    assert not is_prepared("shapes3d") and not (paths.data_root() / "shapes3d").exists()
    folder = downloads("shapes3d")
    assert (folder / "3dshapes.h5.rejected").read_bytes() == wrong
    assert not (folder / "3dshapes.h5").exists() and not (folder / "3dshapes.h5.part").exists()


def test_catalog_md5_and_size_are_enforced(cli, server, monkeypatch):
    data = blob(4096)
    server.files["/toy.npz"] = data
    md5 = hashlib.md5(data).hexdigest()
    point_catalog(monkeypatch, "mpi3d_toy", url=server.url("/toy.npz"), hash="0" * 32)
    r = cli("data", "download", "mpi3d_toy", "--no-prepare")
    error_sentence(r, f"has md5 {md5}, expected {'0' * 32} (the catalog)")
    point_catalog(monkeypatch, "mpi3d_toy", url=server.url("/toy.npz"), hash=md5, size=4000)
    one_sentence(cli("data", "download", "mpi3d_toy", "--no-prepare"),
                   f"{server.url('/toy.npz')} serves 4,096 bytes, but mpi3d_toy.npz is 4,000 bytes (the catalog)")
    point_catalog(monkeypatch, "mpi3d_toy", url=server.url("/toy.npz"), hash=md5, size=4096)
    r = cli("data", "download", "mpi3d_toy", "--no-prepare")
    assert r.exit_code == 0 and "md5 matches the catalog" in r.stdout


def test_replaced_mpi3d_real_is_reported_not_refused(cli, server, monkeypatch):
    data = blob(2048)
    server.files["/real.npz"] = data
    point_catalog(monkeypatch, "mpi3d_real", url=server.url("/real.npz"))
    r = cli("data", "download", "mpi3d_real", "--no-prepare")
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())  # the warning is wrapped to the console's width
    assert f"has md5 {hashlib.md5(data).hexdigest()}, not 0f33f609918fb5c97996692f91129802" in said
    assert "replaced mpi3d_real.npz on 2025-04-17" in said


def test_404_and_refused_connection_are_one_sentence(cli, server):
    r = cli("data", "download", "shapes3d", "--url", server.url("/moved.h5"))
    one_sentence(r, f"{server.url('/moved.h5')} answered HTTP 404 Not Found",
                   "`fqvae data prepare shapes3d --source FILE`")
    url = f"http://127.0.0.1:{closed_port()}/3dshapes.h5"
    r = cli("data", "download", "shapes3d", "--url", url)
    one_sentence(r, f"cannot reach {url} (connection refused)", "`fqvae data prepare shapes3d --source FILE`")
    assert not is_prepared("shapes3d")
    one_sentence(cli("data", "download", "shapes3d", "--sha256", "abc"), "--sha256 takes 64 hexadecimal digits")
    one_sentence(cli("data", "download", "synth3d"), "'synth3d' is built in and has nothing to download")


def test_server_errors_are_retried_then_reported(cli, server, monkeypatch):
    monkeypatch.setattr(fetch, "RETRIES", 2)
    server.status[H5] = 503
    r = cli("data", "download", "shapes3d", "--url", server.url(H5))
    assert r.exit_code == 1
    assert r.stderr.count("retrying in") == 2 and len(server.requests) == 3
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: downloading {server.url(H5)} failed after "
                                                        f"3 attempts (last: HTTP 503")


def test_a_second_download_of_the_same_dataset_is_refused(cli, server, shapes_bytes):
    server.files[H5] = shapes_bytes
    folder = downloads("shapes3d")
    folder.mkdir(parents=True)
    with download._holding_lock(folder, "shapes3d"):
        holder = (folder / ".lock").read_text().strip()
        r = cli("data", "download", "shapes3d", "--url", server.url(H5))
    one_sentence(r, f"another download of 'shapes3d' is running ({holder})", "wait for it to finish")
    assert f":{os.getpid()}, since " in holder and server.requests == []
    assert cli("data", "download", "shapes3d", "--url", server.url(H5)).exit_code == 0  # released


# ---- Google Drive (gdown stands in for Google) -------------------------------------------------------

def fake_gdown(monkeypatch, behaviour):
    module = types.ModuleType("gdown")
    calls = []

    def fake_download(id=None, output=None, quiet=False, resume=False, progress=None):  # noqa: A002
        calls.append({"id": id, "output": output, "resume": resume})
        return behaviour(output, progress)

    module.download = fake_download
    monkeypatch.setitem(sys.modules, "gdown", module)
    return calls


def test_drive_without_gdown_names_the_extra_and_the_manual_route(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    one_sentence(cli("data", "download", "isaac3d"), "needs the optional package gdown (pip install "
                   "'fqvae[drive]')", "1OmQ1G2wnm6eTsSFGTKFZZAh5D3nQTW1B", "`fqvae data prepare isaac3d --source FILE`")


def test_drive_refusal_gives_the_manual_route(cli, monkeypatch):
    def refuse(output, progress):
        raise RuntimeError("Too many users have viewed or downloaded this file recently.\nMore lines")

    fake_gdown(monkeypatch, refuse)
    r = cli("data", "download", "mpi3d")
    one_sentence(r, "Google Drive did not hand over real3d_complicated_shapes_ordered.npz (Too many users have "
                   "viewed or downloaded this file recently.)", "in a browser and run `fqvae data prepare mpi3d "
                   "--source FILE`")
    assert not is_prepared("mpi3d")


def test_drive_download_is_verified_recorded_and_prepared(cli, monkeypatch, tmp_path):
    archive = zip_folder(write_isaac(tmp_path / "Isaac3D_down128"), tmp_path / "Isaac3D_down128.zip")
    data = archive.read_bytes()

    def deliver(output, progress):
        with open(output, "wb") as fh:
            fh.write(data)
        progress(len(data), len(data))
        return output

    calls = fake_gdown(monkeypatch, deliver)
    r = cli("data", "download", "isaac3d")
    assert r.exit_code == 0, r.stderr
    assert calls == [{"id": "1OmQ1G2wnm6eTsSFGTKFZZAh5D3nQTW1B", "resume": True,
                      "output": str(downloads("isaac3d") / "Isaac3D_down128.zip.part")}]
    assert f"sha256 {sha(data)}: no published hash to check; recorded in meta.json when prepared" in r.stdout
    src = PreparedDataset(paths.data_root() / "isaac3d").meta["source"]
    assert src["sha256"] == sha(data) and src["url"] == catalog.SOURCES["isaac3d"].url and "expected" not in src
    assert "prepared isaac3d: 8 images 64x64" in r.stdout


# ---- every missing dataset names the command that gets it -----------------------------------------

def test_missing_dataset_names_the_download(cli):
    r = cli("train", "--model", "ae", "--dataset", "isaac3d")
    one_sentence(r, "dataset 'isaac3d' is not prepared", "run `fqvae data download isaac3d` (about 13.0 GB "
                   "download), or `fqvae data prepare isaac3d --source PATH`")
    one_sentence(cli("data", "prepare", "mpi3d"), "needs --source PATH", "or run `fqvae data download mpi3d`")
    rows = {r["name"]: r for r in json.loads(cli("data", "list", "--json").stdout)}
    assert rows["shapes3d"]["download"] == {"url": "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
                                            "bytes": 267_573_662, "exact": True, "hash_pinned": True,
                                            "algorithm": "sha256", "via": "http"}
    assert rows["mpi3d_real"]["download"]["hash_pinned"] is False
    assert rows["mpi3d_toy"]["download"]["algorithm"] == "md5" and rows["mpi3d_toy"]["download"]["hash_pinned"]
    assert rows["isaac3d"]["download"]["via"] == "google drive" and rows["isaac3d"]["download"]["algorithm"] is None
    assert "download" not in rows["synth3d"]
    assert "download" in cli("data", "--help").stdout
    table = cli("data", "list").stdout
    assert "267.6 MB" in table and "sha256 pinned" in table and "~13.0 GB" in table
