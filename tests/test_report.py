"""`fqvae report`: one HTML page of a registry's table and runs, read from the registry and the run
folders only, every picture present or a sentence saying how to make it, checked in headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser import check_page, screenshot

from fqvae_cli.registry.store import Registry

CELLS = ["--rows", "ae,qvae", "--set", "train.steps=6", "--set", "train.batch_size=8", "--set",
         "model.disc_width=32", "--protocol", "tiny"]


@pytest.fixture(scope="module")
def made(trained_home, tmp_path_factory) -> dict:
    """A copy of the session's trained workspace (tests/helpers.py build_trained_home): two QVAE seeds and
    one AE in the report's cells, trained and evaluated; QVAE seed 0 has its traversal drawn."""
    from helpers import copy_trained_home

    copy = copy_trained_home(trained_home, tmp_path_factory.mktemp("report-home"))
    return {"home": copy["home"], "runs": copy["report"]}


@pytest.fixture
def registry(small_data, tiny_protocol, monkeypatch, made) -> dict:
    monkeypatch.setenv("FQVAE_HOME", str(made["home"]))
    return made


def _state(home: Path) -> tuple:
    """What a report must not change: the registry's artifact rows and every file of the run folders."""
    with Registry() as reg:
        rows = sorted((a.run_id, a.kind, a.path, a.sha256) for r in reg.find_runs() for a in reg.artifacts(r.id))
    files = sorted((str(p), p.stat().st_size) for p in (home / "runs").rglob("*") if p.is_file())
    return rows, files


def test_report_shows_the_table_and_every_run(cli, registry, tmp_path):
    runs = registry["runs"]
    before = _state(registry["home"])
    out = tmp_path / "report"
    res = cli("report", *CELLS, "--out", out)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == str(out / "index.html")
    assert "3 run(s) in the report" in res.stderr
    assert _state(registry["home"]) == before
    html = (out / "index.html").read_text()
    assert "not drawn" not in html and "http" not in html  # nothing missing, nothing from a network
    for (model, seed), short in runs.items():
        assert f'<section class="run" id="run-{short}">' in html
        assert f'<a href="#run-{short}" title="run {short}">s{seed}</a>' in html
        folder = out / "runs" / short
        expected = {"curves.png", "traverse.png", "swap.png", "heatmap_nmi.png", "heatmap_importance.png"}
        if model == "qvae":
            expected |= {"codebook_health.png", "codebook.png"}
        assert {p.name for p in folder.iterdir() if p.is_file()} == expected
        assert sorted(p.name for p in (folder / "snapshots").iterdir()) == [f"step_{s:08d}.png" for s in range(1, 7)]
    with Registry() as reg:  # the traversal it had is copied, not drawn again
        run = reg.get_run(runs[("qvae", 0)])
        (fig,) = [a for a in reg.artifacts(run.id, kind="figure")]
    assert (out / "runs" / run.short_id / "traverse.png").read_bytes() == Path(fig.path).read_bytes()
    assert (out / "compare_table1.png").read_bytes()[:4] == b"\x89PNG"
    # written again into the same folder: replaced whole, but never over a file the report did not write
    (out / "stale.txt").write_text("from before")
    res = cli("report", *CELLS, "--out", out)
    assert res.exit_code == 2 and "holds files an earlier report did not write (stale.txt)" in res.stderr
    assert (out / "stale.txt").read_text() == "from before"
    (out / "stale.txt").unlink()
    res = cli("report", "--rows", "ae", *CELLS[2:], "--out", out)  # one row, to draw less
    assert res.exit_code == 0, res.stderr
    assert (out / "index.html").is_file()


def test_report_renders_in_headless_chromium(cli, registry, tmp_path):
    out = tmp_path / "report"
    assert cli("report", *CELLS, "--out", out).exit_code == 0
    found = check_page(out)
    html = (out / "index.html").read_text()
    assert len(found["images"]) == html.count("<img ") > 20
    broken = [i["src"] for i in found["images"] if not i["width"] > 0]
    assert broken == [], f"images that did not decode: {broken}"
    assert len(found["links"]) == html.count("<a href=") > 9
    dead = [link["href"] for link in found["links"] if not link["ok"]]
    assert dead == [], f"links that do not resolve: {dead}"
    shot = screenshot(out / "index.html", tmp_path / "report.png")
    assert shot.read_bytes()[:4] == b"\x89PNG"
    print(f"screenshot of the report: {shot}")


def test_what_cannot_be_drawn_says_how_to_make_it(cli, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("FQVAE_DATA", str(tmp_path / "no-data"))  # the dataset is not prepared here
    out = tmp_path / "report"
    res = cli("report", *CELLS, "--out", out)
    assert res.exit_code == 0, res.stderr
    html = (out / "index.html").read_text()
    ae = registry["runs"][("ae", 0)]
    notes = re.findall(r'<p class="missing"><b>([^<]+)</b>: not drawn: ([^<]+)</p>', html)
    assert ("latent swap", f"dataset &#x27;synth3d&#x27; is not built yet under {tmp_path / 'no-data'}; run "
            f"`fqvae data prepare synth3d`; make it with `fqvae swap {ae}`, then write the report again.") in notes
    assert len(notes) == 3 + 2 + 2  # AE: traversal, swap; each QVAE: swap and codebook (seed 0 has a traversal)
    assert (out / "runs" / registry["runs"][("qvae", 0)] / "traverse.png").is_file()
    assert (out / "runs" / ae / "heatmap_nmi.png").is_file()  # matrices need no dataset
    assert not (tmp_path / "no-data").exists()  # a report never renders a dataset


def test_report_folder_is_refused_where_it_would_replace_state(cli, registry, tmp_path):
    home, data = registry["home"], Path(os.environ["FQVAE_DATA"])
    cases = [(home, "holds the runs folder"), (home / "runs" / "x", "inside the runs folder"),
             (data / "synth3d", "inside the datasets folder"), (data.parent, "holds the datasets folder"),
             (home / "registry.db", "is the results registry"), (tmp_path / "file.txt", "is a file"),
             (tmp_path / "mine", "a folder with other files in it"), ("-", "must name a folder")]
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for target, needle in cases:
        res = cli("report", *CELLS, "--out", target)
        assert res.exit_code == 2, (target, res.stderr)
        assert needle in res.stderr and "Traceback" not in res.stderr, (target, res.stderr)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    res = cli("report", "--paper-table", "1,1", "--out", tmp_path / "r")
    assert res.exit_code == 2 and "names a table twice" in res.stderr
