"""Nothing lost, nothing wrong: reproduce's workers keep to their table, grids are counted and capped,
threads are bounded by the CPUs, bad seeds, sizes, paths and settings get one sentence before a run
exists, and the small ones (run names, foreign registries, table headers, worker messages, an
interrupted first render, the run's own protocol, URLs echoed as typed)."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY

from fqvae_cli.registry.store import Registry

# The tiny setup of a table cell's run and of a queued sweep run; their train.steps differ, so the sweep
# run never counts as a cell's run.
TABLE_SET = ["--set", "train.steps=4", "--set", "train.batch_size=8", "--set", "train.checkpoint_every=2",
             "--set", "eval.protocol=tiny", "--set", "eval.mse_images=32", "--set", "train.threads=1"]
SWEEP_GRID = ("model=ae set.train.steps=3 set.train.batch_size=8 set.train.checkpoint_every=3 "
              "set.eval.protocol=tiny set.eval.mse_images=32 set.train.threads=1")


def one_sentence(res) -> bool:
    """A refusal: one line on stderr, no traceback, no catch-all."""
    return (res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
            and "unexpected" not in res.stderr)


# ---- item 5: reproduce's workers execute only its table's runs ---------------------------------------

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


# ---- item 6: huge grids ------------------------------------------------------------------------------

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


def test_a_grid_over_the_ceiling_is_refused_and_the_help_says_so(cli):
    GRID_CEILING = 100_000
    res = cli("sweep", "--yes", "--grid", f"model=ae,qvae seed=0..{GRID_CEILING // 2}")
    assert res.exit_code == 2 and f"{GRID_CEILING + 2:,} combinations" in res.stderr and one_sentence(res)
    from typer.testing import CliRunner

    from fqvae_cli.cli.main import app

    out = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"}).output
    assert f"{GRID_CEILING:,}" in out


def test_a_moderate_grid_with_yes_queues_exactly_its_product(cli):
    res = cli("sweep", "--grid", "model=ae,qvae seed=0..500", "--yes")
    assert res.exit_code == 0, res.stderr
    runs = Registry().find_runs()
    assert len(runs) == 1002 and len({(r.model, r.seed) for r in runs}) == 1002
    assert {r.status for r in runs} == {"queued"}


# ---- item 7: threads ---------------------------------------------------------------------------------

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


# ---- item 11: one sentence, before a run exists -------------------------------------------------------

def test_out_of_range_seeds_get_one_sentence(cli, small_data):
    res = cli("train", "--seed", "99999999999999999999", "--steps", "1")
    assert res.exit_code == 2 and "4294967295" in res.stderr and one_sentence(res), res.stderr
    res = cli("evaluate", "nosuch", "--seed", "-1")
    assert res.exit_code == 2 and "--seed" in res.stderr and one_sentence(res), res.stderr
    res = cli("sweep", "--grid", "model=ae seed=0..99999999999999999999")
    assert res.exit_code == 2 and "4294967295" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []


def test_a_model_too_large_to_build_is_refused_before_a_run_exists(cli, small_data):
    res = cli("train", "--model", "ae", "--set", "model.latent_dim=1e9", "--steps", "1")
    assert res.exit_code == 2 and "parameters" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []
    res = cli("sweep", "--grid", "model=ae set.model.hidden=1000000000")
    assert res.exit_code == 2 and "parameters" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []


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


def test_unusable_registry_and_data_locations_are_named(cli, monkeypatch):
    monkeypatch.setenv("FQVAE_DB", "sqlite:////proc/nope/r.db")
    res = cli("runs", "list")
    assert res.exit_code == 1 and "/proc/nope" in res.stderr and one_sentence(res), res.stderr
    monkeypatch.delenv("FQVAE_DB")
    monkeypatch.setenv("FQVAE_DATA", "/proc/nope")
    res = cli("train", "--steps", "1")
    assert res.exit_code == 1 and "/proc/nope" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []


def test_a_bad_log_interval_is_refused_before_a_run_exists(cli, small_data, monkeypatch):
    monkeypatch.setenv("FQVAE_LOG_INTERVAL", "abc")
    res = cli("train", "--model", "ae", *TINY)
    assert res.exit_code == 2 and "FQVAE_LOG_INTERVAL" in res.stderr and one_sentence(res), res.stderr
    assert Registry().find_runs() == []


# ---- item 12: the small ones ------------------------------------------------------------------------

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


def test_a_worker_says_interrupted_only_for_a_run_it_interrupted(cli, monkeypatch):
    from fqvae_cli.runs import workers

    reg = Registry()
    run = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, status="queued")

    def trained_then_stopped_while_evaluating(reg, claimed, device, **kw):
        reg.transition(claimed.id, "finished")
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "execute", trained_then_stopped_while_evaluating)
    res = cli("worker", "--device", "cpu", "--quiet")
    assert res.exit_code == 130
    assert "marked interrupted" not in res.stderr and "finished" in res.stderr, res.stderr
    assert reg.get_run(run.id).status == "finished"

    other = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=1, config={}, status="queued")

    def stopped_while_training(reg, claimed, device, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "execute", stopped_while_training)
    res = cli("worker", "--device", "cpu", "--quiet")
    assert res.exit_code == 130 and f"run {other.short_id} was marked interrupted" in res.stderr, res.stderr
    assert reg.get_run(other.id).status == "interrupted"


def test_an_interrupted_first_render_says_what_stopped(cli, tmp_path, monkeypatch):
    from fqvae_cli.data import synthetic

    real = synthetic.store_plan

    def stopped_plan(grid="official", **kw):
        plan = real("small", **kw)

        def fill(images, bar):
            images[:10] = 1
            bar.advance(10)
            raise KeyboardInterrupt

        plan.fill = fill
        return plan

    monkeypatch.setattr(synthetic, "store_plan", stopped_plan)
    root = tmp_path / "data"
    monkeypatch.setenv("FQVAE_DATA", str(root))
    res = cli("train", "--steps", "1")
    assert res.exit_code == 130
    said = " ".join(res.stderr.split())
    assert "stopped preparing dataset 'synth3d'" in said and "nothing was kept half-written" in said, said
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    assert Registry().find_runs() == []


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


def test_urls_are_echoed_as_typed_with_the_password_hidden(cli):
    from fqvae_cli.registry.migrate import display_url

    res = cli("runs", "list", "--db", "sqlite:///:memory:")
    assert res.exit_code == 2 and "'sqlite:///:memory:'" in res.stderr and "%3A" not in res.stderr
    assert display_url("postgresql://fq:s%40cret@db.example/registry") == "postgresql://fq:***@db.example/registry"
