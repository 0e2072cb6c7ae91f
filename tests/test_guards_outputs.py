"""Nothing a user names as an output replaces fqvae's state or a special file: every command with an
output option refuses the registry, a dataset, a run folder, a folder, a link, a FIFO or a device, and
changes none of them; `-` means standard output; a delete stays inside the runs folder; atomic writes never
replace a special file; exported CSV cells are never formulas; checkpoint files share one mode."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest

from fqvae_cli.registry.store import Registry, run_dir

# Every command that writes a path the user names, with the option that names it. A command added
# with such an option and not listed here fails test_every_output_option_is_listed.
OUT_COMMANDS = {
    ("traverse",): ["traverse", "nope"],
    ("swap",): ["swap", "nope"],
    ("figures", "heatmap"): ["figures", "heatmap", "nope"],
    ("figures", "codebook"): ["figures", "codebook", "nope"],
    ("figures", "compare"): ["figures", "compare"],
    ("runs", "export"): ["runs", "export"],
    ("runs", "plot"): ["runs", "plot", "nope"],
    ("table",): ["table"],
    ("data", "show"): ["data", "show", "synth3d"],
    ("data", "synth"): ["data", "synth"],
}

FOLDER_COMMANDS = {
    ("encode",): (["encode", "nope"], "--out"),
    ("score",): (["score", "--codes", "c.npy", "--factors", "f.npy"], "--save-matrices"),
    ("report",): (["report"], "--out"),
}

OUTPUT_OPTIONS = {"--out", "--save-matrices", "--bundle"}


def _commands(cmd, path=()):
    if hasattr(cmd, "commands"):  # a group
        for name, sub in cmd.commands.items():
            yield from _commands(sub, path + (name,))
    else:
        yield path, cmd

def test_every_output_option_is_listed():
    import typer

    from fqvae_cli.cli.main import app

    found = set()
    for path, cmd in _commands(typer.main.get_command(app)):
        for param in cmd.params:
            if set(getattr(param, "opts", [])) & OUTPUT_OPTIONS:
                found.add(path)
    assert found == set(OUT_COMMANDS) | set(FOLDER_COMMANDS), "a command writes a user-named path without a test"

def _state(path: Path):
    """What must not change: the entry's type, its link target or bytes, its device numbers."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return ("file", path.read_bytes())
    return (stat.S_IFMT(st.st_mode), st.st_rdev)

@pytest.fixture
def protected(cli, workspace, tmp_path, monkeypatch):
    """The workspace's registry, a prepared dataset's file, a run folder's file, and special files."""
    data = tmp_path / "data"
    monkeypatch.setenv("FQVAE_DATA", str(data))
    assert cli("runs", "list").exit_code == 0  # creates the registry
    (data / "synth3d").mkdir(parents=True)
    (data / "synth3d" / "images.npy").write_bytes(b"dataset bytes")
    run_folder = workspace / "runs" / ("ab" * 16)
    run_folder.mkdir(parents=True)
    (run_folder / "config.json").write_text("{}")
    targets = {
        "registry": workspace / "registry.db",
        "dataset": data / "synth3d" / "images.npy",
        "run folder": run_folder / "config.json",
        "folder": tmp_path,
    }
    link = tmp_path / "link.png"
    link.symlink_to(workspace / "registry.db")
    targets["symlink"] = link
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    targets["fifo"] = fifo
    if os.geteuid() == 0:
        dev = tmp_path / "null.png"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets["device"] = dev
    return targets

REASONS = {"registry": "results registry", "dataset": "datasets folder", "run folder": "runs folder",
           "folder": "is a folder", "symlink": "symbolic link", "fifo": "FIFO", "device": "character device"}

@pytest.mark.parametrize("command", sorted(OUT_COMMANDS), ids=" ".join)
def test_user_named_output_never_replaces_state_or_special_files(cli, protected, command):
    for kind, target in protected.items():
        before = _state(target)
        res = cli(*OUT_COMMANDS[command], "--out", str(target))
        assert res.exit_code == 2, (kind, res.stdout, res.stderr)
        assert REASONS[kind] in res.stderr and "Traceback" not in res.stderr, (kind, res.stderr)
        assert _state(target) == before, kind

@pytest.mark.parametrize("command", sorted(FOLDER_COMMANDS), ids=" ".join)
def test_user_named_output_folder_never_holds_state(cli, protected, workspace, command):
    args, option = FOLDER_COMMANDS[command]
    for kind in ("dataset", "run folder"):
        folder = protected[kind].parent
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        res = cli(*args, option, str(folder))
        assert res.exit_code == 2, (kind, res.stderr)
        assert REASONS[kind] in res.stderr, res.stderr
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

def test_atomic_write_never_replaces_a_special_file(tmp_path):
    from fqvae_cli.files import atomic_write_bytes

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(fifo, b"x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["fifo"]  # no temporary file left behind

@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_out_dash_means_standard_output(cli, name):
    res = cli("runs", "export", "--format", "json", "--out", name)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == "[]"
    res = cli("table", "--format", "csv", "--out", name)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("table,profile,protocol,dataset,row,label,n_seeds,dci_d,")
    assert "FactorQVAE" in res.stdout

# ---- deletes -------------------------------------------------------------------------------------

def test_delete_never_removes_a_folder_outside_the_runs_folder(cli, workspace, tmp_path):
    import sqlite3

    reg = Registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="evil")
    reg.transition(run.id, "finished")
    reg.close()
    victim = workspace / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("x")
    con = sqlite3.connect(workspace / "registry.db")
    con.execute("update runs set id = ? where id = ?", ("../victim", run.id))
    con.commit()
    con.close()
    with pytest.raises(Exception, match="not 32 hex digits"):
        run_dir(Registry().get_run("evil"))
    res = cli("runs", "delete", "evil", "--yes")
    assert res.exit_code == 0, res.stderr
    assert (victim / "keep.txt").read_text() == "x" and Registry().find_runs() == []

# ---- CSV cells are never formulas ----------------------------------------------------------------

def test_csv_export_neutralises_formulas(cli, tmp_path):
    evil = '=HYPERLINK("http://evil/x","click")'
    with Registry() as reg:
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name=evil)
        reg.log_metrics(run.id, [("dci_d", -0.25, 1, "eval", "quick")])
        for i, prefix in enumerate(("+", "-", "@")):
            reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=i + 1, config={}, name=f"{prefix}x")
    out = tmp_path / "runs.csv"
    assert cli("runs", "export", "--out", str(out)).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == ["'" + evil, "'+x", "'-x", "'@x"]
    assert rows[0]["quick:dci_d@eval"] == "-0.25"  # a negative number stays a number

# ---- checkpoint files ----------------------------------------------------------------------------

def test_checkpoint_files_share_the_umask_mode(tmp_path):
    import torch

    from fqvae_cli.training.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        files = save_checkpoint(tmp_path, 1, torch.nn.Linear(2, 2), {}, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(files.weights.stat().st_mode) == stat.S_IMODE(files.state.stat().st_mode) == 0o644
