"""Bad input gets one sentence and a non-zero exit, before a run exists or anything is written: seeds,
grids (counted before they are expanded, capped, deduplicated), model sizes, settings, paths, run names,
files that are not what they claim, an unprepared dataset; threads are bounded by the CPUs this process may
use; a metric protocol never asks for more distinct images than the dataset has."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY

from fqvae_cli.registry.store import Registry


def one_sentence(res) -> bool:
    """A refusal: one line on stderr, no traceback, no catch-all."""
    return (res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
            and "unexpected" not in res.stderr)

# ---- seeds ---------------------------------------------------------------------------------------

def test_seeds_outside_0_to_2_32_get_one_sentence_before_anything_is_written(cli, small_data, workspace):
    from fqvae_cli.runs.sweep import parse_grid, queue_grid

    res = cli("train", "--seed", "-1", "--steps", "1")
    assert res.exit_code == 2
    assert not (workspace / "registry.db").exists() or Registry().find_runs() == []
    res = cli("train", "--seed", "99999999999999999999", "--steps", "1")
    assert res.exit_code == 2 and "4294967295" in res.stderr and one_sentence(res), res.stderr
    res = cli("evaluate", "nosuch", "--seed", "-1")
    assert res.exit_code == 2 and "--seed" in res.stderr and one_sentence(res), res.stderr
    res = cli("sweep", "--grid", "model=ae seed=0..99999999999999999999")
    assert res.exit_code == 2 and "4294967295" in res.stderr and one_sentence(res), res.stderr
    for refuse in (parse_grid, lambda grid: queue_grid(Registry(), grid)):
        with pytest.raises(Exception, match="a grid seed must be non-negative"):
            refuse("model=ae seed=-1")
    assert Registry().find_runs() == []

# ---- grids ---------------------------------------------------------------------------------------

def test_grids_are_counted_before_expanding_capped_and_deduplicated(cli):
    from typer.testing import CliRunner

    from fqvae_cli.cli.main import app
    from fqvae_cli.runs.sweep import parse_grid

    GRID_CEILING = 100_000
    res = cli("sweep", "--grid", "model=ae seed=0..100000000")
    assert res.exit_code == 2 and "100,000,001 combinations" in res.stderr and "--yes" in res.stderr
    res = cli("sweep", "--yes", "--grid", f"model=ae,qvae seed=0..{GRID_CEILING // 2}")
    assert res.exit_code == 2 and f"{GRID_CEILING + 2:,} combinations" in res.stderr and one_sentence(res)
    out = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"}).output
    assert f"{GRID_CEILING:,}" in out
    assert len(parse_grid("model=ae,ae seed=0,0,0")) == 1
    res = cli("sweep", "--grid", "model=ae seed=0,0,0")
    assert res.exit_code == 0, res.stderr
    assert len(Registry().find_runs()) == 1

def test_an_astronomical_grid_is_refused_at_once_even_with_yes(workspace):
    import resource

    grid = "model=ae " + " ".join(f"set.k{i}=" + ",".join(str(v) for v in range(10)) for i in range(20))

    def small_memory():  # a grid that were expanded would die here instead of filling the machine
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    for extra in ([], ["--yes"]):
        proc = subprocess.run([sys.executable, "-m", "fqvae_cli", "sweep", "--grid", grid, *extra],
                              capture_output=True, text=True, timeout=300, preexec_fn=small_memory,
                              env={**os.environ, "FQVAE_PLAIN_PROGRESS": "1"})
        assert proc.returncode == 2, proc.stderr
        assert "100,000,000,000,000,000,000 combinations" in proc.stderr and "100,000" in proc.stderr
        assert proc.stderr.count("\n") == 1
    assert not (workspace / "registry.db").exists() or Registry().find_runs() == []

def test_a_moderate_grid_with_yes_queues_exactly_its_product(cli):
    res = cli("sweep", "--grid", "model=ae,qvae seed=0..500", "--yes")
    assert res.exit_code == 0, res.stderr
    runs = Registry().find_runs()
    assert len(runs) == 1002 and len({(r.model, r.seed) for r in runs}) == 1002
    assert {r.status for r in runs} == {"queued"}

# ---- settings and sizes --------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["train.lr=true", "train.batch_size=true", "latent_dim=true", "model.beta=false"])
def test_true_false_is_refused_for_numbers(cli, setting):
    res = cli("train", "--set", setting, "--steps", "1")
    assert res.exit_code == 2 and "is not a true/false setting" in res.stderr, res.stderr
    assert Registry().find_runs() == []

def test_misspelt_dataset_column_is_refused(cli, tmp_path, monkeypatch):
    from fqvae_cli.experiments import experiments_path

    text = experiments_path().read_text()
    assert "\n  shapes3d:\n" in text
    bad = tmp_path / "experiments.yaml"
    bad.write_text(text.replace("\n  shapes3d:\n", "\n  shapes3D:\n", 1))
    monkeypatch.setenv("FQVAE_EXPERIMENTS", str(bad))
    res = cli("train", "--model", "betavae", "--steps", "1")
    assert res.exit_code == 2 and "shapes3D: unknown dataset column" in res.stderr, res.stderr
    monkeypatch.setenv("FQVAE_EXPERIMENTS", str(tmp_path))
    res = cli("train", "--steps", "1")
    assert res.exit_code == 2 and "is a folder" in res.stderr, res.stderr

def test_a_model_too_large_to_build_is_refused_before_a_run_exists(cli, small_data):
    res = cli("train", "--model", "ae", "--set", "model.latent_dim=1e9", "--steps", "1")
    assert res.exit_code == 2 and "parameters" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []
    res = cli("sweep", "--grid", "model=ae set.model.hidden=1000000000")
    assert res.exit_code == 2 and "parameters" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []

def test_a_bad_log_interval_is_refused_before_a_run_exists(cli, small_data, monkeypatch):
    monkeypatch.setenv("FQVAE_LOG_INTERVAL", "abc")
    res = cli("train", "--model", "ae", *TINY)
    assert res.exit_code == 2 and "FQVAE_LOG_INTERVAL" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []

def test_threads_are_bounded_by_the_cpus_this_process_may_use(cli, small_data):
    import torch

    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    try:
        res = cli("train", "--model", "ae", *TINY, "--set", f"train.threads={cores + 7}")
        assert res.exit_code == 0, res.stderr
        assert torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)
    assert f"train.threads={cores + 7}" in res.stderr and f"{cores} CPU" in res.stderr

# ---- paths, names and files ----------------------------------------------------------------------

def test_unusable_registry_and_data_locations_are_named(cli, monkeypatch):
    monkeypatch.setenv("FQVAE_DB", "sqlite:////proc/nope/r.db")
    res = cli("runs", "list")
    assert res.exit_code == 1 and "/proc/nope" in res.stderr and one_sentence(res), res.stderr
    monkeypatch.delenv("FQVAE_DB")
    monkeypatch.setenv("FQVAE_DATA", "/proc/nope")
    res = cli("train", "--steps", "1")
    assert res.exit_code == 1 and "/proc/nope" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []

def test_unprepared_dataset_leaves_no_run(cli, workspace):
    res = cli("train", "--dataset", "shapes3d", "--steps", "1")
    assert res.exit_code == 1 and "not prepared" in res.stderr
    assert Registry().find_runs() == []

def test_run_names_are_checked_in_one_place(cli, small_data):
    reg = Registry()
    first = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={})
    for bad in (first.short_id, first.id, first.id[:5], "a\nb", "tab\there", "   "):
        with pytest.raises(Exception, match="run name") as caught:
            reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name=bad)
        assert caught.value.exit_code == 2
    spaced = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="  spaced ")
    assert spaced.name == "spaced" and reg.get_run("spaced").id == spaced.id
    word = next(w for w in ("ae", "cafe", "beef") if not any(r.id.startswith(w) for r in reg.find_runs()))
    assert reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name=word).name == word
    res = cli("train", "--model", "ae", "--name", first.short_id, *TINY)
    assert res.exit_code == 2 and "run name" in res.stderr and one_sentence(res), res.stderr
    assert len(reg.find_runs()) == 3

def test_db_current_says_a_foreign_sqlite_file_is_not_a_registry(cli, tmp_path):
    path = tmp_path / "notes.db"
    con = sqlite3.connect(path)
    con.execute("create table notes (text)")
    con.commit()
    con.close()
    before = path.read_bytes()
    res = cli("db", "current", "--db", f"sqlite:///{path}")
    assert res.exit_code == 1 and "not an fqvae registry" in res.stderr and "first use" not in res.stdout
    assert path.read_bytes() == before

def test_urls_are_echoed_as_typed_with_the_password_hidden(cli):
    from fqvae_cli.registry.migrate import display_url

    res = cli("runs", "list", "--db", "sqlite:///:memory:")
    assert res.exit_code == 2 and "'sqlite:///:memory:'" in res.stderr and "%3A" not in res.stderr
    assert display_url("postgresql://fq:s%40cret@db.example/registry") == "postgresql://fq:***@db.example/registry"

def test_codes_beyond_float32_get_one_sentence(cli, tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 3))
    z[5, 1] = 1e308
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "s.npy", rng.integers(0, 3, size=(300, 2)))
    res = cli("score", "--codes", str(tmp_path / "z.npy"), "--factors", str(tmp_path / "s.npy"), "--dci-train",
              "200", "--dci-test", "100", "--infomec-n", "300")
    assert res.exit_code == 1 and "float32" in res.stderr and "row 5, column 1" in res.stderr, res.stderr
    assert one_sentence(res)

def test_score_refuses_text_named_npy_and_too_many_neighbours(cli, tmp_path):
    text = tmp_path / "codes.npy"
    text.write_text("1 2 3\n")
    np.save(tmp_path / "factors.npy", np.zeros((10, 2), dtype=np.int64))
    res = cli("score", "--codes", str(text), "--factors", str(tmp_path / "factors.npy"))
    assert res.exit_code == 1 and "does not start with the NumPy header" in res.stderr
    assert "pickle" not in res.stderr
    rng = np.random.default_rng(0)
    np.save(tmp_path / "z.npy", rng.normal(size=(300, 3)))
    np.save(tmp_path / "s.npy", rng.integers(0, 3, size=(300, 2)))
    res = cli("score", "--codes", str(tmp_path / "z.npy"), "--factors", str(tmp_path / "s.npy"), "--dci-train",
              "200", "--dci-test", "100", "--infomec-n", "300", "--neighbors", "5000")
    assert res.exit_code == 2 and "--neighbors 5000" in res.stderr, res.stderr

def test_minor_refusals(cli, workspace, tmp_path):
    reg = Registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={})
    assert reg.get_run(run.id[:2]).id == run.id  # a unique 2-character prefix
    res = cli("runs", "list", "--db", "sqlite://")
    assert res.exit_code == 2 and "in-memory registry" in res.stderr
    res = cli("table", "--protocol", "nosuch")
    assert res.exit_code == 2 and "unknown protocol 'nosuch'" in res.stderr
    reg.add_artifact(run.id, kind="checkpoint", path=tmp_path / "w.safetensors", bytes=1, sha256="0" * 64, step=3)
    res = cli("evaluate", run.short_id)
    assert res.exit_code == 2 and "has not finished training" in res.stderr
    from typer.testing import CliRunner

    from fqvae_cli.cli.main import app

    out = CliRunner().invoke(app, ["data", "list", "--help"], env={"COLUMNS": "200"}).output
    assert "WORKSPACE/data" in out

def test_console_rate_reads_per_minute_when_slow():
    from fqvae_cli.console import _fmt_rate

    assert _fmt_rate(1 / 120, "run") == "0.5 run/min" and _fmt_rate(3.0, "step") == "3.0 step/s"

# ---- distinct images per protocol ----------------------------------------------------------------

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
