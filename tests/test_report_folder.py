"""`fqvae report --out` onto an earlier report folder: the folder's marker lists what the report wrote, and
a folder that holds anything else (a user's notes, a folder of theirs) is refused; nothing of theirs is
ever deleted. The refusals name the path in the clause it belongs to."""

from __future__ import annotations

import json

from fqvae_cli.figures.report import MARKER, foreign_entries

ROWS = ["--rows", "factorqvae", "--device", "cpu"]


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_report_never_deletes_files_it_did_not_write(cli, tmp_path):
    rep = tmp_path / "rep"
    res = cli("report", *ROWS, "--out", rep)
    assert res.exit_code == 0, res.stderr
    marker = json.loads((rep / MARKER).read_text())
    assert marker == {"written_by": "fqvae report", "files": ["compare_table1.png", "index.html"]}

    (rep / "notes.txt").write_text("my notes")
    (rep / "mydir").mkdir()
    (rep / "mydir" / "plot.py").write_text("print(1)")
    before = _files(rep)
    res = cli("report", *ROWS, "--out", rep)
    assert res.exit_code == 2
    assert res.stderr == (f"error: --out {rep} holds files an earlier report did not write (mydir/, notes.txt); a "
                          "report replaces its folder whole, so move those out or choose a new folder.\n")
    assert _files(rep) == before

    (rep / "notes.txt").unlink()
    (rep / "mydir" / "plot.py").unlink()
    (rep / "mydir").rmdir()
    res = cli("report", *ROWS, "--out", rep)
    assert res.exit_code == 0, res.stderr
    assert sorted(_files(rep)) == [MARKER, "compare_table1.png", "index.html"]


def test_what_a_report_folder_holds_beyond_its_own_files(tmp_path):
    rep = tmp_path / "rep"
    (rep / "runs" / "ab12cd34").mkdir(parents=True)
    (rep / "runs" / "ab12cd34" / "curves.png").write_bytes(b"png")
    (rep / "index.html").write_text("<html>")
    (rep / MARKER).write_text(json.dumps({"written_by": "fqvae report",
                                          "files": ["index.html", "runs/ab12cd34/curves.png"]}))
    assert foreign_entries(rep) == []
    (rep / "runs" / "ab12cd34" / "mine.txt").write_text("x")
    (rep / "runs" / "other").mkdir()
    (rep / "runs" / "other" / "deep.txt").write_text("x")
    (rep / "compare_table1.png").write_bytes(b"png")  # not written by this report: its list says so
    assert foreign_entries(rep) == ["compare_table1.png", "runs/ab12cd34/mine.txt", "runs/other/"]

    # a marker from before the list was kept: the layout a report writes is its own, anything else is not
    (rep / MARKER).write_text("written by fqvae report; `fqvae report --out` may replace this folder\n")
    (rep / "runs" / "ab12cd34" / "mine.txt").unlink()
    (rep / "notes.txt").write_text("x")
    assert foreign_entries(rep) == ["notes.txt"]


def test_the_refusal_puts_the_path_in_its_clause(cli, workspace):
    runs = workspace / "runs"
    runs.mkdir(parents=True)
    res = cli("report", *ROWS, "--out", runs / "x")
    assert res.exit_code == 2
    assert res.stderr == (f"error: --out {runs / 'x'} is inside the runs folder {runs}, whose files the registry "
                          "records; choose a folder elsewhere.\n")
    res = cli("report", *ROWS, "--out", workspace)
    assert res.exit_code == 2
    assert res.stderr == (f"error: --out {workspace} holds the datasets folder ({workspace / 'data'}); choose a new "
                          "folder.\n")
