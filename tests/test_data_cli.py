"""`fqvae data ...` through the real entry point: exit codes, output, one-sentence refusals."""

from __future__ import annotations

import json

import h5py
import numpy as np
from PIL import Image


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_the_commands(cli):
    r = cli("data", "--help")
    assert r.exit_code == 0
    for command in ("prepare", "synth", "list", "info", "show"):
        assert command in r.stdout


def test_synth_prepare_info_round_trip(cli, tmp_path):
    h5 = tmp_path / "3dshapes.h5"
    r = cli("data", "synth", "--grid", "small", "--image-size", "32", "--out", h5)
    assert r.exit_code == 0 and "wrote" in r.stdout and "648 images 32x32" in r.stdout
    r = cli("data", "prepare", "shapes3d", "--source", h5)
    assert r.exit_code == 0, r.stderr
    assert "prepared shapes3d: 648 images 32x32" in r.stdout
    assert "note: a reduced grid (3,3,3,2,4,3)" in r.stderr
    r = cli("data", "info", "shapes3d", "--json")
    assert r.exit_code == 0
    info = json.loads(r.stdout)
    assert info["factor_sizes"] == [3, 3, 3, 2, 4, 3]
    assert info["factor_names"][0] == "floor_hue" and info["n_images"] == 648
    assert info["split"] == {"train": 518, "val": 65, "test": 65}
    assert info["source"]["name"] == "3dshapes.h5" and len(info["source"]["sha256"]) == 64
    r = cli("data", "prepare", "shapes3d", "--source", h5)
    assert r.exit_code == 0 and "already prepared from the same source" in r.stdout
    r = cli("data", "synth", "--grid", "small", "--image-size", "32", "--out", h5)
    one_line_error(r, "already exists; pass --force")
    assert cli("data", "synth", "--grid", "small", "--image-size", "32", "--out", h5, "--force").exit_code == 0


def test_list_info_show(cli, tmp_path):
    r = cli("data", "list", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) >= {"synth3d", "shapes3d", "mpi3d", "isaac3d"}
    assert not rows["synth3d"]["prepared"] and rows["synth3d"]["built_in"]
    assert cli("data", "prepare", "synth3d", "--grid", "small").exit_code == 0
    rows = {row["name"]: row for row in json.loads(cli("data", "list", "--json").stdout)}
    assert rows["synth3d"]["prepared"] and rows["synth3d"]["factor_sizes"] == [3, 3, 3, 2, 4, 3]
    r = cli("data", "list")
    assert r.exit_code == 0 and "synth3d" in r.stdout and "prepared" in r.stdout
    r = cli("data", "info", "synth3d")
    assert r.exit_code == 0 and "648 images 32x32" in r.stdout and "train 518, val 65, test 65" in r.stdout
    sheet = tmp_path / "sheet.png"
    r = cli("data", "show", "synth3d", "--out", sheet)
    assert r.exit_code == 0
    with Image.open(sheet) as im:
        # 6 factor rows of 64-pixel tiles (32 px x 2), up to 4 columns (shape), a 120-pixel label column.
        assert im.size == (120 + 4 * 66 + 2, 6 * 66 + 2)
        px = np.asarray(im)
    # Row "shape" (5th) holds 4 different images; row "scale" (4th) only 2, then white.
    assert px[4 * 66 + 30, 120 + 3 * 66 + 30].tolist() != [255, 255, 255]
    assert px[3 * 66 + 30, 120 + 3 * 66 + 30].tolist() == [255, 255, 255]


def test_swapped_rows_are_refused_naming_the_row(cli, tmp_path):
    h5 = tmp_path / "3dshapes.h5"
    assert cli("data", "synth", "--grid", "small", "--image-size", "32", "--out", h5).exit_code == 0
    with h5py.File(h5, "r+") as fh:
        labels = fh["labels"][...]
        labels[[100, 101]] = labels[[101, 100]]
        fh["labels"][...] = labels
    r = cli("data", "prepare", "shapes3d", "--source", h5)
    one_line_error(r, "label row 100 is out of row-major order")
    assert r.exit_code == 1
    assert not json.loads(cli("data", "list", "--json").stdout)[1]["prepared"]


def test_refusals_are_one_sentence(cli, tmp_path):
    one_line_error(cli("data", "prepare", "cifar"), "unknown dataset 'cifar'; choose one of: synth3d")
    r = cli("data", "prepare", "shapes3d")
    one_line_error(r, "needs --source PATH")
    assert r.exit_code == 2
    r = cli("data", "info", "mpi3d")
    one_line_error(r, "fqvae data prepare mpi3d --source PATH")
    assert r.exit_code == 1
    one_line_error(cli("data", "prepare", "shapes3d", "--source", tmp_path / "nope.h5"), "does not exist")
    one_line_error(cli("data", "synth", "--image-size", "48", "--out", tmp_path / "a.h5"),
                   "--image-size must be one of 32, 64")
    one_line_error(cli("data", "synth", "--grid", "tiny", "--out", tmp_path / "a.h5"), "unknown grid 'tiny'")
    np.savez(tmp_path / "m.npz", images=np.zeros((4, 2, 2, 3), np.uint8))
    one_line_error(cli("data", "prepare", "mpi3d", "--source", tmp_path / "m.npz", "--factor-sizes", "2,x"),
                   "--factor-sizes takes comma-separated integers")
    one_line_error(cli("data", "prepare", "mpi3d", "--source", tmp_path / "m.npz"),
                   "holds 4 images, which matches neither")
    r = cli("data", "prepare", "mpi3d", "--source", tmp_path / "m.npz", "--factor-sizes", "2,2,1,1,1,1,1")
    assert r.exit_code == 0 and "prepared mpi3d: 4 images 2x2" in r.stdout
    assert cli("data", "prepare", "synth3d", "--grid", "small").exit_code == 0
    one_line_error(cli("data", "show", "synth3d", "--out", tmp_path / "sheet.jpg"), "give --out a .png name")
    one_line_error(cli("data", "prepare", "synth3d"), "already prepared", "pass --force")
    assert not (tmp_path / "a.h5").exists()
