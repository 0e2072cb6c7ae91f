"""Nothing lost, nothing unsafe: user-named outputs never replace fqvae's state or a special file, a run
resumes from its newest good checkpoint, metrics never reuse an image, a stop signal is one sentence,
and exported CSV cells are never formulas."""

from __future__ import annotations

import csv
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, fqvae_subprocess, stop_after_checkpoint

# ----------------------------------------------------------------------------- one check for every --out

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


# ----------------------------------------------------------------------------- CSV cells are never formulas

def test_csv_export_neutralises_formulas(cli, tmp_path):
    from fqvae_cli.registry.store import Registry

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


# ----------------------------------------------------------------------------- distinct images per protocol

class _Grid:
    def __init__(self, size):
        from fqvae_cli.data.factors import FactorSpace

        self.space = FactorSpace(("a", "b"), (size // 4, 4))


def test_protocol_rows_are_distinct_images_and_refused_beyond_the_dataset():
    from fqvae_cli.errors import UsageError
    from fqvae_cli.metrics.codes import sample_indices

    idx = sample_indices(_Grid(648), 450, seed=3)
    assert len(set(idx.tolist())) == 450 and idx.min() >= 0 and idx.max() < 648
    assert not set(idx[:300].tolist()) & set(idx[300:450].tolist())  # DCI train and test share no image
    assert np.array_equal(idx, sample_indices(_Grid(648), 450, seed=3))
    assert len(sample_indices(_Grid(648), 648, seed=0)) == 648  # the whole grid, once each
    with pytest.raises(UsageError, match=r"paper protocol needs 15,000 distinct images but the dataset has only 648"):
        sample_indices(_Grid(648), 15000, seed=0, what="the paper protocol")


# ----------------------------------------------------------------------------- resume from the newest good checkpoint

@pytest.fixture
def stopped_run(cli, small_data, workspace, monkeypatch):
    """A tiny 12-iteration run stopped (Ctrl-C) right after its checkpoint at 9, with checkpoints at 3, 6, 9."""
    from fqvae_cli.registry.store import Registry

    with monkeypatch.context() as m:
        stop_after_checkpoint(m, 9)
        res = cli("train", "--model", "ae", *TINY, "--steps", "12", "--set", "train.keep_checkpoints=4",
                  "--name", "r")
    assert res.exit_code == 130, res.stderr
    with Registry() as reg:
        run = reg.get_run("r")
        weights = {a.step: Path(a.path) for a in reg.artifacts(run.id, kind="checkpoint")}
    assert run.status == "interrupted" and sorted(weights) == [3, 6, 9]
    return run, weights


def _status(ref="r"):
    from fqvae_cli.registry.store import Registry

    with Registry() as reg:
        return reg.get_run(ref).status


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(cli, stopped_run, damage):
    from safetensors.numpy import load_file

    _run, weights = stopped_run
    original = load_file(str(weights[9]))
    if damage == "truncate":
        data = weights[9].read_bytes()
        weights[9].write_bytes(data[: len(data) // 2])
    else:
        weights[9].unlink()
    res = cli("train", "--resume", "r")
    assert res.exit_code == 0, res.stderr
    assert "skipping the checkpoint at iteration 9" in res.stderr
    assert "from iteration 6" in res.stderr
    assert _status() == "finished"
    resumed = load_file(str(weights[9]))  # iteration 9 again, trained from 6: the same numbers
    assert all(np.array_equal(resumed[k], original[k]) for k in original)
    if damage == "truncate":
        assert weights[9].with_name(weights[9].name + ".set-aside").exists()  # kept, not deleted


@pytest.mark.slow
def test_resume_from_a_chosen_checkpoint_and_refusals_leave_the_run_as_it_was(cli, stopped_run):
    _run, weights = stopped_run
    for w in weights.values():
        w.write_bytes(b"broken")
    res = cli("train", "--resume", "r")
    assert res.exit_code != 0
    assert "no checkpoint that verifies" in res.stderr and "iteration 3" in res.stderr
    assert _status() == "interrupted"  # a refused resume never marks the run failed
    res = cli("train", "--resume", "r", "--checkpoint", "4")
    assert res.exit_code != 0 and "has no checkpoint at iteration 4; it has: 3, 6, 9" in res.stderr
    assert _status() == "interrupted"
    assert cli("train", "--checkpoint", "3").exit_code == 2  # --checkpoint only with --resume


@pytest.mark.slow
def test_resume_chooses_an_older_checkpoint(cli, stopped_run):
    _run, weights = stopped_run
    res = cli("train", "--resume", "r", "--checkpoint", "3")
    assert res.exit_code == 0, res.stderr
    assert "from iteration 3" in res.stderr and "6, 9" in res.stderr  # the newer two set aside
    assert weights[6].with_name(weights[6].name + ".set-aside").exists()
    assert _status() == "finished"


_FULL_DISK = """
import os, resource, sys
from fqvae_cli.training import recorder
_save = recorder.Recorder.checkpoint
def checkpoint(self, iteration, model, state):
    if self.last_checkpoint:  # after the first checkpoint: files may not grow past a size below a checkpoint's
        limit = int(os.environ["LIMIT_BYTES"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    _save(self, iteration, model, state)
recorder.Recorder.checkpoint = checkpoint
from fqvae_cli.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_keeps_the_last_good_one(small_data, workspace, tmp_path):
    from fqvae_cli.registry.store import Registry

    probe = subprocess.run([sys.executable, "-m", "fqvae_cli", "train", "--model", "ae", *TINY, "--steps", "3",
                            "--name", "probe"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    with Registry() as reg:
        arts = reg.artifacts(reg.get_run("probe").id)
    smallest = min(a.bytes for a in arts if a.kind.startswith("checkpoint"))
    env = {**os.environ, "FQVAE_PLAIN_PROGRESS": "1", "LIMIT_BYTES": str(smallest - 1)}
    res = subprocess.run([sys.executable, "-c", _FULL_DISK, "train", "--model", "ae", *TINY,
                          "--name", "r"], capture_output=True, text=True, env=env)
    assert res.returncode == 1, res.stderr
    assert "could not write the checkpoint at iteration 6" in res.stderr and "Traceback" not in res.stderr
    with Registry() as reg:
        run = reg.get_run("r")
        steps = sorted({a.step for a in reg.artifacts(run.id) if a.kind.startswith("checkpoint")})
    assert run.status == "interrupted" and "disk" in run.error
    assert steps == [3]
    ckpts = sorted(p.name for p in (workspace / "runs" / run.id / "checkpoints").iterdir())
    assert ckpts == ["step_00000003.safetensors", "step_00000003.state.pt"]  # nothing half-written


# ----------------------------------------------------------------------------- a stop signal outside training

@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_stop_signal_outside_training_is_one_sentence_with_its_exit_status(tmp_path, sig, code, said):
    data = tmp_path / "data"
    proc = fqvae_subprocess("data", "prepare", "synth3d", env={"FQVAE_DATA": str(data)})
    deadline = time.monotonic() + 120
    while not list(data.glob(".synth3d.*.partial")):  # rendering has begun: fqvae's handlers are in place
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"{said}" in err and "stopped `fqvae data prepare`" in err, err
    assert "Traceback" not in err
    assert not (data / "synth3d").exists()


def test_checkpoint_files_share_the_umask_mode(tmp_path):
    import torch

    from fqvae_cli.training.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        files = save_checkpoint(tmp_path, 1, torch.nn.Linear(2, 2), {}, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(files.weights.stat().st_mode) == stat.S_IMODE(files.state.stat().st_mode) == 0o644
