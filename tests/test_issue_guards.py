"""Nothing wrong gets in: safe deletes and exports, one writer per run, runs that belong to their table,
data that matches its run, capped grids, strict --set values and seeds, and the minor refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fqvae_cli.experiments import COLUMNS
from fqvae_cli.registry.store import Registry, run_dir

FIXTURE = Path(__file__).parent / "data" / "registry_0002.db"


# The quick profile as it was when registry_0002.db was written (it has since moved to bf16 and more
# iterations; runs of the old setup rightly no longer fill the new profile's cells).
OLD_QUICK_TRAIN = {"steps": 3500, "batch_size": 64, "anneal_steps": 100000, "temperature_decay": 1.0e-5,
                   "schedule_reference_steps": 100000, "checkpoint_every": 500, "log_every": 50}


@pytest.fixture(autouse=True)
def old_quick_profile(tmp_path, monkeypatch):
    import yaml

    from fqvae_cli.experiments import experiments_path

    data = yaml.safe_load(experiments_path().read_text())
    data["profiles"]["quick"]["train"] = dict(OLD_QUICK_TRAIN)
    path = tmp_path / "experiments-old-quick.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    monkeypatch.setenv("FQVAE_EXPERIMENTS", str(path))


def _old_registry(tmp_path, drop=()) -> Registry:
    """A copy of the registry written at schema 0002 by an earlier fqvae; `drop` removes config keys
    (section, key) from every stored run, as a run recorded before those settings existed."""
    import sqlite3

    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    con = sqlite3.connect(path)
    for rid, text in con.execute("select id, config from runs").fetchall():
        cfg = json.loads(text)
        for section, key in drop:
            cfg[section].pop(key, None)
        con.execute("update runs set config = ? where id = ?", (json.dumps(cfg), rid))
    con.commit()
    con.close()
    return Registry(f"sqlite:///{path}")


# ---- item 4 and the cell-matching rule ------------------------------------------------------------

def test_old_runs_keep_their_cells_smoke_runs_do_not_and_n_counts_seeds(tmp_path):
    from fqvae_cli.runs.tables import build_table

    reg = _old_registry(tmp_path, drop=[("model", "eval_code"), ("train", "bf16"), ("train", "weight_decay")])
    t = build_table(reg, "1", "quick", protocol="quick")
    fq, ae = t.cells[("synth3d", "factorqvae")], t.cells[("synth3d", "ae")]
    assert fq.n == 2 and fq.mean[0] == pytest.approx((0.5 + 0.51) / 2)
    # seeds 0 (twice: the newest counts) and 1; the 2-step, batch-1 and other-lr runs stay out
    assert ae.n == 2 and ae.mean[0] == pytest.approx((0.6 + 0.51) / 2)
    names = {r.short_id: r.name for r in reg.find_runs()}
    assert {names[s] for s in ae.runs} == {"ae-0-again", "ae-1"}


def test_reproduce_does_not_take_a_smoke_run_for_a_cell(tmp_path):
    from fqvae_cli.runs.sweep import queue_table

    reg = _old_registry(tmp_path)
    report = queue_table(reg, "1", "quick", models=["ae"], seeds=4)
    assert len(report.done) == 2 and len(report.queued) == 2  # seeds 2 and 3 are new; smoke runs ignored
    queued = [reg.get_run(s) for s in report.queued]
    assert sorted(r.seed for r in queued) == [2, 3] and all(r.config["train"]["steps"] == 3500 for r in queued)


def test_a_run_on_other_data_leaves_the_cell(small_data, tmp_path):
    from fqvae_cli.runs.cell_sources import dataset_identity
    from fqvae_cli.runs.tables import build_table

    reg = _old_registry(tmp_path)
    here = dataset_identity("synth3d")
    other = {**here, "n_images": 480000, "factor_sizes": [10, 10, 10, 8, 4, 15]}
    fq = [r for r in reg.find_runs(model="factorqvae")]
    reg.set_dataset_fingerprint(fq[0].id, other)
    reg.set_dataset_fingerprint(fq[1].id, here)
    t = build_table(reg, "1", "quick", protocol="quick")
    assert t.cells[("synth3d", "factorqvae")].runs == [fq[1].short_id]


def test_extra_row_for_a_model_outside_the_paper(tmp_path):
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.tables import build_table

    reg = _old_registry(tmp_path)
    cfg = resolve_run_config("vqvae", None, "quick", 0)
    run = reg.create_run(model="vqvae", dataset="synth3d", profile="quick", seed=0, config=cfg.model_dump(mode="json"))
    reg.log_metrics(run.id, [(c, 0.4, None, "eval", "quick") for c in COLUMNS])
    reg.transition(run.id, "finished")
    t = build_table(reg, "1", "quick", protocol="quick", rows=["vqvae", "ae"])
    assert [k for k, _ in t.rows] == ["vqvae", "ae"]
    assert t.cells[("synth3d", "vqvae")].n == 1 and t.cells[("synth3d", "vqvae")].published is None
    assert len(build_table(reg, "1", "quick", protocol="quick").rows) == 9  # the paper's table is unchanged


# ---- item 6: grids --------------------------------------------------------------------------------

def test_grid_is_counted_before_expanding_and_duplicates_collapse(cli):
    from fqvae_cli.runs.sweep import parse_grid

    res = cli("sweep", "--grid", "model=ae seed=0..100000000")
    assert res.exit_code == 2 and "100,000,001 combinations" in res.stderr and "--yes" in res.stderr
    assert len(parse_grid("model=ae,ae seed=0,0,0")) == 1
    res = cli("sweep", "--grid", "model=ae seed=0,0,0")
    assert res.exit_code == 0, res.stderr
    assert len(Registry().find_runs()) == 1


# ---- item 1 and 2: deletes and exports --------------------------------------------------------------

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


def test_export_refuses_the_registry_a_dataset_and_a_folder(cli, workspace, small_data, tmp_path):
    Registry().close()
    db = workspace / "registry.db"
    before = db.read_bytes()
    for target, needle in ((db, "is the results registry"), (small_data / "synth3d" / "codes.npy", "datasets folder"),
                           (tmp_path, "is a folder")):
        res = cli("runs", "export", "--out", str(target))
        assert res.exit_code == 2 and needle in res.stderr, res.stderr
    assert db.read_bytes() == before
    assert cli("runs", "export", "--out", str(tmp_path / "runs.csv")).exit_code == 0


# ---- item 3: one writer per run -------------------------------------------------------------------

def test_resume_claim_refuses_a_live_holder_and_names_it(workspace):
    reg = Registry()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        who = f"{socket.gethostname()}:{holder.pid}"
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, worker=who)
        with pytest.raises(Exception, match=f"is being trained by {who}"):
            reg.claim_for_resume(run.id, pid=os.getpid())
        # a live local holder is never requeued, however short the staleness limit
        assert reg.requeue_stale(0) == []
    finally:
        holder.kill()
        holder.wait()
    claimed = reg.claim_for_resume(run.id, pid=os.getpid())  # its process is gone: take it over
    assert claimed.status == "running" and claimed.worker.endswith(f":{os.getpid()}")
    reg.transition(run.id, "finished")
    with pytest.raises(Exception, match="already finished"):
        reg.claim_for_resume(run.id)


def test_resume_of_a_live_run_is_refused_through_the_cli(cli, workspace, small_data):
    reg = Registry()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        from fqvae_cli.experiments import resolve_run_config

        cfg = resolve_run_config("ae", None, "quick", 0)
        run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, name="live",
                             config=cfg.model_dump(mode="json"), worker=f"{socket.gethostname()}:{holder.pid}")
        res = cli("train", "--resume", "live")
        assert res.exit_code == 2 and "is being trained by" in res.stderr, res.stderr
        assert reg.get_run(run.id).worker.endswith(str(holder.pid))
        res = cli("worker", "--stale-after", "-1", "--once")
        assert res.exit_code == 2
    finally:
        holder.kill()
        holder.wait()


# ---- item 5: data that matches its run ------------------------------------------------------------

def test_resume_against_other_data_is_refused_naming_both(cli, workspace, small_data):
    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.cell_sources import dataset_identity

    reg = Registry()
    cfg = resolve_run_config("ae", None, "quick", 0)
    other = {**dataset_identity("synth3d"), "n_images": 480000, "factor_sizes": [10, 10, 10, 8, 4, 15]}
    other["source"] = {**other["source"], "grid": "official"}
    reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, name="full", status="queued",
                   config=cfg.model_dump(mode="json"), dataset_fingerprint=other)
    res = cli("train", "--resume", "full")
    assert res.exit_code == 1, res.stderr
    assert "480,000 images" in res.stderr and "648 images" in res.stderr and len(res.stderr.splitlines()) == 1
    assert reg.get_run("full").status == "queued"


# ---- item 7: runs never stuck as running -----------------------------------------------------------

def test_unprepared_dataset_leaves_no_run(cli, workspace):
    res = cli("train", "--dataset", "shapes3d", "--steps", "1")
    assert res.exit_code == 1 and "not prepared" in res.stderr
    assert Registry().find_runs() == []


def test_a_dead_local_run_can_be_deleted_and_is_requeued(cli, workspace):
    import socket

    from fqvae_cli.experiments import resolve_run_config
    from fqvae_cli.runs.sweep import queue_table

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    reg = Registry()
    cfg = resolve_run_config("ae", None, "quick", 0)
    who = f"{socket.gethostname()}:{dead.pid}"
    a = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config=cfg.model_dump(mode="json"),
                       worker=who)
    report = queue_table(reg, "1", "quick", models=["ae"])
    assert report.busy == [] and report.queued == [a.short_id] and reg.get_run(a.id).status == "queued"
    b = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=1, config={}, worker=who)
    res = cli("runs", "delete", b.short_id, "--yes")
    assert res.exit_code == 0, res.stderr


# ---- items 8, 9, 10 -------------------------------------------------------------------------------

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


def test_negative_seed_is_refused_before_anything_is_written(cli, workspace):
    res = cli("train", "--seed", "-1", "--steps", "1")
    assert res.exit_code == 2
    assert not (workspace / "registry.db").exists() or Registry().find_runs() == []
    from fqvae_cli.runs.sweep import parse_grid

    with pytest.raises(Exception, match="seed"):
        from fqvae_cli.runs.sweep import queue_grid

        parse_grid("model=ae seed=-1")  # parses; the run config refuses it
        queue_grid(Registry(), "model=ae seed=-1")


# ---- minor items ------------------------------------------------------------------------------------

def test_minor_refusals(cli, workspace, tmp_path):
    reg = Registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={})
    assert reg.get_run(run.id[:2]).id == run.id  # a unique 2-character prefix
    res = cli("train", "--resume", run.short_id, "--steps", "5", "--set", "train.lr=1e-4")
    assert res.exit_code == 2 and "drop --steps, --set" in res.stderr, res.stderr
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
