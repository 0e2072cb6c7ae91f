"""Which runs a table cell counts, and which runs reproduce's workers execute: old runs keep their cells,
smoke runs and runs on other data do not count, a model outside the paper gets an extra row, a table built
with --set says so, reproduce and its workers take only their table's runs (a claim can be restricted to
given runs), and evaluation follows a run's own protocol."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import TINY

from fqvae_cli.experiments import COLUMNS
from fqvae_cli.registry.store import Registry

FIXTURE = Path(__file__).parent / "data" / "registry_0002.db"


# The quick profile as it was when registry_0002.db was written (it has since moved to bf16 and more
# iterations; runs of the old setup rightly no longer fill the new profile's cells).
OLD_QUICK_TRAIN = {"steps": 3500, "batch_size": 64, "anneal_steps": 100000, "temperature_decay": 1.0e-5,
                   "schedule_reference_steps": 100000, "checkpoint_every": 500, "log_every": 50}

@pytest.fixture
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

# ---- the cell-matching rule ----------------------------------------------------------------------

@pytest.mark.usefixtures("old_quick_profile")
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

@pytest.mark.usefixtures("old_quick_profile")
def test_reproduce_does_not_take_a_smoke_run_for_a_cell(tmp_path):
    from fqvae_cli.runs.sweep import queue_table

    reg = _old_registry(tmp_path)
    report = queue_table(reg, "1", "quick", models=["ae"], seeds=4)
    assert len(report.done) == 2 and len(report.queued) == 2  # seeds 2 and 3 are new; smoke runs ignored
    queued = [reg.get_run(s) for s in report.queued]
    assert sorted(r.seed for r in queued) == [2, 3] and all(r.config["train"]["steps"] == 3500 for r in queued)

@pytest.mark.usefixtures("old_quick_profile")
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

@pytest.mark.usefixtures("old_quick_profile")
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

def test_a_table_built_with_set_says_so(cli):
    import json

    res = cli("table", "--set", "train.steps=4", "--set", "model.beta=0.002", "--format", "markdown")
    assert res.exit_code == 0, res.stderr
    header = res.stdout.split("| model |")[0]
    assert "train.steps=4" in header and "model.beta=0.002" in header
    res = cli("table", "--set", "train.steps=4", "--format", "json")
    table = json.loads(res.stdout)
    assert any("train.steps=4" in line for line in table["header"])
    assert all("--set train.steps=4" in cmd for cmd in table["missing"])  # the fill commands keep the setup

# ---- reproduce's workers execute only its table's runs -------------------------------------------

# The tiny setup of a table cell's run and of a queued sweep run; their train.steps differ, so the sweep
# run never counts as a cell's run.
TABLE_SET = ["--set", "train.steps=4", "--set", "train.batch_size=8", "--set", "train.checkpoint_every=2",
             "--set", "eval.protocol=tiny", "--set", "eval.mse_images=32", "--set", "train.threads=1"]

SWEEP_GRID = ("model=ae set.train.steps=3 set.train.batch_size=8 set.train.checkpoint_every=3 "
              "set.eval.protocol=tiny set.eval.mse_images=32 set.train.threads=1")


def test_a_claim_can_be_restricted_to_given_runs(db_url):
    reg = Registry(db_url)
    older = reg.create_run(model="m", dataset="d", profile="p", seed=0, config={}, status="queued")
    newer = reg.create_run(model="m", dataset="d", profile="p", seed=1, config={}, status="queued")
    got = reg.claim_next_queued("host:1", only=[newer.short_id])
    assert got.id == newer.id and got.status == "running"
    assert reg.claim_next_queued("host:1", only=[newer.short_id]) is None  # taken; the older is not offered
    assert reg.get_run(older.id).status == "queued"
    assert reg.claim_next_queued("host:1", only=[older.id]).id == older.id  # full ids work as well

def test_reproduce_leaves_a_queued_sweep_run_alone(cli, small_data, tiny_protocol):
    from fqvae_cli.runs.sweep import queue_grid

    reg = Registry()
    (other,) = queue_grid(reg, SWEEP_GRID)
    res = cli("reproduce", "--paper-table", "1", "--models", "ae", "--device", "cpu", "--workers", "1", *TABLE_SET)
    assert res.exit_code == 0, res.stderr
    assert reg.get_run(other).status == "queued"
    (mine,) = [r for r in reg.find_runs() if r.short_id != other]
    assert mine.status == "finished" and reg.latest_metrics(mine.id, "tiny")

def test_a_worker_given_runs_on_stdin_executes_only_those(cli, small_data, tiny_protocol, monkeypatch):
    from fqvae_cli.runs.sweep import queue_grid

    reg = Registry()
    (first,) = queue_grid(reg, SWEEP_GRID)
    (second,) = queue_grid(reg, SWEEP_GRID.replace("set.train.steps=3", "set.train.steps=2"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{second}\n"))
    res = cli("worker", "--device", "cpu", "--quiet", "--runs", "-")
    assert res.exit_code == 0, res.stderr
    assert reg.get_run(second).status == "finished" and reg.get_run(first).status == "queued"

def test_local_workers_receive_their_runs(monkeypatch):
    from fqvae_cli.runs import workers

    started = []

    class FakeWorker:
        def __init__(self, args, **kw):
            self.args, self.kw, self.fed = args, kw, ""
            self.stdin = self
            started.append(self)

        def write(self, text):
            self.fed += text

        def close(self):
            pass

    monkeypatch.setattr(workers.subprocess, "Popen", FakeWorker)
    workers.start_local_workers(2, db_url="sqlite:///x.db", only=["aaaaaaaa", "bbbbbbbb"])
    assert len(started) == 2
    for w in started:
        assert w.args[w.args.index("--runs") + 1] == "-" and w.fed.split() == ["aaaaaaaa", "bbbbbbbb"]

def test_evaluate_and_the_hint_follow_the_runs_own_protocol(cli, small_data, tiny_protocol):
    res = cli("train", "--model", "ae", *TINY, "--set", "eval.protocol=tiny")
    assert res.exit_code == 0, res.stderr
    short, hint = res.stdout.strip(), res.stderr
    res = cli("evaluate", short, "--json")
    assert res.exit_code == 0, res.stderr
    reg = Registry()
    protocols = {m.protocol for m in reg.metrics(reg.get_run(short).id, name="dci_d")}
    assert protocols == {"tiny"}
    assert f"fqvae evaluate {short}" in hint and "tiny protocol" in hint
