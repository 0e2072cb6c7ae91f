"""`fqvae data download` against every hostile server of tests/hostile_servers.py (an endless body, a
stalled or trickling transfer, redirects to other schemes and in loops, unreadable headers), and the
cases that need more than one request: a file replaced on the server between a cut and its resume (with
an ETag or a Last-Modified), a byte cap from the catalog's size, and --root at a file. Each ends in one
sentence, bounded on disk, and never in a spliced or unbounded file."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from helpers import error_sentence
from hostile_servers import CASES, MAX_BYTES, SLOW_BYTES, STALL_S, Hostile
from http_server import etag

from fqvae_cli import paths
from fqvae_cli.data import catalog, fetch


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.01)
    monkeypatch.setattr(fetch, "STALL_S", STALL_S)
    monkeypatch.setattr(fetch, "SLOW_BYTES", SLOW_BYTES)


def folder():
    return paths.data_root() / "downloads" / "mpi3d_toy"


def written() -> int:
    return sum(p.stat().st_size for p in folder().glob("mpi3d_toy.npz*")) if folder().exists() else 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_server(cli, server, monkeypatch, case: Hostile):
    monkeypatch.setattr(fetch, "RETRIES", 0)
    url = case.setup(server)
    r = cli("data", "download", "mpi3d_toy", "--url", url, "--no-prepare", "--max-bytes", str(MAX_BYTES))
    error_sentence(r, *case.says(server))
    assert written() <= case.keeps_at_most
    assert not (folder() / "mpi3d_toy.npz").exists()


def test_endless_body_stops_at_a_margin_over_the_catalog_size(cli, server, monkeypatch):
    """No --max-bytes: the cap is 1.25 times the catalog's approximate size."""
    spec = catalog.DATASETS["mpi3d_toy"]
    monkeypatch.setitem(catalog.DATASETS, "mpi3d_toy", dataclasses.replace(
        spec, download=dataclasses.replace(spec.download, approx_bytes=100_000)))
    server.endless["/e"] = b"\1" * 4096
    r = cli("data", "download", "mpi3d_toy", "--url", server.url("/e"), "--no-prepare")
    error_sentence(r, f"{server.url('/e')} sent more than 125,000 bytes (1.25 x the catalog's approximate size, "
                 f"100.0 kB)", "pass --max-bytes")
    assert written() == 0 and server.bytes_sent["/e"] < 10_000_000


def test_catalog_size_caps_a_body_without_length(cli, server, monkeypatch):
    """A known size is the cap: a server that sends more, without a Content-Length, is stopped there."""
    data = hashlib.shake_256(b"x").digest(5000)
    spec = catalog.DATASETS["mpi3d_toy"]
    monkeypatch.setitem(catalog.DATASETS, "mpi3d_toy", dataclasses.replace(spec, download=dataclasses.replace(
        spec.download, url=server.url("/toy.npz"), size=4000, hash=hashlib.md5(data[:4000]).hexdigest())))
    server.endless["/toy.npz"] = data
    r = cli("data", "download", "mpi3d_toy", "--no-prepare")
    error_sentence(r, f"{server.url('/toy.npz')} sent more than 4,000 bytes (the file's size, from the catalog)")


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_a_file_replaced_between_cut_and_resume_is_fetched_again_whole(cli, server, validator):
    """The server ignores If-Range (a broken mirror) and answers the resume 206 with the new version's
    tail: the changed validator is noticed and the file fetched again from byte 0, never spliced."""
    v1 = hashlib.shake_256(b"v1").digest(10_000)
    v2 = hashlib.shake_256(b"v2").digest(10_000)
    server.validator = validator
    server.honour_if_range = False
    server.files["/f.npz"] = v1
    server.drop["/f.npz"] = (5000, 1)
    server.next_version["/f.npz"] = v2
    r = cli("data", "download", "mpi3d_toy", "--url", server.url("/f.npz"), "--no-prepare")
    assert r.exit_code == 0, r.stderr
    kept = folder() / "mpi3d_toy.npz"
    assert kept.read_bytes() == v2
    assert server.ranges("/f.npz") == [None, "bytes=5000-", None]
    sent = server.requests[1]["if_range"]
    assert sent == (etag(v1) if validator == "etag" else _last_modified(v1))
    said = " ".join(r.stderr.split())
    assert "the file changed on the server since the partial download" in said and "starting over" in said
    state = json.loads((folder() / "state.json").read_text())
    assert state["hashes"]["sha256"] == hashlib.sha256(v2).hexdigest()
    assert f"sha256 {hashlib.sha256(v2).hexdigest()}" in r.stdout


def _last_modified(data: bytes) -> str:
    from http_server import last_modified

    return last_modified(data)


def test_root_at_a_file_is_one_sentence(cli, server, tmp_path):
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("x")
    server.files["/t.npz"] = b"123"
    r = cli("data", "download", "mpi3d_toy", "--url", server.url("/t.npz"), "--root", str(not_a_folder),
            "--no-prepare")
    error_sentence(r, f"cannot create the folder {not_a_folder}/downloads/mpi3d_toy for the download of mpi3d_toy")
    assert server.requests == [] and not_a_folder.read_text() == "x"


def test_max_bytes_must_be_positive(cli):
    error_sentence(cli("data", "download", "mpi3d_toy", "--max-bytes", "0"), "--max-bytes must be a positive")


def test_a_stalled_transfer_keeps_its_bytes_and_a_rerun_resumes(cli, server, monkeypatch):
    monkeypatch.setattr(fetch, "RETRIES", 0)
    data = hashlib.shake_256(b"stall").digest(5000)
    server.files["/s.npz"] = data
    server.stall["/s.npz"] = 1000  # 1,000 bytes, then nothing
    args = ("data", "download", "mpi3d_toy", "--url", server.url("/s.npz"), "--no-prepare")
    error_sentence(cli(*args), f"(last: the transfer stalled: no byte for {STALL_S:g}s); 1.0 kB are kept in",
              "rerun to resume")
    assert (folder() / "mpi3d_toy.npz.part").read_bytes() == data[:1000]
    del server.stall["/s.npz"]
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    assert server.ranges("/s.npz") == [None, "bytes=1000-"] and (folder() / "mpi3d_toy.npz").read_bytes() == data
