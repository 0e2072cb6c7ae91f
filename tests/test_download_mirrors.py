"""The mirror chain of `fqvae data download`: several sources per file, tried in order, the same digest
enforced whichever answers; one line per failed source; `--url` repeatable; a partial file resumed from
its own source; and `fqvae data download --list`. Every server is a loopback FileServer."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from writers import write_shapes3d

from fqvae_cli import paths
from fqvae_cli.data import catalog, fetch
from fqvae_cli.data.catalog import Mirror
from fqvae_cli.data.store import PreparedDataset, is_prepared


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF_S", 0.01)
    monkeypatch.setattr(fetch, "RETRIES", 1)
    monkeypatch.setattr(fetch, "STALL_S", 0.5)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> bytes:
    return write_shapes3d(tmp_path_factory.mktemp("src") / "3dshapes.h5").read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mirrored(monkeypatch, name: str, urls: list[str], **changes) -> None:
    """The catalog entry of `name` served from `urls` (the first as the official host, the rest mirrors)."""
    spec = catalog.DATASETS[name]
    mirrors = tuple(Mirror(u, "a test mirror") for u in urls[1:])
    monkeypatch.setitem(catalog.DATASETS, name, dataclasses.replace(spec, download=dataclasses.replace(
        spec.download, url=urls[0], mirrors=mirrors, **changes)))


def said(result) -> str:
    return " ".join(result.stderr.split())  # warnings are wrapped to the console's width


def test_first_404_second_slow_then_cut_third_right(cli, server, monkeypatch, shapes):
    monkeypatch.setattr(fetch, "SLOW_BYTES", 10)  # 100 bytes a second is slow but not stalled here
    server.files["/b/3dshapes.h5"] = shapes
    server.drop["/b/3dshapes.h5"] = (50, 10)  # 50 bytes at 100 a second, then cut, every time
    server.trickle["/b/3dshapes.h5"] = 0.01
    server.files["/c/3dshapes.h5"] = shapes
    urls = [server.url(f"/{x}/3dshapes.h5") for x in "abc"]
    mirrored(monkeypatch, "shapes3d", urls, size=len(shapes), hash=sha(shapes))
    r = cli("data", "download", "shapes3d")
    assert r.exit_code == 0, r.stderr
    text = said(r)
    assert f"source 1/3 failed: {urls[0]} answered HTTP 404 Not Found; trying the next." in text
    assert (f"source 2/3 failed: {urls[1]} failed after 2 attempts (last: the connection closed after 100 B of "
            f"{len(shapes) / 1000:.1f} kB); trying the next.") in text  # 50 bytes, then 50 more resumed
    assert f"downloaded from {urls[2]}" in r.stdout and "sha256 matches the catalog" in r.stdout
    src = PreparedDataset(paths.data_root() / "shapes3d").meta["source"]
    assert src["url"] == urls[2] and src["sha256"] == sha(shapes)
    assert [q["path"] for q in server.requests] == ["/a/3dshapes.h5", "/b/3dshapes.h5", "/b/3dshapes.h5",
                                                   "/c/3dshapes.h5"]


def test_a_mirror_with_the_wrong_digest_is_refused_and_never_prepared(cli, server, monkeypatch, shapes):
    wrong = shapes[:-1] + bytes([shapes[-1] ^ 1])
    server.files["/evil/3dshapes.h5"] = wrong
    server.files["/good/3dshapes.h5"] = shapes
    urls = [server.url("/evil/3dshapes.h5"), server.url("/good/3dshapes.h5")]
    mirrored(monkeypatch, "shapes3d", urls, size=len(shapes), hash=sha(shapes))
    r = cli("data", "download", "shapes3d")
    assert r.exit_code == 0, r.stderr
    assert f"source 1/2 failed: 3dshapes.h5 from {urls[0]} has sha256 {sha(wrong)}, expected {sha(shapes)}" \
        in said(r)
    assert PreparedDataset(paths.data_root() / "shapes3d").meta["source"]["url"] == urls[1]

    # Every source wrong: refused, nothing prepared, the last wrong file set aside.
    mirrored(monkeypatch, "shapes3d", [urls[0], urls[0]], size=len(shapes), hash=sha(shapes))
    r = cli("data", "download", "shapes3d", "--force")
    assert r.exit_code == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: none of the 2 sources of shapes3d delivered 3dshapes.h5"), last
    assert "source 2/2 failed" in said(r) and "no source is left" in said(r)
    rejected = paths.data_root() / "downloads" / "shapes3d" / "3dshapes.h5.rejected"
    assert rejected.read_bytes() == wrong
    assert PreparedDataset(paths.data_root() / "shapes3d").meta["source"]["url"] == urls[1]  # the good copy stays


def test_repeated_url_is_tried_in_order_with_the_same_digest(cli, server, shapes):
    server.files["/x.h5"] = b"not it"
    server.files["/y.h5"] = shapes
    a, b, c = server.url("/missing.h5"), server.url("/x.h5"), server.url("/y.h5")
    r = cli("data", "download", "shapes3d", "--url", a, "--url", b, "--url", c, "--sha256", sha(shapes))
    assert r.exit_code == 0, r.stderr
    text = said(r)
    assert f"source 1/3 failed: {a} answered HTTP 404" in text
    assert f"source 2/3 failed: 3dshapes.h5 from {b} has sha256 {sha(b'not it')}" in text
    assert f"downloaded from {c}" in r.stdout


def test_a_partial_file_is_resumed_from_its_own_source(cli, server, monkeypatch, shapes):
    monkeypatch.setattr(fetch, "RETRIES", 0)
    server.files["/b.h5"] = shapes
    server.drop["/b.h5"] = (3000, 1)
    urls = [server.url("/a.h5"), server.url("/b.h5")]
    mirrored(monkeypatch, "shapes3d", urls, size=len(shapes), hash=sha(shapes))
    r = cli("data", "download", "shapes3d")
    assert r.exit_code == 1 and not is_prepared("shapes3d")
    part = paths.data_root() / "downloads" / "shapes3d" / "3dshapes.h5.part"
    assert part.read_bytes() == shapes[:3000]
    server.requests.clear()
    r = cli("data", "download", "shapes3d")
    assert r.exit_code == 0, r.stderr
    assert [(q["path"], q["range"]) for q in server.requests] == [("/b.h5", "bytes=3000-")]
    assert PreparedDataset(paths.data_root() / "shapes3d").meta["source"]["sha256"] == sha(shapes)


def test_download_list(cli, server, monkeypatch, shapes):
    mirrored(monkeypatch, "shapes3d", ["https://example.invalid/3dshapes.h5", "https://mirror.invalid/3dshapes.h5"])
    r = cli("data", "download", "--list")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    at = lines.index("shapes3d: 267.6 MB, digest pinned (sha256), not prepared")
    assert lines[at + 1:at + 3] == ["  1. https://example.invalid/3dshapes.h5", "  2. https://mirror.invalid/3dshapes.h5"]
    assert "mpi3d_real: about 12.7 GB, digest none, not prepared" in lines
    assert "mpi3d_toy: about 12.7 GB, digest pinned (md5), not prepared" in lines
    assert not any(line.startswith("synth3d") for line in lines)

    # A dataset prepared here from a file with no pinned hash: its sha256 is recorded.
    server.files["/r.npz"] = b""
    import numpy as np

    from fqvae_cli.data.store import prepare

    src = paths.data_root().parent / "m.npz"
    src.parent.mkdir(parents=True, exist_ok=True)
    np.savez(src, images=np.zeros((2, 1, 1, 3), np.uint8))
    prepare("mpi3d_real", src, factor_sizes=[2, 1, 1, 1, 1, 1, 1])
    rows = {row["name"]: row for row in json.loads(cli("data", "download", "--list", "--json").stdout)}
    assert rows["mpi3d_real"]["digest"] == "recorded" and rows["mpi3d_real"]["prepared"] is True
    assert rows["mpi3d_real"]["hash"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert rows["shapes3d"]["sources"] == ["https://example.invalid/3dshapes.h5", "https://mirror.invalid/3dshapes.h5"]


def test_no_name_and_no_list_is_one_sentence(cli):
    r = cli("data", "download")
    assert r.exit_code == 2 and r.stderr.strip() == ("error: name a dataset to download (`fqvae data download "
                                                     "--list` shows them).")
